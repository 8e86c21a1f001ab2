"""A real loopback HTTP server for synchronous tests, with faults injected by path.

The server runs an aiohttp app on 127.0.0.1 (ephemeral port) in a thread with
its own event loop, so code under test talks to it over a real socket whether
it is sync or async. Files come from a directory; Range and ETag are honoured
by aiohttp's `FileResponse`. Faults replace a path's answer for a number of
requests: a status with a body (404 forever, 503 twice, an S3 "expired" 403),
or a body cut off after some bytes. A held path is answered only once the
test releases it, to see what a client does while one download is pending.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

__all__ = ["S3_EXPIRED", "Fault", "Hit", "MediaServer", "media_server", "serve_directory"]

# What S3 answers (status 403) for a presigned URL past its X-Amz-Expires.
S3_EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message><X-Amz-Expires>3600</X-Amz-Expires>"
    b"<Expires>2025-07-17T01:00:00Z</Expires><ServerTime>2025-07-17T02:13:09Z</ServerTime>"
    b"<RequestId>4F2D8A1B9C3E7F60</RequestId></Error>"
)


@dataclass(slots=True)
class Fault:
    """How a path misbehaves; `times=None` means on every request."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    times: int | None = None
    cut_after: int | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """One request as the server saw it."""

    method: str
    path: str
    query: str
    range: str | None


class MediaServer:
    """Handle on a running server: URLs, request counts and fault injection."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base_url = ""
        self.requests: Counter[str] = Counter()
        self.hits: list[Hit] = []
        self._faults: dict[str, list[Fault]] = {}
        self._held: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def url(self, relpath: str, query: str = "") -> str:
        """Absolute URL of `relpath` under the root (quoted), with an optional query."""
        return f"{self.base_url}/{quote(relpath.lstrip('/'))}" + (f"?{query}" if query else "")

    def fail(self, path: str, status: int, *, times: int | None = None, body: bytes = b"",
             headers: Mapping[str, str] | None = None) -> None:
        """Answer `status` with `body` on the next `times` requests of `path` (None: all)."""
        self._add(path, Fault(status, body, dict(headers or {}), times))

    def cut(self, path: str, after: int, *, times: int | None = 1) -> None:
        """Send the full Content-Length but close the connection after `after` bytes."""
        self._add(path, Fault(200, times=times, cut_after=after))

    def hold(self, path: str) -> Callable[[], None]:
        """Answer requests of `path` only once the returned function has been called."""
        released = threading.Event()
        with self._lock:
            self._held["/" + path.lstrip("/")] = released
        return released.set

    def _add(self, path: str, fault: Fault) -> None:
        if fault.times is not None and fault.times < 1:
            raise ValueError(f"times={fault.times}: use a count >= 1, or None for every request")
        with self._lock:
            self._faults.setdefault("/" + path.lstrip("/"), []).append(fault)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path, [])
            if not queue:
                return None
            fault = queue[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)
            return fault

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Count the request, then answer with a pending fault or the file."""
        self.requests[request.path] += 1
        self.hits.append(Hit(request.method, request.path, request.query_string,
                             request.headers.get("Range")))
        with self._lock:
            released = self._held.get(request.path)
        while released is not None and not released.is_set():
            await asyncio.sleep(0.01)
        fault = self._take_fault(request.path)
        if fault is not None and fault.cut_after is None:
            return web.Response(status=fault.status, body=fault.body, headers=fault.headers)
        target = (self.root / request.path.lstrip("/")).resolve()
        if not target.is_file() or not target.is_relative_to(self.root.resolve()):
            raise web.HTTPNotFound()
        if fault is not None and fault.cut_after is not None:
            return await _cut_response(request, target.read_bytes(), fault.cut_after)
        return web.FileResponse(target)


async def _cut_response(request: web.Request, body: bytes, after: int) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = len(body)
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    await response.write(body[:after])
    # Drop the connection mid-body, as a proxy or a dying server would.
    if request.transport is not None:
        request.transport.close()
    return response


@contextmanager
def serve_directory(root: Path) -> Iterator[MediaServer]:
    """Serve `root` on 127.0.0.1 from a background thread until the block ends."""
    server = MediaServer(root)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="media-server", daemon=True)
    thread.start()

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return int(runner.addresses[0][1])

    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
        server.base_url = f"http://127.0.0.1:{port}"
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture
def media_server(tmp_path: Path) -> Iterator[MediaServer]:
    """A running `MediaServer` over an empty `tmp_path / "www"`; put files in `.root`."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(root) as server:
        yield server
