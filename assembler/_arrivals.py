"""Parts probed as they land, while the others still download.

Private to `assembler.pipeline`. `PartArrivals` is the `DownloadProgress` a
run hands `download_parts`: each part that lands is queued for probing at
once, and probe jobs (each one ffmpeg over every part waiting, at most
`PROBE_GROUP`) run in the `FfmpegSlots` while the download goes on. A
track waits here only for its own parts (`settled`), so it may render while
other parts still download.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

from .download import NoProgress
from .errors import MediaError
from .media import PROBE_GROUP, probe_many

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from pathlib import Path

    from .download import DownloadProgress
    from .errors import AssemblerError, DownloadError
    from .ffmpeg_process import FfmpegSlots
    from .media import MediaInfo

__all__ = ["PartArrivals"]

log = logging.getLogger("assembler.pipeline")


class PartArrivals(NoProgress):
    """Every part's fate as it lands: its file, its probe, or why it is lost.

    Download events are passed on to `events`. A part is settled once it is
    probed or lost; one ffmpeg cannot open is moved aside (`<file>.unreadable`,
    keeping the evidence and letting a rerun fetch it again) and counted as
    lost. Probe jobs start as parts land, at most one per free ffmpeg slot,
    each taking every part waiting: parts landing faster than they are probed
    are probed together. The parts of `surveyed` are also surveyed for stream
    copy (`MediaInfo.survey`).
    """

    def __init__(self, ffmpeg: FfmpegSlots, events: DownloadProgress | None = None, *,
                 surveyed: Collection[str] = ()) -> None:
        self.files: dict[str, Path] = {}
        self._surveyed = surveyed  # part ids whose probe also surveys them for stream copy
        self.probes: dict[str, MediaInfo] = {}
        self.lost: dict[str, AssemblerError] = {}
        self._ffmpeg = ffmpeg
        self._events = events or NoProgress()
        self._waiting: list[tuple[str, Path]] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self._settled: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._failure: BaseException | None = None  # a job's own failure, for `finish`
        self._abandoned = False

    def part_started(self, part_id: str, total_bytes: int | None, resumed_from: int) -> None:
        self._events.part_started(part_id, total_bytes, resumed_from)

    def part_advanced(self, part_id: str, nbytes: int) -> None:
        self._events.part_advanced(part_id, nbytes)

    def part_finished(self, part_id: str, path: Path, skipped: bool) -> None:
        self._events.part_finished(part_id, path, skipped)
        self.files[part_id] = path
        self._waiting.append((part_id, path))
        self._start_jobs()

    def part_failed(self, part_id: str, error: DownloadError) -> None:
        self._events.part_failed(part_id, error)
        self.lost[part_id] = error
        self._settled[part_id].set()

    async def settled(self, part_ids: Iterable[str]) -> None:
        """Return once every part of `part_ids` is probed or lost, or the whole lot abandoned."""
        for part_id in part_ids:
            if self._abandoned:
                return
            await self._settled[part_id].wait()

    def abandon(self) -> None:
        """The download failed as a whole: stop probing and let no one wait for a part."""
        self._abandoned = True
        for job in self._jobs:
            job.cancel()
        for event in self._settled.values():
            event.set()

    async def finish(self) -> None:
        """Wait for every probe job; raises what a job raised (no ffmpeg, cancellation)."""
        while self._jobs:
            await asyncio.wait(self._jobs)
        if self._failure is not None:
            raise self._failure

    def _start_jobs(self) -> None:
        while self._waiting and len(self._jobs) < self._ffmpeg.limit:
            batch, self._waiting = self._waiting[:PROBE_GROUP], self._waiting[PROBE_GROUP:]
            job = asyncio.create_task(self._probe(dict(batch)))
            self._jobs.add(job)
            job.add_done_callback(self._job_done)

    def _job_done(self, job: asyncio.Task[None]) -> None:
        self._jobs.discard(job)
        if job.cancelled():
            self._failure = self._failure or asyncio.CancelledError()
        elif job.exception() is not None:
            self._failure = self._failure or job.exception()
        else:
            self._start_jobs()

    async def _probe(self, batch: dict[str, Path]) -> None:
        found = await self._ffmpeg.call(
            probe_many, list(batch.values()),
            survey=[path for part_id, path in batch.items() if part_id in self._surveyed])
        for part_id, path in batch.items():
            self._settle(part_id, path, found[path])

    def _settle(self, part_id: str, path: Path, result: MediaInfo | MediaError) -> None:
        if isinstance(result, MediaError):
            log.error("part %s: %s", part_id, result, extra={"fields": {"part": part_id}})
            self.lost[part_id] = result
            path.replace(path.with_name(path.name + ".unreadable"))
        else:
            self.probes[part_id] = result
        self._settled[part_id].set()
