"""assembler: turn a meeting recording's per-participant parts into aligned tracks.

The library API, stage by stage: load the documents (`load_documents`), plan
the timeline (`make_plan`), download the parts (`download_parts`), render the
tracks (`render_track`), make the deliverables (`make_deliverables`) and
report (`build_report`). `run_recording` does all of it for one recording,
`download_recording` only fetches its parts, `run_batch` runs a jobs file of
recordings. Errors raised on purpose are `AssemblerError`s, each carrying the
exit status the CLI would return (`exit_status`).
"""

from __future__ import annotations

from .batch import BatchEvents, BatchOutcome, Row, run_batch
from .deliverables import DeliverableOptions, make_deliverables
from .download import (
    DownloadProgress,
    DownloadResults,
    DownloadSettings,
    PartDownload,
    download_parts,
)
from .errors import (
    AssemblerError,
    DeliverableError,
    DownloadError,
    InputError,
    InvalidInputsError,
    LinkExpiredError,
    ManifestError,
    RenderError,
    StorageError,
)
from .manifest import Documents, Sources, load_documents
from .media import FfmpegSlots, MediaInfo, probe_many
from .pipeline import (
    DownloadOutcome,
    RunEvents,
    RunOptions,
    RunOutcome,
    download_recording,
    plan_recording,
    run_recording,
)
from .plan import Plan, TrackPlan, make_plan, plan_as_json
from .render import RenderedTrack, RenderSettings, render_track
from .report import Report, build_report

__all__ = [
    "AssemblerError",
    "BatchEvents",
    "BatchOutcome",
    "DeliverableError",
    "DeliverableOptions",
    "Documents",
    "DownloadError",
    "DownloadOutcome",
    "DownloadProgress",
    "DownloadResults",
    "DownloadSettings",
    "FfmpegSlots",
    "InputError",
    "InvalidInputsError",
    "LinkExpiredError",
    "ManifestError",
    "MediaInfo",
    "PartDownload",
    "Plan",
    "RenderError",
    "RenderSettings",
    "RenderedTrack",
    "Report",
    "Row",
    "RunEvents",
    "RunOptions",
    "RunOutcome",
    "Sources",
    "StorageError",
    "TrackPlan",
    "build_report",
    "download_parts",
    "download_recording",
    "load_documents",
    "make_deliverables",
    "make_plan",
    "plan_as_json",
    "plan_recording",
    "probe_many",
    "render_track",
    "run_batch",
    "run_recording",
]
