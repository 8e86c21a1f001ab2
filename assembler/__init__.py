"""assembler: turn a meeting recording's per-participant parts into aligned tracks.

The library API, stage by stage: load the documents, plan the timeline,
download the parts, render the tracks, report; `run_recording` does all of it
for one recording, `run_batch` for a jobs file of them.
"""

from __future__ import annotations

from .batch import BatchOutcome, run_batch
from .download import DownloadResults, DownloadSettings, PartDownload, download_parts
from .errors import AssemblerError
from .manifest import Documents, Sources, load_documents
from .pipeline import RunOptions, RunOutcome, plan_recording, run_recording
from .plan import Plan, TrackPlan, make_plan, plan_as_json
from .render import RenderedTrack, RenderSettings, render_track
from .report import Report, build_report

__all__ = [
    "AssemblerError",
    "BatchOutcome",
    "Documents",
    "DownloadResults",
    "DownloadSettings",
    "PartDownload",
    "Plan",
    "RenderSettings",
    "RenderedTrack",
    "Report",
    "RunOptions",
    "RunOutcome",
    "Sources",
    "TrackPlan",
    "build_report",
    "download_parts",
    "load_documents",
    "make_plan",
    "plan_as_json",
    "plan_recording",
    "render_track",
    "run_batch",
    "run_recording",
]
