"""`assembler verify`: are the files a run wrote still exactly what it wrote?

Every file `report.json` lists (tracks, and deliverables that were made) is
read and its SHA-256 compared with the report's; with `decode`, a file that
still matches is also decoded (audio and video streams) and must decode
without an error to its duration. A deliverable listed with `error` was never
written: it is not on disk by design, was already reported as failed, and is
not checked. A path that would leave the directory is a difference, never
opened. Verifying reads only: nothing is written, renamed or touched.

On a batch root (one holding `batch.json`) every recording the ledger lists
is verified in turn; a recording the ledger says failed or was invalid and
that has no report is not a difference (it was reported already), one that
finished and has lost its report is.

The library returns data; `cli.py` prints it.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ReportError
from .ffmpeg_process import file_arg, run_ffmpeg
from .report import sha256_file

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["BatchCheck", "BatchEntry", "Difference", "RecordingCheck", "VerifyProgress", "is_batch",
           "verify_batch", "verify_recording"]

REPORT_NAME = "report.json"
BATCH_NAME = "batch.json"
# Deliverables that are media: decoded with `decode`, each stream to the timeline length.
MEDIA_OUTPUTS = frozenset({"mix", "av", "archive"})
AUDIO_TOLERANCE = 0.002  # seconds a decoded audio stream may differ from its duration

Problem = Literal["missing", "changed", "unreadable", "outside", "unchecked", "undecodable",
                  "length"]


class VerifyProgress(Protocol):
    """What a caller hears while files are read: bytes to hash, then each chunk hashed."""

    def bytes_planned(self, nbytes: int) -> None: ...  # more to hash: one recording's files
    def bytes_hashed(self, nbytes: int) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Difference:
    """One file that is not what the report says: `path` relative to the recording."""

    path: str
    problem: Problem
    detail: str  # one line


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingCheck:
    """What `verify_recording` found in one directory."""

    directory: Path
    checked: int  # files the report lists and that were looked at
    not_made: tuple[str, ...]  # deliverables the report lists as failed: not on disk by design
    differences: tuple[Difference, ...]

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchEntry:
    """One recording of a batch: its check, or why it has none."""

    id: str
    check: RecordingCheck | None  # None: no readable report
    problem: str | None = None  # why there is no check, one line
    not_made: str | None = None  # "failed" or "invalid" in batch.json: no report is expected
    failed_run: int | None = None  # the exit status batch.json gives a run that failed

    @property
    def ok(self) -> bool:
        return self.check.ok if self.check is not None else self.not_made is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchCheck:
    """What `verify_batch` found, one entry per recording in the ledger's order."""

    recordings: tuple[BatchEntry, ...]

    @property
    def ok(self) -> bool:
        return all(entry.ok for entry in self.recordings)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


M = TypeVar("M", bound=_Lenient)


class _Track(_Lenient):
    path: str
    sha256: str | None = None
    duration: float | None = None


class _Participant(_Lenient):
    tracks: list[_Track] = []


class _Output(_Lenient):
    kind: str
    path: str
    sha256: str | None = None
    error: str | None = None


class _Timeline(_Lenient):
    duration: float


class _Report(_Lenient):
    """The part of `report.json` that verify reads; any version with `sha256` per track."""

    participants: list[_Participant]
    outputs: list[_Output] = []
    timeline: _Timeline | None = None


class _Row(_Lenient):
    id: str | None = None
    status: str = "ok"
    exit: int | None = None
    error: str | None = None


class _Ledger(_Lenient):
    recordings: list[_Row]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Listed:
    path: str
    sha256: str | None
    duration: float | None  # decode to this many seconds; None: not media


def _read_json(path: Path, model: type[M]) -> M:
    try:
        return model.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ReportError(f"{path}: not found") from None
    except OSError as error:
        raise ReportError(f"{path}: cannot be read ({error.strerror or error})") from None
    except ValidationError as error:
        first = error.errors()[0]
        place = ".".join(str(key) for key in first["loc"]) or "top level"
        raise ReportError(f"{path}: not a readable {path.name}: {place}: {first['msg']}") from None
    except ValueError as error:  # not JSON, or not UTF-8
        raise ReportError(f"{path}: not a readable {path.name}: {error}") from None


def _listed(report: _Report) -> tuple[list[_Listed], list[str]]:
    """Every file the report says is on disk, and the deliverables it says were not made."""
    files = [_Listed(path=track.path, sha256=track.sha256, duration=track.duration)
             for person in report.participants for track in person.tracks]
    timeline = report.timeline.duration if report.timeline else None
    not_made = []
    for output in report.outputs:
        if output.error is not None:
            not_made.append(output.path)
            continue
        files.append(_Listed(path=output.path, sha256=output.sha256,
                             duration=timeline if output.kind in MEDIA_OUTPUTS else None))
    return files, not_made


def _inside(directory: Path, relative: str) -> Path | None:
    """`directory / relative`, or None when that would leave `directory`."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not relative:
        return None
    path = directory / pure
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:  # a symlink out of the directory
        return None
    return path


def verify_recording(directory: Path, *, decode: bool = False,
                     progress: VerifyProgress | None = None) -> RecordingCheck:
    """Check every file `directory/report.json` lists against its `sha256` (and decode it).

    Raises `ReportError` when there is no readable report.
    """
    report = _read_json(directory / REPORT_NAME, _Report)
    files, not_made = _listed(report)
    if progress:
        progress.bytes_planned(sum(_size(directory, item.path) for item in files))
    differences = [found for item in files
                   if (found := _check(directory, item, decode, progress)) is not None]
    return RecordingCheck(directory=directory, checked=len(files), not_made=tuple(not_made),
                          differences=tuple(differences))


def _size(directory: Path, relative: str) -> int:
    path = _inside(directory, relative)
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


def _check(directory: Path, item: _Listed, decode: bool,
           progress: VerifyProgress | None) -> Difference | None:
    path = _inside(directory, item.path)
    if path is None:
        return Difference(path=item.path, problem="outside",
                          detail="the report names a path outside the directory; not read")
    if item.sha256 is None:
        return Difference(path=item.path, problem="unchecked",
                          detail="the report gives no sha256 to compare with")
    try:
        digest = sha256_file(path, progress.bytes_hashed if progress else None)
    except FileNotFoundError:
        return Difference(path=item.path, problem="missing", detail="not found")
    except OSError as error:
        return Difference(path=item.path, problem="unreadable",
                          detail=f"cannot be read ({error.strerror or error})")
    if digest != item.sha256.lower():
        return Difference(path=item.path, problem="changed",
                          detail="sha256 differs from the report's")
    if decode and item.duration is not None:
        return _decode_check(path, item)
    return None


# framecrc lines: stream index, dts, pts, duration, size, crc.
_FRAME = re.compile(r"^(\d+),\s*-?\d+,\s*(-?\d+),\s*(\d+),", re.M)
_TIME_BASE = re.compile(r"^#tb (\d+): (\d+)/(\d+)", re.M)
_MEDIA_TYPE = re.compile(r"^#media_type (\d+): (\w+)", re.M)


def _decode_check(path: Path, item: _Listed) -> Difference | None:
    """Decode every audio and video stream; each must end within a frame of `duration`."""
    with tempfile.TemporaryDirectory(prefix="assembler-verify-") as scratch:
        listing = Path(scratch) / "frames.txt"
        # wrapped_avframe: frames are decoded, then passed on without encoding anything.
        errors = run_ffmpeg(["-v", "error", "-i", file_arg(path), "-map", "0:v?", "-map", "0:a?",
                             "-c:v", "wrapped_avframe", "-c:a", "pcm_s16le",
                             "-fps_mode", "passthrough", "-f", "framecrc", file_arg(listing)],
                            check=False).strip()
        text = listing.read_text(encoding="ascii", errors="replace") if listing.exists() else ""
    if errors:
        return Difference(path=item.path, problem="undecodable", detail=errors.splitlines()[0])
    assert item.duration is not None
    for kind, end, tolerance in _stream_ends(text):
        if abs(end - item.duration) > tolerance:
            return Difference(path=item.path, problem="length",
                              detail=f"its {kind} decodes to {end:.3f} s, not {item.duration:g} s")
    return None


def _stream_ends(text: str) -> Iterator[tuple[str, float, float]]:
    """(media type, end in seconds, tolerance in seconds) of each stream in a framecrc text."""
    bases = {int(m[1]): Fraction(int(m[2]), int(m[3])) for m in _TIME_BASE.finditer(text)}
    kinds = {int(m[1]): m[2] for m in _MEDIA_TYPE.finditer(text)}
    ends: dict[int, int] = {}
    longest: dict[int, int] = {}
    for match in _FRAME.finditer(text):
        stream, pts, duration = int(match[1]), int(match[2]), int(match[3])
        ends[stream] = max(ends.get(stream, pts + duration), pts + duration)
        longest[stream] = max(longest.get(stream, 0), duration)
    for stream, base in bases.items():
        if stream not in ends:
            yield kinds.get(stream, "stream"), 0.0, 0.0
            continue
        frame = float(longest[stream] * base)
        tolerance = AUDIO_TOLERANCE if kinds.get(stream) == "audio" else frame
        yield kinds.get(stream, "stream"), float(ends[stream] * base), tolerance


def is_batch(directory: Path) -> bool:
    """True when `directory` is a batch root: it holds `batch.json`."""
    return (directory / BATCH_NAME).is_file()


def verify_batch(root: Path, *, decode: bool = False,
                 progress: VerifyProgress | None = None) -> BatchCheck:
    """Verify every recording `root/batch.json` lists, in the ledger's order.

    Raises `ReportError` when `batch.json` cannot be read or lists no recording: a
    check of nothing must not pass for one of everything.
    """
    ledger = _read_json(root / BATCH_NAME, _Ledger)
    rows = [row for row in ledger.recordings if row.id]
    if not rows:
        raise ReportError(f"{root / BATCH_NAME}: lists no recording to verify")
    # An invalid line made nothing: its id may not even be a name, or may repeat one that
    # another line made (a duplicate), which is checked once, under that line.
    made = {row.id for row in rows if row.status != "invalid"}
    entries = []
    for row, directory in _recording_dirs(root, rows):
        name = row.id or ""
        if row.status == "invalid":
            if name not in made:
                entries.append(BatchEntry(id=name, check=None, not_made="invalid",
                                          problem=row.error or "its inputs were invalid"))
            continue
        if directory is None:
            entries.append(BatchEntry(id=name, check=None,
                                      problem=f"{name!r} is not a directory name"))
            continue
        try:
            entries.append(BatchEntry(id=name, check=verify_recording(
                directory, decode=decode, progress=progress),
                failed_run=row.exit if row.status == "failed" else None))
        except ReportError as error:
            entries.append(BatchEntry(id=name, check=None, problem=str(error),
                                      not_made="failed" if row.status == "failed" else None))
    return BatchCheck(recordings=tuple(entries))


def _recording_dirs(root: Path, rows: Sequence[_Row]) -> Iterator[tuple[_Row, Path | None]]:
    """Each row with its directory: `root/<id>`, or None for an id that is not one name."""
    for row in rows:
        name = row.id or ""
        path = _inside(root, name)
        yield row, path if path is not None and PurePosixPath(name).name == name else None
