#!/usr/bin/env python3
"""Benchmark `assembler batch` against the naive recipe, measured in the same run.

Not a test: prints seconds per recording for both and their ratio. Each
recording has three participants, each with two audio and two webcam parts
and gaps between them, small video, served from a loopback server that waits
`--latency` before every answer. `assembler batch` runs as a child process,
timed as a whole. The naive recipe is what a user would write: download every
part one after another with urllib, then per track one ffmpeg filter graph
that generates silence or black for the whole timeline and re-encodes every
part onto it (`adelay` + `amix` for audio, `overlay` on a `color` source for
video), one recording after another.

Both outputs are then checked: one sample after each part's slot starts, the
track carries that part's tone or colour.

Run from the repo root:
`python scripts/bench_batch.py [--recordings N] [--latency S] [--seconds S]`.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from assembler.ffmpeg_process import ffmpeg_binary, file_arg  # noqa: E402
from tests.support.media import (  # noqa: E402
    decode_audio,
    decode_frames,
    dominant_frequency,
    rgb,
)
from tests.support.recording import Manifests, RecordingBuilder, Segment  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

SIZE, FPS, RATE = (320, 240), 30, 48000
PEOPLE = ((1, "Ada"), (2, "Bob"), (3, "Cy"))
COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta")
TARGET_RATIO = 3.0


# --- inputs -------------------------------------------------------------------------------


def build(root: Path, base_url: str, index: int, seconds: float) -> Manifests:
    """Three people, each dropping out once for 3 s: audio and webcam parts with gaps."""
    recording = RecordingBuilder(root)
    for number, (person, name) in enumerate(PEOPLE):
        offset = number * 1.5 + index * 0.5
        for half, start in enumerate((offset, offset + seconds + 3.0)):
            marker = 2 * number + half
            recording.audio_part(person, name, start, seconds, freq=300 + 100 * marker,
                                 bitrate="48k")
            recording.video_part(person, name, start + 0.5, seconds, size=SIZE, fps=FPS,
                                 colour=COLOURS[marker % len(COLOURS)])
    return recording.write(base_url, signed=False)


class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    latency = 0.0

    def send_head(self) -> Any:
        time.sleep(self.latency)  # a remote store's round trip
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    # The default backlog of 5 drops the SYNs of a burst of parallel downloads, which then
    # wait a whole second for the retransmission: a stall no real object store adds.
    request_queue_size = 256


@contextmanager
def serve(root: Path, latency: float) -> Iterator[str]:
    """Serve `root` on 127.0.0.1, `latency` seconds before each answer; yield the base URL."""
    handler = type("Handler", (_SlowHandler,), {"latency": latency})
    server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- the two ways -------------------------------------------------------------------------


def _children_cpu() -> float:
    """CPU seconds of every finished child process so far, their own children included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_batch(recordings: dict[str, Manifests], work: Path) -> tuple[float, Path]:
    jobs = work / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": key, "audio_parts": str(m.audio_parts),
                                        "video_parts": str(m.video_parts)}) + "\n"
                            for key, m in recordings.items()), encoding="utf-8")
    out = work / "batch"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "assembler", "batch", str(jobs),
                           "--out", str(out), "--quiet"], capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"assembler batch exited {done.returncode}:\n{done.stderr}")
    return seconds, out


def _ffmpeg(args: list[str]) -> None:
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                    *args], check=True)


def _naive_audio(parts: list[tuple[dict[str, Any], Path]], total: float, out: Path) -> None:
    inputs = ["-f", "lavfi", "-i", f"anullsrc=r={RATE}:cl=mono:d={total}"]
    chains, labels = [], ["[0:a]"]
    for number, (part, path) in enumerate(parts, 1):
        inputs += ["-i", file_arg(path)]
        delay = round(part["start_timestamp"]["relative"] * 1000)
        chains.append(f"[{number}:a]atrim=0:{part['duration']},aresample={RATE},"
                      f"adelay=delays={delay}:all=1[a{number}]")
        labels.append(f"[a{number}]")
    graph = ";".join([*chains, f"{''.join(labels)}amix=inputs={len(labels)}:duration=first:"
                      "normalize=0[out]"])
    _ffmpeg([*inputs, "-filter_complex", graph, "-map", "[out]", "-c:a", "flac", file_arg(out)])


def _naive_video(parts: list[tuple[dict[str, Any], Path]], total: float, out: Path) -> None:
    width, height = SIZE
    inputs = ["-f", "lavfi", "-i", f"color=c=black:s={width}x{height}:r={FPS}:d={total}"]
    chains, last = [], "[0:v]"
    for number, (part, path) in enumerate(parts, 1):
        inputs += ["-i", file_arg(path)]
        start = part["start_timestamp"]["relative"]
        chains.append(f"[{number}:v]trim=0:{part['duration']},setpts=PTS-STARTPTS+{start}/TB"
                      f"[p{number}];{last}[p{number}]overlay=eof_action=pass[o{number}]")
        last = f"[o{number}]"
    _ffmpeg([*inputs, "-filter_complex", ";".join(chains), "-map", last, "-c:v", "libx264",
             "-preset", "veryfast", "-pix_fmt", "yuv420p", file_arg(out)])


def _naive_one(manifests: Manifests, out: Path) -> None:
    documents = [("audio", json.loads(manifests.audio_parts.read_text(encoding="utf-8"))),
                 ("webcam", json.loads(manifests.video_parts.read_text(encoding="utf-8")))]
    total = manifests.duration
    tracks: dict[tuple[int, str], list[tuple[dict[str, Any], Path]]] = {}
    for kind, parts in documents:
        for part in parts:
            path = out / "parts" / Path(part["download_url"]).name
            path.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(part["download_url"]) as answer:
                path.write_bytes(answer.read())
            tracks.setdefault((part["participant"]["id"], kind), []).append((part, path))
    for (person, kind), parts in tracks.items():
        (out / str(person)).mkdir(exist_ok=True)
        if kind == "audio":
            _naive_audio(parts, total, out / str(person) / "audio.flac")
        else:
            _naive_video(parts, total, out / str(person) / "webcam.mp4")


def run_naive(recordings: dict[str, Manifests], work: Path) -> tuple[float, Path]:
    out = work / "naive"
    started = time.perf_counter()
    for key, manifests in recordings.items():
        _naive_one(manifests, out / key)
    return time.perf_counter() - started, out


# --- checking -----------------------------------------------------------------------------


def _marker_problems(path: Path, segments: list[Segment]) -> list[str]:
    """Where the part due one moment after its slot starts is not what the track carries."""
    problems = []
    if path.suffix == ".flac":
        samples = decode_audio(path)
        for segment in segments:
            first = round((segment.start + 0.1) * RATE)
            found = dominant_frequency(samples[first:first + RATE // 5], RATE)
            if abs(found - float(segment.marker)) > 5:  # type: ignore[arg-type]
                problems.append(f"{path}: {found:.0f} Hz at {segment.start + 0.1:.2f} s, "
                                f"not {segment.marker} Hz")
        return problems
    frames = decode_frames(path, fps=FPS)
    for segment in segments:
        index = round((segment.start + 0.1) * FPS)
        mean = frames[index].reshape(-1, 3).mean(axis=0)
        want = rgb(segment.marker)  # type: ignore[arg-type]
        if max(abs(float(a) - b) for a, b in zip(mean, want, strict=True)) > 40:
            problems.append(f"{path}: colour {mean.round()} at frame {index}, not {want}")
    return problems


def check(recordings: dict[str, Manifests], batch_out: Path, naive_out: Path) -> list[str]:
    problems = []
    for key, manifests in recordings.items():
        report = json.loads((batch_out / key / "report.json").read_text(encoding="utf-8"))
        for person in report["participants"]:
            for track in person["tracks"]:
                segments = [s for s in manifests.expected
                            if s.participant_id == person["id"] and s.kind == track["kind"]]
                name = "audio.flac" if track["kind"] == "audio" else "webcam.mp4"
                problems += _marker_problems(batch_out / key / track["path"], segments)
                problems += _marker_problems(naive_out / key / str(person["id"]) / name,
                                             segments)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=6)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of every part")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        with serve(work / "www", args.latency) as base_url:
            recordings = {f"rec-{index}": build(work / "www" / f"rec-{index}",
                                                f"{base_url}/rec-{index}", index, args.seconds)
                          for index in range(args.recordings)}
            parts = sum(len(m.expected) for m in recordings.values())
            longest = max(m.duration for m in recordings.values())
            print(f"{args.recordings} recordings of up to {longest:.0f} s, {parts} parts of "
                  f"{args.seconds:g} s, {SIZE[0]}x{SIZE[1]} video at {FPS} fps, "
                  f"{args.latency * 1000:.0f} ms per request")
            cpu = _children_cpu()
            batch_seconds, batch_out = run_batch(recordings, work)
            batch_cpu, cpu = _children_cpu() - cpu, _children_cpu()
            naive_seconds, naive_out = run_naive(recordings, work)
            naive_cpu = _children_cpu() - cpu
        problems = check(recordings, batch_out, naive_out)
        for problem in problems:
            print("MISALIGNED", problem)
        count = args.recordings
        # CPU seconds say what the wall clock cannot on a machine other work shares.
        print(f"assembler batch   {batch_seconds / count:6.2f} s per recording "
              f"({batch_cpu / count:.2f} CPU s)")
        print(f"naive recipe      {naive_seconds / count:6.2f} s per recording "
              f"({naive_cpu / count:.2f} CPU s)")
        ratio = naive_seconds / batch_seconds
        print(f"ratio             {ratio:6.2f}x (target >= {TARGET_RATIO:.0f}x); "
              f"every track aligned: {'yes' if not problems else 'NO'}")
        return 0 if not problems else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
