"""The command line: the only place that prints, knows exit codes and handles Ctrl-C.

Exit status of `run`: 0 every track written; 1 some track failed; 2 bad
input; 3 a download failed for good. Of `batch`: 0 every recording finished;
1 some did not; 2 the jobs file is unusable. Ctrl-C: 130.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import time
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from .errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_TRACK_FAILED,
    AssemblerError,
    InputError,
    InvalidInputsError,
    Terminated,
    UsageError,
    stopped_status,
)
from .plan import (
    AUDIO_FORMATS,
    CAPTION_FORMATS,
    KINDS,
    MAX_SECONDS,
    TIMELINE_FORMATS,
    VIDEO_STRATEGIES,
    X264_PRESETS,
    plan_as_json,
)

# Only annotations name the stages here: each is imported where a command needs it, so
# `--help` and a bad argument answer before aiohttp, pydantic, rich or ffmpeg-python load.
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from rich.progress import Progress

    from ._console import Console
    from .manifest import Sources
    from .pipeline import DownloadOutcome, RunOptions, RunOutcome
    from .report import FailureEntry
    from .verify import BatchCheck, RecordingCheck

__all__ = ["command", "main"]

T = TypeVar("T")

log = logging.getLogger("assembler")

EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
SOURCE_OPTIONS = ("video_parts", "audio_parts", "participants", "participant_events",
                  "speaker_timeline", "transcript")


DESCRIPTION = """\
Turn a meeting recording's per-participant media parts into aligned tracks:
one audio, webcam and screenshare track per participant, each starting at
recording time 0 and lasting the whole timeline, gaps filled with silence or
black. Parts are downloaded (resumable, retried) into DIR/parts/ and each
track is rendered with ffmpeg; DIR/report.json says what was made."""

EPILOG = """\
examples:
  assembler run --out out/rec-42 --video-parts video_parts.json \\
      --audio-parts https://api.example.com/recordings/42/audio_parts
  assembler batch jobs.jsonl --out out/ --jobs 2

exit status:
  0    every track written
  1    some track or deliverable failed (the others are written)
  2    bad input: usage, unreadable or invalid manifest, unusable --out
       (nothing is downloaded)
  3    a download failed for good (expired link, 404, retries spent):
       fetch fresh manifests and run again; complete parts are kept
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM)

`assembler run --help` and `assembler batch --help` list every option."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit 2 itself
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks; options wrapped as usual."""


def _number(convert: Callable[[str], T], what: str) -> Callable[[str], T]:
    """`convert`, with argparse's message naming what was expected, not a function name."""
    def parse(text: str) -> T:
        try:
            return convert(text)
        except (ValueError, ZeroDivisionError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    return parse


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _number(int, "a whole number")(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, not {value}")
        return value
    return parse


def _positive_float(text: str) -> float:
    value = _number(float, "a number")(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, not {text!r}")
    return value


def _duration(text: str) -> float:
    value = _positive_float(text)
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SECONDS} seconds (a week), "
                                         f"not {text!r}")
    return value


def _frame_rate(text: str) -> Fraction:
    value = _number(Fraction, "a number or a ratio like 30000/1001")(text)
    if not 0 < value <= 240:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 240, not {text!r}")
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
                            "participant; any of: vtt, srt")
    group.add_argument("--timeline", type=_formats(TIMELINE_FORMATS), default=(),
                       metavar="otio,fcp7xml",
                       help="an editor's timeline of every track, with speaker and event "
                            "markers: DIR/timeline.otio, DIR/timeline.xml; any of: otio, "
                            "fcp7xml")
    group.add_argument("--mix", action="store_true",
                       help="DIR/mix.<audio format>: everyone's audio, loudness-normalised")
    group.add_argument("--loudness", type=_number(float, "a number"), default=-16.0,
                       metavar="LUFS",
                       help="integrated loudness of --mix (default: %(default)g; -23 for "
                            "broadcast)")
    group.add_argument("--av", action="store_true",
                       help="participants/<dir>/av.mp4: each webcam with its voice")
    group.add_argument("--archive", action="store_true",
                       help="DIR/recording.mkv: every track as one stream, report attached")


def _download_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("download")
    group.add_argument("--concurrency", type=_at_least(1), default=8, metavar="N",
                       help="downloads in flight at once (default: %(default)s)")
    group.add_argument("--retries", type=_at_least(0), default=5, metavar="N",
                       help="attempts per download after the first (default: %(default)s)")
    group.add_argument("--connect-timeout", type=_positive_float, default=30.0,
                       metavar="SECONDS",
                       help="seconds to connect to the media server (default: %(default)g)")
    group.add_argument("--read-timeout", type=_positive_float, default=60.0,
                       metavar="SECONDS",
                       help="seconds without a byte before a download is retried "
                            "(default: %(default)g)")
    group.add_argument("--download-only", action="store_true",
                       help="fetch and verify every part into DIR/parts/, render nothing")


def _render_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tracks")
    group.add_argument("--duration", type=_duration, metavar="SECONDS",
                       help="timeline length in seconds (default: the latest part end)")
    group.add_argument("--audio-format", choices=AUDIO_FORMATS, default="flac",
                       metavar="FORMAT",
                       help=f"audio track format, one of: {', '.join(AUDIO_FORMATS)} "
                            "(default: %(default)s)")
    group.add_argument("--video-strategy", choices=VIDEO_STRATEGIES, default="auto",
                       metavar="STRATEGY",
                       help="copy: join the parts without re-encoding (fails a track that "
                            "cannot be); encode: re-encode to H.264; auto: copy where "
                            "possible, else encode (default: %(default)s)")
    group.add_argument("--fps", type=_frame_rate, default=Fraction(30), metavar="RATE",
                       help="frame rate of encoded video tracks, e.g. 25 or 30000/1001 "
                            "(default: %(default)s; copied tracks keep their parts' rate)")
    group.add_argument("--jobs", type=_at_least(1), default=None, metavar="N",
                       help="ffmpeg processes at once (default: number of cores)")


def _display_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("display")
    group.add_argument("--dry-run", action="store_true",
                       help="print the timeline plan as JSON; download and write nothing")
    group.add_argument("--quiet", action="store_true",
                       help="no progress display, summary or info lines; warnings and errors "
                            "still shown")
    group.add_argument("--json-logs", action="store_true",
                       help="one JSON object per log line on stderr, no progress display")
    group.add_argument("-v", "--verbose", action="store_true",
                       help="debug logging, including every ffmpeg command line")


def _rerun_selection_quality_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reruns, selection and video quality")
    group.add_argument("--force", action="store_true",
                       help="make every track and deliverable again, even those an earlier "
                            "run made from the same inputs (downloaded parts are kept)")
    group.add_argument("--keep-parts", action=argparse.BooleanOptionalAction, default=True,
                       help="keep DIR/parts/ after a complete run, or remove the downloads "
                            "once every file is made (default: keep)")
    group.add_argument("--participant", dest="selected_participants", type=int,
                       action="append", default=[], metavar="ID",
                       help="make this participant's tracks only; repeat for more "
                            "(default: everyone)")
    group.add_argument("--kinds", type=_formats(KINDS), default=KINDS,
                       metavar="audio,webcam,screenshare",
                       help="the kinds of track to make (default: all)")
    group.add_argument("--crf", type=int, choices=range(52), default=20, metavar="0-51",
                       help="H.264 quality of encoded video, lower is better "
                            "(default: %(default)s)")
    group.add_argument("--preset", choices=X264_PRESETS, default="veryfast", metavar="NAME",
                       help="x264 preset, ultrafast to veryslow: speed against size "
                            "(default: %(default)s)")
    group.add_argument("--max-height", type=_at_least(2), metavar="PIXELS",
                       help="scale encoded video down to at most this height; copy is then "
                            "refused for taller parts, auto encodes them (default: no limit)")


def _common_options(parser: argparse.ArgumentParser) -> None:
    _download_options(parser)
    _render_options(parser)
    _rerun_selection_quality_options(parser)
    _display_options(parser)
    _deliverable_options(parser)


def _subcommand(commands: Any, name: str, summary: str,
                description: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=description, epilog=EPILOG,  # type: ignore[no-any-return]
                               formatter_class=_HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="assembler", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND",
                                     parser_class=_Parser)
    run = _subcommand(commands, "run", "assemble one recording",
                      "Assemble one recording into DIR. SRC is a local path or an http(s) "
                      "URL of the JSON document; give --video-parts, --audio-parts or both.")
    sources = run.add_argument_group("sources")
    for name in SOURCE_OPTIONS:
        sources.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="SRC",
                             help=f"the {name.replace('_', ' ')} document")
    run.add_argument("--out", required=True, type=Path, metavar="DIR",
                     help="output directory, created if missing (required)")
    _common_options(run)
    batch = _subcommand(commands, "batch", "assemble every recording of a JSONL jobs file",
                        "Assemble every recording of a jobs file into ROOT/<id>/, each laid "
                        "out as one `run`; ROOT/batch.json lists how each went. A recording "
                        "already complete for the same inputs and options is skipped.")
    batch.add_argument("jobs_file", type=Path, metavar="JOBS.jsonl",
                       help='one recording per line, e.g. {"id": "rec-42", "video_parts": '
                            '"SRC", "audio_parts": "SRC", "audio_format": "wav"} (keys: id, '
                            "the source options and the recording's own options, their "
                            "long names with _)")
    batch.add_argument("--out", required=True, type=Path, metavar="ROOT",
                       help="root directory: each recording goes to ROOT/<id>/ (required)")
    batch.add_argument("--scheduler", metavar="ADDRESS",
                       help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: run "
                            "on this machine)")
    _common_options(batch)
    _verify_command(commands)
    return parser


class _VersionAction(argparse.Action):
    """`--version`: the installed version, looked up only when asked (importlib.metadata
    costs more than the rest of `--help`)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("assembler")
    except PackageNotFoundError:
        return "(not installed)"


def run_options(args: argparse.Namespace) -> RunOptions:
    from .deliverables import DeliverableOptions
    from .download import DownloadSettings
    from .pipeline import RunOptions
    from .render import RenderSettings

    download = DownloadSettings(concurrency=args.concurrency, retries=args.retries,
                                connect_timeout=args.connect_timeout,
                                read_timeout=args.read_timeout)
    extra = {"jobs": args.jobs} if args.jobs else {}
    render = RenderSettings(audio_format=args.audio_format, video_strategy=args.video_strategy,
                            crf=args.crf, x264_preset=args.preset, max_height=args.max_height)
    try:
        deliverables = DeliverableOptions(
            captions=args.captions, timeline=args.timeline, mix=args.mix,
            loudness=args.loudness, av=args.av, archive=args.archive)
    except ValueError as exc:
        raise UsageError(f"--loudness: {exc}") from None
    return RunOptions(duration=args.duration, render=render, fps=args.fps, download=download,
                      deliverables=deliverables, participants=tuple(args.selected_participants),
                      kinds=args.kinds, force=args.force, keep_parts=args.keep_parts, **extra)


def _display(args: argparse.Namespace, console: Console) -> Progress | None:
    """A live display only for a person at a terminal."""
    from ._console import live_progress

    if args.quiet or args.json_logs or not console.is_terminal:
        return None
    return live_progress(console)


def _sources(args: argparse.Namespace) -> Sources:
    from .manifest import Sources

    given = {name: getattr(args, name) for name in SOURCE_OPTIONS}
    try:
        return Sources(**given)
    except ValueError as exc:
        raise UsageError(f"{exc}: use --video-parts and/or --audio-parts") from None


def _run(args: argparse.Namespace, console: Console) -> int:
    import asyncio

    from ._console import RunDisplay
    from .pipeline import download_recording, plan_recording, run_recording

    sources, options = _sources(args), run_options(args)
    if args.dry_run:
        _, plan = asyncio.run(plan_recording(sources, options))
        print(json.dumps(dry_run_json(plan_as_json(plan), args.video_strategy), indent=2,
                         ensure_ascii=False))
        return EXIT_OK
    progress = _display(args, console)
    events = RunDisplay(progress, json_events=args.json_logs)
    outcome: RunOutcome | DownloadOutcome
    # The display outlives the event loop: after Ctrl-C, render threads still ending log
    # above it, and it is cleared last, leaving the screen clean.
    with progress if progress else nullcontext():
        if args.download_only:
            outcome = asyncio.run(download_recording(sources, args.out, options, events=events))
        else:
            outcome = asyncio.run(run_recording(sources, args.out, options, events=events))
    _summarise(args, outcome)
    return outcome.exit_status


def dry_run_json(plan: dict[str, Any], video_strategy: str) -> dict[str, Any]:
    """The plan as `--dry-run` prints it: where render decides a video rate, it says so.

    A copied video track keeps its parts' frame rate; the plan's frames are
    counted at `--fps` and hold only for a track that is encoded.
    """
    for person in plan["participants"]:
        for track in person["tracks"]:
            if track["kind"] == "audio":
                continue
            track["strategy"] = video_strategy
            if video_strategy != "encode":
                fps = track["rate"]
                encoded = f", {fps} when encoded" if video_strategy == "auto" else ""
                track["rate"] = f"decided at render: the parts' own rate when copied{encoded}"
                track["frames_at"] = fps  # what `length` and the segments count in
    return plan


def _summarise(args: argparse.Namespace, outcome: RunOutcome | DownloadOutcome) -> None:
    if args.quiet or args.json_logs:
        return
    from .pipeline import DownloadOutcome

    if isinstance(outcome, DownloadOutcome):
        print(f"parts in {args.out / 'parts'}")
        return
    for person in outcome.report["participants"]:
        for track in person["tracks"]:
            how = "kept" if track["path"] in outcome.kept else track["strategy"]
            print(f"{how:6} {args.out / track['path']}")
    for output in outcome.report["outputs"]:
        what = "kept" if output["path"] in outcome.kept else output["kind"]
        print(f"{what:6} {args.out / output['path']}" if "error" not in output
              else f"failed {output['path']}: {output['error']}")
    if outcome.kept:
        print(f"{len(outcome.kept)} file(s) kept: made from the same inputs by an earlier run "
              "(--force makes them again)")
    for line in _failure_lines(outcome.report["failures"]):
        print(f"failed {line}")
    if outcome.report["warnings"]:
        count = len(outcome.report["warnings"])
        plural = "s" * (count > 1)
        print(f"{count} warning{plural} (parts cut, padded or overlapping) in the report")
    print(f"report {args.out / 'report.json'}")


def _failure_lines(failures: list[FailureEntry]) -> list[str]:
    """One line per lost part and one per failed track, however many parts it names."""
    lines: dict[str, str] = {}
    for failure in failures:
        if "track" in failure:
            lines.setdefault(failure["track"], f"{failure['track']}: {failure['error']}")
        else:  # a lost part: its message names it already when it comes from the download
            part, error = failure["part"], failure["error"]
            lines.setdefault(part, error if part in error else f"part {part}: {error}")
    return list(lines.values())


def _batch(args: argparse.Namespace, console: Console) -> int:
    from ._console import BatchDisplay
    from .batch import BATCH_NAME, plan_jobs, run_batch
    from .pipeline import prepare_out_dir

    if args.dry_run:  # one JSON object per recording: its plan, or why it has none
        all_planned = True
        for entry in plan_jobs(args.jobs_file, run_options(args)):
            if "plan" in entry:
                entry["plan"] = dry_run_json(cast("dict[str, Any]", entry["plan"]),
                                             args.video_strategy)
            print(json.dumps(entry, ensure_ascii=False))
            all_planned = all_planned and "error" not in entry
        return EXIT_OK if all_planned else EXIT_TRACK_FAILED
    prepare_out_dir(args.out)
    events = BatchDisplay(_display(args, console),
                          log_each=args.json_logs or not (args.quiet or console.is_terminal))
    with events.progress if events.progress else nullcontext():
        outcome = run_batch(args.jobs_file, args.out, run_options(args),
                            scheduler=args.scheduler, download_only=args.download_only,
                            events=events)
    if not (args.quiet or args.json_logs):
        print(f"{events.tally()}; see {args.out / BATCH_NAME}")
    return EXIT_OK if outcome.all_finished else EXIT_TRACK_FAILED


MAX_PROBLEMS_SHOWN = 20


# `assembler verify DIR [--decode]`: exit 0 every listed file matches, 1 some differ,
# 2 no readable report (ReportError). Difference lines go to stdout, one per file.

VERIFY_EPILOG = """\
exit status:
  0    every file report.json lists is there with its sha256 (and decodes, with --decode)
  1    some file differs: each is one line on stdout (on a batch ROOT, one line per
       recording)
  2    DIR holds no readable report.json (ROOT no readable batch.json)"""


def _verify_command(commands: Any) -> None:
    verify = commands.add_parser(
        "verify", help="check every file report.json lists against its sha256 (fixity)",
        description="Re-read every file DIR/report.json lists (tracks and deliverables) and "
                    "compare its sha256; nothing is written. On a batch ROOT (holding "
                    "batch.json), every recording it lists.",
        epilog=VERIFY_EPILOG, formatter_class=_HelpFormatter)
    verify.add_argument("dir", type=Path, metavar="DIR",
                        help="an output directory, or a batch ROOT holding batch.json")
    verify.add_argument("--decode", action="store_true",
                        help="also decode every media file to its duration")
    verify.add_argument("--quiet", action="store_true", help="no progress display, no summary")
    verify.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verify.set_defaults(json_logs=False, dry_run=False)


def _print_recording(args: argparse.Namespace, check: RecordingCheck, console: Console) -> int:
    for found in check.differences:
        print(f"{found.problem} {args.dir / found.path}: {found.detail}")
    if not args.quiet:
        differ = f"{len(check.differences)} differ" if check.differences else "all match"
        # One line however long the path: a log reader greps it whole.
        console.print(f"{_files(check.checked)} checked in {args.dir}: {differ}",
                      highlight=False, soft_wrap=True)
    return EXIT_OK if check.ok else EXIT_TRACK_FAILED


def _print_batch(batch: BatchCheck) -> int:
    for entry in batch.recordings:  # one line per recording
        if entry.check is None:
            state = f"not made ({entry.not_made} in batch.json)" if entry.not_made else "differs"
            print(f"{entry.id}: {state}: {entry.problem}")
        elif entry.check.ok and entry.failed_run is not None:
            # Fixity only: what a failed run did write is still as it was written.
            print(f"{entry.id}: run failed (exit {entry.failed_run} in batch.json); "
                  f"{_files(entry.check.checked)} it wrote, all match")
        elif entry.check.ok:
            print(f"{entry.id}: ok, {_files(entry.check.checked)} match")
        else:
            named = ", ".join(f"{found.path} {found.problem}" for found in entry.check.differences)
            print(f"{entry.id}: differs, {len(entry.check.differences)} of "
                  f"{_files(entry.check.checked)}: {named}")
    return EXIT_OK if batch.ok else EXIT_TRACK_FAILED


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _verify(args: argparse.Namespace, console: Console) -> int:
    from ._console import HashProgress
    from .verify import BatchCheck, is_batch, verify_batch, verify_recording

    shown = _display(args, console)
    with shown if shown else nullcontext():
        progress = HashProgress(shown) if shown else None
        verify = verify_batch if is_batch(args.dir) else verify_recording
        result = verify(args.dir, decode=args.decode, progress=progress)
    if isinstance(result, BatchCheck):
        return _print_batch(result)
    return _print_recording(args, result, console)


def _error_lines(error: AssemblerError) -> list[str]:
    """An error as the lines to print: one per problem, at most `MAX_PROBLEMS_SHOWN` of them."""
    if not isinstance(error, InvalidInputsError):
        return [str(error)]
    lines = [str(problem) for problem in error.problems[:MAX_PROBLEMS_SHOWN]]
    if (more := len(error.problems) - MAX_PROBLEMS_SHOWN) > 0:
        lines.append(f"and {more} more problem{'s' * (more > 1)}")
    return lines


def _print_error(lines: list[str], json_logs: bool) -> None:
    for line in lines:
        if json_logs:
            print(json.dumps({"time": round(time.time(), 3), "level": "error",
                              "message": line}), file=sys.stderr)
        else:
            print(f"error: {line}", file=sys.stderr)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _quiet_broken_pipe() -> int:
    """`assembler ... | head`: the reader left; say nothing more, as `cat` would."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python's final flush must not fail again
    return EXIT_BROKEN_PIPE


def command() -> NoReturn:
    """The `assembler` command: `main()`, then exit with its status.

    The objects a run made are frozen first, so Python's teardown does not walk
    them all collecting garbage (0.2 s after a 120-part download): the operating
    system frees the memory at once. Files are closed and exit handlers run as ever.
    """
    status = main()
    gc.freeze()
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    # SIGTERM (timeout, systemd, kill) stops a run as Ctrl-C does: ffmpeg killed, nothing
    # half-written; the status says which signal it was. Left as is, it would orphan ffmpeg.
    # The caller's handler comes back after: main() may run inside a longer-lived process.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(arguments: list[str]) -> int:
    json_logs = "--json-logs" in arguments  # known before parsing, for parse errors too
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
        if args.command is None:  # bare `assembler`: show what it does and how to start
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
    except AssemblerError as error:  # the command line itself
        _print_error(_error_lines(error), json_logs)
        return error.exit_status
    from ._console import configure_logging, stderr_console

    console = stderr_console()
    configure_logging(json_logs=args.json_logs, verbose=args.verbose, quiet=args.quiet,
                      console=console,
                      context=_recording_context if args.command == "batch" else None)
    status = _command(args, console)
    if args.json_logs and not args.dry_run:
        log.info("%s finished", args.command, extra={"fields": _finished(args, status)})
    return status


def _command(args: argparse.Namespace, console: Console) -> int:
    """Run the parsed command; every way it can end becomes an exit status."""
    try:
        if args.command == "run":
            return _run(args, console)
        if args.command == "verify":
            return _verify(args, console)
        return _batch(args, console)
    except AssemblerError as error:
        _print_error(_error_lines(error), args.json_logs)
        if args.command == "batch":  # only an unusable jobs file or ROOT (input) is not 1
            return EXIT_BAD_INPUT if isinstance(error, InputError) else EXIT_TRACK_FAILED
        return error.exit_status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt as stop:
        status = stopped_status(stop)
        _print_error([f"{'terminated' if status == EXIT_TERMINATED else 'interrupted'}; "
                      "complete parts and tracks are kept"], args.json_logs)
        return status


def _finished(args: argparse.Namespace, status: int) -> dict[str, object]:
    """The fields of the last JSON line: how the command ended and where its record is."""
    from .batch import BATCH_NAME
    from .pipeline import REPORT_NAME

    record = args.out / (REPORT_NAME if args.command == "run" else BATCH_NAME)
    fields: dict[str, object] = {"event": f"{args.command} finished", "exit": status}
    if record.is_file():
        fields["report" if args.command == "run" else "ledger"] = str(record)
    return fields


def _recording_context() -> dict[str, object]:
    """Inside a batch, the recording a log line is about (its thread's `run_job`)."""
    from .batch import current_recording

    recording = current_recording.get()
    return {"id": recording} if recording else {}
