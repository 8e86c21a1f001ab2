"""The HTTP edge of the download stage: one session, the retry rule, what statuses mean.

Private to the download stage (`_fetch`, for `assembler.download`). Retries use
tenacity's full-jitter exponential backoff, or the server's Retry-After, each
wait capped at `max_backoff`; `is_retryable` alone decides what is retried.
`translated` alone turns aiohttp and OS errors into `DownloadError`s, whose
messages show URLs only through `redact_url`.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_random_exponential

from .errors import (
    DownloadError,
    HTTPStatusError,
    LinkExpiredError,
    NotMediaError,
    TransferError,
    redact_url,
    storage_error,
)

if TYPE_CHECKING:
    from .download import DownloadSettings

__all__ = [
    "Target",
    "check_status",
    "content_range",
    "is_retryable",
    "open_session",
    "parse_retry_after",
    "refuse_expired",
    "refuse_page",
    "translated",
    "with_retries",
]

# Messages and retries are logged under the public stage's name.
log = logging.getLogger("assembler.download")

T = TypeVar("T")

_CLOCK_SKEW = timedelta(minutes=15)
_ERROR_BODY_LIMIT = 64 * 1024
# Statuses worth another try besides every 5xx.
_RETRY_STATUSES = frozenset({408, 429})
# Bodies a 200 answer may carry when it is an error page rather than media.
# No media container begins with `{` or `[`: such a body is a JSON document (an API's
# error, or a manifest served where a part was due).
_PAGE_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<error>", b"{", b"[")
_PAGE_TYPES = ("text/html", "application/xml", "text/xml", "application/json")
# HTTP content codings (IANA registry) that change a body's bytes.
_CONTENT_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd", "compress",
                              "x-compress", "aes128gcm", "exi", "pack200-gzip"})
# S3 (plain and STS-signed), GCS and R2 ways of saying a signed link has expired.
_EXPIRED_MARKERS = ("Request has expired", "<Code>ExpiredToken</Code>",
                    "<Code>ExpiredRequest</Code>")


@dataclass(slots=True)
class Target:
    """A URL being fetched, and what its retries learn along the way."""

    label: str  # starts every message: "part X" or "document <redacted url>"
    part_id: str
    url: str = field(repr=False)
    retry_after: float | None = None  # the server's last Retry-After, used by the next wait


# --- errors and retries -------------------------------------------------------------------


@contextlib.contextmanager
def translated(target: Target) -> Iterator[None]:
    """Turn aiohttp, timeout and OS errors into DownloadErrors.

    aiohttp puts the full URL, signature included, into its messages, so only
    the class name survives; the original stays reachable as `__cause__`.
    """
    where = redact_url(target.url)
    if where in target.label:  # a document's label names its URL already: say it once
        where = "the server"
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
        raise storage_error(target.part_id, target.label, exc) from exc


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


def _wait(settings: DownloadSettings, target: Target) -> Callable[[RetryCallState], float]:
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


async def with_retries(settings: DownloadSettings, target: Target,
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


def refuse_expired(target: Target) -> None:
    expiry = _link_expiry(target.url)
    # Only past a clock-skew allowance (S3 allows 15 min): a fast local clock must not
    # refuse a link the server would still honour; the server has the last word.
    if expiry is not None and expiry + _CLOCK_SKEW <= datetime.now(UTC):
        raise LinkExpiredError(target.part_id, 0, f"the link for {target.label} has expired "
                               f"(at {expiry:%Y-%m-%d %H:%M:%S} UTC); fetch a fresh manifest")


def parse_retry_after(value: str | None) -> float | None:
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


async def check_status(resp: aiohttp.ClientResponse, target: Target) -> None:
    """Raise the error a status >= 400 means (416 is left to the resume logic)."""
    status = resp.status
    if status < 400 or status == 416:
        return
    log.debug("%s: %s answered %d", target.label, redact_url(target.url), status)
    target.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    body = await _read_head(resp, _ERROR_BODY_LIMIT) if status in (400, 403) else b""
    text = body.decode("utf-8", "replace")
    if status == 410 or any(marker in text for marker in _EXPIRED_MARKERS):
        raise LinkExpiredError(target.part_id, status, f"the link for {target.label} has "
                               f"expired ({status}); fetch a fresh manifest")
    raise HTTPStatusError(target.part_id, status, f"{target.label}: the server answered "
                          f"{status} {resp.reason or ''}".rstrip())


def content_range(value: str | None) -> tuple[int | None, int | None]:
    """`bytes 10-99/100` -> (10, 100); `bytes */100` -> (None, 100); unknown parts are None."""
    spec = (value or "").partition(" ")[2]
    span, _, total = spec.partition("/")
    first = span.partition("-")[0]
    return (int(first) if first.isdigit() else None,
            int(total) if total.isdigit() else None)


def refuse_page(target: Target, content_type: str, head: bytes) -> None:
    """Raise NotMediaError when a body is an HTML, XML or JSON document, or empty."""
    if not head:
        raise NotMediaError(target.part_id, f"{target.label}: the server sent an empty body "
                            "instead of media")
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:16].lower()
    if content_type.lower() in _PAGE_TYPES or start.startswith(_PAGE_STARTS):
        raise NotMediaError(target.part_id, f"{target.label}: the server sent an HTML, XML "
                            "or JSON document instead of media")


def refuse_encoded(target: Target, encoding: str) -> None:
    """Raise NotMediaError when the body comes content-encoded (`Content-Encoding: gzip`).

    Asked for as it is (`Accept-Encoding: identity`, see `open_session`), a server may
    still send an object stored gzip-encoded (S3 and GCS do, when it was uploaded so):
    saved, it would be that encoding's bytes, not the media, found out only by the probe.
    Values naming no coding, which object metadata sometimes holds (`binary`, `none`),
    are let through: the body is then the object's bytes.
    """
    codings = {coding.strip().lower() for coding in encoding.split(",")}
    if codings & _CONTENT_CODINGS:
        raise NotMediaError(target.part_id, f"{target.label}: the server sent the body "
                            f"encoded (Content-Encoding: {encoding}), not the media itself "
                            "as asked (identity); assembler does not undo it")


@contextlib.asynccontextmanager
async def open_session(settings: DownloadSettings,
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

