"""`report.json`: what a run made, typed so mypy checks its keys against the contract.

The contract's keys come first (`outputs` is the contract's deliverables
list); the keys this project adds (`complete`, `inputs`, `warnings`,
`recording_start`, per track `reason`, `rate`, `units`, `blank`, per failure `track`,
per output `participant`) only ever add to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .plan import Plan
    from .render import RenderedTrack

__all__ = ["FailureEntry", "OutputEntry", "OutputKind", "Report", "WarningEntry", "build_report",
           "read_report", "sha256_file", "with_outputs", "write_json"]

REPORT_VERSION = 1
_HASH_CHUNK = 1 << 20  # bytes read per step when hashing


class TrackEntry(TypedDict):
    kind: Literal["audio", "webcam", "screenshare"]
    path: str
    duration: float
    strategy: Literal["encode", "copy"]
    parts: list[str]
    gaps: list[list[float]]
    sha256: str
    reason: NotRequired[str]  # why `auto` encoded rather than copied
    rate: str  # units per second: "48000" or a frame rate such as "30" or "30000/1001"
    units: int  # samples or frames
    # Every span of silence (audio) or black (video), seconds: `gaps`, and what pads
    # media shorter than its slot.
    blank: list[list[float]]
    inputs: NotRequired[str]  # digest of what the file depends on: a rerun keeps it when equal


class ParticipantEntry(TypedDict):
    id: int
    name: str | None
    dir: str
    tracks: list[TrackEntry]


class FailureEntry(TypedDict):
    part: str
    error: str
    track: NotRequired[str]  # the track not written because of it


class WarningEntry(TypedDict):
    part: NotRequired[str]  # the part it is about, when it is about a part
    output: NotRequired[str]  # the deliverable's path, when it is about a deliverable
    message: str


OutputKind = Literal["captions", "timeline", "mix", "av", "archive"]


class OutputEntry(TypedDict):
    """One deliverable file: `sha256` when made, `error` (one line) when not."""

    kind: OutputKind
    format: str
    path: str  # relative to the output directory
    sha256: NotRequired[str]
    error: NotRequired[str]
    participant: NotRequired[int]  # whose file it is, for per-participant deliverables
    inputs: NotRequired[str]  # digest of what the file depends on: a rerun keeps it when equal


class Timeline(TypedDict):
    duration: float


class Report(TypedDict):
    """`report.json`: durations in seconds, paths relative to the output directory."""

    version: int
    timeline: Timeline
    participants: list[ParticipantEntry]
    failures: list[FailureEntry]
    warnings: list[WarningEntry]
    outputs: list[OutputEntry]
    complete: bool  # every planned track and deliverable written, nothing failed
    inputs: str  # fingerprint of the sources and options, for batch reruns
    recording_start: NotRequired[str]  # ISO 8601 UTC time of timeline 0, when documents say


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """Hex SHA-256 of the file at `path`; `progress` hears each chunk's size in bytes.

    Raises `OSError` (`FileNotFoundError` when it is gone).
    """
    digest = hashlib.sha256()
    chunk = bytearray(_HASH_CHUNK)  # one buffer, reused: no allocation per read
    view = memoryview(chunk)
    with path.open("rb", buffering=0) as media:
        while count := media.readinto(chunk):
            digest.update(view[:count])
            if progress:
                progress(count)
    return digest.hexdigest()


def _track_entry(rendered: RenderedTrack, out_dir: Path, inputs: str | None,
                 sha256: str | None) -> TrackEntry:
    track = rendered.track
    entry: TrackEntry = {
        "kind": track.kind,
        "path": track.path,
        "duration": track.duration,
        "strategy": rendered.strategy,
        "parts": list(dict.fromkeys(track.parts)),
        "gaps": [[track.seconds(gap.start), track.seconds(gap.end)] for gap in track.gaps],
        "sha256": sha256 or sha256_file(out_dir / track.path),
        "rate": str(track.rate),
        "units": track.length,
        "blank": [list(span) for span in rendered.blank],
    }
    if rendered.reason:
        entry["reason"] = rendered.reason
    if inputs:
        entry["inputs"] = inputs
    return entry


def build_report(plan: Plan, rendered: list[RenderedTrack], failures: list[FailureEntry],
                 out_dir: Path, inputs: str, *, track_inputs: Mapping[str, str] | None = None,
                 checksums: Mapping[str, str] | None = None) -> Report:
    """The report of a run: every written track, in plan order, with its checksum.

    `track_inputs` gives each track's `inputs` digest by path; `checksums` the
    sha256 already known (of tracks kept from an earlier run), read otherwise.
    """
    by_path = {item.track.path: item for item in rendered}
    warnings: list[WarningEntry] = [{"part": w.part_id, "message": w.message}
                                    for w in plan.warnings]
    for item in rendered:
        warnings.extend({"part": part, "message": message} for part, message in item.warnings)
    participants: list[ParticipantEntry] = []
    for person in plan.participants:
        tracks = [_track_entry(by_path[track.path], out_dir,
                               (track_inputs or {}).get(track.path),
                               (checksums or {}).get(track.path))
                  for track in person.tracks if track.path in by_path]
        participants.append({"id": person.id, "name": person.name, "dir": person.dir,
                             "tracks": tracks})
    report: Report = {
        "version": REPORT_VERSION,
        "timeline": {"duration": float(plan.duration)},
        "participants": participants,
        "failures": failures,
        "warnings": warnings,
        "outputs": [],
        "complete": not failures and len(by_path) == len(plan.tracks),
        "inputs": inputs,
    }
    if plan.start is not None:
        report["recording_start"] = plan.start.isoformat().replace("+00:00", "Z")
    return report


def with_outputs(report: Report, outputs: list[OutputEntry],
                 warnings: list[WarningEntry]) -> Report:
    """`report` with deliverables added: complete only when every one of them was made too."""
    made = all("error" not in output for output in outputs)
    return {**report, "outputs": outputs, "warnings": [*report["warnings"], *warnings],
            "complete": report["complete"] and made}


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one.

    The temporary file is created like any other (the user's umask, not 0600) and
    removed when writing fails, on a full disk say.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_report(path: Path) -> dict[str, Any] | None:
    """An earlier run's report, or None when there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
