"""The deliverables stage: what editors and archives get besides the tracks.

After render, each deliverable the options ask for is made from the run's
tracks and documents, one after another in `registry()` order (a later one
may use an earlier one's files: the archive holds the captions). A
deliverable names the files it will write (`outputs`) and then writes each
(`write`) under a temporary name that becomes the real one only when it is
whole. One that fails becomes an `outputs` entry with `error`; its file is
not left on disk under its name, and the others are still made.

Adding a deliverable: one module in this package with an object that meets
`Deliverable`, its line in `registry()`, its option in `DeliverableOptions`
below and its flag in the CLI.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from .._publish import publishing
from ..errors import AssemblerError, one_line
from ..report import OutputEntry, OutputKind, WarningEntry, sha256_file, with_outputs
from ..rerun import output_inputs, outputs_base

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ..ffmpeg_process import FfmpegSlots
    from ..manifest import Documents
    from ..plan import Plan
    from ..render import RenderedTrack, RenderSettings
    from ..report import Report
    from ..rerun import PreviousRun

__all__ = ["Deliverable", "DeliverableContext", "DeliverableOptions", "Output", "make_deliverables",
           "registry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverableOptions:
    """Which deliverables a run makes; all off by default (the contract's options)."""

    captions: tuple[str, ...] = ()  # caption formats: "vtt", "srt"
    timeline: tuple[str, ...] = ()  # timeline formats: "otio", "fcp7xml"
    mix: bool = False  # DIR/mix.<audio format>, loudness-normalised
    loudness: float = -16.0  # the mix's integrated loudness target, LUFS
    av: bool = False  # participants/<dir>/av.mp4: webcam with voice
    archive: bool = False  # DIR/recording.mkv: every track, stream copy

    def __post_init__(self) -> None:
        if not -70.0 <= self.loudness <= -5.0:
            raise ValueError("loudness must be between -70 and -5 LUFS")

    @property
    def asked(self) -> bool:
        """Whether any deliverable is asked for: if none, no deliverable module is loaded."""
        return bool(self.captions or self.timeline or self.mix or self.av or self.archive)


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """One file a deliverable will write: `path` is relative to the output directory."""

    kind: OutputKind
    format: str
    path: str
    participant: int | None = None  # whose file it is, for per-participant deliverables


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverableContext:
    """Everything a deliverable may read; nothing in it is changed by a deliverable.

    `tracks` are the tracks written, in plan order; `report` is the report so
    far (tracks, failures and the deliverables made before this one), as it
    would be written now.
    """

    out_dir: Path
    documents: Documents
    plan: Plan
    tracks: tuple[RenderedTrack, ...]
    render: RenderSettings
    options: DeliverableOptions
    report: Report
    made: tuple[OutputEntry, ...] = ()  # outputs of the deliverables before this one


class Deliverable(Protocol):
    """One kind of deliverable. Methods run in a worker thread holding one ffmpeg slot."""

    kind: OutputKind

    def wanted(self, options: DeliverableOptions) -> bool:
        """True when the options ask for this deliverable."""
        ...

    def outputs(self, context: DeliverableContext) -> list[Output]:
        """The files this deliverable will write for this run; no I/O."""
        ...

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        """Write `output` to `target` (a temporary name); return warnings, one line each.

        Raises `AssemblerError` (usually `DeliverableError` or `FFmpegError`)
        when the file cannot be made.
        """
        ...


def registry() -> tuple[Deliverable, ...]:
    """Every deliverable, in the order they are made: captions before the archive holding them.

    Their modules load here, when deliverables are made, not with the package:
    OpenTimelineIO and the rest would add a tenth of a second to every start.
    """
    from .archive import ARCHIVE
    from .av import AV
    from .captions import CAPTIONS
    from .mix import MIX
    from .timeline import TIMELINE

    return (CAPTIONS, TIMELINE, MIX, AV, ARCHIVE)


@dataclass(slots=True)
class _Made:
    entries: list[OutputEntry] = field(default_factory=list)
    warnings: list[WarningEntry] = field(default_factory=list)


def _entry(output: Output) -> OutputEntry:
    entry: OutputEntry = {"kind": output.kind, "format": output.format, "path": output.path}
    if output.participant is not None:
        entry["participant"] = output.participant
    return entry


def _write_one(deliverable: Deliverable, context: DeliverableContext, output: Output,
               made: _Made, inputs: str) -> None:
    entry = _entry(output)
    path = context.out_dir / output.path
    try:
        with publishing(path) as target:
            warnings = deliverable.write(context, output, target)
        entry["sha256"] = sha256_file(path)
        entry["inputs"] = inputs
    except AssemblerError as error:
        entry["error"] = one_line(error)
        log.error("%s not written: %s", output.path, entry["error"])
    except OSError as error:
        entry["error"] = f"cannot write {output.path}: {error.strerror or error}"
        log.error("%s", entry["error"])
    except Exception as error:  # a bug in one deliverable must cost that file, not the run
        log.exception("%s not written", output.path)
        entry["error"] = f"unexpected {type(error).__name__}: {one_line(error)}"
    else:
        made.warnings.extend({"output": output.path, "message": warning}
                             for warning in warnings)
    made.entries.append(entry)



async def make_deliverables(context: DeliverableContext, ffmpeg: FfmpegSlots,
                            deliverables: Sequence[Deliverable] | None = None, *,
                            previous: PreviousRun | None = None) -> Report:
    """Make every deliverable `context.options` asks for; return the report with `outputs`.

    Each file is written in a worker thread holding one of `ffmpeg`'s slots.
    A file `previous` (the run before, in the same directory) made from the
    same inputs, and still as it was, is kept instead (see `rerun.py`).
    Failures never raise: they are `outputs` entries with `error`, and the
    returned report is then not `complete`.
    """
    made = _Made()
    base = outputs_base(context)
    if deliverables is None:
        deliverables = registry() if context.options.asked else ()
    for deliverable in deliverables:
        if not deliverable.wanted(context.options):
            continue
        now = replace(context, made=tuple(made.entries),
                      report=with_outputs(context.report, list(made.entries), made.warnings))
        for output in deliverable.outputs(now):
            inputs = output_inputs(base, output, made.entries)
            kept = previous.kept_output(output.path, inputs) if previous else None
            if kept:
                made.entries.append(kept[0])
                made.warnings.extend(kept[1])
            else:
                await ffmpeg.call(_write_one, deliverable, now, output, made, inputs)
    return with_outputs(context.report, made.entries, made.warnings)
