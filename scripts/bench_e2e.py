#!/usr/bin/env python3
"""Time a whole `assembler run` against its download alone and its render alone, same run.

Not a test: prints a table. A 30-minute recording of 4 participants, each with
audio (AAC) and a 720p webcam (H.264), 6 parts of 5 minutes each per track,
served on loopback 20 ms late. Three commands, each timed start to exit as a
user runs it, best of `--repeat`:
  run            `assembler run` into an empty directory (download, then render)
  download-only  `assembler run --download-only` into an empty directory
  parts on disk  `assembler run` into a directory holding every part already
Target: run <= 1.15 x the larger of the other two (renders overlap downloads).
The parts' media is generated once and cached (`--cache`): every part of a kind
is the same file under another name.

    python scripts/bench_e2e.py [--repeat 3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from assembler.ffmpeg_process import file_arg, run_ffmpeg

PEOPLE, PARTS, PART_SECONDS = 4, 6, 300
LATENCY = 0.02
TARGET = 1.15
SERVER = Path(__file__).with_name("bench_download.py")  # its --serve mode, at our latency


def cached_media(cache: Path) -> dict[str, Path]:
    """One 5-minute part of each kind: 720p15 H.264 webcam, 48 kHz mono AAC audio."""
    cache.mkdir(parents=True, exist_ok=True)
    made = {"webcam": cache / f"webcam-720p-{PART_SECONDS}s.mp4",
            "audio": cache / f"audio-{PART_SECONDS}s.m4a"}
    sources = {
        "webcam": ["-f", "lavfi", "-i", f"testsrc2=s=1280x720:r=15:d={PART_SECONDS}",
                   "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "baseline",
                   "-b:v", "1500k", "-g", "150", "-pix_fmt", "yuv420p"],
        "audio": ["-f", "lavfi", "-i", f"sine=f=330:d={PART_SECONDS}:r=48000",
                  "-c:a", "aac", "-b:a", "64k"]}
    for kind, path in made.items():
        if not path.exists():
            partial = path.with_name("partial-" + path.name)
            run_ffmpeg(["-y", *sources[kind], file_arg(partial)])
            partial.rename(path)
    return made


def serve_root(root: Path, media: dict[str, Path]) -> dict[str, list[str]]:
    """Every part as its own name under `root` (hard links); returns the manifests' entries."""
    root.mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {"audio": [], "webcam": []}
    for kind, source in media.items():
        for person in range(1, PEOPLE + 1):
            for index in range(PARTS):
                name = f"{kind}-{person}-{index}{source.suffix}"
                os.link(source, root / name)
                names[kind].append(name)
    return names


def manifests(work: Path, names: dict[str, list[str]], base_url: str) -> list[str]:
    def entry(kind: str, name: str) -> dict[str, object]:
        person, index = (int(field) for field in Path(name).stem.split("-")[1:])
        part: dict[str, object] = {
            "id": Path(name).stem,
            "participant": {"id": person, "name": f"Person {person}", "is_host": None,
                            "platform": None, "extra_data": None, "email": None},
            "start_timestamp": {"absolute": "2025-01-01T00:00:00Z",
                                "relative": float(index * PART_SECONDS)},
            "duration": float(PART_SECONDS), "download_url": f"{base_url}/{name}"}
        if kind != "audio":
            part["type"] = kind
        return part

    audio, video = work / "audio_parts.json", work / "video_parts.json"
    audio.write_text(json.dumps([entry("audio", name) for name in names["audio"]]))
    video.write_text(json.dumps([entry("webcam", name) for name in names["webcam"]]))
    return ["--audio-parts", str(audio), "--video-parts", str(video)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path, port: int, work: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_PORT": str(port), "BENCH_LATENCY": str(LATENCY),
           "BENCH_ARRIVALS": str(work / "arrivals.txt")}
    process = subprocess.Popen([sys.executable, str(SERVER), "--serve", str(root)], env=env)
    for _ in range(200):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    raise SystemExit("the part server did not start")


def timed_cli(args: list[str]) -> float:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "assembler", "run", "--quiet", *args],
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"exit {done.returncode}: {done.stderr[-2000:]}")
    return seconds


def measure(documents: list[str], work: Path, repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"run": [], "download-only": [], "parts on disk": []}
    for turn in range(repeat):
        out = work / f"out-{turn}"
        times["run"].append(timed_cli([*documents, "--out", str(out)]))
        kept = out / "parts"
        shutil.rmtree(out / "participants")
        (out / "report.json").unlink()
        times["parts on disk"].append(timed_cli([*documents, "--out", str(out)]))
        shutil.rmtree(out)
        times["download-only"].append(timed_cli([*documents, "--out", str(out),
                                                 "--download-only"]))
        assert kept.exists()
        shutil.rmtree(out)
    return {name: min(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "assembler-bench-e2e")
    args = parser.parse_args()
    print(f"generating (cached in {args.cache}) ...", flush=True)
    media = cached_media(args.cache)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-", dir=args.cache) as temp:
        work = Path(temp)
        names = serve_root(work / "www", media)
        port = free_port()
        server = start_server(work / "www", port, work)
        try:
            best = measure(manifests(work, names, f"http://127.0.0.1:{port}"), work,
                           args.repeat)
        finally:
            server.terminate()
            server.wait()
    size = sum(path.stat().st_size for path in media.values()) * PEOPLE * PARTS
    print(f"\n{PEOPLE} participants x (audio + 720p webcam), {PARTS} parts of "
          f"{PART_SECONDS} s each, {size / 1e6:.0f} MB, {LATENCY * 1000:.0f} ms latency; "
          f"CLI wall seconds, best of {args.repeat}\n")
    for name, seconds in best.items():
        print(f"{name:<14} {seconds:8.2f}")
    larger = max(best["download-only"], best["parts on disk"])
    ratio = best["run"] / larger
    print(f"\nrun / larger of the two: {ratio:.2f} (target <= {TARGET}): "
          f"{'met' if ratio <= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
