"""The download stage's HTTP side: the worker pool that fetches parts, and documents.

Private to `assembler.download`, which loads it only when something must be
fetched: aiohttp takes a third of a second to import, and a run over parts
already on disk needs none of it. How a body is held, spilled, resumed and
published is told in `download`'s docstring.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ._http import (
    Target,
    check_status,
    content_range,
    open_session,
    refuse_encoded,
    refuse_expired,
    refuse_page,
    translated,
    with_retries,
)
from ._partfile import Body, PartFile, sync_dir
from .download import DownloadProgress, DownloadResults, DownloadSettings, PartDownload, RefreshUrl
from .errors import (
    DownloadError,
    LinkExpiredError,
    NotMediaError,
    TransferError,
    redact_url,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["fetch_document", "fetch_parts"]

log = logging.getLogger("assembler.download")


@dataclass(slots=True)
class _Run:
    """What every worker shares for one `download_parts` call."""

    session: aiohttp.ClientSession
    settings: DownloadSettings
    parts_dir: Path
    progress: DownloadProgress
    refresh_url: RefreshUrl | None
    renamed: bool = False  # some part was renamed into `parts_dir`: fsync it before returning
    files: dict[str, Path] = field(default_factory=dict)
    failures: dict[str, DownloadError] = field(default_factory=dict)

    def finished(self, part_id: str, path: Path) -> None:
        self.files[part_id] = path
        self.progress.part_finished(part_id, path, False)

    def failed(self, part_id: str, error: DownloadError) -> None:
        log.error("%s", error, extra={"fields": {"part": part_id}})
        self.failures[part_id] = error
        self.progress.part_failed(part_id, error)


def _body_start(resp: aiohttp.ClientResponse, target: Target, part: PartFile,
                offset: int) -> int | None:
    """Where this response's body goes in `.part`; None when the part is already whole."""
    first, total = content_range(resp.headers.get("Content-Range"))
    if resp.status == 416:
        if offset and total == offset and part.total in (None, total):
            return None
        part.discard()
        raise TransferError(target.part_id, f"{target.label}: the server refused to resume "
                            f"at byte {offset}; restarting from zero")
    if resp.status != 206:  # a 200 to a Range request: the server starts over, so do we
        part.validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        part.total = resp.content_length
        part.described = False
        return 0
    if first == offset and (total is None or part.total in (None, total)):
        part.total = part.total if total is None else total
        return offset
    message = (f"{target.label}: asked for bytes from {offset} of {part.total or '?'}, got "
               f"{first} of {total or '?'}; restarting from zero")
    part.discard()
    raise TransferError(target.part_id, message)


async def _next_chunk(resp: aiohttp.ClientResponse, body: Body, size: int) -> bytes:
    """The next piece of the body (b"" at its end); spills what is held when it falls due.

    Held bytes fall due `SPILL_AFTER` seconds after the first of them arrived,
    whether the server is slow or silent: a read still waiting then is
    interrupted (which loses no data) to spill, then resumed.
    """
    if not body.chunks:
        return await resp.content.read(size)
    try:
        async with asyncio.timeout_at(body.due) as due:
            return await resp.content.read(size)
    except TimeoutError:
        if not due.expired():
            raise  # aiohttp's own read timeout
    await body.spill()
    return await resp.content.read(size)


async def _receive(resp: aiohttp.ClientResponse, run: _Run, target: Target,
                   part: PartFile, start: int) -> Body:
    """Read the body; returns it with whatever is still held, to be published."""
    body = Body(part, fresh=not start)
    clock = asyncio.get_running_loop().time
    received = start
    content_type = resp.headers.get("Content-Type", "").partition(";")[0].strip()
    try:
        while chunk := await _next_chunk(resp, body, run.settings.chunk_size):
            if received == 0:
                refuse_page(target, content_type, chunk)
            received += len(chunk)
            run.progress.part_advanced(target.part_id, len(chunk))
            if body.add(chunk, clock()):
                await body.spill()
    except BaseException:
        body.spill_now()
        raise
    if received == 0:
        refuse_page(target, "", b"")
    if part.total is not None and received != part.total:
        body.spill_now()
        raise TransferError(target.part_id, f"{target.label}: the body ended at byte "
                            f"{received} of {part.total}")
    return body


async def _fetch_part_once(run: _Run, target: Target, part: PartFile) -> Body:
    refuse_expired(target)
    offset = part.resume_offset()
    log.debug("%s: GET %s from byte %d", target.label, redact_url(target.url), offset)
    try:
        with translated(target):
            async with run.session.get(target.url, headers=part.request_headers(offset)) as resp:
                await check_status(resp, target)
                refuse_encoded(target, ", ".join(resp.headers.getall("Content-Encoding", [])))
                start = _body_start(resp, target, part, offset)
                if start is None:
                    return Body(part, fresh=False)  # `.part` is whole: publish it as it is
                run.progress.part_started(target.part_id, part.total, start)
                return await _receive(resp, run, target, part, start)
    except NotMediaError:
        part.discard()  # an error page must not be resumed into
        raise


async def _fetch_with_refresh(run: _Run, target: Target, part: PartFile) -> Body:
    attempt = functools.partial(_fetch_part_once, run, target, part)
    try:
        return await with_retries(run.settings, target, attempt)
    except LinkExpiredError:
        fresh = await run.refresh_url(target.part_id) if run.refresh_url else None
        if fresh is None:
            raise
        log.info("%s: link expired; continuing with a fresh one", target.label)
        target.url = fresh
        return await with_retries(run.settings, target, attempt)


async def _fetch_part(run: _Run, item: PartDownload) -> tuple[Target, Body]:
    """Fetch one part's body, still to be published."""
    target = Target(label=f"part {item.part_id}", part_id=item.part_id, url=item.url)
    with translated(target):
        part = PartFile.load(run.parts_dir, item.filename)
    return target, await _fetch_with_refresh(run, target, part)


async def _publish(run: _Run, target: Target, body: Body) -> None:
    run.renamed = True  # set before: a cancelled publish may still rename in its thread
    try:
        with translated(target):
            await body.publish()
    except DownloadError as error:
        run.failed(target.part_id, error)
    else:
        log.debug("%s: complete as %s", target.label, body.part.final)
        run.finished(target.part_id, body.part.final)


# --- the pool -----------------------------------------------------------------------------


async def _worker(run: _Run, queue: asyncio.Queue[PartDownload]) -> None:
    """Fetch parts one after another; each is published while the next one is fetched.

    The fsync of a small part takes milliseconds and its request waits on the
    server's latency: overlapping them keeps the disk off the network's path.
    At most one publish per worker is in flight, so at most two bodies are held.
    """
    publishing: asyncio.Task[None] | None = None
    try:
        while not queue.empty():
            item = queue.get_nowait()
            try:
                fetched = await _fetch_part(run, item)
            except DownloadError as error:
                run.failed(item.part_id, error)
                continue
            if publishing:
                await publishing
            publishing = asyncio.create_task(_publish(run, *fetched))
    finally:
        if publishing:
            await publishing


async def fetch_parts(parts: Sequence[PartDownload], parts_dir: Path, settings: DownloadSettings,
                      progress: DownloadProgress, refresh_url: RefreshUrl | None
                      ) -> DownloadResults:
    """Fetch `parts` (none of them whole yet) into the existing `parts_dir`, as
    `download.download_parts` describes."""
    queue: asyncio.Queue[PartDownload] = asyncio.Queue()
    for item in parts:
        queue.put_nowait(item)
    workers = max(1, min(settings.concurrency, len(parts)))
    async with open_session(settings, workers) as session:
        run = _Run(session, settings, parts_dir, progress, refresh_url)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(_worker(run, queue))
        except ExceptionGroup as failed:
            # Not a part's failure (refresh_url's own error, or a bug): raise it as itself.
            raise failed.exceptions[0] from None
    # Only on the way out of a finished call: after a cancellation or a crash, a rename that
    # a power cut undoes costs a part fetched again, nothing worse.
    if run.renamed:
        try:
            await asyncio.to_thread(sync_dir, parts_dir)
        except OSError as exc:  # the parts are there now; only their durability is in doubt
            log.warning("cannot fsync %s: %s", parts_dir, exc.strerror or exc)
    return DownloadResults(files=run.files, failures=run.failures)


async def _fetch_document_once(session: aiohttp.ClientSession, target: Target,
                               max_bytes: int) -> bytes:
    refuse_expired(target)
    with translated(target):
        async with session.get(target.url) as resp:
            await check_status(resp, target)
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    raise NotMediaError(target.part_id, f"{target.label}: larger than "
                                        f"{max_bytes} bytes; not a document to load")
    return bytes(body)


async def fetch_document(url: str, max_bytes: int, settings: DownloadSettings) -> bytes:
    """GET a document, as `download.fetch_document` describes."""
    shown = redact_url(url)
    target = Target(label=f"document {shown}", part_id=shown, url=url)
    async with open_session(settings, 1) as session:
        return await with_retries(settings, target,
                                   functools.partial(_fetch_document_once, session, target,
                                                     max_bytes))
