"""The command line: the only place that prints, knows exit codes and handles Ctrl-C.

Exit status of `run`: 0 every track written; 1 some track failed; 2 bad
input; 3 a download failed for good. Of `batch`: 0 every recording finished;
1 some did not; 2 the jobs file is unusable. Ctrl-C: 130.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections import Counter
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path
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

from .deliverables import DeliverableOptions
from .download import DownloadSettings
from .errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TRACK_FAILED,
    AssemblerError,
    DownloadError,
    InputError,
    InvalidInputsError,
    UsageError,
)
from .manifest import Sources
from .pipeline import (
    DownloadOutcome,
    RunOptions,
    RunOutcome,
    download_recording,
    plan_recording,
    run_recording,
)
from .plan import AUDIO_FORMATS, plan_as_json
from .render import VIDEO_STRATEGIES, RenderSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .batch import Row
    from .plan import TrackPlan

__all__ = ["main"]

log = logging.getLogger("assembler")

EXIT_INTERRUPTED = 128 + signal.SIGINT
CAPTION_FORMATS = ("vtt", "srt")
TIMELINE_FORMATS = ("otio", "fcp7xml")
SOURCE_OPTIONS = ("video_parts", "audio_parts", "participants", "participant_events",
                  "speaker_timeline", "transcript")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit 2 itself
        raise UsageError(message)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number > 0")
    return value


def _frame_rate(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError("must be a number or a ratio like 30000/1001") from None
    if not 0 < value <= 240:
        raise argparse.ArgumentTypeError("must be > 0 and <= 240")
    return value


def _formats(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of `choices`, e.g. `vtt,srt`; each kept once, in order."""
    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
        unknown = [item for item in chosen if item not in choices]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"{unknown[0] if unknown else text!r} is not one of {', '.join(choices)}")
        return chosen
    return parse


def _deliverable_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("deliverables (all off by default)")
    group.add_argument("--captions", type=_formats(CAPTION_FORMATS), default=(),
                       metavar="vtt,srt",
                       help="captions from --transcript: DIR/captions.<fmt> and one per "
                            "participant")
    group.add_argument("--timeline", type=_formats(TIMELINE_FORMATS), default=(),
                       metavar="otio,fcp7xml",
                       help="an editor's timeline of every track, with speaker and event "
                            "markers: DIR/timeline.otio, DIR/timeline.xml")
    group.add_argument("--mix", action="store_true",
                       help="DIR/mix.<audio format>: everyone's audio, loudness-normalised")
    group.add_argument("--loudness", type=float, default=-16.0, metavar="LUFS",
                       help="integrated loudness of --mix (default -16; -23 for broadcast)")
    group.add_argument("--av", action="store_true",
                       help="participants/<dir>/av.mp4: each webcam with its voice")
    group.add_argument("--archive", action="store_true",
                       help="DIR/recording.mkv: every track as one stream, report attached")


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--concurrency", type=_positive_int, default=8,
                        help="downloads in flight at once (default 8)")
    parser.add_argument("--retries", type=_non_negative_int, default=5,
                        help="attempts per download after the first (default 5)")
    parser.add_argument("--duration", type=_positive_float,
                        help="timeline length in seconds (default: the latest part end)")
    parser.add_argument("--audio-format", choices=AUDIO_FORMATS,
                        default="flac")
    parser.add_argument("--video-strategy", choices=VIDEO_STRATEGIES, default="auto")
    parser.add_argument("--fps", type=_frame_rate, default=Fraction(30),
                        help="frame rate of encoded video tracks (default 30)")
    parser.add_argument("--jobs", type=_positive_int, default=None,
                        help="ffmpeg processes at once (default: number of cores)")
    parser.add_argument("--connect-timeout", type=_positive_float, default=30.0,
                        help="seconds to connect to the media server (default 30)")
    parser.add_argument("--read-timeout", type=_positive_float, default=60.0,
                        help="seconds without a byte before a download is retried (default 60)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the timeline plan as JSON; download and write nothing")
    parser.add_argument("--download-only", action="store_true",
                        help="fetch and verify every part into DIR/parts/, render nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--json-logs", action="store_true",
                        help="one JSON object per log line on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _deliverable_options(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="assembler", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="assemble one recording")
    for name in SOURCE_OPTIONS:
        run.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="SRC",
                         help="local path or http(s) URL of the JSON document")
    _common_options(run)
    batch = commands.add_parser("batch", help="assemble every recording of a JSONL jobs file")
    batch.add_argument("jobs_file", type=Path, metavar="JOBS.jsonl")
    batch.add_argument("--scheduler", metavar="ADDRESS",
                       help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    _common_options(batch)
    return parser


def run_options(args: argparse.Namespace) -> RunOptions:
    download = DownloadSettings(concurrency=args.concurrency, retries=args.retries,
                                connect_timeout=args.connect_timeout,
                                read_timeout=args.read_timeout)
    extra = {"jobs": args.jobs} if args.jobs else {}
    render = RenderSettings(audio_format=args.audio_format, video_strategy=args.video_strategy)
    try:
        deliverables = DeliverableOptions(
            captions=args.captions, timeline=args.timeline, mix=args.mix,
            loudness=args.loudness, av=args.av, archive=args.archive)
    except ValueError as exc:
        raise UsageError(f"--loudness: {exc}") from None
    return RunOptions(duration=args.duration, render=render, fps=args.fps, download=download,
                      deliverables=deliverables, **extra)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": round(record.created, 3), "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, ensure_ascii=False)


def _configure_logging(args: argparse.Namespace, console: Console) -> None:
    handler: logging.Handler
    if args.json_logs:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonFormatter())
    else:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_time=False, show_path=False)
    root = logging.getLogger("assembler")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if args.verbose else logging.INFO)


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


def _progress(args: argparse.Namespace, console: Console) -> Progress | None:
    if args.quiet or args.json_logs or not console.is_terminal:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    _ForBytes(DownloadColumn()), _ForBytes(TransferSpeedColumn()),
                    _ForBytes(TimeRemainingColumn()), console=console, transient=True)


def _sources(args: argparse.Namespace) -> Sources:
    given = {name: getattr(args, name) for name in SOURCE_OPTIONS}
    try:
        return Sources(**given)
    except ValueError as exc:
        raise UsageError(f"{exc}: use --video-parts and/or --audio-parts") from None


async def _run(args: argparse.Namespace, console: Console) -> int:
    sources, options = _sources(args), run_options(args)
    if args.dry_run:
        _, plan = await plan_recording(sources, options)
        print(json.dumps(plan_as_json(plan), indent=2, ensure_ascii=False))
        return EXIT_OK
    progress = _progress(args, console)
    outcome: RunOutcome | DownloadOutcome
    with progress if progress else nullcontext():
        events = ConsoleEvents(progress, json_events=args.json_logs)
        if args.download_only:
            outcome = await download_recording(sources, args.out, options, events=events)
        else:
            outcome = await run_recording(sources, args.out, options, events=events)
    _summarise(args, outcome)
    return outcome.exit_status


def _summarise(args: argparse.Namespace, outcome: RunOutcome | DownloadOutcome) -> None:
    if args.quiet or args.json_logs:
        return
    if isinstance(outcome, DownloadOutcome):
        print(f"parts in {args.out / 'parts'}")
        return
    for person in outcome.report["participants"]:
        for track in person["tracks"]:
            print(f"{track['strategy']:6} {args.out / track['path']}")
    for output in outcome.report["outputs"]:
        print(f"{output['kind']:6} {args.out / output['path']}" if "error" not in output
              else f"failed {output['path']}: {output['error']}")
    for failure in outcome.report["failures"]:
        print(f"failed {failure.get('track') or failure['part']}: {failure['error']}")
    if outcome.report["warnings"]:
        count = len(outcome.report["warnings"])
        plural = "s" * (count > 1)
        print(f"{count} warning{plural} (parts cut, padded or overlapping) in the report")
    print(f"report {args.out / 'report.json'}")


def _batch(args: argparse.Namespace, console: Console) -> int:
    from .batch import BATCH_NAME, plan_jobs, run_batch

    if args.dry_run:  # one JSON object per recording: its plan, or why it has none
        all_planned = True
        for entry in plan_jobs(args.jobs_file, run_options(args)):
            print(json.dumps(entry, ensure_ascii=False))
            all_planned = all_planned and "error" not in entry
        return EXIT_OK if all_planned else EXIT_TRACK_FAILED
    events = BatchConsoleEvents(args, console)
    with events.progress if events.progress else nullcontext():
        outcome = run_batch(args.jobs_file, args.out, run_options(args),
                            scheduler=args.scheduler, download_only=args.download_only,
                            events=events)
    if not (args.quiet or args.json_logs):
        print(f"{events.tally()}; see {args.out / BATCH_NAME}")
    return EXIT_OK if outcome.all_finished else EXIT_TRACK_FAILED


def _error_lines(error: AssemblerError) -> list[str]:
    """An error as the lines to print: one per problem."""
    if isinstance(error, InvalidInputsError):
        return [str(problem) for problem in error.problems]
    return [str(error)]


def _print_error(lines: list[str], json_logs: bool) -> None:
    for line in lines:
        if json_logs:
            print(json.dumps({"time": round(time.time(), 3), "level": "error",
                              "message": line}), file=sys.stderr)
        else:
            print(f"error: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    json_logs = "--json-logs" in arguments  # known before parsing, for parse errors too
    command = "batch" if arguments[:1] == ["batch"] else "run"
    console = Console(stderr=True)
    # SIGTERM (timeout, systemd, kill) stops a run as Ctrl-C does: ffmpeg killed, nothing
    # half-written, exit 130. Left as is, it would orphan ffmpeg mid-write.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        args = build_parser().parse_args(arguments)
        _configure_logging(args, console)
        if args.command == "run":
            return asyncio.run(_run(args, console))
        return _batch(args, console)
    except AssemblerError as error:
        _print_error(_error_lines(error), json_logs)
        if command == "batch":  # only an unusable jobs file (an input error) is not exit 1
            return EXIT_BAD_INPUT if isinstance(error, InputError) else EXIT_TRACK_FAILED
        return error.exit_status
    except KeyboardInterrupt:
        _print_error(["interrupted; complete parts and tracks are kept"], json_logs)
        return EXIT_INTERRUPTED
