"""What the CLI shows while it works: a rich progress display, or JSON log lines.

Private to `assembler.cli`, and imported only once a command runs: `--help`
and argument errors do not pay for rich.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from pathlib import Path

    from .batch import Row
    from .errors import AssemblerError, DownloadError
    from .plan import TrackPlan

__all__ = ["BatchConsoleEvents", "Console", "ConsoleEvents", "progress_display"]

log = logging.getLogger("assembler")


class ConsoleEvents:
    """Run events shown as a rich progress display, or as JSON log lines."""

    def __init__(self, progress: Progress | None, *, json_events: bool) -> None:
        self.progress = progress
        self.json_events = json_events  # one JSON line per part and track, for machines
        self.tasks: dict[str, TaskID] = {}
        self.overall: TaskID | None = None  # every part's bytes, with parts done and failed
        self.planned = self.done = self.failed = 0
        self.total_bytes = 0

    def _describe_overall(self) -> str:
        failures = f", {self.failed} failed" if self.failed else ""
        return f"parts {self.done}/{self.planned}{failures}"

    def parts_planned(self, count: int) -> None:
        self.planned = count
        if self.progress:
            self.overall = self.progress.add_task(self._describe_overall(), total=None,
                                                  bytes=True)

    def _part_over(self, part_id: str, failed: bool) -> None:
        self.done += not failed
        self.failed += failed
        if not self.progress:
            return
        if part_id in self.tasks:
            self.progress.remove_task(self.tasks.pop(part_id))
        if self.overall is not None:
            self.progress.update(self.overall, description=self._describe_overall())

    def _event(self, message: str, **fields: Any) -> None:
        if not self.json_events:
            return
        log.info("%s %s", message, " ".join(f"{k}={v}" for k, v in fields.items()),
                 extra={"fields": {"event": message, **fields}})

    def part_started(self, part_id: str, total_bytes: int | None, resumed_from: int) -> None:
        if not self.progress:
            return
        self.tasks[part_id] = self.progress.add_task(
            f"  {part_id[:24]}", total=total_bytes, completed=resumed_from, bytes=True)
        if self.overall is not None and total_bytes:
            self.total_bytes += total_bytes - resumed_from
            self.progress.update(self.overall, total=self.total_bytes)

    def part_advanced(self, part_id: str, nbytes: int) -> None:
        if self.progress and part_id in self.tasks:
            self.progress.advance(self.tasks[part_id], nbytes)
            if self.overall is not None:
                self.progress.advance(self.overall, nbytes)

    def part_finished(self, part_id: str, path: Path, skipped: bool) -> None:
        self._part_over(part_id, failed=False)
        self._event("downloaded part" if not skipped else "kept part",
                    part=part_id, file=path.name)

    def part_failed(self, part_id: str, error: DownloadError) -> None:
        self._part_over(part_id, failed=True)

    def track_started(self, track: TrackPlan) -> None:
        if self.progress:
            self.tasks[track.path] = self.progress.add_task(f"render {track.path}", total=None)

    def track_finished(self, track: TrackPlan, error: AssemblerError | None) -> None:
        if self.progress and track.path in self.tasks:
            self.progress.remove_task(self.tasks.pop(track.path))
        if error is None:
            self._event("wrote track", track=track.path)


class BatchConsoleEvents:
    """Batch progress: recordings done, failed and skipped, throughput and ETA.

    Without a live display (not a terminal, `--json-logs`), each finished
    recording is one log line; `--quiet` keeps only the JSON lines.
    """

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.progress = None if args.quiet or args.json_logs or not console.is_terminal else (
            Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                     TextColumn("{task.fields[tally]}"), TimeRemainingColumn(),
                     console=console, transient=True))
        self.log_each = args.json_logs or not (args.quiet or self.progress)
        self.task: TaskID | None = None
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()

    def tally(self) -> str:
        done = self.counts["ok"] + self.counts["failed"] + self.counts["invalid"]
        # Skipped recordings take no time: counting them would overstate the pace.
        per_minute = 60 * done / max(time.monotonic() - self.started, 1e-3)
        return (f"{self.counts['ok']} ok, {self.counts['skipped']} skipped, "
                f"{self.counts['failed']} failed, {self.counts['invalid']} invalid "
                f"({per_minute:.1f} recordings/min)")

    def batch_started(self, total: int) -> None:
        if self.progress:
            self.task = self.progress.add_task("recordings", total=total, tally="")

    def recording_finished(self, row: Row) -> None:
        self.counts[row["status"]] += 1
        if self.progress and self.task is not None:
            self.progress.update(self.task, advance=1, tally=self.tally())
        bad = row["status"] in ("failed", "invalid")
        if self.log_each or (self.progress and bad):
            name = row["id"] or f"line {row['line']}"
            log.log(logging.WARNING if bad else logging.INFO, "%s %s%s", name, row["status"],
                    f": {row['error']}" if "error" in row else "",
                    extra={"fields": {"event": "recording finished", **row,
                                      "done": sum(self.counts.values())}})


class _ForBytes(ProgressColumn):
    """Shows `column` on rows that count bytes (downloads); blank on render rows."""

    def __init__(self, column: ProgressColumn) -> None:
        super().__init__()
        self.column = column

    def render(self, task: Task) -> RenderableType:
        return self.column.render(task) if task.fields.get("bytes") else Text("")


def progress_display(args: argparse.Namespace, console: Console) -> Progress | None:
    if args.quiet or args.json_logs or not console.is_terminal:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    _ForBytes(DownloadColumn()), _ForBytes(TransferSpeedColumn()),
                    _ForBytes(TimeRemainingColumn()), console=console, transient=True)
