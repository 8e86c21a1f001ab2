"""What the CLI shows while it works: log handlers, the run's and the batch's progress display.

Only `cli` uses this module. A live display needs a terminal; without one
(a pipe, a file, `--json-logs`) progress becomes log lines, each whole on
one line, so a command in them can be copied.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.filesize import decimal
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.table import Column
from rich.text import Text

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from .batch import Job, Row
    from .errors import AssemblerError, DownloadError
    from .plan import Plan, TrackPlan
    from .render import RenderedTrack

__all__ = ["BatchDisplay", "Console", "HashProgress", "RunDisplay", "configure_logging",
           "live_progress", "stderr_console"]

log = logging.getLogger("assembler")

LABEL_WIDTH = 26  # a row's name: "Ada Lovelace webcam 12/40" fits
NAME_WIDTH = 14  # a participant's name inside a row's name


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's `fields`."""

    def __init__(self, context: Callable[[], dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.context = context  # fields every line carries (a batch's recording id)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": round(record.created, 3),
                                 "level": record.levelname.lower(),
                                 "logger": record.name, "message": record.getMessage()}
        if self.context:
            entry.update(self.context())
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """`level: message`, never wrapped, prefixed `[<recording id>]` inside a batch."""

    def __init__(self, context: Callable[[], dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.context = context

    def format(self, record: logging.LogRecord) -> str:
        recording = (self.context() if self.context else {}).get("id")
        prefix = f"[{recording}] " if recording else ""
        return f"{record.levelname.lower()}: {prefix}{record.getMessage()}"


def stderr_console() -> Console:
    """The console the display and the log share: stderr, two columns short of a terminal.

    Full-width rows would let the terminal's own echo of Ctrl-C (`^C`) wrap onto a new
    line, and the display, erasing itself by counting lines up, would leave a row behind.
    """
    console = Console(stderr=True)
    if console.is_terminal and console.width > 40:
        console.width = console.width - 2
    return console


def configure_logging(*, json_logs: bool, verbose: bool, quiet: bool, console: Console,
                      context: Callable[[], dict[str, Any]] | None = None) -> None:
    """Send the `assembler` loggers to stderr: JSON, rich (a terminal) or plain lines."""
    handler: logging.Handler
    if json_logs:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(context))
    elif console.is_terminal:
        handler = _TurnTakingHandler(context, console=console, show_time=False,
                                     show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PlainFormatter(context))
    root = logging.getLogger("assembler")
    root.handlers[:] = [handler]
    root.propagate = False
    # --quiet keeps warnings and errors for a person; JSON lines are for machines: all kept.
    root.setLevel(logging.DEBUG if verbose else
                  logging.WARNING if quiet and not json_logs else logging.INFO)


def _event(message: str, **fields: Any) -> None:
    """An INFO line for machines (`--json-logs`); its `event` field names what happened."""
    log.info("%s %s", message, " ".join(f"{key}={value}" for key, value in fields.items()),
             extra={"fields": {"event": message, **fields}})


class _Detail(ProgressColumn):
    """The row's own words beside its bar: bytes, percent, speed, time left."""

    def render(self, task: Task) -> Text:
        detail = task.fields.get("detail", "")
        if task.fields.get("clock") and task.elapsed is not None:  # time spent, then the rest
            detail = f"{_duration(task.elapsed)} {detail}"
        return Text(detail, no_wrap=True, overflow="ellipsis")


# Rich keeps each thread's output apart until it is written: a log line from a render
# thread and a refresh of the display, written at once, each erase the same rows and the
# display leaves a stale copy of itself behind. Both take this lock to write in turn.
_SCREEN = threading.RLock()


class _TurnTakingHandler(RichHandler):
    """Log lines above the live display, written in turn with its refreshes; inside a
    batch, each prefixed `[<recording id>]` (from `context`)."""

    def __init__(self, context: Callable[[], dict[str, Any]] | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        self.context = context

    def emit(self, record: logging.LogRecord) -> None:
        recording = (self.context() if self.context else {}).get("id")
        if recording:
            record = logging.makeLogRecord({**record.__dict__, "args": (),
                                            "msg": f"[{recording}] {record.getMessage()}"})
        with _SCREEN:
            super().emit(record)


class _LiveProgress(Progress):
    """A rich `Progress` refreshed by its own thread, in turn with log lines (`_SCREEN`)."""

    REFRESH_SECONDS = 0.2

    def __init__(self, *columns: ProgressColumn, console: Console) -> None:
        super().__init__(*columns, console=console, transient=True, expand=True,
                         auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
        self._stopping = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_often, daemon=True,
                                           name="progress-refresh")

    def _refresh_often(self) -> None:
        while not self._stopping.wait(self.REFRESH_SECONDS):
            with _SCREEN:
                self.refresh()

    def start(self) -> None:
        with _SCREEN:
            super().start()
        self._refresher.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._refresher.is_alive():
            self._refresher.join()
        with _SCREEN:
            super().stop()


def live_progress(console: Console) -> Progress:
    """The live display: a name, a bar and a detail per row; gone when the run ends."""
    return _LiveProgress(
        TextColumn("{task.description}", table_column=Column(
            width=LABEL_WIDTH, no_wrap=True, overflow="ellipsis")),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=6)),
        _Detail(table_column=Column(no_wrap=True, overflow="ellipsis", min_width=10)),
        console=console)


def _task(progress: Progress, task_id: TaskID) -> Task:
    return next(task for task in progress.tasks if task.id == task_id)


def _size(nbytes: float) -> str:
    return decimal(int(nbytes))


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return (f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600
            else f"{seconds // 60}:{seconds % 60:02d}")


def _left(task: Task) -> str:
    """Time left from the row's own pace, once it has one."""
    remaining = task.time_remaining
    return f" {_duration(remaining)} left" if remaining is not None else ""


def _name(name: str | None, participant_id: int) -> str:
    shown = name.strip() if name and name.strip() else f"#{participant_id}"
    return shown if len(shown) <= NAME_WIDTH else shown[:NAME_WIDTH - 1] + "…"


def part_labels(plan: Plan) -> dict[str, str]:
    """`<participant> <kind> <n>/<m>` for each part the plan uses, by part id."""
    labels: dict[str, str] = {}
    for person in plan.participants:
        for track in person.tracks:
            ids = list(dict.fromkeys(track.parts))
            for number, part_id in enumerate(ids, 1):
                labels.setdefault(
                    part_id, f"{_name(person.name, person.id)} {track.kind} {number}/{len(ids)}")
    return labels


class _Downloads:
    """Counts behind the overall download row; totals only ever grow as sizes become known."""

    def __init__(self, planned: int) -> None:
        self.planned = planned
        self.fetched = self.kept = self.failed = 0
        self.sizes: dict[str, int] = {}  # part id -> total bytes, once its response said
        self.got: dict[str, int] = {}  # part id -> bytes on disk (resumed bytes included)
        self.settled_bytes = 0  # bytes of the parts finished, fetched or kept
        self.transferred = 0  # bytes received by this run
        self.started: float | None = None

    @property
    def finished(self) -> int:
        return self.fetched + self.kept + self.failed

    def fraction_done(self) -> float:
        """Parts done, plus the share of each part under way: a count that never jumps back."""
        under_way = sum(min(self.got.get(part_id, 0) / size, 1.0)
                        for part_id, size in self.sizes.items() if part_id in self.got and size)
        return self.fetched + self.kept + self.failed + under_way

    def describe(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"parts {self.finished}/{self.planned}{failed}"

    def settle(self, part_id: str, size: int | None) -> None:
        """A part is done with: its bytes move from under way to settled."""
        got = self.got.pop(part_id, 0)
        self.sizes.pop(part_id, None)
        self.settled_bytes += got if size is None else size

    def detail(self) -> str:
        got = self.settled_bytes + sum(self.got.values())
        known = self.settled_bytes + sum(self.sizes.values())
        speed = ""
        if self.started is not None and self.transferred:
            rate = self.transferred / max(time.monotonic() - self.started, 1e-3)
            speed = f" {_size(rate)}/s"
        return f"{_size(got)}/{_size(known)}{speed}" if known else "waiting"

    def summary(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        if not self.fetched:
            return f"all {self.kept} parts on disk" if not failed else (
                f"{self.kept} parts on disk{failed}")
        kept = f", {self.kept} already on disk" if self.kept else ""
        return (f"downloaded {self.fetched} part{'s' * (self.fetched != 1)} "
                f"({_size(self.transferred)}){kept}{failed}")


class RunDisplay:
    """A run's events as a live display (`progress`) and as JSON event lines (`json_events`).

    Download events arrive on the event loop, track events from render threads.
    """

    def __init__(self, progress: Progress | None, *, json_events: bool) -> None:
        self.progress = progress
        self.json_events = json_events
        self.rows: dict[str, TaskID] = {}  # by part id or track path
        self.labels: dict[str, str] = {}
        self.downloads = _Downloads(0)
        self.overall: TaskID | None = None
        self.tracks_row: TaskID | None = None
        self.tracks: Counter[str] = Counter()  # planned, written, failed, blocked
        self.track_parts: dict[str, set[str]] = {}  # parts each track waits for
        self.lock = threading.Lock()  # render threads report at once

    # --- downloads (event loop) ---

    def parts_planned(self, plan: Plan, part_ids: Sequence[str]) -> None:
        self.labels = part_labels(plan)
        self.downloads = _Downloads(len(part_ids))
        self.tracks["planned"] = len(plan.tracks)
        self.track_parts = {track.path: set(track.parts) for track in plan.tracks}
        if self.progress and part_ids:
            self.overall = self.progress.add_task(self.downloads.describe(),
                                                  total=len(part_ids), detail="")

    def _label(self, part_id: str) -> str:
        return self.labels.get(part_id) or f"part {part_id[:8]}"

    def part_started(self, part_id: str, total_bytes: int | None, resumed_from: int) -> None:
        downloads = self.downloads
        if downloads.started is None:
            downloads.started = time.monotonic()
        if total_bytes:
            downloads.sizes[part_id] = total_bytes
        downloads.got[part_id] = resumed_from  # a retry resumes from here, or from 0
        if not self.progress:
            return
        if part_id in self.rows:
            self.progress.update(self.rows[part_id], total=total_bytes, completed=resumed_from)
        else:
            self.rows[part_id] = self.progress.add_task(
                f"  {self._label(part_id)}", total=total_bytes, completed=resumed_from,
                detail="")
        self._show_part(part_id)

    def part_advanced(self, part_id: str, nbytes: int) -> None:
        downloads = self.downloads
        downloads.got[part_id] = downloads.got.get(part_id, 0) + nbytes
        downloads.transferred += nbytes
        if self.progress and part_id in self.rows:
            self.progress.advance(self.rows[part_id], nbytes)
            self._show_part(part_id)

    def _show_part(self, part_id: str) -> None:
        assert self.progress is not None
        task = _task(self.progress, self.rows[part_id])
        size = f"/{_size(task.total)}" if task.total else ""
        self.progress.update(self.rows[part_id],
                             detail=f"{_size(task.completed)}{size}{_left(task)}")
        self._show_overall()

    def _show_overall(self) -> None:
        if self.progress and self.overall is not None:
            self.progress.update(self.overall, completed=self.downloads.fraction_done(),
                                 description=self.downloads.describe(),
                                 detail=self.downloads.detail())

    def part_finished(self, part_id: str, path: Path, skipped: bool) -> None:
        downloads = self.downloads
        if skipped:
            downloads.kept += 1
        else:
            downloads.fetched += 1
        try:
            size: int | None = path.stat().st_size
        except OSError:
            size = None
        downloads.settle(part_id, size)
        self._part_over(part_id)
        if self.json_events:
            _event("kept part" if skipped else "downloaded part", part=part_id,
                   file=path.name)

    def part_failed(self, part_id: str, error: DownloadError) -> None:
        self.downloads.failed += 1
        self.downloads.settle(part_id, 0)
        blocked = [path for path, parts in self.track_parts.items() if part_id in parts]
        with self.lock:  # those tracks will not be made: the count of tracks to come shrinks
            for path in blocked:
                del self.track_parts[path]
                self.tracks["blocked"] += 1
        self._part_over(part_id)

    def _part_over(self, part_id: str) -> None:
        if self.progress and part_id in self.rows:
            self.progress.remove_task(self.rows.pop(part_id))
        self._show_overall()
        if self.downloads.finished == self.downloads.planned:
            if self.progress and self.overall is not None:  # the summary line says it now
                self.progress.remove_task(self.overall)
                self.overall = None
            log.info("%s", self.downloads.summary(),
                     extra={"fields": {"event": "parts done", "downloaded":
                                       self.downloads.fetched, "kept": self.downloads.kept,
                                       "failed": self.downloads.failed}})

    # --- tracks (render threads) ---

    def track_started(self, track: TrackPlan) -> None:
        if not self.progress:
            return
        with self.lock:
            if self.tracks_row is None:
                self.tracks_row = self.progress.add_task(self._describe_tracks(),
                                                         total=self._tracks_due(), detail="")
            self.rows[track.path] = self.progress.add_task(
                f"  {self._track_label(track)}", total=track.duration, detail="", clock=True)

    def _track_label(self, track: TrackPlan) -> str:
        folder = track.path.split("/")[-2] if "/" in track.path else track.path
        return f"{folder} {track.kind}"

    def _tracks_due(self) -> int:
        return self.tracks["planned"] - self.tracks["blocked"]

    def _describe_tracks(self) -> str:
        failed = f", {self.tracks['failed']} failed" if self.tracks["failed"] else ""
        done = self.tracks["written"] + self.tracks["failed"]
        return f"tracks {done}/{self._tracks_due()}{failed}"

    def track_advanced(self, track: TrackPlan, seconds: float) -> None:
        if not self.progress or track.path not in self.rows:
            return
        row = self.rows[track.path]
        self.progress.update(row, completed=min(seconds, track.duration))
        task = _task(self.progress, row)
        percent = 100 * task.completed / track.duration if track.duration else 100
        self.progress.update(row, detail=f"{percent:3.0f}%{_left(task)}")

    def track_finished(self, track: TrackPlan, result: RenderedTrack | AssemblerError) -> None:
        from .errors import AssemblerError

        failed = isinstance(result, AssemblerError)
        with self.lock:
            self.tracks["failed" if failed else "written"] += 1
            if self.progress:
                if track.path in self.rows:
                    self.progress.remove_task(self.rows.pop(track.path))
                if self.tracks_row is not None:
                    self.progress.update(self.tracks_row, description=self._describe_tracks(),
                                         total=self._tracks_due(),
                                         completed=self.tracks["written"] + self.tracks["failed"])
        if self.json_events and not isinstance(result, AssemblerError):
            _event("kept track" if result.kept else "wrote track", track=track.path,
                   strategy=result.strategy, duration=result.track.duration,
                   rate=str(result.track.rate))


class BatchDisplay:
    """Batch progress: recordings done and running, a pace counting only real work.

    Skipped (already complete) and invalid recordings take no time: they shrink
    the work left instead of counting as done, so the pace and time left are
    those of recordings actually made.
    """

    def __init__(self, progress: Progress | None, *, log_each: bool) -> None:
        self.progress = progress
        self.log_each = log_each
        self.task: TaskID | None = None
        self.running_row: TaskID | None = None
        self.running: dict[str, float] = {}  # recording id -> when it started
        self.counts: Counter[str] = Counter()
        self.first_start: float | None = None

    def pace(self) -> str:
        """Recordings made per minute since the first one started; skipped ones not counted."""
        worked = self.counts["ok"] + self.counts["failed"]
        if not worked or self.first_start is None:
            return ""
        per_minute = 60 * worked / max(time.monotonic() - self.first_start, 1e-3)
        return f"{per_minute:.1f}/min"

    def tally(self) -> str:
        pace = f" ({self.pace().replace('/', ' recordings/')})" if self.pace() else ""
        return (f"{self.counts['ok']} ok, {self.counts['skipped']} skipped, "
                f"{self.counts['failed']} failed, {self.counts['invalid']} invalid{pace}")

    def _counts(self) -> str:
        shown = [f"{self.counts[status]} {status}" for status in ("failed", "invalid", "skipped")
                 if self.counts[status]]
        return ", ".join([*shown, self.pace()] if self.pace() else shown)

    def batch_started(self, total: int) -> None:
        if self.progress:
            self.task = self.progress.add_task("recordings", total=total, detail="")
            self.running_row = self.progress.add_task("  running", total=None, detail="")

    def recording_started(self, job: Job) -> None:
        if self.first_start is None:
            self.first_start = time.monotonic()
        self.running[job.id] = time.monotonic()
        self._show_running()

    def _show_running(self) -> None:
        if self.progress and self.running_row is not None:
            self.progress.update(self.running_row, description=f"  running {len(self.running)}",
                                 detail=", ".join(self.running) or "-")

    def recording_finished(self, row: Row) -> None:
        status = row["status"]
        self.counts[status] += 1
        self.running.pop(row["id"] or "", None)
        self._show_running()
        if self.progress and self.task is not None:
            if status in ("skipped", "invalid"):  # no work done: less work left
                task = _task(self.progress, self.task)
                self.progress.update(self.task, total=(task.total or 1) - 1)
            else:
                self.progress.advance(self.task, 1)
            task = _task(self.progress, self.task)
            self.progress.update(self.task, description=f"recordings {int(task.completed)}/"
                                                        f"{int(task.total or 0)}",
                                 detail=f"{self._counts()}{_left(task)}")
        bad = status in ("failed", "invalid")
        if self.log_each or bad:  # a recording not made is said even under --quiet
            error = f": {row['error']}" if "error" in row else ""  # names the line, when bad
            log.log(logging.WARNING if bad else logging.INFO, "%s%s",
                    f"{row['id']} {status}" if row["id"] else status, error,
                    extra={"fields": {"event": "recording finished", **row,
                                      "done": sum(self.counts.values())}})


class HashProgress:
    """`verify`'s bytes hashed so far as one row of the live display (`verify.VerifyProgress`)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("verify", total=0, detail="")
        self.total = self.done = 0

    def bytes_planned(self, nbytes: int) -> None:
        self.total += nbytes
        self._show()

    def bytes_hashed(self, nbytes: int) -> None:
        self.done += nbytes
        self._show()

    def _show(self) -> None:
        self.progress.update(self.task, total=self.total, completed=self.done)
        left = _left(_task(self.progress, self.task))
        self.progress.update(self.task, detail=f"{_size(self.done)} of {_size(self.total)}{left}")
