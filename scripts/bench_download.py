#!/usr/bin/env python3
"""Benchmark `assembler run --download-only` against aria2c on the same links, in the same run.

Not a test: prints a table. Both are timed as the user runs them, a whole
command from start to exit (the CLI's interpreter start-up, manifest, download
and the probe of every part included), best of `--repeat` runs each,
alternating, every run into an empty directory. Cases:
  small  120 parts of 256 KiB-2 MiB behind 50 ms of latency (an aiohttp server started here)
  big    4 x 256 MiB from Debian's nginx, no added latency
  huge   one 1 GiB part from nginx: peak RSS of the CLI process must stay under 80 MB
Targets: CLI/aria2c <= 1.0 on every case. The parts are WAV files, so that the
CLI's probe has media to read. Start-up is shown too: `assembler --help`
beside `python -c pass` and `python -c 'import aiohttp'`, and when each command's
first request reached the small case's server after its start.
Peak RSS is the child's VmHWM, polled from /proc (ru_maxrss of a child inherits the
parent's high-water mark across fork and exec, so it would report this script's size).
Needs aria2c and nginx: `apt-get update && apt-get install -y aria2 nginx-light`.
Run from the repo root: `python scripts/bench_download.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from aiohttp import web

MiB = 1 << 20
SMALL_COUNT, SMALL_SIZES, LATENCY = 120, (256 * 1024, 2 * MiB), 0.05
BIG_COUNT, BIG_SIZE = 4, 256 * MiB
HUGE_SIZE = 1024 * MiB
CONCURRENCY = 8
RSS_LIMIT_MB = 80.0
TARGET_RATIO = 1.0
Runner = Callable[[list[str], Path], "Run"]
INSTALL_HINT = "apt-get update && apt-get install -y aria2 nginx-light"


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float | None
    first_request: float | None = None  # seconds from start to the server's first request


@dataclass(frozen=True)
class Row:
    case: str
    cli: Run
    aria2c: Run | None
    identical: bool


# --- inputs and servers -------------------------------------------------------------------


def wav_header(size: int) -> bytes:
    """44-byte header of a 48 kHz 16-bit stereo WAV file of `size` bytes in all."""
    data = size - 44
    return (b"RIFF" + (data + 36).to_bytes(4, "little") + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 2, 48000, 48000 * 4, 4, 16)
            + b"data" + data.to_bytes(4, "little"))


def make_files(root: Path, sizes: list[int], prefix: str) -> dict[str, str]:
    """WAV files of random samples under `root`; returns name -> sha256."""
    root.mkdir(parents=True, exist_ok=True)
    digests = {}
    for n, size in enumerate(sizes):
        name = f"{prefix}-{n:03d}.wav"
        digest = hashlib.sha256()
        with (root / name).open("wb") as out:
            for offset in range(0, size, 16 * MiB):
                block = os.urandom(min(16 * MiB, size - offset))
                if offset == 0:
                    block = wav_header(size) + block[44:]
                digest.update(block)
                out.write(block)
        digests[name] = digest.hexdigest()
    return digests


def serve_with_latency(root: Path, latency: float) -> None:
    """Child-process mode: serve `root` (Range included), each answer `latency` late.

    Each request's arrival (CLOCK_MONOTONIC, shared by every process) is appended
    to `$BENCH_ARRIVALS`, for the start-up figure.
    """
    arrivals = Path(os.environ["BENCH_ARRIVALS"])

    async def handler(request: web.Request) -> web.StreamResponse:
        with arrivals.open("a") as log:
            log.write(f"{time.monotonic()}\n")
        await asyncio.sleep(latency)
        return web.FileResponse(root / request.match_info["name"])

    app = web.Application()
    app.router.add_get("/{name}", handler)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), print=None,
                access_log=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def start_latency_server(root: Path, port: int, arrivals: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_PORT": str(port), "BENCH_ARRIVALS": str(arrivals)}
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(root)], env=env)
    wait_for_port(port, process)
    return process


def start_nginx(nginx: str, root: Path, work: Path, port: int) -> subprocess.Popen[bytes]:
    temp = work / "nginx-temp"
    temp.mkdir(parents=True)
    paths = " ".join(f"{kind}_temp_path {temp}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = work / "nginx.conf"
    config.write_text(f"""
daemon off; master_process off; worker_processes 1; user root;
pid {work}/nginx.pid; error_log {work}/nginx-error.log;
events {{}}
http {{
    access_log off; sendfile on; tcp_nopush on; {paths}
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    process = subprocess.Popen([nginx, "-c", str(config), "-p", str(work)])
    wait_for_port(port, process)
    return process


# --- the downloaders ----------------------------------------------------------------------


def vm_hwm_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kib = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")),
               None)
    return int(kib) / 1024 if kib else None


def timed(cmd: list[str], arrivals: Path | None = None) -> Run:
    """Run `cmd`: wall time, its peak RSS (VmHWM, polled while it runs), its first request."""
    if arrivals:
        arrivals.write_text("")
    with tempfile.TemporaryFile() as errors:
        start = time.monotonic()
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors)
        peak = None
        while process.poll() is None:
            peak = vm_hwm_mb(process.pid) or peak
            time.sleep(0.005)
        seconds = time.monotonic() - start
        if process.returncode:
            errors.seek(0)
            raise SystemExit(f"exit {process.returncode}: {' '.join(cmd)}\n"
                             f"{errors.read().decode(errors='replace')[-2000:]}")
    times = [float(line) for line in arrivals.read_text().split()] if arrivals else []
    return Run(seconds, peak, min(times) - start if times else None)


def manifest_entry(n: int, url: str) -> dict[str, object]:
    person = {"id": 1, "name": "Bench", "is_host": None, "platform": None, "extra_data": None,
              "email": None}
    return {"id": Path(url).stem, "participant": person,
            "start_timestamp": {"absolute": "2025-01-01T00:00:00Z", "relative": float(n)},
            "duration": 1.0, "download_url": url}


def run_cli(arrivals: Path | None, urls: list[str], out: Path) -> Run:
    manifest = out.with_suffix(".json")
    manifest.write_text(json.dumps([manifest_entry(n, url) for n, url in enumerate(urls)]))
    return timed([sys.executable, "-m", "assembler", "run", "--download-only", "--quiet",
                  "--concurrency", str(CONCURRENCY), "--audio-parts", str(manifest),
                  "--out", str(out)], arrivals)


def run_aria2c(aria2c: str, arrivals: Path | None, urls: list[str], out: Path) -> Run:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"{url}\n  out={Path(url).name}\n" for url in urls))
    return timed([aria2c, "-j", str(CONCURRENCY), "-x", "1", "-i", str(listing),
                  "-d", str(out / "parts"), "--file-allocation=none", "--quiet=true",
                  "--allow-overwrite=true", "--auto-file-renaming=false"], arrivals)


def same_bytes(parts_dir: Path, digests: dict[str, str]) -> bool:
    for name, expected in digests.items():
        digest = hashlib.sha256()
        with (parts_dir / name).open("rb") as source:
            while block := source.read(16 * MiB):
                digest.update(block)
        if digest.hexdigest() != expected:
            return False
    return True


def compare(case: str, runners: dict[str, Runner], urls: list[str], digests: dict[str, str],
            work: Path, repeat: int) -> Row:
    """Best time and top RSS of `repeat` alternating runs each, every one into an empty dir."""
    runs: dict[str, list[Run]] = {name: [] for name in runners}
    identical = True
    for turn in range(repeat):
        for name, runner in runners.items():
            out = work / f"{name}-{turn}"
            runs[name].append(runner(urls, out))
            identical &= same_bytes(out / "parts", digests)
            shutil.rmtree(out)

    def best(name: str) -> Run | None:
        if name not in runs:
            return None
        peaks = [run.peak_rss_mb for run in runs[name] if run.peak_rss_mb is not None]
        firsts = [run.first_request for run in runs[name] if run.first_request is not None]
        return Run(min(run.seconds for run in runs[name]), max(peaks) if peaks else None,
                   min(firsts) if firsts else None)

    cli = best("CLI")
    assert cli is not None
    return Row(case, cli, best("aria2c"), identical)


def downloaders(aria2c: str | None, arrivals: Path | None = None) -> dict[str, Runner]:
    runners: dict[str, Runner] = {"CLI": partial(run_cli, arrivals)}
    if aria2c:
        runners["aria2c"] = partial(run_aria2c, aria2c, arrivals)
    return runners


# --- report -------------------------------------------------------------------------------


def seconds(run: Run | None) -> str:
    return "n/a" if run is None else f"{run.seconds:.2f}s"


def megabytes(run: Run | None) -> str:
    return "n/a" if run is None or run.peak_rss_mb is None else f"{run.peak_rss_mb:.0f}MB"


def ratio(row: Row) -> float | None:
    return row.cli.seconds / row.aria2c.seconds if row.aria2c else None


def print_table(rows: list[Row]) -> None:
    head = ("case", "CLI", "aria2c", "ratio", "bytes", "RSS CLI", "RSS aria")
    print(f"{head[0]:<26}" + "".join(f"{title:>10}" for title in head[1:]))
    for row in rows:
        shown = ratio(row)
        cells = (seconds(row.cli), seconds(row.aria2c),
                 "n/a" if shown is None else f"{shown:.2f}",
                 "identical" if row.identical else "DIFFER", megabytes(row.cli),
                 megabytes(row.aria2c))
        print(f"{row.case:<26}" + "".join(f"{cell:>10}" for cell in cells))


def report_targets(rows: list[Row]) -> None:
    print()
    for row in rows:
        shown = ratio(row)
        if shown is not None:
            verdict = "met" if shown <= TARGET_RATIO else "MISSED"
            print(f"{row.case}: CLI/aria2c {shown:.2f} (target <= {TARGET_RATIO}): {verdict}")
    huge = next((row for row in rows if row.case.startswith("1 x 1 GiB")), None)
    if huge and huge.cli.peak_rss_mb is not None:
        verdict = "met" if huge.cli.peak_rss_mb < RSS_LIMIT_MB else "MISSED"
        print(f"{huge.case}: peak RSS of the CLI process {huge.cli.peak_rss_mb:.0f} MB "
              f"(target < {RSS_LIMIT_MB:.0f} MB): {verdict}")


def report_start_up(small: Row, repeat: int) -> None:
    """`assembler --help` beside the interpreter's own start, and each first request."""
    helps = [timed([sys.executable, "-m", "assembler", "--help"]).seconds
             for _ in range(repeat)]
    bare = [timed([sys.executable, "-c", "pass"]).seconds for _ in range(repeat)]
    # The floor of any aiohttp client's first request: its import builds SSL contexts.
    client = [timed([sys.executable, "-c", "import aiohttp"]).seconds for _ in range(repeat)]
    print(f"\nstart-up, best of {repeat}: `assembler --help` {min(helps):.3f}s, "
          f"`python -c pass` {min(bare):.3f}s, `python -c 'import aiohttp'` {min(client):.3f}s")
    for name, run in (("CLI", small.cli), ("aria2c", small.aria2c)):
        if run and run.first_request is not None:
            print(f"first request of the small case after start: {name} "
                  f"{run.first_request:.3f}s")


# --- cases --------------------------------------------------------------------------------


def small_case(work: Path, aria2c: str | None, repeat: int) -> Row:
    rng = random.Random(1)
    sizes = [rng.randint(*SMALL_SIZES) for _ in range(SMALL_COUNT)]
    digests = make_files(work / "small", sizes, "small")
    port = free_port()
    arrivals = work / "arrivals.txt"
    arrivals.touch()
    server = start_latency_server(work / "small", port, arrivals)
    try:
        urls = [f"http://127.0.0.1:{port}/{name}" for name in digests]
        case = f"{SMALL_COUNT} x 0.25-2 MiB, 50 ms"
        return compare(case, downloaders(aria2c, arrivals), urls, digests, work, repeat)
    finally:
        server.terminate()
        server.wait()


def nginx_cases(work: Path, nginx: str, aria2c: str | None, repeat: int) -> list[Row]:
    root = work / "nginx-root"
    port = free_port()
    server = start_nginx(nginx, root, work / "nginx", port)
    try:
        rows = []
        for case, sizes, prefix in ((f"{BIG_COUNT} x 256 MiB, nginx", [BIG_SIZE] * BIG_COUNT,
                                     "big"), ("1 x 1 GiB, nginx", [HUGE_SIZE], "huge")):
            digests = make_files(root, sizes, prefix)
            urls = [f"http://127.0.0.1:{port}/{name}" for name in digests]
            rows.append(compare(case, downloaders(aria2c), urls, digests, work, repeat))
            for name in digests:
                (root / name).unlink()
        return rows
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per downloader and case")
    parser.add_argument("--only", choices=("small", "nginx"), help="run one kind of case")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:  # scripts/bench_e2e.py serves its parts this way too, at its own latency
        serve_with_latency(args.serve, float(os.environ.get("BENCH_LATENCY", LATENCY)))
        return
    aria2c = shutil.which("aria2c")
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    for tool, found in (("aria2c", aria2c), ("nginx", nginx)):
        if not found:
            print(f"{tool} not found: install it with `{INSTALL_HINT}`; its cases are skipped")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-download-") as temp:
        if args.only != "nginx":
            rows.append(small_case(Path(temp), aria2c, args.repeat))
        if nginx and args.only != "small":
            rows += nginx_cases(Path(temp), nginx, aria2c, args.repeat)
    print(f"CLI: `python -m assembler run --download-only --quiet`, aria2c `-j {CONCURRENCY} -x 1`,"
          f" each a whole process;\nbest of {args.repeat} runs; RSS: the top peak VmHWM.\n")
    print_table(rows)
    report_targets(rows)
    if rows and rows[0].case.startswith(str(SMALL_COUNT)):
        report_start_up(rows[0], args.repeat)


if __name__ == "__main__":
    main()
