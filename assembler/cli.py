"""The command line: the only place that prints, knows exit codes and handles Ctrl-C.

Exit status of `run`: 0 every track written; 1 some track failed; 2 bad
input; 3 a download failed for good. Of `batch`: 0 every recording finished;
1 some did not; 2 the jobs file is unusable. Ctrl-C: 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TRACK_FAILED,
    AssemblerError,
    InputError,
    InvalidInputsError,
    UsageError,
)
from .plan import AUDIO_FORMATS, VIDEO_STRATEGIES, plan_as_json

# Only annotations name the stages here: each is imported where a command needs it, so
# `--help` and a bad argument answer before aiohttp, pydantic, rich or ffmpeg-python load.
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._console import Console
    from .manifest import Sources
    from .pipeline import DownloadOutcome, RunOptions, RunOutcome

__all__ = ["main"]


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
    from .deliverables import DeliverableOptions
    from .download import DownloadSettings
    from .pipeline import RunOptions
    from .render import RenderSettings

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


def _sources(args: argparse.Namespace) -> Sources:
    from .manifest import Sources

    given = {name: getattr(args, name) for name in SOURCE_OPTIONS}
    try:
        return Sources(**given)
    except ValueError as exc:
        raise UsageError(f"{exc}: use --video-parts and/or --audio-parts") from None


async def _run(args: argparse.Namespace, console: Console) -> int:
    from ._console import ConsoleEvents, progress_display
    from .pipeline import download_recording, plan_recording, run_recording

    sources, options = _sources(args), run_options(args)
    if args.dry_run:
        _, plan = await plan_recording(sources, options)
        print(json.dumps(plan_as_json(plan), indent=2, ensure_ascii=False))
        return EXIT_OK
    progress = progress_display(args, console)
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
    from .pipeline import DownloadOutcome

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
    from ._console import BatchConsoleEvents
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
    # SIGTERM (timeout, systemd, kill) stops a run as Ctrl-C does: ffmpeg killed, nothing
    # half-written, exit 130. Left as is, it would orphan ffmpeg mid-write.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        args = build_parser().parse_args(arguments)
        from ._console import Console

        console = Console(stderr=True)
        _configure_logging(args, console)
        if args.command == "run":
            import asyncio

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
