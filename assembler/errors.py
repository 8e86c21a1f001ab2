"""Every error `assembler` raises on purpose, in one tree.

    AssemblerError                  base: the CLI catches this and nothing broader
    ├── InputError                  the user's input cannot be used (CLI exit 2)
    │   ├── ManifestError           a document is unreadable or invalid; names file and place
    │   ├── InvalidInputsError      several documents are invalid; carries each ManifestError
    │   ├── UsageError              the command line itself is wrong
    │   ├── JobsFileError           a batch's jobs file cannot be read (missing, not UTF-8)
    │   ├── OutputDirError          the output directory is a file or cannot be created
    │   └── ReportError             `verify`: the directory holds no readable report.json
    ├── DownloadError               a part could not be fetched for good (CLI exit 3)
    │   ├── HTTPStatusError         the server answered a status that will not change
    │   │   └── LinkExpiredError    the signed link has expired; a fresh manifest is needed
    │   ├── TransferError           connection, timeout or short body; retries spent
    │   ├── NotMediaError           the body is an error page or empty, not the part's media
    │   └── StorageError            a part or report cannot be written (disk full, read-only)
    ├── RenderError                 a track could not be made (CLI exit 1)
    │   ├── FFmpegNotFoundError     no ffmpeg binary could be found
    │   ├── FFmpegError             ffmpeg exited non-zero; carries its last stderr line
    │   ├── MediaError              a part's media cannot be opened or has no usable stream
    │   └── CopyNotPossibleError    the track's parts cannot be joined without re-encoding
    └── DeliverableError            a deliverable (captions, mix, ...) cannot be made (exit 1)

Each class carries the exit status `assembler run` returns when it stops a
run (`exit_status`); `cli` and `batch` both read it from here. Messages never
contain a signed URL's query string: `redact_url` is applied wherever a URL
could reach a message.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_DOWNLOAD_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_TRACK_FAILED",
    "AssemblerError",
    "CopyNotPossibleError",
    "DeliverableError",
    "DownloadError",
    "FFmpegError",
    "FFmpegNotFoundError",
    "HTTPStatusError",
    "InputError",
    "InvalidInputsError",
    "JobsFileError",
    "LinkExpiredError",
    "ManifestError",
    "MediaError",
    "NotMediaError",
    "OutputDirError",
    "RenderError",
    "ReportError",
    "StorageError",
    "Terminated",
    "TransferError",
    "UsageError",
    "one_line",
    "redact_url",
    "stopped_status",
    "storage_error",
]


# Exit statuses of `assembler run` (the contract): every track written; some track or
# deliverable failed; bad input; a download failed for good.
EXIT_OK, EXIT_TRACK_FAILED, EXIT_BAD_INPUT, EXIT_DOWNLOAD_FAILED = 0, 1, 2, 3
# Stopped by Ctrl-C (128 + SIGINT) or by SIGTERM (128 + SIGTERM).
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so both stop a run the same clean way."""


def stopped_status(stop: KeyboardInterrupt) -> int:
    """The exit status of a command `stop` ended: `EXIT_TERMINATED` or `EXIT_INTERRUPTED`."""
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED


def one_line(error: BaseException) -> str:
    """`error`'s message on one line (its lines joined by "; "), or its class name if empty.

    For rows and entries that hold one line: `batch.json`'s `error`, an output's `error`.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def redact_url(url: str) -> str:
    """Return `url` without query string, fragment or credentials, safe to print."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"  # IPv6
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # a malformed host or port
        return "<unparseable url>"
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


class AssemblerError(Exception):
    """Base of every error raised on purpose by assembler."""

    exit_status: int = EXIT_TRACK_FAILED  # what `run` returns when this error stops it


class InputError(AssemblerError):
    """The user's input (options, documents) cannot be used."""

    exit_status = EXIT_BAD_INPUT


class ManifestError(InputError):
    """A document is unreadable or does not match its schema."""

    def __init__(self, source: str, place: str, problem: str) -> None:
        self.source = source
        self.place = place
        self.problem = problem
        where = f"{source}: {place}: " if place else f"{source}: "
        super().__init__(f"{where}{problem}")


class InvalidInputsError(InputError):
    """One or more documents are invalid; every problem found is listed, one per line."""

    def __init__(self, problems: list[ManifestError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


class JobsFileError(InputError):
    """A batch's jobs file cannot be read at all: missing, unreadable or not UTF-8."""


class OutputDirError(InputError):
    """The output directory is a file, or cannot be created or written; checked before work."""


class ReportError(InputError):
    """A directory to verify holds no readable `report.json` (nor a batch's `batch.json`)."""


class UsageError(InputError):
    """The command line itself is wrong (an unknown option, a missing source)."""


class DownloadError(AssemblerError):
    """A part could not be downloaded for good."""

    exit_status = EXIT_DOWNLOAD_FAILED

    def __init__(self, part_id: str, message: str) -> None:
        self.part_id = part_id
        super().__init__(message)


class HTTPStatusError(DownloadError):
    """The server answered with a status that retrying will not change."""

    def __init__(self, part_id: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(part_id, message)


class LinkExpiredError(HTTPStatusError):
    """The part's signed link has expired; only a fresh manifest helps."""


class TransferError(DownloadError):
    """The transfer kept failing (connection, timeout, short body) until retries ran out."""


class NotMediaError(DownloadError):
    """The response was an error page or empty instead of the part's media."""


class StorageError(DownloadError):
    """A part, track or report could not be written to disk (no space, read-only, permissions)."""


def storage_error(part_id: str, label: str, error: OSError) -> StorageError:
    """The disk failing a part's or document's download; `label` ("part X") starts the message."""
    return StorageError(part_id, f"{label}: cannot write {error.filename or 'to disk'}: "
                        f"{error.strerror or error}")


class RenderError(AssemblerError):
    """A track could not be rendered."""

    def __init__(self, message: str, *, part_id: str | None = None) -> None:
        self.part_id = part_id  # the part at fault, when it is one part
        super().__init__(message)


class FFmpegNotFoundError(RenderError):
    """Neither ffmpeg on PATH nor the imageio-ffmpeg binary is available."""


class FFmpegError(RenderError):
    """ffmpeg exited with a non-zero status."""

    def __init__(self, message: str, stderr: str = "") -> None:
        self.stderr = stderr
        super().__init__(message)


class MediaError(RenderError):
    """A part's media cannot be opened or lacks the stream its track needs."""


class CopyNotPossibleError(RenderError):
    """The track's parts cannot be joined by stream copy (codec, size or layout differ)."""


class DeliverableError(AssemblerError):
    """A deliverable (captions, timeline, mix, ...) could not be made from the run's tracks."""
