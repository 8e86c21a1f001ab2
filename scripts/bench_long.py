#!/usr/bin/env python3
"""Benchmark long meetings: tracks with hundreds of parts, rendered in pieces or at once.

Not a test: prints seconds and the peak memory of ffmpeg for each track with
the default limits (pieces of at most 32 video or 256 audio parts per ffmpeg),
side by side with the baseline measured in the same run: one ffmpeg process
that opens every part at once (what a single filter graph does). Every output is
checked: exact length, and each part's marker at its slot.

Run from the repo root: `python scripts/bench_long.py [--hours H] [--parts N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from assembler.media import probe  # noqa: E402
from assembler.plan import Slot, TrackPlan, place, to_units  # noqa: E402
from assembler.render import RenderSettings, render_track  # noqa: E402
from tests.support.media import (  # noqa: E402
    decode_audio,
    decode_frames,
    make_colour_video,
    make_tone,
    media_info,
)

FPS = Fraction(15)


def part_seconds(hours: float, parts: int) -> float:
    """Each part plays for 55% of its share of the timeline: gaps between all of them."""
    return round(hours * 3600 / parts * 0.55, 3)


def long_track(kind: str, hours: float, parts: int) -> TrackPlan:
    """`parts` slots spread evenly over `hours`, each followed by a gap."""
    length_seconds = Fraction(hours * 3600).limit_denominator(1000)
    spacing = length_seconds / parts
    playing = Fraction(part_seconds(hours, parts)).limit_denominator(1000)
    slots = tuple(Slot(part_id=f"p{index}", start=spacing * index,
                       end=spacing * index + playing) for index in range(parts))
    rate = Fraction(48000) if kind == "audio" else FPS
    length = to_units(length_seconds, rate)
    path = "audio.flac" if kind == "audio" else "webcam.mp4"
    return TrackPlan(participant_id=1, kind=kind, path=path,  # type: ignore[arg-type]
                     rate=rate, length=length, slots=slots, segments=place(slots, length, rate))


def make_parts(kind: str, folder: Path, count: int, seconds: float) -> dict[str, Path]:
    """One media file, hard-linked under every part's name: disk stays small."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "audio":
        source = make_tone(folder / "source.wav", seconds=seconds, rate=16000)
    else:
        source = make_colour_video(folder / "source.mp4", seconds=seconds, colour="red",
                                   size=(160, 120), fps=int(FPS), gop=int(FPS) * 2)
    parts = {}
    for index in range(count):
        link = folder / f"p{index}{source.suffix}"
        if not link.exists():
            os.link(source, link)
        parts[f"p{index}"] = link
    return parts


def render_in_child(kind: str, hours: float, count: int, folder: Path, max_parts: int,
                    out: Path) -> None:
    """Run in a fresh process, so that its ffmpeg's peak memory is its own."""
    track = long_track(kind, hours, count)
    parts = make_parts(kind, folder, count, part_seconds(hours, count))
    info = probe(next(iter(parts.values())))
    probes = dict.fromkeys(parts, info)
    settings = RenderSettings(video_strategy="encode", x264_preset="ultrafast")
    if max_parts:  # else the defaults
        settings = dataclasses.replace(settings, max_video_parts=max_parts,
                                       max_audio_parts=max_parts)
    started = time.monotonic()
    render_track(track, parts, probes, out, settings)
    seconds_taken = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024  # largest ffmpeg
    print(json.dumps({"seconds": seconds_taken, "peak_mb": peak}))


def checked(kind: str, path: Path, track: TrackPlan) -> str:
    """'aligned' when the length is exact and sampled parts carry their marker at their slot."""
    info = media_info(path)
    measured = info.samples if kind == "audio" else info.frames
    if measured != track.length:
        return f"length {measured} != {track.length}"
    if kind == "audio":
        samples = decode_audio(path, rate=None)
        for slot in track.slots[:: max(1, len(track.slots) // 5)]:
            start = to_units(slot.start, Fraction(48000))
            sounding = abs(samples[start + 24000:start + 24100]).max() > 0  # not one zero crossing
            silent_before = start < 48 or not samples[start - 48:start - 24].any()
            if not (sounding and silent_before):
                return f"part {slot.part_id} not at {float(slot.start):.3f} s"
        return "aligned"
    frames = decode_frames(path)
    for slot in track.slots[:: max(1, len(track.slots) // 5)]:
        first = to_units(slot.start, FPS)
        red = frames[first + 1].reshape(-1, 3).mean(axis=0)
        if not (red[0] > 150 and red[1] < 80):
            return f"part {slot.part_id} not at frame {first}"
    return "aligned"


def measure(kind: str, hours: float, count: int, folder: Path,
            max_parts: int) -> tuple[float, int, str]:
    out = folder / f"out-{kind}-{max_parts}"
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(hours), str(count),
                           str(folder / kind), str(max_parts), str(out)],
                          capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    track = long_track(kind, hours, count)
    return figures["seconds"], figures["peak_mb"], checked(kind, out / track.path, track)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0, help="audio track length")
    parser.add_argument("--parts", type=int, default=200, help="audio parts")
    parser.add_argument("--video-hours", type=float, default=1.0)
    parser.add_argument("--video-parts", type=int, default=100)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, hours, count, folder, max_parts, out = args.child
        render_in_child(kind, float(hours), int(count), Path(folder), int(max_parts),
                        Path(out))
        return
    cases = [("audio", args.hours, args.parts), ("webcam", args.video_hours, args.video_parts)]
    print("track                          default limits        one ffmpeg, all parts")
    print("                               seconds  peak MB  check  seconds  peak MB  check")
    with tempfile.TemporaryDirectory(prefix="assembler-bench-long-") as name:
        for kind, hours, count in cases:
            pieces = measure(kind, hours, count, Path(name), 0)
            whole = measure(kind, hours, count, Path(name), count)
            label = f"{kind} {hours:g} h, {count} parts"
            print(f"{label:30} {pieces[0]:7.1f} {pieces[1]:8d}  {pieces[2]:6} "
                  f"{whole[0]:7.1f} {whole[1]:8d}  {whole[2]}")


if __name__ == "__main__":
    main()
