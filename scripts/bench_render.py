"""Time stream copy against a plain byte copy, and a storm of small parts against two.

1. A realistic webcam track: 720p30 H.264 with moving grain (testsrc2 + noise, so
   the bitrate is a real camera's, not a flat colour's), no B-frames as WebRTC
   sends, in three parts with a gap at the start, between parts and at the end,
   rendered by stream copy against `shutil.copyfile` of the parts (and by encode
   with `--encode`). The copy row times what a run does once the parts are on
   disk, in a fresh process: probe them as a run does (`probe_many`, which also
   surveys them for copy), encode black, then `render_track`. The render alone,
   parts probed and black encoded already (as for the next track of a batch), is
   shown beside it, and so is ffmpeg joining the parts as they are into one MP4
   (concat, `-c copy`, no gaps, no cuts): the floor for any track this ffmpeg
   writes. Generating the parts is itself slow on two cores, so they are cached.
   Last, the command as a user runs it: `assembler run --force --video-strategy copy`
   (start to exit, a child process) over the same parts already in DIR/parts. It
   also hashes the track for report.json (sha256, read back once).
2. The storm: `assembler run --force` (the CLI, start to exit, as a child process)
   over a recording whose parts are already in DIR/parts (downloads skip them, every
   track is rendered again),
   one participant with `--storm-parts` audio and as many webcam parts back to back,
   two minutes of media, against the same two minutes in 2 + 2 parts.

Each figure is the best of `--repeat` runs, printed beside its baseline from the
same run.

    python scripts/bench_render.py [--seconds 180] [--storm-parts 60] [--encode] [--cache DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import assembler._copy as copy_module  # noqa: E402
from assembler.ffmpeg_process import ffmpeg_output, file_arg, run_ffmpeg  # noqa: E402
from assembler.media import MediaInfo, probe_many  # noqa: E402
from assembler.plan import Slot, TrackPlan, VideoStrategy, place  # noqa: E402
from assembler.render import RenderedTrack, RenderSettings, render_track  # noqa: E402
from tests.support.recording import RecordingBuilder  # noqa: E402

SIZE = "1280x720"
RATE = 30
# Each part's share of the timeline: (start, end) as fractions of it. The second
# part runs a little past its slot, so copy has to cut it.
LAYOUT = [(0.05, 0.35), (0.40, 0.65), (0.70, 0.95)]
OVERRUN = 1.5  # seconds of media past the second part's slot


def make_part(path: Path, seconds: float, seed: int) -> Path:
    if not path.exists():
        partial = path.with_suffix(".partial.mp4")
        run_ffmpeg(["-y", "-f", "lavfi", "-i",
                    f"testsrc2=s={SIZE}:r={RATE}:d={seconds},noise=alls=12:allf=t+u:all_seed={seed}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                    "-profile:v", "baseline", "-b:v", "2500k", "-maxrate", "2500k",
                    "-bufsize", "5000k", "-g", "300", "-pix_fmt", "yuv420p",
                    "-f", "mp4", file_arg(partial)])
        partial.rename(path)
    return path


def make_track(seconds: float) -> TrackPlan:
    slots = tuple(Slot(part_id=f"p{index}", start=Fraction(round(start * seconds * RATE), RATE),
                       end=Fraction(round(end * seconds * RATE), RATE))
                  for index, (start, end) in enumerate(LAYOUT))
    length = round(seconds * RATE)
    rate = Fraction(RATE)
    return TrackPlan(participant_id=1, kind="webcam", path="bench/webcam.mp4", rate=rate,
                     length=length, slots=slots, segments=place(slots, length, rate))


def make_parts(track: TrackPlan, cache: Path) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    parts = {}
    for index, slot in enumerate(track.slots):
        seconds = float(slot.end - slot.start) + (OVERRUN if index == 1 else 0)
        parts[slot.part_id] = make_part(
            cache / f"part{index}-{SIZE}-{RATE}fps-{seconds:.3f}s.mp4", seconds, index)
    return parts


def frame_at(path: Path, index: int, rate: Fraction) -> np.ndarray:
    """Frame `index` (at `rate`) as a small grey image: the first frame shown from its time."""
    # A quarter frame early, since -ss drops frames before it and timestamps are rounded.
    seconds = max(0.0, (index - 0.25) / float(rate))
    raw = ffmpeg_output(["-ss", f"{seconds:.6f}", "-i", file_arg(path), "-frames:v", "1",
                         "-vf", "scale=64:36:flags=area", "-f", "rawvideo", "-pix_fmt", "gray",
                         "-"])
    return np.frombuffer(raw, dtype=np.uint8).astype(np.float64)


def check_aligned(rendered: RenderedTrack, parts: dict[str, Path]) -> str:
    """Frames at each slot's first and last frame: black in gaps, the part's own inside."""
    track = rendered.track
    problems = []
    for segment in track.segments:
        for index in (segment.start, segment.end - 1):
            got = frame_at(rendered.path, index, track.rate)
            if segment.part_id is None:
                ok = got.size > 0 and got.mean() < 20
            else:
                want = frame_at(parts[segment.part_id], index - segment.start, track.rate)
                ok = got.shape == want.shape and float(np.abs(got - want).mean()) < 12
            if not ok:
                problems.append(f"{segment.part_id or 'gap'} frame {index}")
    return "aligned" if not problems else "MISALIGNED: " + ", ".join(problems)


def best_of(repeat: int, work: Callable[[], object]) -> tuple[float, object]:
    """The shortest of `repeat` timed calls of `work`, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def long_track(seconds: float, cache: Path, repeat: int, encode: bool) -> None:
    track = make_track(seconds)
    print(f"generating (cached in {cache}) ...", flush=True)
    parts = make_parts(track, cache)
    size = sum(path.stat().st_size for path in parts.values())
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        out = Path(scratch)

        def byte_copy() -> None:
            for index, path in enumerate(parts.values()):
                shutil.copyfile(path, out / f"copy{index}.mp4")

        def probed() -> dict[str, MediaInfo]:
            found = probe_many(list(parts.values()), survey=list(parts.values()))
            infos = {part_id: found[path] for part_id, path in parts.items()}
            assert all(isinstance(info, MediaInfo) for info in infos.values())
            return infos  # type: ignore[return-value]

        def render(strategy: VideoStrategy, infos: dict[str, MediaInfo]) -> RenderedTrack:
            return render_track(replace(track, path=f"{strategy}/webcam.mp4"), parts, infos,
                                out, RenderSettings(video_strategy=strategy))

        listing = out / "parts.ffconcat"
        listing.write_text("ffconcat version 1.0\n" + "".join(
            f"file '{path}'\n" for path in parts.values()))

        def remux() -> None:
            """The floor for a track ffmpeg writes from these parts: them joined, as they are."""
            run_ffmpeg(["-y", "-f", "concat", "-safe", "0", "-i", file_arg(listing), "-c", "copy",
                        "-f", "mp4", file_arg(out / "remux.mp4")])

        rows: list[tuple[str, float, object]] = [("byte copy", *best_of(repeat, byte_copy)),
                                                 ("ffmpeg -c copy", *best_of(repeat, remux))]
        def first_copy() -> RenderedTrack:
            """As a run's process does it: black not yet encoded, parts not yet probed."""
            copy_module.BLACK = copy_module.BlackCache()
            return render("copy", probed())

        rows.append(("probe+copy", *best_of(repeat, first_copy)))
        infos = probed()
        rows.append(("  copy", *best_of(repeat, functools.partial(render, "copy", infos))))
        command = copy_run(track, parts, out / "run", seconds)
        rows.append(("assembler run", *best_of(repeat, command)))
        if encode:
            rows.append(("  encode", *best_of(1, functools.partial(render, "encode", infos))))
        base = rows[0][1]
        print(f"\n{seconds:g} s of {SIZE}@{RATE} in 3 parts, {size / 1e6:.1f} MB, "
              f"best of {repeat}; indented: the render alone, parts already probed\n")
        print(f"{'method':<14} {'seconds':>8} {'x realtime':>11} {'vs byte copy':>13}  check")
        for label, taken, result in rows:
            check = check_aligned(result, parts) if isinstance(result, RenderedTrack) else "-"
            print(f"{label:<14} {taken:8.2f} {seconds / taken:11.1f} {taken / base:12.1f}x  "
                  f"{check}")
        print("target: copy within 3x of the byte copy")


def copy_run(track: TrackPlan, parts: dict[str, Path], root: Path,
             seconds: float) -> Callable[[], RenderedTrack]:
    """`assembler run --force --video-strategy copy --duration seconds` of `track`, its
    parts linked into root/parts; the call runs it, start to exit, and returns the track."""
    (root / "parts").mkdir(parents=True)
    person = {"id": track.participant_id, "name": "Bench", "is_host": None, "platform": None,
              "extra_data": None, "email": None}
    entries = []
    for slot in track.slots:
        (root / "parts" / f"{slot.part_id}.mp4").hardlink_to(parts[slot.part_id])
        entries.append({"id": slot.part_id, "participant": person, "type": "webcam",
                        "start_timestamp": {"absolute": "2025-01-01T00:00:00Z",
                                            "relative": float(slot.start)},
                        "duration": float(slot.end - slot.start),
                        # never asked: every part is already on disk
                        "download_url": f"http://127.0.0.1:9/{slot.part_id}.mp4"})
    manifest = root / "video_parts.json"
    manifest.write_text(json.dumps(entries))

    def run() -> RenderedTrack:
        subprocess.run([sys.executable, "-m", "assembler", "run", "--force", "--quiet",
                        "--video-strategy", "copy", "--duration", str(seconds),
                        "--out", str(root), "--video-parts", str(manifest)],
                       check=True, cwd=REPO)
        report = json.loads((root / "report.json").read_text())
        written = report["participants"][0]["tracks"][0]
        return RenderedTrack(track=replace(track, path=written["path"]),
                             path=root / written["path"], strategy=written["strategy"])
    return run


def make_storm(root: Path, count: int) -> Path:
    """A recording of 120 s: `count` audio and `count` webcam parts back to back, on disk."""
    if not (root / "video_parts.json").exists():
        builder = RecordingBuilder(root)
        seconds = 120 / count
        colours = ("red", "green", "blue", "yellow")
        for index in range(count):
            start = index * seconds
            builder.audio_part(1, "Ada", start, seconds, freq=300.0 + 20 * (index % 20))
            builder.video_part(1, "Ada", start, seconds, colour=colours[index % 4])
        builder.write("http://127.0.0.1:9")  # never asked: every part is already on disk
    return root


def assembler_run(root: Path) -> dict[str, object]:
    """`assembler run --force` over `root` (parts in root/parts), start to exit; its report.

    `--force`: every run renders every track again, instead of keeping the tracks an
    earlier run made from the same inputs.
    """
    subprocess.run([sys.executable, "-m", "assembler", "run", "--force", "--out", str(root),
                    "--video-parts", str(root / "video_parts.json"),
                    "--audio-parts", str(root / "audio_parts.json"), "--quiet"],
                   check=True, cwd=REPO)
    report: dict[str, object] = json.loads((root / "report.json").read_text())
    return report


def storm(count: int, cache: Path, repeat: int) -> None:
    rows = []
    for parts in (2, count):
        root = make_storm(cache / f"storm-{parts}", parts)
        taken, report = best_of(repeat, functools.partial(assembler_run, root))
        assert isinstance(report, dict)
        tracks = [track for person in report["participants"] for track in person["tracks"]]
        made = ", ".join(f"{track['kind']} {track['strategy']} {track['duration']:g} s"
                         for track in tracks)
        rows.append((f"{parts} + {parts} parts", taken, made))
    print(f"\nassembler run, parts on disk, 120 s of audio and 320x240 webcam, "
          f"best of {repeat}\n")
    print(f"{'recording':<18} {'seconds':>8} {'vs 2 + 2':>9}  tracks")
    for label, taken, made in rows:
        print(f"{label:<18} {taken:8.2f} {taken / rows[0][1]:8.1f}x  {made}")
    print("target: the storm in <= 2 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--storm-parts", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--encode", action="store_true", help="also time encode (slow)")
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "assembler-bench-render")
    args = parser.parse_args()
    long_track(args.seconds, args.cache, args.repeat, args.encode)
    storm(args.storm_parts, args.cache, args.repeat)


if __name__ == "__main__":
    main()
