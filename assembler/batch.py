"""`assembler batch`: every recording of a JSONL jobs file, each isolated, resumable.

Each line of the jobs file is one recording; it runs exactly as one `run`
into `ROOT/<id>/`, and its row goes to `ROOT/batch.json`, rewritten as
recordings finish. A recording whose report says it is complete for the same
inputs is skipped before anything is fetched. A bad line or a failed
recording costs that recording only.

On this machine, recordings run on a pool of `jobs + 2` threads, each with its
own event loop, so one recording's downloads overlap another's renders; all
of them share one `FfmpegSlots` of `jobs` ffmpeg processes. With `scheduler`,
each recording is one task on an existing Dask cluster (`run_on_worker`), at
most twice as many in flight as the cluster has worker threads. Both paths
feed futures through `_drain`, so neither holds more than a window of
recordings, and only their small rows are kept.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures as cf
import dataclasses
import importlib
import json
import logging
import re
import threading
import time
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    NotRequired,
    Protocol,
    TypedDict,
    TypeVar,
    cast,
    get_args,
)

from .errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TRACK_FAILED,
    AssemblerError,
    JobsFileError,
    StorageError,
    one_line,
    stopped_status,
)
from .ffmpeg_process import FfmpegSlots
from .joboptions import OPTION_KEYS, OptionError, with_options
from .manifest import Sources, is_url
from .pipeline import (
    REPORT_NAME,
    DownloadOutcome,
    RunEvents,
    RunOptions,
    RunOutcome,
    download_recording,
    inputs_fingerprint,
    plan_recording,
    run_recording,
)
from .plan import plan_as_json
from .report import read_report, write_json

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping

__all__ = ["BATCH_NAME", "BatchEvents", "BatchOutcome", "Job", "Row", "current_recording",
           "plan_jobs", "read_jobs", "run_batch", "run_job", "run_on_worker"]

BATCH_NAME = "batch.json"
BATCH_VERSION = 1
SOURCE_KEYS = tuple(field.name for field in dataclasses.fields(Sources))
# An id becomes a directory under ROOT: no separator, and no leading "." (`..`, hidden
# temporary files) or "-" (read as an option by shell tools).
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_STOP_POLL = 0.2  # seconds between checks for Ctrl-C in a recording's thread

Status = Literal["ok", "skipped", "invalid", "failed"]
T = TypeVar("T")

log = logging.getLogger("assembler")


class Row(TypedDict):
    """One recording in `batch.json`."""

    id: str | None  # None when the line has no usable id
    line: int
    status: Status
    exit: int  # what `assembler run` would have returned
    error: NotRequired[str]
    seconds: float
    worker: str | None  # the Dask worker's address; None on this machine


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One valid line of the jobs file; local paths in `sources` are absolute.

    `options` are the line's own options (`joboptions.OPTION_KEYS`), already valid.
    """

    line: int
    id: str
    sources: Sources
    options: Mapping[str, object] = dataclasses.field(default_factory=dict)  # the line's own

    def run_options(self, batch: RunOptions) -> RunOptions:
        """The batch's options with this recording's own set over them."""
        return with_options(batch, self.options)


class BatchEvents(Protocol):
    """What a caller hears about a batch; called from the thread that runs `run_batch`.

    `recording_started` comes when a recording is handed to a thread or the
    cluster (not for skipped or invalid lines), `recording_finished` for every line.
    """

    def batch_started(self, total: int) -> None: ...
    def recording_started(self, job: Job) -> None: ...
    def recording_finished(self, row: Row) -> None: ...


# The recording the current thread or task works on, for log lines to name it.
current_recording: ContextVar[str | None] = ContextVar("assembler_recording", default=None)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """How a batch ended: recordings counted by status (`ok`, `skipped`, `invalid`, `failed`)."""

    counts: Counter[Status]

    @property
    def all_finished(self) -> bool:
        return not self.counts["invalid"] and not self.counts["failed"]


# --- the jobs file ------------------------------------------------------------------------


class _BadLine(ValueError):
    def __init__(self, message: str, job_id: str | None = None, column: int | None = None
                 ) -> None:
        self.job_id = job_id
        self.column = column  # 1-based: where on its line, when known
        super().__init__(message)

    def place(self, line: int) -> str:
        return f"line {line}" + (f" column {self.column}" if self.column else "")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines, read lazily; an unreadable or non-UTF-8 file is a `JobsFileError`."""
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise JobsFileError(f"{path}: line {number} is not UTF-8 text") from None
                yield number, text.removeprefix("\ufeff") if number == 1 else text
    except OSError as exc:
        raise JobsFileError(f"cannot read jobs file {path}: {exc.strerror or exc}") from None


def count_jobs(path: Path) -> int:
    """Non-blank lines; reading the whole file first also rejects it before any work."""
    return sum(1 for _, text in _lines(path) if text.strip())


def _source(value: object, key: str, base: Path) -> str:
    if not isinstance(value, str) or not value:
        raise _BadLine(f"{key} must be a local path or an http(s) URL")
    # Relative paths mean the jobs file's directory, wherever batch (or a worker) runs.
    return value if is_url(value) else str((base / value).resolve())


def _parse_job(text: str, base: Path) -> tuple[str, Sources, dict[str, object]]:
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as exc:  # its "line 1" would only repeat the obvious
        raise _BadLine(f"not JSON ({exc.msg})", column=exc.colno) from None
    if not isinstance(entry, dict):
        raise _BadLine("not a JSON object")
    job_id = entry.get("id")
    if not isinstance(job_id, str):
        raise _BadLine('no "id" string')
    if not _SAFE_ID.fullmatch(job_id) or job_id == BATCH_NAME:
        raise _BadLine(f"id {job_id!r} is not a safe directory name: use letters, digits, "
                       "'.', '_' and '-', not starting with '.' or '-'", job_id)
    unknown = sorted(set(entry) - {"id", *SOURCE_KEYS, *OPTION_KEYS})
    if unknown:
        raise _BadLine(f"unknown key {unknown[0]!r}; known: "
                       f"{', '.join((*SOURCE_KEYS, *OPTION_KEYS))}", job_id,
                       _column(text, unknown[0]))
    options = {key: entry[key] for key in OPTION_KEYS if key in entry}
    try:
        with_options(RunOptions(), options)
        given = {key: _source(entry[key], key, base) for key in SOURCE_KEYS if key in entry}
        return job_id, Sources(**given), options
    except OptionError as exc:
        raise _BadLine(str(exc), job_id, _column(text, exc.key)) from None
    except _BadLine as exc:
        raise _BadLine(str(exc), job_id) from None
    except ValueError as exc:  # Sources: neither video_parts nor audio_parts
        raise _BadLine(f"{exc} (video_parts, audio_parts)", job_id) from None


def _column(text: str, key: str) -> int | None:
    """Where `key` is written on its line (1-based), when it is written plainly."""
    found = re.search(re.escape(json.dumps(key)) + r"\s*:", text)
    return found.start() + 1 if found else None


def read_jobs(path: Path) -> Iterator[Job | Row]:
    """Each non-blank line as a `Job`, or as an invalid `Row` naming the line and the problem."""
    first_line: dict[str, int] = {}
    for number, text in _lines(path):
        if not text.strip():
            continue
        try:
            job_id, sources, options = _parse_job(text, path.parent)
            if job_id in first_line:
                raise _BadLine(f"duplicate id (first on line {first_line[job_id]})", job_id)
        except _BadLine as exc:
            yield _row(number, exc.job_id, EXIT_BAD_INPUT, f"{exc.place(number)}: {exc}", 0.0)
            continue
        first_line[job_id] = number
        yield Job(line=number, id=job_id, sources=sources, options=options)


def plan_jobs(path: Path, options: RunOptions) -> Iterator[dict[str, object]]:
    """For `--dry-run`: each recording's plan as JSON-ready data, or why it has none.

    Only URL manifests are fetched; no part is downloaded and nothing is written.
    """
    for item in read_jobs(path):
        if not isinstance(item, Job):
            yield {"id": item["id"], "line": item["line"], "error": item.get("error", "")}
            continue
        try:
            _, plan = asyncio.run(plan_recording(item.sources, item.run_options(options)))
        except AssemblerError as exc:
            yield {"id": item.id, "line": item.line, "error": one_line(exc)}
            continue
        yield {"id": item.id, "line": item.line, "plan": plan_as_json(plan)}


# --- one recording ------------------------------------------------------------------------


def _row(line: int, job_id: str | None, code: int, error: str | None, seconds: float,
         *, skipped: bool = False) -> Row:
    status: Status = ("skipped" if skipped else "ok" if code == EXIT_OK
                      else "invalid" if code == EXIT_BAD_INPUT else "failed")
    row: Row = {"id": job_id, "line": line, "status": status, "exit": code,
                "seconds": round(seconds, 3), "worker": None}
    if error is not None:
        row["error"] = error
    return row



def _failure_summary(outcome: RunOutcome | DownloadOutcome) -> str | None:
    if isinstance(outcome, DownloadOutcome):
        errors = [one_line(error) for error in outcome.failures.values()]
    else:
        errors = [one_line(error) for error in outcome.download_failures.values()]
        errors += [f"{path}: {one_line(error)}"
                   for path, error in outcome.render_failures.items()]
        errors += [f"{output['path']}: {output['error']}"
                   for output in outcome.report["outputs"] if "error" in output]
    if not errors:
        return None
    return errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")


async def _unless_stopped(work: Awaitable[T], stop: threading.Event | None) -> T:
    """Await `work`; when `stop` is set (Ctrl-C in the main thread), cancel it instead."""
    if stop is None:
        return await work
    task = asyncio.ensure_future(work)
    while not stop.is_set():
        done, _ = await asyncio.wait({task}, timeout=_STOP_POLL)
        if done:
            return task.result()
    task.cancel()
    return await task  # raises CancelledError, which no `except Exception` takes for a failure


def run_job(job: Job, root: Path, options: RunOptions, *, download_only: bool = False,
            events: RunEvents | None = None, ffmpeg: FfmpegSlots | None = None,
            stop: threading.Event | None = None) -> Row:
    """Run one recording into `root/<id>/` and return its row; its failures never escape.

    `download_only` fetches its parts and renders nothing, as `run --download-only`.
    """
    started = time.monotonic()
    current_recording.set(job.id)  # run_job owns its thread: the value lasts as long as it
    error: str | None
    out_dir = root / job.id
    options = job.run_options(options)
    work: Awaitable[RunOutcome | DownloadOutcome] = (
        download_recording(job.sources, out_dir, options, events=events, ffmpeg=ffmpeg)
        if download_only else
        run_recording(job.sources, out_dir, options, events=events, ffmpeg=ffmpeg))
    try:
        outcome = asyncio.run(_unless_stopped(work, stop))
    except AssemblerError as exc:
        code, error = exc.exit_status, one_line(exc)  # as `run` would exit
    except Exception as exc:  # a bug must cost this recording, not the batch
        code, error = EXIT_TRACK_FAILED, f"unexpected {type(exc).__name__}: {one_line(exc)}"
    else:
        code, error = outcome.exit_status, _failure_summary(outcome)
    return _row(job.line, job.id, code, error, time.monotonic() - started)


def run_on_worker(job: Job, root: Path, options: RunOptions, download_only: bool = False) -> Row:
    """The Dask task: run one recording on the worker running this task, named in its row."""
    from distributed import get_worker  # only workers import this module's task

    row = run_job(job, root, options, download_only=download_only)
    row["worker"] = get_worker().address
    return row


def is_complete(job: Job, root: Path, options: RunOptions) -> bool:
    """True when `root/<id>/report.json` says complete, for these sources and options.

    `options` are the batch's; the job's own are set over them. Never with `force`.
    """
    options = job.run_options(options)
    if options.force:
        return False
    report = read_report(root / job.id / REPORT_NAME)
    return (report is not None and report.get("complete") is True
            and report.get("inputs") == inputs_fingerprint(job.sources, options))


# --- driving the batch --------------------------------------------------------------------


class _Ledger:
    """Rows in jobs-file order, rewritten atomically to `batch.json` on every change.

    A recording's row from the last run stands until this run starts it again (and
    then until its new row arrives, it has none: what it was is no longer known), so a
    batch stopped early, or one whose scheduler cannot be reached, loses no record of
    what was done before. `finish` drops the rows of lines the jobs file no longer has.
    """

    def __init__(self, path: Path, events: BatchEvents | None) -> None:
        self.path = path
        self.events = events
        self.rows: list[Row] = []
        self.earlier = _earlier_rows(path)
        self.counts: Counter[Status] = Counter()

    def write(self) -> None:
        rows = sorted([*self.rows, *self.earlier], key=lambda item: item["line"])
        try:
            write_json(self.path, {"version": BATCH_VERSION, "recordings": rows})
        except OSError as exc:
            raise StorageError("", f"cannot write {self.path}: {exc.strerror or exc}") from None

    def forget(self, job_id: str | None, line: int) -> None:
        """Drop the earlier row of recording `job_id` (of `line`, for a line with no id)."""
        if self._drop(job_id, line):
            self.write()

    def add(self, row: Row) -> None:
        self._drop(row["id"], row["line"])
        bisect.insort(self.rows, row, key=lambda item: item["line"])
        self.counts[row["status"]] += 1
        self.write()
        if self.events:
            self.events.recording_finished(row)

    def _drop(self, job_id: str | None, line: int) -> bool:
        def same(row: Row) -> bool:  # an id names its recording, whatever line it is on
            return row["id"] == job_id and (job_id is not None or row["line"] == line)

        left = [row for row in self.earlier if not same(row)]
        dropped = len(left) != len(self.earlier)
        self.earlier = left
        return dropped

    def finish(self) -> None:
        """Every line has its row of this run: the rest are of lines no longer there."""
        if self.earlier:
            self.earlier = []
            self.write()

    def to_run(self, entries: Iterable[Job | Row], root: Path,
               options: RunOptions) -> Iterator[Job]:
        """The jobs still to run; invalid lines and complete recordings are recorded on the way."""
        for entry in entries:
            if not isinstance(entry, Job):
                self.add(entry)
            elif is_complete(entry, root, options):
                self.add(_row(entry.line, entry.id, EXIT_OK, None, 0.0, skipped=True))
            else:
                yield entry


def _earlier_rows(path: Path) -> list[Row]:
    """The rows of the `batch.json` at `path` an earlier run wrote (none when there is none);
    a ledger or row not shaped like one is left out, with a warning."""
    try:
        ledger = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s): this batch's rows replace it", path,
                    getattr(exc, "strerror", None) or exc)
        return []
    rows = ledger.get("recordings") if isinstance(ledger, dict) else None
    if not isinstance(rows, list):
        log.warning("%s is not a batch ledger: this batch's rows replace it", path)
        return []
    kept = [cast(Row, row) for row in rows if _is_row(row)]
    if len(kept) != len(rows):
        log.warning("%s: %d row(s) not shaped like a recording's are left out", path,
                    len(rows) - len(kept))
    return kept


def _is_row(row: object) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("id"), str | None) and "id" in row
            and all(isinstance(row.get(key), int) for key in ("line", "exit"))
            and row.get("status") in get_args(Status)
            and isinstance(row.get("seconds"), int | float) and "worker" in row)


def _drain(jobs: Iterator[Job], submit: Callable[[Job], cf.Future[Row]], window: int,
           ledger: _Ledger) -> None:
    """Keep at most `window` recordings submitted; record each row as it arrives."""
    running: dict[cf.Future[Row], Job] = {}
    try:
        for job in jobs:
            ledger.forget(job.id, job.line)  # its files are about to change
            running[submit(job)] = job
            if ledger.events:
                ledger.events.recording_started(job)
            while len(running) >= window:
                _record_done(running, ledger)
        while running:
            _record_done(running, ledger)
    except KeyboardInterrupt as stop:
        # What a recording stopped midway left is listed by its own report, if any: its row
        # says it did not finish, so `verify` checks those files and a rerun makes it again.
        for future, job in running.items():
            ledger.add(_finished_row(future, job) if future.done() and not future.cancelled()
                       else _row(job.line, job.id, stopped_status(stop),
                                 "stopped before it finished", 0.0))
        raise


def _record_done(running: dict[cf.Future[Row], Job], ledger: _Ledger) -> None:
    done: set[cf.Future[Row]] = set()
    while not done:  # in short waits: a signal landing as a wait begins is handled at once
        done, _ = cf.wait(running, timeout=_STOP_POLL, return_when=cf.FIRST_COMPLETED)
    for future in done:
        ledger.add(_finished_row(future, running.pop(future)))


def _finished_row(future: cf.Future[Row], job: Job) -> Row:
    try:
        return future.result()
    except Exception as exc:  # the task never ran or its worker died (KilledWorker)
        return _row(job.line, job.id, EXIT_TRACK_FAILED, one_line(exc), 0.0)


def _run_local(jobs: Iterator[Job], root: Path, options: RunOptions, download_only: bool,
               ledger: _Ledger) -> None:
    stop = threading.Event()
    ffmpeg = FfmpegSlots(options.jobs)  # one cap for every recording of the batch
    # Two recordings beyond the ffmpeg slots keep downloading while the others render.
    width = options.jobs + 2
    with cf.ThreadPoolExecutor(max_workers=width, thread_name_prefix="recording") as pool:
        try:
            _drain(jobs, lambda job: pool.submit(
                run_job, job, root, options, download_only=download_only, ffmpeg=ffmpeg,
                stop=stop), width, ledger)
        except KeyboardInterrupt:
            # Running recordings stop within _STOP_POLL, waiting ones at once; the pool
            # then joins them.
            stop.set()
            ffmpeg.close()
            raise


def _run_on_cluster(address: str, jobs: Iterator[Job], root: Path, options: RunOptions,
                    download_only: bool, ledger: _Ledger) -> None:
    try:
        # Typed as Any: distributed's API carries too few annotations for strict mypy.
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise AssemblerError('--scheduler needs Dask: pip install "assembler[dask]"') from None
    try:
        # Waits distributed.comm.timeouts.connect (Dask's configuration; 30 s unless set).
        client = distributed.Client(address)
    except (OSError, TimeoutError) as exc:
        raise AssemblerError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    # Not `with executor`: its exit waits for every task, Ctrl-C included; closing the
    # client releases them instead.
    with client:
        executor = client.get_executor(pure=False)
        # A few tasks queued per worker thread keep workers busy without flooding the scheduler.
        window = max(4, 2 * sum(client.nthreads().values()))
        _drain(jobs, lambda job: executor.submit(run_on_worker, job, root, options,
                                                 download_only), window, ledger)


def run_batch(jobs_file: Path, root: Path, options: RunOptions, *, scheduler: str | None = None,
              download_only: bool = False, events: BatchEvents | None = None) -> BatchOutcome:
    """Run every recording of `jobs_file` into `root/<id>/`; rows go to `root/batch.json`.

    Raises `JobsFileError` when the jobs file cannot be read and `StorageError`
    when `batch.json` cannot be written; everything that goes wrong with one
    recording is in its row instead.
    """
    total = count_jobs(jobs_file)
    if events:
        events.batch_started(total)
    root = root.resolve()  # workers and threads must not depend on the current directory
    ledger = _Ledger(root / BATCH_NAME, events)
    ledger.write()
    jobs = ledger.to_run(read_jobs(jobs_file), root, options)
    if scheduler is None:
        _run_local(jobs, root, options, download_only, ledger)
    else:
        _run_on_cluster(scheduler, jobs, root, options, download_only, ledger)
    ledger.finish()
    return BatchOutcome(ledger.counts)
