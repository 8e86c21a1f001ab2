"""assembler: turn a meeting recording's per-participant parts into aligned tracks.

`assemble` makes one recording from a script, as `assembler run` does. The
library API, stage by stage: load the documents (`load_documents`, with
`fetch_document` for URLs), plan the timeline (`make_plan`, pure), download
the parts (`download_parts`), probe them (`probe_many`), render the tracks
(`render_track`), report (`build_report`), make the deliverables
(`make_deliverables`) and write the report (`write_json`). `run_recording` is
`assemble` for async code, `download_recording` only fetches the parts,
`run_batch` runs a jobs file of recordings. Errors raised on purpose are
`AssemblerError`s, each carrying the exit status the CLI would return
(`exit_status`).

Names are imported on first use (PEP 562): `import assembler` and the CLI's
`--help` do not pay for aiohttp, pydantic or the renderers up front.
"""

from __future__ import annotations

import importlib as _importlib
import logging as _logging
import typing as _typing

# The application decides where logs go (the CLI does): a script that configures no
# logging hears nothing, instead of Python's last-resort printer on stderr.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

if _typing.TYPE_CHECKING:
    from .batch import BatchEvents, BatchOutcome, Row, run_batch
    from .deliverables import DeliverableContext, DeliverableOptions, make_deliverables
    from .download import (
        DownloadProgress,
        DownloadResults,
        DownloadSettings,
        PartDownload,
        download_parts,
        fetch_document,
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
    from .ffmpeg_process import FfmpegSlots
    from .library import assemble
    from .manifest import Documents, Sources, load_documents
    from .media import MediaInfo, probe_many
    from .pipeline import (
        DownloadOutcome,
        RunEvents,
        RunOptions,
        RunOutcome,
        download_recording,
        plan_recording,
        run_recording,
    )
    from .plan import KINDS, Kind, Plan, TrackPlan, make_plan, plan_as_json
    from .render import RenderedTrack, RenderSettings, render_track
    from .report import Report, build_report, write_json

__all__ = [
    "KINDS",
    "AssemblerError",
    "BatchEvents",
    "BatchOutcome",
    "DeliverableContext",
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
    "Kind",
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
    "assemble",
    "build_report",
    "download_parts",
    "download_recording",
    "fetch_document",
    "load_documents",
    "make_deliverables",
    "make_plan",
    "plan_as_json",
    "plan_recording",
    "probe_many",
    "render_track",
    "run_batch",
    "run_recording",
    "write_json",
]

# Where each public name lives.
_MODULES = {
    "KINDS": "plan",
    "AssemblerError": "errors",
    "DeliverableContext": "deliverables",
    "Kind": "plan",
    "assemble": "library",
    "fetch_document": "download",
    "write_json": "report",
    "BatchEvents": "batch",
    "BatchOutcome": "batch",
    "DeliverableError": "errors",
    "DeliverableOptions": "deliverables",
    "Documents": "manifest",
    "DownloadError": "errors",
    "DownloadOutcome": "pipeline",
    "DownloadProgress": "download",
    "DownloadResults": "download",
    "DownloadSettings": "download",
    "FfmpegSlots": "ffmpeg_process",
    "InputError": "errors",
    "InvalidInputsError": "errors",
    "LinkExpiredError": "errors",
    "ManifestError": "errors",
    "MediaInfo": "media",
    "PartDownload": "download",
    "Plan": "plan",
    "RenderError": "errors",
    "RenderSettings": "render",
    "RenderedTrack": "render",
    "Report": "report",
    "Row": "batch",
    "RunEvents": "pipeline",
    "RunOptions": "pipeline",
    "RunOutcome": "pipeline",
    "Sources": "manifest",
    "StorageError": "errors",
    "TrackPlan": "plan",
    "build_report": "report",
    "download_parts": "download",
    "download_recording": "pipeline",
    "load_documents": "manifest",
    "make_deliverables": "deliverables",
    "make_plan": "plan",
    "plan_as_json": "plan",
    "plan_recording": "pipeline",
    "probe_many": "media",
    "render_track": "render",
    "run_batch": "batch",
    "run_recording": "pipeline",
}


def __getattr__(name: str) -> object:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
