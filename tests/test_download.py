"""download_parts and fetch_document against a loopback server with one route per misbehaviour."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from assembler._http import is_retryable, parse_retry_after
from assembler.download import (
    DownloadResults,
    DownloadSettings,
    PartDownload,
    download_parts,
    fetch_document,
)
from assembler.errors import (
    DownloadError,
    HTTPStatusError,
    InputError,
    LinkExpiredError,
    NotMediaError,
    StorageError,
    TransferError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aiohttp.test_utils import TestServer

DATA = random.Random(7).randbytes(300_000)
HALF = len(DATA) // 2
SECRET = "s3cr3t-T0KEN-4f9a"
FAST = DownloadSettings(retries=3, backoff_base=0.01, max_backoff=0.05, connect_timeout=2,
                        read_timeout=2)

routes = web.RouteTableDef()


@dataclass
class Seen:
    """What the server saw, per path."""

    hits: Counter[str] = field(default_factory=Counter)
    headers: defaultdict[str, list[dict[str, str]]] = field(
        default_factory=lambda: defaultdict(list))
    times: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    in_flight: int = 0
    max_in_flight: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)


SEEN = web.AppKey("seen", Seen)


@web.middleware
async def _record(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                  ) -> web.StreamResponse:
    seen = request.app[SEEN]
    seen.hits[request.path] += 1
    seen.headers[request.path].append(dict(request.headers))
    seen.times[request.path].append(time.monotonic())
    return await handler(request)


def _hit(request: web.Request) -> int:
    return request.app[SEEN].hits[request.path]


async def _serve(request: web.Request, data: bytes = DATA, *, etag: str = '"v1"',
                 cut_at: int | None = None, honour_range: bool = True) -> web.StreamResponse:
    """Send `data`, honouring Range/If-Range; with `cut_at`, drop the connection there."""
    start, status, headers = 0, 200, {"ETag": etag, "Content-Type": "video/mp4"}
    wanted = request.headers.get("Range", "")
    if honour_range and wanted and request.headers.get("If-Range", etag) == etag:
        start = int(wanted.removeprefix("bytes=").rstrip("-"))
        if start >= len(data):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = len(data) - start
    await resp.prepare(request)
    if cut_at is None:
        await resp.write(data[start:])
        return resp
    await resp.write(data[start:cut_at])
    await asyncio.sleep(0.05)  # let the client take the bytes before the drop
    assert request.transport is not None
    request.transport.close()
    return resp


async def _begin(request: web.Request, upto: int) -> web.StreamResponse:
    """Headers for all of DATA, then only its first `upto` bytes; the caller decides the rest."""
    resp = web.StreamResponse(headers={"ETag": '"v1"'})
    resp.content_length = len(DATA)
    await resp.prepare(request)
    await resp.write(DATA[:upto])
    return resp


@dataclass
class Server:
    server: TestServer
    seen: Seen

    def url(self, path: str, query: str = "") -> str:
        return str(self.server.make_url(path)) + (f"?{query}" if query else "")


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Server:
    app = web.Application(middlewares=[_record])
    app[SEEN] = Seen()
    app.add_routes(routes)
    return Server(await aiohttp_server(app), app[SEEN])


@dataclass
class Progress:
    events: list[tuple[Any, ...]] = field(default_factory=list)
    advanced: Counter[str] = field(default_factory=Counter)

    def part_started(self, part_id: str, total_bytes: int | None, resumed_from: int) -> None:
        self.events.append(("started", part_id, total_bytes, resumed_from))

    def part_advanced(self, part_id: str, nbytes: int) -> None:
        self.advanced[part_id] += nbytes

    def part_finished(self, part_id: str, path: Path, skipped: bool) -> None:
        self.events.append(("finished", part_id, skipped))

    def part_failed(self, part_id: str, error: DownloadError) -> None:
        self.events.append(("failed", part_id, type(error)))


async def fetch(server: Server, path: str, tmp_path: Path, settings: DownloadSettings = FAST,
                query: str = "", **kwargs: Any) -> DownloadResults:
    part = PartDownload(part_id="p1", url=server.url(path, query), filename="p1.mp4")
    return await download_parts([part], tmp_path / "parts", settings, **kwargs)


def assert_complete(results: DownloadResults, tmp_path: Path, data: bytes = DATA) -> None:
    assert not results.failures
    assert results.files["p1"].read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["p1.mp4"]


def assert_failed(results: DownloadResults, tmp_path: Path,
                  kind: type[DownloadError]) -> DownloadError:
    assert not results.files
    assert type(results.failures["p1"]) is kind
    assert not (tmp_path / "parts" / "p1.mp4").exists()
    return results.failures["p1"]


# --- success, skipping, retries -----------------------------------------------------------


@routes.get("/ok")
async def ok(request: web.Request) -> web.StreamResponse:
    return await _serve(request)


async def test_ok_then_complete_part_is_never_fetched_again(server: Server,
                                                             tmp_path: Path) -> None:
    progress = Progress()
    assert_complete(await fetch(server, "/ok", tmp_path, progress=progress), tmp_path)
    assert_complete(await fetch(server, "/ok", tmp_path, progress=progress), tmp_path)
    assert server.seen.hits["/ok"] == 1
    assert progress.events == [("started", "p1", len(DATA), 0), ("finished", "p1", False),
                               ("finished", "p1", True)]
    assert progress.advanced["p1"] == len(DATA)
    assert "Range" not in server.seen.headers["/ok"][0]
    assert server.seen.headers["/ok"][0]["Accept-Encoding"] == "identity"


@routes.get("/503-twice")
async def _503_twice(request: web.Request) -> web.StreamResponse:
    if _hit(request) <= 2:
        return web.Response(status=503)
    return await _serve(request)


async def test_503_twice_is_retried(server: Server, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "assembler.download")
    assert_complete(await fetch(server, "/503-twice", tmp_path), tmp_path)
    assert server.seen.hits["/503-twice"] == 3
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2
    assert retries[0].startswith("part p1: the server answered 503")
    assert retries[0].endswith("(attempt 2/4)")


@routes.get("/429-retry-after")
async def _429_retry_after(request: web.Request) -> web.StreamResponse:
    if _hit(request) == 1:
        return web.Response(status=429, headers={"Retry-After": "1"})
    return await _serve(request)


def _waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The waits the client chose before each retry, as it logged them ("retrying in 1.0 s")."""
    return [float(message.split("retrying in ")[1].split()[0])
            for message in (record.getMessage() for record in caplog.records)
            if "retrying in " in message]


# The waits are read from the client's own log, not from the clock: a busy machine only
# ever lengthens a wait, so the clock can bound it from below and no more.
async def test_429_waits_as_long_as_retry_after_says(server: Server, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "assembler.download")
    settings = DownloadSettings(backoff_base=0.01, max_backoff=5)
    assert_complete(await fetch(server, "/429-retry-after", tmp_path, settings), tmp_path)
    assert _waits(caplog) == [1.0]
    first, second = server.seen.times["/429-retry-after"]
    assert second - first >= 0.9


async def test_retry_after_is_capped_by_max_backoff(server: Server, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "assembler.download")
    assert_complete(await fetch(server, "/429-retry-after", tmp_path), tmp_path)
    waits = _waits(caplog)
    assert len(waits) == 1
    assert waits[0] <= round(FAST.max_backoff, 1)  # asked for 1 s, capped at 0.05 s


@routes.get("/500-always")
async def _500_always(request: web.Request) -> web.StreamResponse:
    return web.Response(status=500)


async def test_500_always_gives_up_after_the_retries(server: Server, tmp_path: Path) -> None:
    error = assert_failed(await fetch(server, "/500-always", tmp_path), tmp_path, HTTPStatusError)
    assert server.seen.hits["/500-always"] == FAST.retries + 1
    assert isinstance(error, HTTPStatusError)
    assert error.status == 500


# --- resuming -----------------------------------------------------------------------------


def _resumed_from(headers: dict[str, str]) -> int:
    assert headers["If-Range"] == '"v1"'
    start = int(headers["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= HALF
    return start


@routes.get("/reset-midway")
async def reset_midway(request: web.Request) -> web.StreamResponse:
    return await _serve(request, cut_at=HALF if _hit(request) == 1 else None)


async def test_reset_midway_resumes_with_range(server: Server, tmp_path: Path) -> None:
    progress = Progress()
    assert_complete(await fetch(server, "/reset-midway", tmp_path, progress=progress), tmp_path)
    first, second = server.seen.headers["/reset-midway"]
    assert "Range" not in first
    start = _resumed_from(second)
    assert progress.events[1] == ("started", "p1", len(DATA), start)


@routes.get("/short")
async def short(request: web.Request) -> web.StreamResponse:
    return await _serve(request, cut_at=HALF)


async def test_short_body_leaves_only_the_part_file(server: Server, tmp_path: Path) -> None:
    error = assert_failed(await fetch(server, "/short", tmp_path), tmp_path, TransferError)
    assert "cut short" in str(error)
    assert server.seen.hits["/short"] == FAST.retries + 1
    names = sorted(p.name for p in (tmp_path / "parts").iterdir())
    assert names == ["p1.mp4.part", "p1.mp4.part.json"]
    assert DATA.startswith((tmp_path / "parts" / "p1.mp4.part").read_bytes())


@routes.get("/slow-drip")
async def slow_drip(request: web.Request) -> web.StreamResponse:
    if _hit(request) > 1:
        return await _serve(request)
    resp = await _begin(request, 1000)
    await asyncio.sleep(0.6)  # past the client's read timeout
    return resp


async def test_read_timeout_is_retried_and_resumed(server: Server, tmp_path: Path) -> None:
    settings = DownloadSettings(backoff_base=0.01, read_timeout=0.2)
    assert_complete(await fetch(server, "/slow-drip", tmp_path, settings), tmp_path)
    assert _resumed_from(server.seen.headers["/slow-drip"][1]) == 1000


@routes.get("/silent")
async def silent(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    await asyncio.sleep(0.6)  # past the client's read timeout
    return resp


@routes.get("/range-ignored")
async def range_ignored(request: web.Request) -> web.StreamResponse:
    return await _serve(request, cut_at=HALF if _hit(request) == 1 else None, honour_range=False)


async def test_200_to_a_range_request_restarts_from_zero(server: Server,
                                                          tmp_path: Path) -> None:
    assert_complete(await fetch(server, "/range-ignored", tmp_path), tmp_path)
    assert "Range" in server.seen.headers["/range-ignored"][1]


NEW_DATA = random.Random(8).randbytes(len(DATA) + 1234)


@routes.get("/etag-changes")
async def etag_changes(request: web.Request) -> web.StreamResponse:
    if _hit(request) == 1:
        return await _serve(request, cut_at=HALF)
    return await _serve(request, NEW_DATA, etag='"v2"')


async def test_changed_etag_restarts_with_the_new_content(server: Server,
                                                          tmp_path: Path) -> None:
    assert_complete(await fetch(server, "/etag-changes", tmp_path), tmp_path, NEW_DATA)
    _resumed_from(server.seen.headers["/etag-changes"][1])


@routes.get("/changed-then-dropped")
async def changed_then_dropped(request: web.Request) -> web.StreamResponse:
    return await _serve(request, NEW_DATA, etag='"v2"', cut_at=0 if _hit(request) == 1 else None)


async def test_a_restart_cut_before_its_first_byte_never_resumes_the_old_bytes(
        server: Server, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "p1.mp4.part").write_bytes(DATA[:HALF])
    (parts / "p1.mp4.part.json").write_text(json.dumps({"validator": '"v1"', "total": len(DATA)}))
    assert_complete(await fetch(server, "/changed-then-dropped", tmp_path), tmp_path, NEW_DATA)
    first, second = server.seen.headers["/changed-then-dropped"]
    assert (first["Range"], first["If-Range"]) == (f"bytes={HALF}-", '"v1"')
    assert "Range" not in second


@routes.get("/wrong-range")
async def wrong_range(request: web.Request) -> web.StreamResponse:
    if "Range" not in request.headers:
        return await _serve(request, cut_at=HALF)
    return web.Response(status=206, body=DATA[:10], headers={
        "Content-Range": f"bytes 0-9/{len(DATA)}", "ETag": '"v1"'})


async def test_content_range_from_the_wrong_byte_restarts(server: Server,
                                                          tmp_path: Path) -> None:
    error = assert_failed(await fetch(server, "/wrong-range", tmp_path), tmp_path, TransferError)
    assert "restarting from zero" in str(error)
    assert [("Range" in h) for h in server.seen.headers["/wrong-range"]] == [False, True] * 2


@routes.get("/stall-once")
async def stall_once(request: web.Request) -> web.StreamResponse:
    if _hit(request) > 1:
        return await _serve(request)
    resp = await _begin(request, HALF)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(request.app[SEEN].release.wait(), 60)
    return resp


async def _wait_for_half(partial: Path) -> None:
    # A guard against a hang, not a timing: a child's start-up alone took 5 s at load 20.
    for _ in range(6000):
        if partial.exists() and partial.stat().st_size == HALF:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the download never got half way")


async def test_cancelled_download_leaves_part_and_resumes_next_run(server: Server,
                                                                   tmp_path: Path) -> None:
    partial = tmp_path / "parts" / "p1.mp4.part"
    task = asyncio.create_task(fetch(server, "/stall-once", tmp_path))
    await _wait_for_half(partial)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server.seen.release.set()
    assert not (tmp_path / "parts" / "p1.mp4").exists()
    assert_complete(await fetch(server, "/stall-once", tmp_path), tmp_path)
    assert _resumed_from(server.seen.headers["/stall-once"][1]) == HALF


_CHILD = """
import asyncio, sys
from pathlib import Path
from assembler.download import DownloadSettings, PartDownload, download_parts
part = PartDownload(part_id="p1", url=sys.argv[1], filename="p1.mp4")
asyncio.run(download_parts([part], Path(sys.argv[2]), DownloadSettings()))
"""


async def test_kill_9_mid_body_then_same_call_resumes(server: Server, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, server.url("/stall-once"), parts],
                             cwd=Path(__file__).parents[1])
    try:
        await _wait_for_half(parts / "p1.mp4.part")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    server.seen.release.set()
    assert not (parts / "p1.mp4").exists()
    assert_complete(await fetch(server, "/stall-once", tmp_path), tmp_path)
    assert _resumed_from(server.seen.headers["/stall-once"][1]) == HALF


def _wav(size: int, seed: int) -> bytes:
    """A 48 kHz 16-bit stereo WAV file of `size` bytes in all, random samples: media to probe."""
    data = size - 44
    header = (b"RIFF" + (data + 36).to_bytes(4, "little") + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 1, 2, 48000, 48000 * 4, 4, 16)
              + b"data" + data.to_bytes(4, "little"))
    return header + random.Random(seed).randbytes(data)


# Parts the CLI test serves: `done-*` whole at once, `cut-*` stalling half way on the first
# request (until the test releases them), whole or resumed after that.
CLI_PARTS = {f"{kind}-{n}.wav": _wav(len(DATA), seed)
             for seed, (kind, n) in enumerate((k, n) for k in ("done", "cut") for n in range(3))}


@routes.get("/cli/{name}")
async def cli_part(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    data = CLI_PARTS[name]
    if not name.startswith("cut-") or _hit(request) > 1:
        return await _serve(request, data)
    resp = web.StreamResponse(headers={"ETag": '"v1"', "Content-Type": "audio/wav"})
    resp.content_length = len(data)
    await resp.prepare(request)
    await resp.write(data[:HALF])
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(request.app[SEEN].release.wait(), 30)
    return resp


def _audio_parts_manifest(server: Server, path: Path) -> Path:
    """An audio_parts document (docs/download-schemas.md) listing every CLI part."""
    person = {"id": 1, "name": "Ada", "is_host": None, "platform": None, "extra_data": None,
              "email": None}
    path.write_text(json.dumps([
        {"id": Path(name).stem, "participant": person, "duration": 1.0,
         "start_timestamp": {"absolute": "2025-01-01T00:00:00Z", "relative": float(n)},
         "download_url": server.url(f"/cli/{name}")}
        for n, name in enumerate(CLI_PARTS)]))
    return path


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting: {what}")


async def test_cli_killed_mid_download_reruns_only_what_is_missing(server: Server,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "assembler", "run", "--download-only", "--quiet",
               "--audio-parts", str(_audio_parts_manifest(server, tmp_path / "parts.json")),
               "--out", str(out)]
    parts = out / "parts"
    done = [name for name in CLI_PARTS if name.startswith("done-")]
    cut = [name for name in CLI_PARTS if name.startswith("cut-")]
    first = await asyncio.create_subprocess_exec(*command, cwd=Path(__file__).parents[1])
    try:
        await _until(lambda: all((parts / name).exists() for name in done)
                     and all(_size(parts / (name + ".part")) == HALF for name in cut),
                     "complete parts and half-written ones")
    finally:
        first.kill()  # SIGKILL
        await first.wait()
    assert first.returncode == -signal.SIGKILL
    server.seen.release.set()
    assert not any((parts / name).exists() for name in cut)

    second = await asyncio.create_subprocess_exec(*command, cwd=Path(__file__).parents[1],
                                                  stderr=subprocess.PIPE)
    _, errors = await asyncio.wait_for(second.communicate(), 120)
    assert second.returncode == 0, errors.decode()
    assert sorted(p.name for p in parts.iterdir()) == sorted(CLI_PARTS)
    for name, data in CLI_PARTS.items():
        assert (parts / name).read_bytes() == data, name
    hits = server.seen.hits
    assert {name: hits[f"/cli/{name}"] for name in done} == dict.fromkeys(done, 1)
    assert {name: hits[f"/cli/{name}"] for name in cut} == dict.fromkeys(cut, 2)
    for name in cut:
        before, after = server.seen.headers[f"/cli/{name}"]
        assert "Range" not in before
        assert (after["Range"], after["If-Range"]) == (f"bytes={HALF}-", '"v1"')


# A slow link: about 400 KB/s, 4 KiB every 10 ms, steadily (no pause a spill could wait for).
SLOW_PART = _wav(4 << 20, 99)
DRIP, DRIP_EVERY = 4096, 0.01


@routes.get("/slow/{name}")
async def slow_part(request: web.Request) -> web.StreamResponse:
    """The first request drips until the client goes away; later ones are served whole."""
    if _hit(request) > 1:
        return await _serve(request, SLOW_PART)
    resp = web.StreamResponse(headers={"ETag": '"v1"', "Content-Type": "audio/wav"})
    resp.content_length = len(SLOW_PART)
    await resp.prepare(request)
    for offset in range(0, len(SLOW_PART), DRIP):
        await resp.write(SLOW_PART[offset:offset + DRIP])
        await asyncio.sleep(DRIP_EVERY)
    return resp


async def test_cli_killed_on_a_slow_link_resumes_with_range(server: Server,
                                                            tmp_path: Path) -> None:
    person = {"id": 1, "name": "Ada", "is_host": None, "platform": None, "extra_data": None,
              "email": None}
    manifest = tmp_path / "audio_parts.json"
    manifest.write_text(json.dumps([
        {"id": "slow", "participant": person, "duration": 1.0,
         "start_timestamp": {"absolute": "2025-01-01T00:00:00Z", "relative": 0.0},
         "download_url": server.url("/slow/slow.wav")}]))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "assembler", "run", "--download-only", "--quiet",
               "--audio-parts", str(manifest), "--out", str(out)]
    first = await asyncio.create_subprocess_exec(*command, cwd=Path(__file__).parents[1])
    try:
        # 2.5 s of dripping, counted from the request so that a slow start-up cannot eat it.
        await _until(lambda: server.seen.hits["/slow/slow.wav"] == 1, "the first request")
        await asyncio.sleep(2.5)
    finally:
        first.kill()  # SIGKILL: nothing of the client's own runs after this
        await first.wait()
    assert first.returncode == -signal.SIGKILL
    kept = _size(out / "parts" / "slow.wav.part") or 0

    second = await asyncio.create_subprocess_exec(*command, cwd=Path(__file__).parents[1],
                                                  stderr=subprocess.PIPE)
    _, errors = await asyncio.wait_for(second.communicate(), 120)
    assert second.returncode == 0, errors.decode()
    assert (out / "parts" / "slow.wav").read_bytes() == SLOW_PART
    resumed = server.seen.headers["/slow/slow.wav"][1]
    assert (resumed["Range"], resumed["If-Range"]) == (f"bytes={kept}-", '"v1"')
    assert 0 < kept < len(SLOW_PART)


async def test_whole_part_file_left_before_the_rename_is_finished_by_a_416(
        server: Server, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "p1.mp4.part").write_bytes(DATA)
    (parts / "p1.mp4.part.json").write_text(json.dumps({"validator": '"v1"', "total": len(DATA)}))
    assert_complete(await fetch(server, "/ok", tmp_path), tmp_path)
    assert server.seen.headers["/ok"][0]["Range"] == f"bytes={len(DATA)}-"


# --- expired links and final statuses -----------------------------------------------------

S3_EXPIRED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
              b"<Message>Request has expired</Message><Expires>2024-01-01T00:00:00Z</Expires>"
              b"</Error>")


@routes.get("/expired-s3")
async def expired_s3(request: web.Request) -> web.StreamResponse:
    return web.Response(status=403, body=S3_EXPIRED, content_type="application/xml")


@routes.get("/expired-gcs")
async def expired_gcs(request: web.Request) -> web.StreamResponse:
    return web.Response(status=400, content_type="application/xml",
                        text="<Error><Code>ExpiredToken</Code><Message>x</Message></Error>")


@routes.get("/gone")
async def gone(request: web.Request) -> web.StreamResponse:
    return web.Response(status=410)


@pytest.mark.parametrize("path", ["/expired-s3", "/expired-gcs", "/gone"])
async def test_expired_link_fails_at_once(server: Server, tmp_path: Path, path: str) -> None:
    error = assert_failed(await fetch(server, path, tmp_path), tmp_path, LinkExpiredError)
    assert str(error).startswith("the link for part p1 has expired")
    assert str(error).endswith("fetch a fresh manifest")
    assert server.seen.hits[path] == 1


@routes.get("/403")
async def forbidden(request: web.Request) -> web.StreamResponse:
    return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")


@routes.get("/404")
async def not_found(request: web.Request) -> web.StreamResponse:
    return web.Response(status=404)


@pytest.mark.parametrize(("path", "requests"), [("/404", 1), ("/403", 2)])
async def test_final_statuses_are_not_retried(server: Server, tmp_path: Path, path: str,
                                              requests: int) -> None:
    assert_failed(await fetch(server, path, tmp_path), tmp_path, HTTPStatusError)
    assert server.seen.hits[path] == requests


@pytest.mark.parametrize("query", [
    "X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=abc",
    "X-Goog-Date=20240101T000000Z&X-Goog-Expires=3600&X-Goog-Signature=abc",
    "Expires=1704070800&Signature=abc",
], ids=["s3", "gcs", "epoch"])
async def test_expiry_in_the_query_is_caught_before_any_request(server: Server, tmp_path: Path,
                                                                query: str) -> None:
    error = assert_failed(await fetch(server, "/ok", tmp_path, query=query), tmp_path,
                          LinkExpiredError)
    assert "2024-01-01 01:00:00 UTC" in str(error)
    assert server.seen.hits["/ok"] == 0


async def test_a_link_valid_for_a_while_yet_is_fetched(server: Server, tmp_path: Path) -> None:
    query = f"Expires={int(time.time()) + 3600}&Signature=abc"
    assert_complete(await fetch(server, "/ok", tmp_path, query=query), tmp_path)


@routes.get("/expire-midway")
async def expire_midway(request: web.Request) -> web.StreamResponse:
    if _hit(request) == 1:
        return await _serve(request, cut_at=HALF)
    return await expired_s3(request)


async def test_refresh_url_continues_an_expired_part_with_a_fresh_link(
        server: Server, tmp_path: Path) -> None:
    asked: list[str] = []

    async def refresh(part_id: str) -> str | None:
        asked.append(part_id)
        return server.url("/ok", "X-Amz-Signature=fresh")

    assert_complete(await fetch(server, "/expire-midway", tmp_path, refresh_url=refresh),
                    tmp_path)
    assert asked == ["p1"]
    assert server.seen.hits["/expire-midway"] == 2
    _resumed_from(server.seen.headers["/ok"][0])


async def test_refresh_url_without_a_fresh_link_fails_the_part(server: Server,
                                                               tmp_path: Path) -> None:
    async def refresh(part_id: str) -> str | None:
        return None

    assert_failed(await fetch(server, "/expired-s3", tmp_path, refresh_url=refresh), tmp_path,
                  LinkExpiredError)
    assert server.seen.hits["/expired-s3"] == 1


# --- not media, disk ----------------------------------------------------------------------


@routes.get("/html-200")
async def html_200(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"<!DOCTYPE html><html>Sign in</html>",
                        content_type="application/octet-stream")


@routes.get("/xml-typed-200")
async def xml_typed_200(request: web.Request) -> web.StreamResponse:
    return web.Response(body=DATA, content_type="application/xml")


@routes.get("/json-200")
async def json_200(request: web.Request) -> web.StreamResponse:
    # A manifest served where a part was due, typed as octet-stream: ffmpeg would open it
    # as text, with no audio or video stream, and the track would fail, not the download.
    return web.Response(body=b'\n [{"id": "a", "duration": 1}]',
                        content_type="application/octet-stream")


@routes.get("/empty-200")
async def empty_200(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"")


@routes.get("/gzip-200")
async def gzip_200(request: web.Request) -> web.StreamResponse:
    # An object stored gzip-encoded: sent so whatever the request's Accept-Encoding.
    return web.Response(body=gzip.compress(DATA), headers={"Content-Encoding": "gzip"},
                        content_type="video/mp4")


@routes.get("/binary-200")
async def binary_200(request: web.Request) -> web.StreamResponse:
    # Object metadata naming no coding: the body is the object as it is.
    return web.Response(body=DATA, headers={"Content-Encoding": "binary"},
                        content_type="video/mp4")


async def test_a_content_encoded_body_is_refused_naming_its_encoding(server: Server,
                                                                     tmp_path: Path) -> None:
    failure = assert_failed(await fetch(server, "/gzip-200", tmp_path), tmp_path,
                            NotMediaError)
    assert "(Content-Encoding: gzip)" in str(failure)
    assert not list((tmp_path / "parts").iterdir())  # nothing kept to resume into
    results = await fetch(server, "/binary-200", tmp_path)
    assert not results.failures
    assert results.files["p1"].read_bytes() == DATA


@pytest.mark.parametrize("path", ["/html-200", "/xml-typed-200", "/json-200", "/empty-200"])
async def test_a_page_or_nothing_is_not_media(server: Server, tmp_path: Path, path: str) -> None:
    assert_failed(await fetch(server, path, tmp_path), tmp_path, NotMediaError)
    assert server.seen.hits[path] == 1
    assert not list((tmp_path / "parts").iterdir())


async def test_disk_full_is_a_storage_error(server: Server, tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "p1.mp4.part").symlink_to("/dev/full")
    error = assert_failed(await fetch(server, "/ok", tmp_path), tmp_path, StorageError)
    assert str(error).endswith("No space left on device")
    assert server.seen.hits["/ok"] == 1


async def test_parts_dir_that_cannot_be_made_stops_the_stage(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError, match="cannot create"):
        await download_parts([], tmp_path / "file" / "parts")


# --- the pool -----------------------------------------------------------------------------


@routes.get("/pooled/{n}")
async def pooled(request: web.Request) -> web.StreamResponse:
    seen = request.app[SEEN]
    seen.in_flight += 1
    seen.max_in_flight = max(seen.max_in_flight, seen.in_flight)
    try:
        await asyncio.sleep(0.03)
        return await _serve(request, request.match_info["n"].encode() * 1000)
    finally:
        seen.in_flight -= 1


async def test_concurrency_is_bounded_and_every_part_lands(server: Server,
                                                           tmp_path: Path) -> None:
    parts = [PartDownload(part_id=f"p{n}", url=server.url(f"/pooled/{n}"), filename=f"{n}.mp4")
             for n in range(20)]
    settings = DownloadSettings(concurrency=3)
    results = await download_parts(parts, tmp_path, settings)
    assert server.seen.max_in_flight == 3
    assert not results.failures
    assert {path.read_bytes() for path in results.files.values()} == {
        str(n).encode() * 1000 for n in range(20)}


# --- secrets ------------------------------------------------------------------------------


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_signed_query_appears_in_no_error_and_no_log(
        server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    query = f"X-Amz-Signature={SECRET}&token={SECRET}"
    paths = ["/404", "/403", "/expired-s3", "/expired-gcs", "/gone", "/500-always", "/short",
             "/silent", "/html-200", "/empty-200", "/wrong-range"]
    urls = [server.url(path, query) for path in paths]
    urls += [f"http://127.0.0.1:{_unused_port()}/x.mp4?{query}", f"ftp://h/x.mp4?{query}",
             server.url("/ok", f"Expires=1000&Signature={SECRET}")]
    parts = [PartDownload(part_id=f"p{n}", url=url, filename=f"{n}.mp4")
             for n, url in enumerate(urls)]
    (tmp_path / "15.mp4.part").symlink_to("/dev/full")
    parts.append(PartDownload(part_id="p15", url=server.url("/ok", query), filename="15.mp4"))
    settings = DownloadSettings(retries=1, backoff_base=0.01, read_timeout=0.2)
    results = await download_parts(parts, tmp_path, settings)
    assert set(results.failures) == {part.part_id for part in parts}
    errors: list[BaseException] = list(results.failures.values())
    for url in (server.url("/big", query), server.url("/404", query)):
        with pytest.raises(DownloadError) as caught:
            await fetch_document(url, max_bytes=1000, settings=settings)
        errors.append(caught.value)
    shown = [text for error in errors for text in (str(error), repr(error))]
    shown += [part_text for part in parts for part_text in (str(part), repr(part))]
    # aiohttp.access is the test server's own log of the URLs it was sent.
    shown += [record.getMessage() + str(record.exc_text) for record in caplog.records
              if record.name != "aiohttp.access"]
    assert [text for text in shown if SECRET in text] == []
    assert any("?…" in text for text in shown)


# --- documents, settings, the retry rule --------------------------------------------------


@routes.get("/big")
async def big(request: web.Request) -> web.StreamResponse:
    return await _serve(request)


async def test_fetch_document_returns_the_body_and_caps_its_size(server: Server) -> None:
    assert await fetch_document(server.url("/big"), settings=FAST) == DATA
    with pytest.raises(NotMediaError, match="larger than 1000 bytes"):
        await fetch_document(server.url("/big"), max_bytes=1000, settings=FAST)
    with pytest.raises(HTTPStatusError):
        await fetch_document(server.url("/500-always"), settings=FAST)
    assert server.seen.hits["/500-always"] == FAST.retries + 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 1 <= (parse_retry_after(soon) or 0) <= 10  # ten seconds from a busy 'now'
    assert parse_retry_after("Wed, 01 Jan 2020 00:00:00 GMT") == 0
    assert parse_retry_after("7") == 7
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_settings_refuse_nonsense_and_say_what_is_wrong() -> None:
    with pytest.raises(InputError, match=r"concurrency must be at least 1, not 0; "
                                         r"retries must be 0 or more, not -1"):
        DownloadSettings(concurrency=0, retries=-1)


@pytest.mark.parametrize(("error", "attempt", "expected"), [
    (TransferError("p", "reset"), 5, True),
    (HTTPStatusError("p", 503, "busy"), 1, True),
    (HTTPStatusError("p", 429, "slow down"), 1, True),
    (HTTPStatusError("p", 404, "missing"), 1, False),
    (HTTPStatusError("p", 403, "forbidden"), 1, True),
    (HTTPStatusError("p", 403, "forbidden"), 2, False),
    (LinkExpiredError("p", 403, "expired"), 1, False),
    (NotMediaError("p", "page"), 1, False),
    (StorageError("p", "full"), 1, False),
])
def test_is_retryable(error: DownloadError, attempt: int, expected: bool) -> None:
    assert is_retryable(error, attempt) is expected


async def test_a_whole_part_that_cannot_be_tidied_fails_alone_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Its final file is there, but what a crash left beside it cannot be removed.
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "a.wav.part.json").mkdir()
    (tmp_path / "b.wav").write_bytes(b"RIFF")
    with caplog.at_level(logging.ERROR, logger="assembler.download"):
        found = await download_parts(
            [PartDownload(part_id=name, url=f"http://127.0.0.1:9/{name}?sig=SECRET",
                          filename=f"{name}.wav") for name in ("a", "b")], tmp_path)
    assert list(found.files) == ["b"]
    assert isinstance(found.failures["a"], StorageError)
    assert [record.getMessage() for record in caplog.records] == [str(found.failures["a"])]
    assert "SECRET" not in caplog.text
