"""Reruns into the same directory: what the previous run made, what of it is kept, what goes.

The previous `report.json` lists every track and deliverable file it made,
each with its sha256 and its `inputs`: a digest of everything its content
depends on. A rerun keeps a file (no download, no ffmpeg) when the new run
would make it with the same `inputs` and the file on disk still has the
listed sha256; its report entry is then the previous one, as if made again.

What a track's content depends on (`track_inputs`): its whole `TrackPlan`
(path, kind, rate, length, every slot and segment, the participant's name and
the recording's start, which the file carries as metadata), each part's file
name and URL without the query (a re-signed link is the same part), and the
render settings that reach it: the audio format for audio; the video
strategy, x264 preset, CRF and maximum height for video (the frame rate and
the duration are in the placement). A changed manifest moves a part, renames
a participant or swaps a part's URL path, and so changes the digest.

What a deliverable depends on (`output_inputs`): every document but the part
manifests (participants, events, speaker timeline, transcript), the whole
plan, the sha256 of every track of the run, the render settings, the
deliverable options but the ones that only switch a kind on or off, the
output's own kind, format and path, and the deliverables made before it.
So adding `--mix` to a finished run makes only the mix.

A file the previous report listed that the new run does not make (another
audio format, a participant left out, a deliverable no longer asked for, a
track that failed this time) is removed (`remove_stale`). Nothing else is
ever touched: a file the report did not list stays, whatever its name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, get_args

from .errors import redact_url
from .plan import plan_as_json
from .render import RenderedTrack
from .report import OutputEntry, OutputKind, WarningEntry, read_report, sha256_file

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .deliverables import DeliverableContext, Output
    from .manifest import Documents
    from .plan import Plan, TrackPlan
    from .render import RenderSettings
    from .report import Report

__all__ = ["PreviousRun", "drop_parts", "output_inputs", "outputs_base", "remove_stale",
           "track_inputs"]

log = logging.getLogger(__name__)

# Raised when what a file's content depends on changes in a way the digests cannot see
# (a new way of rendering): every file made before is then made again.
RECIPE = 1


def _digest(data: object) -> str:
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)  # Fractions and datetimes as their exact text
    return hashlib.sha256(text.encode()).hexdigest()


def track_inputs(track: TrackPlan, documents: Documents, plan: Plan,
                 render: RenderSettings) -> str:
    """Digest of everything `track`'s file depends on (see the module docstring)."""
    urls = {part.id: redact_url(str(part.download_url))
            for part in (*documents.audio_parts, *documents.video_parts)}
    settings: dict[str, object] = (
        {"audio_format": render.audio_format} if track.kind == "audio" else
        {"video_strategy": render.video_strategy, "x264_preset": render.x264_preset,
         "crf": render.crf, "max_height": render.max_height})
    return _digest({
        "recipe": RECIPE,
        "track": dataclasses.asdict(track),  # placement, and what the file says of itself
        "parts": {part_id: [plan.part_files.get(part_id), urls.get(part_id)]
                  for part_id in track.parts},
        "render": settings,
    })


def outputs_base(context: DeliverableContext) -> str:
    """Digest of what every deliverable of a run depends on, before its own output."""
    documents = context.documents
    selecting = set(get_args(OutputKind))  # options that only switch a deliverable on
    options = {name: value for name, value in dataclasses.asdict(context.options).items()
               if name not in selecting}
    tracks = {track["path"]: track["sha256"] for person in context.report["participants"]
              for track in person["tracks"]}
    return _digest({
        "recipe": RECIPE,
        "documents": {name: [item.model_dump(mode="json") for item in getattr(documents, name)]
                      for name in ("participants", "participant_events", "speaker_timeline",
                                   "transcript")},
        "plan": plan_as_json(context.plan), "tracks": tracks,
        "render": dataclasses.asdict(context.render), "options": options,
    })


def output_inputs(base: str, output: Output, made: Iterable[OutputEntry]) -> str:
    """Digest of what one deliverable file depends on: `base`, itself, what came before."""
    return _digest({"base": base, "kind": output.kind, "format": output.format,
                    "path": output.path, "participant": output.participant,
                    "made": [[entry["path"], entry.get("sha256")] for entry in made]})


@dataclass(frozen=True, slots=True)
class _Listed:
    entry: dict[str, Any]
    warnings: list[dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousRun:
    """What `out_dir/report.json` says the previous run made; empty when there is none.

    With `reuse=False` (`--force`) nothing is kept, but stale files are still
    known, so `remove_stale` works the same.
    """

    out_dir: Path
    raw: dict[str, Any] | None = None
    tracks: dict[str, _Listed] = field(default_factory=dict)
    outputs: dict[str, _Listed] = field(default_factory=dict)
    reuse: bool = True
    # Paths `kept_track` and `kept_output` handed back: the files this run keeps as they are.
    # A file made again comes out the same, so its report entry cannot tell.
    kept: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, out_dir: Path, report_name: str, *, reuse: bool = True) -> PreviousRun:
        raw = read_report(out_dir / report_name)
        try:
            tracks, outputs = _listed(raw) if raw is not None else ({}, {})
        except (KeyError, TypeError, AttributeError):  # not a report this version wrote
            log.warning("%s is not a report I can read; making everything again",
                        out_dir / report_name)
            raw, tracks, outputs = None, {}, {}
        return cls(out_dir=out_dir, raw=raw, tracks=tracks, outputs=outputs, reuse=reuse)

    def _unchanged(self, listed: _Listed | None, inputs: str) -> bool:
        if not self.reuse or listed is None or listed.entry.get("inputs") != inputs:
            return False
        path = self.out_dir / listed.entry["path"]
        try:
            return path.is_file() and sha256_file(path) == listed.entry.get("sha256")
        except OSError:
            return False

    def kept_track(self, track: TrackPlan, inputs: str, plan: Plan) -> RenderedTrack | None:
        """The track as the previous run made it, when its file can be kept as it is."""
        listed = self.tracks.get(track.path)
        if listed is None or not self._unchanged(listed, inputs):
            return None
        entry = listed.entry
        rate = Fraction(entry["rate"])
        placed = track if rate == track.rate else track.at_rate(rate)  # a copied video track
        if placed.length != entry["units"] or entry["kind"] != track.kind:
            return None
        planned = {(warning.part_id, warning.message) for warning in plan.warnings}
        warnings = tuple((warning["part"], warning["message"]) for warning in listed.warnings
                         if (warning["part"], warning["message"]) not in planned)
        self.kept.add(track.path)
        return RenderedTrack(track=placed, path=self.out_dir / track.path,
                             strategy=entry["strategy"], reason=entry.get("reason"),
                             blank=tuple((start, end) for start, end in entry.get("blank", [])),
                             warnings=warnings, kept=True)

    def kept_output(self, path: str, inputs: str
                    ) -> tuple[OutputEntry, list[WarningEntry]] | None:
        """A deliverable's report entry and warnings, when its file can be kept as it is."""
        listed = self.outputs.get(path)
        if listed is None or not self._unchanged(listed, inputs):
            return None
        entry: OutputEntry = listed.entry  # type: ignore[assignment]
        self.kept.add(path)
        return entry, listed.warnings  # type: ignore[return-value]

    def listed_paths(self) -> set[str]:
        return {*self.tracks, *self.outputs}


def _listed(raw: dict[str, Any]) -> tuple[dict[str, _Listed], dict[str, _Listed]]:
    by_part: dict[str, list[dict[str, Any]]] = {}
    by_output: dict[str, list[dict[str, Any]]] = {}
    for warning in raw.get("warnings", []):
        if "part" in warning:
            by_part.setdefault(str(warning["part"]), []).append(warning)
        if "output" in warning:
            by_output.setdefault(str(warning["output"]), []).append(warning)
    tracks = {}
    for person in raw.get("participants", []):
        for entry in person["tracks"]:
            parts = entry.get("parts", [])
            tracks[str(entry["path"])] = _Listed(
                entry, [warning for part in parts for warning in by_part.get(part, [])])
    outputs = {str(entry["path"]): _Listed(entry, by_output.get(entry["path"], []))
               for entry in raw.get("outputs", []) if "error" not in entry}
    return tracks, outputs


def _made_paths(report: Report) -> set[str]:
    tracks = {track["path"] for person in report["participants"] for track in person["tracks"]}
    return tracks | {output["path"] for output in report["outputs"] if "error" not in output}


def _inside(out_dir: Path, relative: str) -> Path | None:
    """`out_dir / relative` when it names a file a run writes, never the report or a part."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts \
            or pure.parts[0] == "parts" or pure.parts == ("report.json",):
        return None
    return out_dir.joinpath(*pure.parts)


def remove_stale(previous: PreviousRun, report: Report) -> list[str]:
    """Remove each file the previous report listed that this run did not make; return them.

    Empty directories they leave (a participant's) go too; nothing else is touched.
    """
    removed = []
    for relative in sorted(previous.listed_paths() - _made_paths(report)):
        path = _inside(previous.out_dir, relative)
        if path is None or not path.is_file():
            continue
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not remove %s, made by an earlier run: %s", relative,
                        exc.strerror or exc)
            continue
        removed.append(relative)
        log.info("removed %s: made by an earlier run, not by this one", relative)
        _remove_empty_parents(path, previous.out_dir)
    return removed


def _remove_empty_parents(path: Path, out_dir: Path) -> None:
    parent = path.parent
    while parent != out_dir and out_dir in parent.parents:
        try:
            parent.rmdir()  # only when empty: a user's file keeps its directory
        except OSError:
            return
        parent = parent.parent


def drop_parts(parts_dir: Path, files: Mapping[str, str]) -> None:
    """Remove the downloaded parts named in `files`, and `parts_dir` when that empties it."""
    for name in files.values():
        (parts_dir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not there, or holds something else: leave it
        parts_dir.rmdir()
