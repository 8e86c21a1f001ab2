"""Time `--archive` against `cp`, and `assembler verify` against `sha256sum`, in one run.

A recording already rendered: per participant a FLAC audio track (pink noise,
which compresses like a room, not like a sine) and a 720p30 H.264 webcam track
at 1.2 Mbps with x264's B-frames, as `encode` makes them. The audio is encoded
whole; a short piece of video is encoded once and looped by stream copy to the
full length (both cached by their parameters); the participants' tracks are hard
links to those files.

Timed, best of 3, alternating so load from others falls on both sides alike:
- building `recording.mkv` (the archive deliverable's `write`, stream copy)
  against `cp` of the same track files into a fresh directory;
- `assembler verify DIR` (the CLI, start to exit, no `--decode`) against
  `sha256sum` of the same files (every track and recording.mkv).

    python scripts/bench_archive.py [--minutes 60] [--participants 4] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from assembler.deliverables import DeliverableContext, DeliverableOptions, Output
from assembler.deliverables.archive import ARCHIVE
from assembler.ffmpeg_process import file_arg, run_ffmpeg
from assembler.manifest import AudioPart, Documents, VideoPart
from assembler.plan import Plan, make_plan
from assembler.render import RenderedTrack, RenderSettings
from assembler.report import OutputEntry, build_report, sha256_file, with_outputs, write_json

PIECE_SECONDS = 10  # video encoded once, then looped
VIDEO_BITRATE = "1200k"
ROUNDS = 3


def looped(cache: Path, name: str, piece_args: list[str], piece_seconds: int,
           seconds: int) -> Path:
    """A video file of `seconds`, made by looping a `piece_seconds` piece by stream copy; cached."""
    final = cache / f"{name}-{seconds}s{Path(name).suffix or ''}"
    if final.exists():
        return final
    piece = cache / f"piece-{name}"
    if not piece.exists():
        run_ffmpeg(["-y", *piece_args, file_arg(piece)])
    partial = final.with_name(f".{final.name}.partial")
    loops = -(-seconds // piece_seconds) - 1
    run_ffmpeg(["-y", "-stream_loop", str(loops), "-i", file_arg(piece), "-t", str(seconds),
                "-c", "copy", "-f", "mp4", file_arg(partial)])
    partial.rename(final)
    return final


def encoded_audio(cache: Path, seconds: int) -> Path:
    """Pink noise FLAC of `seconds`, encoded whole as `render` makes it; cached.

    Not looped: FLAC frames number themselves, and a looped file's numbers restart
    every piece, which the demuxer reads as timestamps jumping back.
    """
    final = cache / f"noise-{seconds}s.flac"
    if not final.exists():
        partial = final.with_name(f".{final.name}.partial")
        run_ffmpeg(["-y", "-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.05:r=48000:d={seconds}",
                    "-c:a", "flac", "-sample_fmt", "s16", "-frame_size", "4096",
                    "-f", "flac", file_arg(partial)])
        partial.rename(final)
    return final


def make_media(cache: Path, seconds: int) -> tuple[Path, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    audio = encoded_audio(cache, seconds)
    video = looped(cache, "webcam.mp4", [
        "-f", "lavfi", "-i",
        f"testsrc2=s=1280x720:r=30:d={PIECE_SECONDS},noise=alls=8:allf=t+u",
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", VIDEO_BITRATE,
        "-pix_fmt", "yuv420p", "-movflags", "+faststart"], PIECE_SECONDS, seconds)
    return audio, video


def documents(participants: int, seconds: int) -> Documents:
    def part(kind: str, person: int) -> dict[str, object]:
        return {"id": f"{kind}-{person}", "participant": {"id": person, "name": f"Person {person}"},
                "start_timestamp": {"relative": 0.0, "absolute": "2026-01-05T09:00:00Z"},
                "duration": float(seconds), "download_url": "http://127.0.0.1/unused"}

    return Documents(
        audio_parts=tuple(AudioPart.model_validate(part("audio", person))
                          for person in range(1, participants + 1)),
        video_parts=tuple(VideoPart.model_validate({**part("webcam", person), "type": "webcam"})
                          for person in range(1, participants + 1)))


def lay_out(plan: Plan, out: Path, audio: Path, video: Path) -> list[RenderedTrack]:
    """The rendered tracks: hard links to the cached files, at the plan's paths."""
    rendered = []
    for track in plan.tracks:
        path = out / track.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        os.link(audio if track.kind == "audio" else video, path)
        rendered.append(RenderedTrack(track=track, path=path, strategy="encode"))
    return rendered


def timed(run: Callable[[], object], before: Callable[[], object]) -> float:
    before()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def compare(label: str, ours: Callable[[], object], baseline: Callable[[], object],
            baseline_label: str, reset: Callable[[], object] = lambda: None
            ) -> tuple[float, float]:
    """Best of `ROUNDS` alternating runs each: (ours / baseline, the baseline's seconds)."""
    timings: dict[str, list[float]] = {label: [], baseline_label: []}
    for _ in range(ROUNDS):
        timings[baseline_label].append(timed(baseline, reset))
        timings[label].append(timed(ours, reset))
    mine, base = min(timings[label]), min(timings[baseline_label])
    print(f"  {baseline_label:34} best {base:7.2f} s  (runs: "
          f"{', '.join(f'{t:.2f}' for t in timings[baseline_label])})")
    print(f"  {label:34} best {mine:7.2f} s  (runs: "
          f"{', '.join(f'{t:.2f}' for t in timings[label])})")
    print(f"  ratio {mine / base:.2f}x")
    return mine / base, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/assembler-bench-archive"))
    args = parser.parse_args()
    seconds = args.minutes * 60
    audio, video = make_media(args.cache / "media", seconds)
    out = args.cache / "recording"
    docs = documents(args.participants, seconds)
    plan = make_plan(docs, audio_format="flac")
    rendered = lay_out(plan, out, audio, video)
    report = build_report(plan, rendered, [], out, inputs="bench")
    tracks = [out / item.track.path for item in rendered]
    size = sum(path.stat().st_size for path in tracks)
    print(f"{args.participants} participants x (audio + 720p webcam), {args.minutes} min: "
          f"{len(tracks)} tracks, {size / 1e9:.2f} GB; load {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")

    context = DeliverableContext(out_dir=out, documents=docs, plan=plan, tracks=tuple(rendered),
                                 render=RenderSettings(),
                                 options=DeliverableOptions(archive=True), report=report)
    output = Output(kind="archive", format="mkv", path="recording.mkv")
    archive, copies = out / "recording.mkv", args.cache / "copy"

    def reset() -> None:
        archive.unlink(missing_ok=True)
        shutil.rmtree(copies, ignore_errors=True)
        copies.mkdir()

    print("archive (recording.mkv by stream copy) vs cp of the same tracks:")
    ratio_archive, copy_best = compare(
        "archive write", lambda: ARCHIVE.write(context, output, archive),
        lambda: subprocess.run(["cp", "-r", str(out / "participants"), str(copies)], check=True),
        "cp -r participants/",
        reset)
    # What the archive cannot beat: this ffmpeg reading the same packets and writing none.
    read_all = [arg for path in tracks for arg in ("-i", file_arg(path))]
    read_all += [arg for index in range(len(tracks)) for arg in ("-map", f"{index}:0")]
    floor = min(timed(lambda: run_ffmpeg([*read_all, "-c", "copy", "-f", "null", "-"]),
                      lambda: None) for _ in range(ROUNDS))
    print(f"  {'ffmpeg reading them (-f null)':34} best {floor:7.2f} s  "
          f"({floor / copy_best:.2f}x cp: the floor for any archive this ffmpeg writes)")
    ARCHIVE.write(context, output, archive)
    shutil.rmtree(copies, ignore_errors=True)
    entry: OutputEntry = {"kind": "archive", "format": "mkv", "path": "recording.mkv",
                          "sha256": sha256_file(archive)}
    write_json(out / "report.json", with_outputs(report, [entry], []))
    hashed = [*tracks, archive]
    total = sum(path.stat().st_size for path in hashed)
    print(f"verify vs sha256sum of the same {len(hashed)} files ({total / 1e9:.2f} GB):")

    def verify() -> None:
        done = subprocess.run([sys.executable, "-m", "assembler", "verify", str(out), "--quiet"],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"verify failed: {done.stdout}{done.stderr}")

    ratio_verify, _ = compare(
        "assembler verify (CLI)", verify,
        lambda: subprocess.run(["sha256sum", *map(str, hashed)], check=True,
                               stdout=subprocess.DEVNULL), "sha256sum")
    print(f"targets: archive <= 3x cp: {ratio_archive:.2f}x; "
          f"verify <= 1.2x sha256sum: {ratio_verify:.2f}x")


if __name__ == "__main__":
    main()
