"""Time an audio track rendered to every output format against a plain decode of its parts.

Not a test: prints two tables, every figure the best of `--repeat` runs.

1. `render_track` of a two-minute audio track (four 30 s parts of one codec with
   gaps between them) per output format, beside `ffmpeg -i <parts> -f null -`,
   the plain decode of the same parts, measured in the same run. Target: <= 1.5x.
   Wall seconds, and ffmpeg's CPU seconds (steadier when other work loads the cores).
2. Why the track's graph ends in `asetnsamples`: each encoder fed the decoder's
   own frames (1152 samples from MP3) against fixed 4096-sample frames, CPU
   seconds of one ffmpeg encoding the two minutes.

    python scripts/bench_audio.py [--codec mp3|aac|opus] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import resource
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from assembler.ffmpeg_process import file_arg, run_ffmpeg
from assembler.media import probe
from assembler.plan import AUDIO_FORMATS, AUDIO_RATE, Slot, TrackPlan, place
from assembler.render import RenderSettings, render_track

SECONDS = 120
PART_SECONDS = 30
# Where each part starts; the gaps between them are silence in the track.
STARTS = (0, 31, 62, 93)
SOURCES = {"mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
           "aac": ("m4a", ["-c:a", "aac", "-b:a", "128k"]),
           "opus": ("webm", ["-c:a", "libopus", "-b:a", "96k"])}
ENCODERS = {"flac": ["-c:a", "flac", "-sample_fmt", "s16", "-f", "flac"],
            "wav": ["-c:a", "pcm_s16le", "-f", "wav"],
            "opus": ["-c:a", "libopus", "-b:a", "128k", "-f", "ogg"],
            "m4a": ["-c:a", "aac", "-b:a", "192k", "-f", "ipod"],
            "mp3": ["-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3"]}


def make_parts(root: Path, codec: str) -> dict[str, Path]:
    ext, options = SOURCES[codec]
    parts = {}
    for index, _ in enumerate(STARTS):
        path = root / f"p{index}.{ext}"
        run_ffmpeg(["-y", "-f", "lavfi", "-i",
                    f"sine=f={220 * (index + 1)}:d={PART_SECONDS}:r={AUDIO_RATE},"
                    "aformat=channel_layouts=stereo", *options, file_arg(path)])
        parts[f"p{index}"] = path
    return parts


def make_track(audio_format: str) -> TrackPlan:
    rate = Fraction(AUDIO_RATE)
    slots = tuple(Slot(part_id=f"p{index}", start=Fraction(start),
                       end=Fraction(start + PART_SECONDS)) for index, start in enumerate(STARTS))
    length = SECONDS * AUDIO_RATE
    return TrackPlan(participant_id=1, kind="audio", path=f"bench/audio.{audio_format}",
                     rate=rate, length=length, slots=slots, segments=place(slots, length, rate))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_of(repeat: int, work: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and the CPU seconds of ffmpeg (this process's children), each the best."""
    walls, cpus = [], []
    for _ in range(repeat):
        cpu, started = _children_cpu(), time.perf_counter()
        work()
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - cpu)
    return min(walls), min(cpus)


def render_table(parts: dict[str, Path], out: Path, repeat: int) -> None:
    probes = {part_id: probe(path) for part_id, path in parts.items()}
    decode = ["-y", *(arg for path in parts.values() for arg in ("-i", file_arg(path))),
              *(arg for index in range(len(parts)) for arg in ("-map", f"{index}:a")),
              "-f", "null", "-"]
    wall, cpu = best_of(repeat, lambda: run_ffmpeg(decode))
    print(f"{'output':<8} {'render s':>9} {'decode s':>9} {'ratio':>6} {'render cpu':>11} "
          f"{'decode cpu':>11} {'ratio':>6}  (target <= 1.5)")
    for audio_format in AUDIO_FORMATS:
        render = functools.partial(render_track, make_track(audio_format), parts, probes, out,
                                   RenderSettings(audio_format=audio_format))
        seconds, used = best_of(repeat, render)
        print(f"{audio_format:<8} {seconds:9.2f} {wall:9.2f} {seconds / wall:6.2f} "
              f"{used:11.2f} {cpu:11.2f} {used / cpu:6.2f}")


def frame_table(parts: dict[str, Path], out: Path, repeat: int) -> None:
    source = file_arg(next(iter(parts.values())))
    print(f"\nCPU s to encode one {PART_SECONDS} s part, decoder's frames vs 4096-sample frames")
    print(f"{'encoder':<8} {'as decoded':>11} {'4096':>8} {'gain':>6}")
    for name, options in ENCODERS.items():
        target = file_arg(out / f"frames.{name}")
        as_decoded = best_of(repeat, functools.partial(
            run_ffmpeg, ["-y", "-i", source, *options, target]))[1]
        fixed = best_of(repeat, functools.partial(
            run_ffmpeg, ["-y", "-i", source, "-af", "asetnsamples=n=4096:p=0", *options,
                          target]))[1]
        print(f"{name:<8} {as_decoded:11.2f} {fixed:8.2f} {as_decoded / fixed:5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--codec", choices=sorted(SOURCES), default="mp3",
                        help="the parts' codec (default mp3)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audio-") as temp:
        root = Path(temp)
        parts = make_parts(root, args.codec)
        print(f"{SECONDS} s track from {len(parts)} x {PART_SECONDS} s {args.codec} parts, "
              f"best of {args.repeat}\n")
        render_table(parts, root, args.repeat)
        frame_table(parts, root, args.repeat)


if __name__ == "__main__":
    main()
