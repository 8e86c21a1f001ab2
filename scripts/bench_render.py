"""Time a video track rendered by encode and by stream copy, against a plain byte copy.

A realistic webcam track: 720p30 H.264 with moving grain (testsrc2 + noise, so the
bitrate is a real camera's, not a flat colour's), no B-frames as WebRTC sends,
in three parts with a gap at the start, between parts and at the end. Generating
the parts is itself slow on two cores, so they are cached by their parameters.

    python scripts/bench_render.py [--seconds 180] [--cache DIR]
"""

from __future__ import annotations

import argparse
import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from assembler.media import MediaInfo, ffmpeg_output, file_arg, probe, run_ffmpeg
from assembler.plan import Slot, TrackPlan, VideoStrategy, place
from assembler.render import RenderedTrack, RenderSettings, render_track

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


def timed(label: str, work: Callable[[], object]) -> tuple[str, float, object]:
    started = time.perf_counter()
    result = work()
    return label, time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "assembler-bench-render")
    args = parser.parse_args()
    track = make_track(args.seconds)
    print(f"generating (cached in {args.cache}) ...", flush=True)
    parts = make_parts(track, args.cache)
    probes: dict[str, MediaInfo] = {part_id: probe(path) for part_id, path in parts.items()}
    size = sum(path.stat().st_size for path in parts.values())
    with tempfile.TemporaryDirectory(dir=args.cache) as scratch:
        out = Path(scratch)

        def byte_copy() -> None:
            for index, path in enumerate(parts.values()):
                shutil.copyfile(path, out / f"copy{index}.mp4")

        rows = [timed("byte copy", byte_copy)]
        strategies: tuple[VideoStrategy, ...] = ("copy", "encode")
        for strategy in strategies:
            rows.append(timed(strategy, functools.partial(
                render_track, replace(track, path=f"{strategy}/webcam.mp4"), parts, probes, out,
                RenderSettings(video_strategy=strategy))))
        base = rows[0][1]
        copy_time = rows[1][1]
        print(f"\n{args.seconds:g} s of {SIZE}@{RATE} in 3 parts, {size / 1e6:.1f} MB\n")
        print(f"{'method':<10} {'seconds':>8} {'x realtime':>11} {'vs byte copy':>13} "
              f"{'vs copy':>8}  check")
        for label, seconds, result in rows:
            check = check_aligned(result, parts) if isinstance(result, RenderedTrack) else "-"
            print(f"{label:<10} {seconds:8.2f} {args.seconds / seconds:11.1f} "
                  f"{seconds / base:12.1f}x {seconds / copy_time:7.1f}x  {check}")


if __name__ == "__main__":
    main()
