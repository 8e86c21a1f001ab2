"""Download stage: fetch parts into `parts/`, resumable, retried, and never leaking a signature.

A part whose final file is already in `parts/` is never requested again; the
others go to one aiohttp session feeding `concurrency` workers that pull parts
from a queue (`_fetch`, loaded only when there is something to fetch). Each
body is held in memory and spilled into `<filename>.part` in batches, at least
every `SPILL_AFTER` seconds while it flows (`_partfile`); a retry, or a later
run after a crash, resumes it with `Range` + `If-Range`. A finished part is
fdatasynced and renamed into place while its worker fetches the next one; the
directory is fsynced once per call. What a response means, and when to retry,
is decided at the HTTP edge (`_http`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ._partfile import PartFile
from .errors import DownloadError, InputError, StorageError, storage_error

__all__ = [
    "DownloadProgress",
    "DownloadResults",
    "DownloadSettings",
    "NoProgress",
    "PartDownload",
    "RefreshUrl",
    "download_parts",
    "fetch_document",
]

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class PartDownload:
    """One part to fetch: its id, its signed URL (kept out of repr) and its final file name."""

    part_id: str
    url: str = field(repr=False)
    filename: str


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


async def download_parts(
    parts: Sequence[PartDownload],
    parts_dir: Path,
    settings: DownloadSettings = DownloadSettings(),
    *,
    progress: DownloadProgress | None = None,
    refresh_url: RefreshUrl | None = None,
) -> DownloadResults:
    """Fetch every part into `parts_dir`, skipping complete ones and resuming partial ones.

    Complete parts are reported first (`part_finished` with `skipped`), before
    any request. A part that fails for good lands in `failures`; the others go
    on. Raises StorageError only when `parts_dir` cannot be made. On
    cancellation only `.part` files (and sidecars) are left, never a truncated
    final file.
    """
    try:
        parts_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError("", f"cannot create {parts_dir}: {exc.strerror or exc}") from exc
    progress = progress or NoProgress()
    files: dict[str, Path] = {}
    failures: dict[str, DownloadError] = {}
    to_fetch = []
    for item in parts:
        try:
            part = PartFile.load(parts_dir, item.filename)
            if not part.final.exists():
                to_fetch.append(item)
                continue
            part.sidecar.unlink(missing_ok=True)  # left if a run died right after the rename
        except OSError as exc:
            failures[item.part_id] = storage_error(item.part_id, f"part {item.part_id}", exc)
            log.error("%s", failures[item.part_id], extra={"fields": {"part": item.part_id}})
            progress.part_failed(item.part_id, failures[item.part_id])
            continue
        files[item.part_id] = part.final
        progress.part_finished(item.part_id, part.final, True)
    if not to_fetch:
        return DownloadResults(files=files, failures=failures)
    from ._fetch import fetch_parts

    fetched = await fetch_parts(to_fetch, parts_dir, settings, progress, refresh_url)
    return DownloadResults(files={**files, **fetched.files},
                           failures={**failures, **fetched.failures})


async def fetch_document(url: str, *, max_bytes: int = 64 * 1024 * 1024,
                         settings: DownloadSettings = DownloadSettings()) -> bytes:
    """GET a document (a JSON manifest) with the parts' retry policy, at most `max_bytes`.

    Raises a DownloadError subclass (NotMediaError when over the cap); its
    messages show the URL without query.
    """
    from ._fetch import fetch_document as fetch

    return await fetch(url, max_bytes, settings)
