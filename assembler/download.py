"""Download stage: fetch parts into `parts/`, resumable, retried, and never leaking a signature.

One aiohttp session feeds `concurrency` workers that pull parts from a queue.
A body is held in memory and is streamed into `<filename>.part` through
aiofiles in batches (`_Body`);
once any of it is there, its sidecar `<filename>.part.json` keeps the
validator (ETag, else Last-Modified) and length of the first response, so a
retry, or a later run after a crash, resumes with `Range` + `If-Range`. A
finished part is fdatasynced and renamed into place while its worker fetches
the next one; the directory is fsynced once per call. A part whose final file
exists is never requested again.

Retries use tenacity's full-jitter exponential backoff, or the server's
Retry-After, each wait capped at `max_backoff`; `is_retryable` alone decides
what is retried. `_translated` alone turns aiohttp and OS errors into
`DownloadError`s, whose messages show URLs only through `redact_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

import aiofiles
import aiofiles.os
import aiohttp
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_random_exponential

from .errors import (
    DownloadError,
    HTTPStatusError,
    InputError,
    LinkExpiredError,
    NotMediaError,
    StorageError,
    TransferError,
    redact_url,
)
from .naming import PART_SUFFIX

__all__ = [
    "DownloadProgress",
    "DownloadResults",
    "DownloadSettings",
    "NoProgress",
    "PartDownload",
    "RefreshUrl",
    "download_parts",
    "fetch_document",
    "is_retryable",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SIDECAR_SUFFIX = ".json"
# A body is held in memory up to this many bytes, spilled to `.part` past it: a part no
# larger costs one write, one fdatasync and one rename, and no sidecar. Memory stays
# under workers x 2 x (this + a chunk) plus the read buffers: one body held while the
# worker's previous one is published.
_SPILL_BYTES = 2 << 20
# Seconds of silence from the server after which held bytes are spilled anyway, so that a
# stalled transfer (and a kill -9 during the stall) keeps what it received. Far above the
# gaps between reads of a flowing body.
_IDLE_SPILL = 0.1
_CLOCK_SKEW = timedelta(minutes=15)
_ERROR_BODY_LIMIT = 64 * 1024
# Statuses worth another try besides every 5xx.
_RETRY_STATUSES = frozenset({408, 429})
# Bodies a 200 answer may carry when it is an error page rather than media.
_PAGE_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<error>")
_PAGE_TYPES = ("text/html", "application/xml", "text/xml")
# S3 (plain and STS-signed), GCS and R2 ways of saying a signed link has expired.
_EXPIRED_MARKERS = ("Request has expired", "<Code>ExpiredToken</Code>",
                    "<Code>ExpiredRequest</Code>")


@dataclass(frozen=True, slots=True, kw_only=True)
class PartDownload:
    """One part to fetch: its id, its signed URL (kept out of repr) and its final file name."""

    part_id: str
    url: str = field(repr=False)
    filename: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadSettings:
    """How downloads run.

    `read_timeout` bounds the silence between two reads, not a whole transfer.
    `max_backoff` caps every single wait, Retry-After included: a server asking
    for longer is asked again after `max_backoff`, which spends an attempt.
    `backoff_base` is the first backoff window; each retry doubles it.
    """

    concurrency: int = 8
    retries: int = 5
    connect_timeout: float = 30.0
    read_timeout: float = 60.0
    max_backoff: float = 30.0
    backoff_base: float = 1.0
    chunk_size: int = 1 << 20

    def __post_init__(self) -> None:
        rules = (
            ("concurrency", self.concurrency, self.concurrency >= 1, "at least 1"),
            ("retries", self.retries, self.retries >= 0, "0 or more"),
            ("connect_timeout", self.connect_timeout, self.connect_timeout > 0, "above 0"),
            ("read_timeout", self.read_timeout, self.read_timeout > 0, "above 0"),
            ("max_backoff", self.max_backoff, self.max_backoff >= 0, "0 or more"),
            ("backoff_base", self.backoff_base, self.backoff_base >= 0, "0 or more"),
            ("chunk_size", self.chunk_size, self.chunk_size >= 1, "at least 1"),
        )
        problems = [f"{name} must be {want}, not {value!r}" for name, value, ok, want in rules
                    if not ok]
        if problems:
            raise InputError("download settings: " + "; ".join(problems))


class DownloadProgress(Protocol):
    """Progress callbacks; all synchronous and cheap.

    `part_started` comes each time a body starts arriving, again after a retry,
    with the offset it resumes from: a display resets the part's count to it.
    """

    def part_started(self, part_id: str, total_bytes: int | None, resumed_from: int) -> None: ...
    def part_advanced(self, part_id: str, nbytes: int) -> None: ...
    def part_finished(self, part_id: str, path: Path, skipped: bool) -> None: ...
    def part_failed(self, part_id: str, error: DownloadError) -> None: ...


class NoProgress:
    """A DownloadProgress that ignores every event; subclass it to hear only some."""

    def part_started(self, part_id: str, total_bytes: int | None, resumed_from: int) -> None:
        pass

    def part_advanced(self, part_id: str, nbytes: int) -> None:
        pass

    def part_finished(self, part_id: str, path: Path, skipped: bool) -> None:
        pass

    def part_failed(self, part_id: str, error: DownloadError) -> None:
        pass


@dataclass(frozen=True, slots=True)
class DownloadResults:
    """Every part ends in exactly one of the two maps."""

    files: Mapping[str, Path]
    failures: Mapping[str, DownloadError]


RefreshUrl = Callable[[str], Awaitable[str | None]]


@dataclass(slots=True)
class _Target:
    """A URL being fetched, and what its retries learn along the way."""

    label: str  # starts every message: "part X" or "document <redacted url>"
    part_id: str
    url: str = field(repr=False)
    retry_after: float | None = None  # the server's last Retry-After, used by the next wait


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

    def finished(self, part_id: str, path: Path, *, skipped: bool) -> None:
        self.files[part_id] = path
        self.progress.part_finished(part_id, path, skipped)

    def failed(self, part_id: str, error: DownloadError) -> None:
        log.info("%s", error)
        self.failures[part_id] = error
        self.progress.part_failed(part_id, error)


# --- errors and retries -------------------------------------------------------------------


@contextlib.contextmanager
def _translated(target: _Target) -> Iterator[None]:
    """Turn aiohttp, timeout and OS errors into DownloadErrors.

    aiohttp puts the full URL, signature included, into its messages, so only
    the class name survives; the original stays reachable as `__cause__`.
    """
    where = redact_url(target.url)
    try:
        yield
    except aiohttp.ClientPayloadError as exc:
        raise TransferError(target.part_id,
                            f"{target.label}: the body from {where} was cut short") from exc
    except TimeoutError as exc:  # aiohttp's ServerTimeoutError is one too
        raise TransferError(target.part_id, f"{target.label}: {where} timed out "
                            f"({type(exc).__name__})") from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise DownloadError(target.part_id,
                            f"{target.label}: {where} is not a usable http(s) URL") from exc
    except aiohttp.ClientResponseError as exc:  # too many redirects, malformed answer
        raise HTTPStatusError(target.part_id, exc.status, f"{target.label}: bad answer from "
                              f"{where} ({type(exc).__name__} {exc.status})") from exc
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise TransferError(target.part_id, f"{target.label}: connection to {where} failed "
                            f"({type(exc).__name__})") from exc
    except OSError as exc:  # what is left is the disk: aiohttp's OSErrors are ClientErrors
        raise StorageError(target.part_id, f"{target.label}: cannot write "
                           f"{exc.filename or 'to disk'}: {exc.strerror or exc}") from exc


def is_retryable(error: BaseException | None, attempt: int) -> bool:
    """The one rule for retries: resets, timeouts, short bodies, 408, 429 and 5xx.

    An expired link, a 4xx, an error page and a disk error cannot get better;
    a bare 403 gets one more try (`attempt` 1) to tell an expired link apart.
    """
    if isinstance(error, LinkExpiredError):
        return False
    if isinstance(error, HTTPStatusError):
        status = error.status
        return status in _RETRY_STATUSES or status >= 500 or (status == 403 and attempt == 1)
    return isinstance(error, TransferError)


def _wait(settings: DownloadSettings, target: _Target) -> Callable[[RetryCallState], float]:
    jitter = wait_random_exponential(multiplier=settings.backoff_base, max=settings.max_backoff)

    def wait(state: RetryCallState) -> float:
        hint, target.retry_after = target.retry_after, None
        return jitter(state) if hint is None else min(hint, settings.max_backoff)

    return wait


def _log_retry(settings: DownloadSettings) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.info("%s; retrying in %.1f s (attempt %d/%d)", error, delay,
                 state.attempt_number + 1, settings.retries + 1)

    return before_sleep


async def _with_retries(settings: DownloadSettings, target: _Target,
                        attempt: Callable[[], Awaitable[T]]) -> T:
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.retries + 1),
        wait=_wait(settings, target),
        retry=lambda state: is_retryable(
            state.outcome.exception() if state.outcome else None, state.attempt_number),
        before_sleep=_log_retry(settings),
        reraise=True,
    )
    return await retrying(attempt)


# --- what a response means ----------------------------------------------------------------


def _link_expiry(url: str) -> datetime | None:
    """When a signed URL says it expires (S3, GCS or `Expires` epoch), if it says."""
    query = {key.lower(): value for key, value in parse_qsl(urlsplit(url).query)}
    try:
        for date_key, ttl_key in (("x-amz-date", "x-amz-expires"),
                                  ("x-goog-date", "x-goog-expires")):
            if date_key in query and ttl_key in query:
                signed = datetime.strptime(query[date_key], "%Y%m%dT%H%M%SZ")
                return signed.replace(tzinfo=UTC) + timedelta(seconds=int(query[ttl_key]))
        if "expires" in query:
            return datetime.fromtimestamp(int(query["expires"]), UTC)
    except (ValueError, OverflowError, OSError):
        pass  # not a signature we can read: let the server decide
    return None


def _refuse_expired(target: _Target) -> None:
    expiry = _link_expiry(target.url)
    # Only past a clock-skew allowance (S3 allows 15 min): a fast local clock must not
    # refuse a link the server would still honour; the server has the last word.
    if expiry is not None and expiry + _CLOCK_SKEW <= datetime.now(UTC):
        raise LinkExpiredError(target.part_id, 0, f"the link for {target.label} has expired "
                               f"(at {expiry:%Y-%m-%d %H:%M:%S} UTC); fetch a fresh manifest")


def _retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP date), if readable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def _read_head(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    head = bytearray()
    while len(head) < limit and (chunk := await resp.content.read(limit - len(head))):
        head += chunk
    return bytes(head)


async def _check_status(resp: aiohttp.ClientResponse, target: _Target) -> None:
    """Raise the error a status >= 400 means (416 is left to the resume logic)."""
    status = resp.status
    if status < 400 or status == 416:
        return
    log.debug("%s: %s answered %d", target.label, redact_url(target.url), status)
    target.retry_after = _retry_after(resp.headers.get("Retry-After"))
    body = await _read_head(resp, _ERROR_BODY_LIMIT) if status in (400, 403) else b""
    text = body.decode("utf-8", "replace")
    if status == 410 or any(marker in text for marker in _EXPIRED_MARKERS):
        raise LinkExpiredError(target.part_id, status, f"the link for {target.label} has "
                               f"expired ({status}); fetch a fresh manifest")
    raise HTTPStatusError(target.part_id, status, f"{target.label}: the server answered "
                          f"{status} {resp.reason or ''}".rstrip())


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """`bytes 10-99/100` -> (10, 100); `bytes */100` -> (None, 100); unknown parts are None."""
    spec = (value or "").partition(" ")[2]
    span, _, total = spec.partition("/")
    first = span.partition("-")[0]
    return (int(first) if first.isdigit() else None,
            int(total) if total.isdigit() else None)


def _refuse_page(target: _Target, content_type: str, head: bytes) -> None:
    """Raise NotMediaError when a body is an HTML or XML page, or empty."""
    if not head:
        raise NotMediaError(target.part_id, f"{target.label}: the server sent an empty body "
                            "instead of media")
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:16].lower()
    if content_type.lower() in _PAGE_TYPES or start.startswith(_PAGE_STARTS):
        raise NotMediaError(target.part_id, f"{target.label}: the server sent an HTML/XML "
                            "page instead of media")


# --- one part on disk ---------------------------------------------------------------------


@dataclass(slots=True)
class _PartFile:
    """A part's final path, its `.part` file and the sidecar that makes resuming safe."""

    final: Path
    partial: Path
    sidecar: Path
    validator: str | None = None
    total: int | None = None
    # The sidecar on disk describes `.part`'s bytes. False from the moment a response
    # restarts the part (its validator is in memory, the old bytes still on disk) until
    # `start_over` has emptied `.part` and written the new sidecar.
    described: bool = False

    @classmethod
    def load(cls, parts_dir: Path, filename: str) -> _PartFile:
        partial = parts_dir / (filename + PART_SUFFIX)
        part = cls(parts_dir / filename, partial, partial.with_name(partial.name + _SIDECAR_SUFFIX))
        with contextlib.suppress(OSError, ValueError, TypeError, LookupError):
            saved = json.loads(part.sidecar.read_text())
            validator, total = saved["validator"], saved["total"]
            if isinstance(validator, str | None) and isinstance(total, int | None):
                part.validator, part.total, part.described = validator, total, True
        return part

    def resume_offset(self) -> int:
        """Bytes already on disk that a Range request may continue; 0 when unsafe."""
        if not self.described or (self.validator is None and self.total is None):
            return 0  # nothing to check the server's copy against: start over
        try:
            return self.partial.stat().st_size
        except FileNotFoundError:
            return 0

    def request_headers(self, offset: int) -> dict[str, str]:
        if not offset:
            return {}
        headers = {"Range": f"bytes={offset}-"}
        if self.validator:
            headers["If-Range"] = self.validator
        return headers

    def discard(self) -> None:
        self.validator = self.total = None
        self.described = False
        self.partial.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def start_over(self) -> None:
        """Empty `.part`, then write the sidecar for the bytes about to follow (blocking).

        No fsync of the sidecar: losing it, or finding it torn (a strict prefix of
        a JSON object never parses), means restarting from zero, which is safe; an
        older sidecar that survives instead still carries the validator of the
        bytes it was written with, and If-Range makes the server send everything
        when its copy has changed since. What must never happen is this sidecar
        becoming durable while `.part` still holds another version's bytes, so when
        there were bytes, the truncation is made durable first (a rare path: a
        restart after a version change or a lost sidecar).
        """
        try:
            had_bytes = self.partial.stat().st_size > 0
        except FileNotFoundError:
            had_bytes = False
        with self.partial.open("wb") as out:
            if had_bytes:
                os.fdatasync(out.fileno())
        self.sidecar.write_text(json.dumps({"validator": self.validator, "total": self.total}))
        self.described = True

    def append_now(self, chunks: Sequence[bytes]) -> None:
        """Append `chunks` to `.part`, blocking: for cancellation, when no await can finish."""
        with self.partial.open("ab") as out:
            for chunk in chunks:
                out.write(chunk)

    async def write(self, chunks: Sequence[bytes], *, publish: bool,
                    truncate: bool = False) -> None:
        """Append `chunks` to `.part` through aiofiles; with `publish`, make it the final file.

        The one fsync a part cannot do without: its bytes are made durable before
        the rename, or a power cut could leave a renamed but empty or short final
        file, which every later run would take as complete. fdatasync is enough:
        it writes the size with the data, and the times are not worth a journal
        write. The rename's own durability is left to the caller's one fsync of
        the directory per batch (see `_sync_dir`).
        """
        async with aiofiles.open(self.partial, "wb" if truncate else "ab") as out:
            await out.write(b"".join(chunks))  # one write per batch: one thread hop
            if publish:
                await out.flush()
                await _fdatasync(out.fileno())
        if publish:
            await aiofiles.os.replace(self.partial, self.final)
            await _remove_if_there(self.sidecar)


_fdatasync = aiofiles.os.wrap(os.fdatasync)


async def _remove_if_there(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        await aiofiles.os.remove(path)


def _sync_dir(path: Path) -> None:
    """fsync a directory: makes the renames into it durable (blocking).

    Once per `download_parts` call rather than once per part: a rename that a
    power cut undoes leaves the fsynced `.part` behind, so the part is fetched
    or finished again, never taken half-written; what the batch fsync adds is
    that every part reported done stays done once the call has returned.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class _Body:
    """A response body on its way into `.part`: held in memory, spilled to disk in batches.

    A small body is written once, then fsynced and renamed (`publish`), and
    needs no sidecar at all, since nothing of it is on disk
    before it is complete. Bytes reach `.part` (after its sidecar) only once
    `_SPILL_BYTES` are held, when the server falls silent for `_IDLE_SPILL`, or
    when the transfer fails: a kill -9 loses at most what is held, which a rerun
    fetches again, and a stalled or broken transfer keeps everything it got.
    """

    part: _PartFile
    fresh: bool  # `.part` is still to be emptied and described by a new sidecar
    chunks: list[bytes] = field(default_factory=list)
    held: int = 0

    def add(self, chunk: bytes) -> bool:
        """Hold `chunk`; True when more than `_SPILL_BYTES` are held, time to spill."""
        self.chunks.append(chunk)
        self.held += len(chunk)
        return self.held > _SPILL_BYTES

    def _take(self) -> tuple[list[bytes], bool]:
        chunks, fresh = self.chunks, self.fresh
        self.chunks, self.held, self.fresh = [], 0, False
        return chunks, fresh

    def _write(self, chunks: list[bytes], fresh: bool) -> None:
        if fresh:
            self.part.start_over()
        self.part.append_now(chunks)

    async def spill(self) -> None:
        chunks, fresh = self._take()
        if fresh:
            await asyncio.to_thread(self.part.start_over)
        await self.part.write(chunks, publish=False)

    def spill_now(self) -> None:
        """Keep what is held after a failure, blocking the loop briefly (at most `_SPILL_BYTES`).

        Blocking rather than a thread: it also runs on cancellation, when no
        await can be trusted to finish. Nothing is in flight in a thread then, as
        `spill` hands its chunks over before it awaits.
        """
        if self.chunks:
            chunks, fresh = self._take()
            with contextlib.suppress(OSError):  # the failure that brought us here says more
                self._write(chunks, fresh)

    async def publish(self) -> None:
        """Write what is held, fsync, rename into place."""
        chunks, fresh = self._take()
        if fresh:
            # Whatever an earlier run left is replaced, and no sidecar describes the new
            # bytes: a kill before the rename leaves a `.part` that is fetched again.
            await _remove_if_there(self.part.sidecar)
        await self.part.write(chunks, publish=True, truncate=fresh)


def _body_start(resp: aiohttp.ClientResponse, target: _Target, part: _PartFile,
                offset: int) -> int | None:
    """Where this response's body goes in `.part`; None when the part is already whole."""
    first, total = _content_range(resp.headers.get("Content-Range"))
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


async def _next_chunk(resp: aiohttp.ClientResponse, body: _Body, size: int) -> bytes:
    """The next piece of the body (b"" at its end); spills what is held if the server stalls."""
    if not body.chunks:
        return await resp.content.read(size)
    try:
        async with asyncio.timeout(_IDLE_SPILL) as idle:
            return await resp.content.read(size)  # cancelling a read loses no data
    except TimeoutError:
        if not idle.expired():
            raise  # aiohttp's own read timeout
    await body.spill()
    return await resp.content.read(size)


async def _receive(resp: aiohttp.ClientResponse, run: _Run, target: _Target,
                   part: _PartFile, start: int) -> _Body:
    """Read the body; returns it with whatever is still held, to be published."""
    body = _Body(part, fresh=not start)
    received = start
    content_type = resp.headers.get("Content-Type", "").partition(";")[0].strip()
    try:
        while chunk := await _next_chunk(resp, body, run.settings.chunk_size):
            if received == 0:
                _refuse_page(target, content_type, chunk)
            received += len(chunk)
            run.progress.part_advanced(target.part_id, len(chunk))
            if body.add(chunk):
                await body.spill()
    except BaseException:
        body.spill_now()
        raise
    if received == 0:
        _refuse_page(target, "", b"")
    if part.total is not None and received != part.total:
        body.spill_now()
        raise TransferError(target.part_id, f"{target.label}: the body ended at byte "
                            f"{received} of {part.total}")
    return body


async def _fetch_part_once(run: _Run, target: _Target, part: _PartFile) -> _Body:
    _refuse_expired(target)
    offset = part.resume_offset()
    log.debug("%s: GET %s from byte %d", target.label, redact_url(target.url), offset)
    try:
        with _translated(target):
            async with run.session.get(target.url, headers=part.request_headers(offset)) as resp:
                await _check_status(resp, target)
                start = _body_start(resp, target, part, offset)
                if start is None:
                    return _Body(part, fresh=False)  # `.part` is whole: publish it as it is
                run.progress.part_started(target.part_id, part.total, start)
                return await _receive(resp, run, target, part, start)
    except NotMediaError:
        part.discard()  # an error page must not be resumed into
        raise


async def _fetch_with_refresh(run: _Run, target: _Target, part: _PartFile) -> _Body:
    attempt = functools.partial(_fetch_part_once, run, target, part)
    try:
        return await _with_retries(run.settings, target, attempt)
    except LinkExpiredError:
        fresh = await run.refresh_url(target.part_id) if run.refresh_url else None
        if fresh is None:
            raise
        log.info("%s: link expired; continuing with a fresh one", target.label)
        target.url = fresh
        return await _with_retries(run.settings, target, attempt)


async def _fetch_part(run: _Run, item: PartDownload) -> tuple[_Target, _Body] | None:
    """Fetch one part's body, still to be published; None when its final file is there."""
    target = _Target(label=f"part {item.part_id}", part_id=item.part_id, url=item.url)
    with _translated(target):
        part = _PartFile.load(run.parts_dir, item.filename)
        if part.final.exists():
            part.sidecar.unlink(missing_ok=True)  # left if a run died right after the rename
            run.finished(item.part_id, part.final, skipped=True)
            return None
    return target, await _fetch_with_refresh(run, target, part)


async def _publish(run: _Run, target: _Target, body: _Body) -> None:
    run.renamed = True  # set before: a cancelled publish may still rename in its thread
    try:
        with _translated(target):
            await body.publish()
    except DownloadError as error:
        run.failed(target.part_id, error)
    else:
        log.debug("%s: complete as %s", target.label, body.part.final)
        run.finished(target.part_id, body.part.final, skipped=False)


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
            if fetched is None:
                continue
            if publishing:
                await publishing
            publishing = asyncio.create_task(_publish(run, *fetched))
    finally:
        if publishing:
            await publishing


@contextlib.asynccontextmanager
async def _session(settings: DownloadSettings,
                   connections: int) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout,
                                    sock_read=settings.read_timeout)
    # identity: Range over gzip is broken in aiohttp (aio-libs/aiohttp#3123), and media is
    # compressed already.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=timeout,
        headers={"Accept-Encoding": "identity"},
        auto_decompress=False,
        read_bufsize=settings.chunk_size,
    ) as session:
        yield session


async def download_parts(
    parts: Sequence[PartDownload],
    parts_dir: Path,
    settings: DownloadSettings = DownloadSettings(),
    *,
    progress: DownloadProgress | None = None,
    refresh_url: RefreshUrl | None = None,
) -> DownloadResults:
    """Fetch every part into `parts_dir`, skipping complete ones and resuming partial ones.

    A part that fails for good lands in `failures`; the others go on. Raises
    StorageError only when `parts_dir` cannot be made. On cancellation only
    `.part` files (and sidecars) are left, never a truncated final file.
    """
    try:
        parts_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError("", f"cannot create {parts_dir}: {exc.strerror or exc}") from exc
    queue: asyncio.Queue[PartDownload] = asyncio.Queue()
    for item in parts:
        queue.put_nowait(item)
    workers = max(1, min(settings.concurrency, len(parts)))
    async with _session(settings, workers) as session:
        run = _Run(session, settings, parts_dir, progress or NoProgress(), refresh_url)
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
            await asyncio.to_thread(_sync_dir, parts_dir)
        except OSError as exc:  # the parts are there now; only their durability is in doubt
            log.warning("cannot fsync %s: %s", parts_dir, exc.strerror or exc)
    return DownloadResults(files=run.files, failures=run.failures)


async def _fetch_document_once(session: aiohttp.ClientSession, target: _Target,
                               max_bytes: int) -> bytes:
    _refuse_expired(target)
    with _translated(target):
        async with session.get(target.url) as resp:
            await _check_status(resp, target)
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    raise NotMediaError(target.part_id, f"{target.label}: larger than "
                                        f"{max_bytes} bytes; not a document to load")
    return bytes(body)


async def fetch_document(url: str, *, max_bytes: int = 64 * 1024 * 1024,
                         settings: DownloadSettings = DownloadSettings()) -> bytes:
    """GET a document (a JSON manifest) with the parts' retry policy, at most `max_bytes`.

    Raises a DownloadError subclass (NotMediaError when over the cap); its
    messages show the URL without query.
    """
    shown = redact_url(url)
    target = _Target(label=f"document {shown}", part_id=shown, url=url)
    async with _session(settings, 1) as session:
        return await _with_retries(settings, target,
                                   functools.partial(_fetch_document_once, session, target,
                                                     max_bytes))
