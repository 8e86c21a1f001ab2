#!/usr/bin/env python3
"""Benchmark `--mix` on tracks already rendered: four participants, one hour each.

Not a test: prints the seconds and peak memory of making the mix deliverable
(`make_deliverables` with the mix alone, as `assembler run --mix` makes it
after the tracks: both passes, the encode and the sha256), beside the floor
measured in the same run: one ffmpeg summing the same four files into a FLAC
with no loudness pass. Best of 3 each. Memory: the largest ffmpeg process and
the Python process that drives it, each at its peak. The mix is then checked
(untimed): its length in samples, loudness, true peak, digital silence where
every track is silent.

The tracks are speech-like: pink noise shaped to the voice band, syllables at
about 4 Hz, talk spurts and pauses, each participant at another level; two are
mono, two stereo; every track is digitally silent between spurts. They are
made once into `--work` (default: a folder under the system's temp) and reused.

Run from the repo root: `python scripts/bench_mix.py [--hours H] [--work DIR]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from assembler.deliverables import DeliverableContext, DeliverableOptions, make_deliverables  # noqa: E402
from assembler.deliverables.mix import MIX, parse_loudness  # noqa: E402
from assembler.ffmpeg_process import FfmpegSlots, ffmpeg_binary, file_arg, run_ffmpeg  # noqa: E402
from assembler.manifest import Documents  # noqa: E402
from assembler.plan import AUDIO_RATE, ParticipantPlan, Plan, Segment, TrackPlan  # noqa: E402
from assembler.render import RenderedTrack, RenderSettings  # noqa: E402
from assembler.report import Report  # noqa: E402

PEOPLE = ((1, "Ada", 1), (2, "Bob", 2), (3, "Cy", 1), (4, "Di", 2))  # id, name, channels
START = datetime(2025, 7, 17, 14, 0, tzinfo=UTC)


def speech_like(person: int, channels: int, samples: int) -> str:
    """A lavfi source: voice-band pink noise, syllables, spurts and pauses, then exact length."""
    talking = (f"gt(sin(2*PI*t/({17 + 7 * person}))+0.6*sin(2*PI*t/({4.3 + person})+{person})"
               f"\\,0.35)")
    syllables = f"(0.55+0.45*sin(2*PI*{3.7 + 0.3 * person}*t))"
    return (f"anoisesrc=color=pink:sample_rate={AUDIO_RATE}:seed={person}:amplitude=0.7,"
            f"highpass=f=120,lowpass=f=3800,"
            f"volume='{talking}*{syllables}*{0.25 + 0.15 * person}':eval=frame,"
            f"aformat=channel_layouts={'stereo' if channels == 2 else 'mono'},"
            f"atrim=end_sample={samples}")


def make_tracks(folder: Path, hours: float) -> list[Path]:
    samples = round(hours * 3600 * AUDIO_RATE)
    paths = []
    for person, name, channels in PEOPLE:
        path = folder / f"participants/{person}-{name.lower()}/audio.flac"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.flac")
            run_ffmpeg(["-y", "-f", "lavfi", "-i", speech_like(person, channels, samples),
                        "-c:a", "flac", "-sample_fmt", "s16", file_arg(partial)])
            partial.rename(path)
        paths.append(path)
    return paths


def context(folder: Path, hours: float) -> DeliverableContext:
    length = round(hours * 3600 * AUDIO_RATE)
    people, rendered = [], []
    for person, name, _ in PEOPLE:
        track = TrackPlan(participant_id=person, kind="audio",
                          path=f"participants/{person}-{name.lower()}/audio.flac",
                          rate=Fraction(AUDIO_RATE), length=length, slots=(),
                          segments=(Segment(start=0, length=length, part_id=f"p{person}"),),
                          participant_name=name, recording_start=START)
        people.append(ParticipantPlan(id=person, name=name, dir=track.path.rsplit("/", 1)[0],
                                      tracks=(track,)))
        rendered.append(RenderedTrack(track=track, path=folder / track.path, strategy="encode"))
    plan = Plan(duration=Fraction(length, AUDIO_RATE), participants=tuple(people), start=START)
    report: Report = {"version": 1, "timeline": {"duration": float(plan.duration)},
                      "participants": [], "failures": [], "warnings": [], "outputs": [],
                      "complete": True}  # type: ignore[typeddict-item]
    return DeliverableContext(out_dir=folder, documents=Documents(), plan=plan,
                              tracks=tuple(rendered), render=RenderSettings(),
                              options=DeliverableOptions(mix=True), report=report)


def child_mix(folder: Path, hours: float) -> None:
    """In a fresh process: make the mix; print seconds and peak memory as JSON."""
    started = time.monotonic()
    report = asyncio.run(make_deliverables(context(folder, hours), FfmpegSlots(1), [MIX]))
    seconds = time.monotonic() - started
    print(json.dumps({"seconds": seconds, "outputs": report["outputs"],
                      "warnings": report["warnings"], **_peaks()}))


def child_floor(folder: Path, paths: list[Path]) -> None:
    """In a fresh process: one ffmpeg summing the tracks, no loudness pass."""
    inputs = [arg for path in paths for arg in ("-i", file_arg(path))]
    graph = "".join(f"[{index}:a]aformat=channel_layouts=stereo[a{index}];"
                    for index in range(len(paths)))
    graph += "".join(f"[a{index}]" for index in range(len(paths)))
    graph += f"amix=inputs={len(paths)}:normalize=0[m]"
    started = time.monotonic()
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", "-nostats", "-y", *inputs,
                    "-filter_complex", graph, "-map", "[m]", "-c:a", "flac", "-sample_fmt",
                    "s16", file_arg(folder / "floor.flac")], check=True, capture_output=True)
    print(json.dumps({"seconds": time.monotonic() - started, **_peaks()}))


def _peaks() -> dict[str, float]:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"ffmpeg_mb": children.ru_maxrss // 1024,
            "python_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            # CPU seconds of every ffmpeg: less swayed than the clock by other load.
            "ffmpeg_cpu": children.ru_utime + children.ru_stime}


def measure(args: argparse.Namespace, child: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, __file__, "--hours", str(args.hours), "--work",
                           str(args.work), "--child", child],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def check(folder: Path, hours: float) -> str:
    mix = folder / "mix.flac"
    stderr = run_ffmpeg(["-i", file_arg(mix), "-af", "ebur128=peak=true:framelog=verbose",
                         "-f", "null", "-"])
    measured = parse_loudness(stderr)
    frames = 0
    with subprocess.Popen([ffmpeg_binary(), "-v", "error", "-i", file_arg(mix), "-f", "s16le",
                           "-ac", "1", "-"], stdout=subprocess.PIPE) as decoder:
        assert decoder.stdout is not None
        while chunk := decoder.stdout.read(1 << 20):
            frames += len(chunk) // 2
    return (f"length {frames} samples (timeline {round(hours * 3600 * AUDIO_RATE)}), "
            f"{measured.integrated} LUFS, true peak {measured.true_peak} dBTP")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="length of every track")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "assembler-bench-mix")
    parser.add_argument("--child", choices=("mix", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.work / f"{args.hours:g}h"
    if args.child:
        if args.child == "mix":
            child_mix(folder, args.hours)
        else:
            child_floor(folder, make_tracks(folder, args.hours))
        return
    folder.mkdir(parents=True, exist_ok=True)
    make_tracks(folder, args.hours)
    mixes = [measure(args, "mix") for _ in range(3)]
    floors = [measure(args, "floor") for _ in range(3)]
    mix = min(mixes, key=lambda run: float(run["seconds"]))  # type: ignore[arg-type]
    floor = min(floors, key=lambda run: float(run["seconds"]))  # type: ignore[arg-type]
    ratio = float(mix["seconds"]) / float(floor["seconds"])  # type: ignore[arg-type]
    print(f"4 tracks x {args.hours:g} h (2 mono, 2 stereo, FLAC), best of 3; "
          f"loadavg {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("                                seconds  ffmpeg CPU s  ffmpeg peak MB  python peak MB")
    for label, run in (("--mix (both passes, encode, sha)", mix),
                       ("floor: one ffmpeg summing       ", floor)):
        print(f"{label} {run['seconds']:7.1f}  {run['ffmpeg_cpu']:12.1f}  {run['ffmpeg_mb']:14}"
              f"  {run['python_mb']:14}")
    cpu = float(mix["ffmpeg_cpu"]) / float(floor["ffmpeg_cpu"])  # type: ignore[arg-type]
    runs = {name: [round(float(run["seconds"]), 1) for run in group]  # type: ignore[arg-type]
            for name, group in (("mix", mixes), ("floor", floors))}
    print(f"ratio {ratio:.2f}x by the clock, {cpu:.2f}x in CPU; runs {runs}")
    print(f"mix warnings: {mix['warnings']}")
    print(f"check: {check(folder, args.hours)}")


if __name__ == "__main__":
    main()
