"""One recording, end to end: load, plan, download, render, report.

The library never prints or exits: what happened comes back as a `RunOutcome`
and through the `RunEvents` a caller passes in. Only the CLI maps outcomes to
exit codes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .download import (
    DownloadProgress,
    DownloadSettings,
    PartDownload,
    download_parts,
    fetch_document,
)
from .errors import AssemblerError, ManifestError, MediaError, RenderError, StorageError
from .manifest import (
    Documents,
    Sources,
    describe_source,
    is_url,
    load_document,
    load_documents,
)
from .media import MediaInfo, probe_many, stop_all
from .naming import part_filenames
from .plan import DEFAULT_FPS, Plan, TrackPlan, make_plan
from .render import RenderedTrack, RenderSettings, render_track
from .report import FailureEntry, Report, build_report, write_json

if TYPE_CHECKING:
    from .manifest import AudioPart, FetchDocument, VideoPart

__all__ = ["RunEvents", "RunOptions", "RunOutcome", "plan_recording", "run_recording"]

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"
PARTS_DIR = "parts"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    duration: float | None = None
    fps: Fraction = DEFAULT_FPS
    download: DownloadSettings = field(default_factory=DownloadSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    download_only: bool = False
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)  # ffmpeg processes at once

    def __post_init__(self) -> None:
        if self.duration is not None and not self.duration > 0:
            raise ValueError("duration must be > 0 seconds")
        if self.jobs < 1:
            raise ValueError("jobs must be >= 1")
        if not self.fps > 0:
            raise ValueError("fps must be > 0")

    def fingerprint_fields(self) -> dict[str, object]:
        """What changes the output: not concurrency, retries or jobs."""
        render = self.render
        return {"duration": self.duration, "audio_format": render.audio_format,
                "video_strategy": render.video_strategy, "x264_preset": render.x264_preset,
                "crf": render.crf, "fps": str(self.fps),
                "download_only": self.download_only}


class RunEvents(DownloadProgress, Protocol):
    """What a caller hears about a run: download progress plus track progress."""

    def parts_planned(self, count: int) -> None: ...
    def track_started(self, track: TrackPlan) -> None: ...
    def track_finished(self, track: TrackPlan, error: AssemblerError | None) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    report: Report | None  # None for --download-only
    download_failures: Mapping[str, AssemblerError]  # parts lost: not fetched, or unreadable
    render_failures: Mapping[str, AssemblerError]  # by track path


def inputs_fingerprint(sources: Sources, options: RunOptions) -> str:
    """Stable digest of what a run was asked to do, for batch reruns to skip finished work.

    A local document counts by its content (edit a manifest and the recording is
    made again); a URL by its address without the signature, so that deciding
    to skip fetches nothing.
    """
    shown = {name: describe_source(source) if is_url(source) else _content_digest(source)
             for name, source in sources.given().items()}
    text = json.dumps({"sources": shown, "options": options.fingerprint_fields()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _content_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return str(Path(path).resolve())  # unreadable: the run will say so


def _fetcher(settings: DownloadSettings) -> FetchDocument:
    return functools.partial(fetch_document, settings=settings)


async def plan_recording(sources: Sources, options: RunOptions) -> tuple[Documents, Plan]:
    """Load and validate every document, then plan; nothing is downloaded but URL manifests."""
    documents = await load_documents(sources, _fetcher(options.download))
    files = part_filenames((part.id, part.download_url)
                           for part in (*documents.audio_parts, *documents.video_parts))
    plan = make_plan(documents, duration=options.duration,
                     audio_format=options.render.audio_format, fps=options.fps, part_files=files)
    return documents, plan


def _downloads(parts: list[AudioPart | VideoPart], files: Mapping[str, str]) -> list[PartDownload]:
    return [PartDownload(part_id=part.id, url=part.download_url, filename=files[part.id])
            for part in parts]


def _url_refresher(sources: Sources, documents: Documents, fetch: FetchDocument
                   ) -> Callable[[str], Awaitable[str | None]] | None:
    """When a parts manifest came from a URL, an expired link can be renewed by reloading it.

    Links usually expire together: each manifest is reloaded once per run, by the
    first part that needs it, and every part then takes its fresh link from that.
    """
    remote = {name: source for name, source in sources.given().items()
              if name in ("audio_parts", "video_parts") and is_url(source)}
    if not remote:
        return None
    owner = {part.id: "audio_parts" for part in documents.audio_parts}
    owner |= {part.id: "video_parts" for part in documents.video_parts}
    reloads: dict[str, asyncio.Task[dict[str, str]]] = {}

    async def reload(name: str) -> dict[str, str]:
        try:
            parts = await load_document(name, remote[name], fetch)
        except ManifestError as exc:
            log.warning("could not reload %s for fresh links: %s", name, exc)
            return {}
        return {part.id: str(part.download_url) for part in parts}

    async def fresh_url(part_id: str) -> str | None:
        name = owner.get(part_id)
        if name not in remote:
            return None
        if name not in reloads:
            reloads[name] = asyncio.ensure_future(reload(name))
        return (await reloads[name]).get(part_id)

    return fresh_url


async def run_recording(sources: Sources, out_dir: Path, options: RunOptions = RunOptions(),
                        *, events: RunEvents | None = None) -> RunOutcome:
    """Make every track of one recording under `out_dir` and write `report.json`.

    Raises `InvalidInputsError` before any media request when a document is
    invalid, and `StorageError` when `out_dir` cannot be written; every other
    failure is per part or per track and is listed in the outcome and report.
    """
    documents, plan = await plan_recording(sources, options)
    wanted: list[AudioPart | VideoPart] = [*documents.audio_parts, *documents.video_parts]
    if not options.download_only:
        # Parts the plan leaves out (past the timeline end, wholly overlapped) are not fetched.
        used = {part_id for track in plan.tracks for part_id in track.parts}
        wanted = [part for part in wanted if part.id in used]
    fetch = _fetcher(options.download)
    if events:
        events.parts_planned(len(wanted))
    results = await download_parts(
        _downloads(wanted, plan.part_files), out_dir / PARTS_DIR, options.download,
        progress=events, refresh_url=_url_refresher(sources, documents, fetch))
    probes, unreadable = await _probe_all(results.files, options.jobs)
    lost: dict[str, AssemblerError] = {**results.failures, **unreadable}
    if options.download_only:
        return RunOutcome(report=None, download_failures=lost, render_failures={})
    failures: list[FailureEntry] = [{"part": part_id, "error": str(error)}
                                    for part_id, error in lost.items()]
    renderable = []
    for track in plan.tracks:
        missing = [part_id for part_id in track.parts if part_id in lost]
        if missing:
            log.error("%s not written: part %s is lost (%s)", track.path, missing[0],
                      lost[missing[0]])
        else:
            renderable.append(track)
    rendered, render_failures = await _render_all(
        renderable, results.files, probes, out_dir, options, events)
    for track in renderable:
        error = render_failures.get(track.path)
        if error is not None:
            # The contract names a part per failure: the one at fault, else each of the track's.
            culprits = [error.part_id] if isinstance(error, RenderError) and error.part_id \
                else list(dict.fromkeys(track.parts))
            failures.extend({"part": part_id, "track": track.path, "error": str(error)}
                            for part_id in culprits)
    report = build_report(plan, rendered, failures, out_dir,
                          inputs_fingerprint(sources, options))
    try:
        write_json(out_dir / REPORT_NAME, report)
    except OSError as exc:
        raise StorageError("", f"cannot write {out_dir / REPORT_NAME}: "
                               f"{exc.strerror or exc}") from exc
    return RunOutcome(report=report, download_failures=lost, render_failures=render_failures)


async def _probe_all(files: Mapping[str, Path], jobs: int
                     ) -> tuple[dict[str, MediaInfo], dict[str, AssemblerError]]:
    """Probe every part; one ffmpeg cannot open is moved aside and counted as lost.

    Moving it aside (`<file>.unreadable`) keeps the evidence and lets a rerun
    fetch the part again instead of taking the bad file for a complete one.
    """
    paths = list(files.values())
    shares = [paths[index::jobs] for index in range(min(jobs, len(paths)))]
    found: dict[Path, MediaInfo | MediaError] = {}
    for share in await asyncio.gather(*(asyncio.to_thread(probe_many, share)
                                        for share in shares)):
        found.update(share)
    probes: dict[str, MediaInfo] = {}
    unreadable: dict[str, AssemblerError] = {}
    for part_id, path in files.items():
        result = found[path]
        if isinstance(result, MediaError):
            log.error("part %s: %s", part_id, result)
            unreadable[part_id] = result
            path.replace(path.with_name(path.name + ".unreadable"))
        else:
            probes[part_id] = result
    return probes, unreadable


async def _render_all(tracks: list[TrackPlan], files: Mapping[str, Path],
                      probes: Mapping[str, MediaInfo], out_dir: Path,
                      options: RunOptions, events: RunEvents | None
                      ) -> tuple[list[RenderedTrack], dict[str, AssemblerError]]:
    settings = options.render
    slots = asyncio.Semaphore(options.jobs)
    rendered: list[RenderedTrack] = []
    failed: dict[str, AssemblerError] = {}

    async def render_one(track: TrackPlan) -> None:
        async with slots:
            if events:
                events.track_started(track)
            try:
                result = await asyncio.to_thread(render_track, track, files, probes, out_dir,
                                                 settings)
            except AssemblerError as exc:
                log.error("%s not written: %s", track.path, exc)
                failed[track.path] = exc
                if events:
                    events.track_finished(track, exc)
                return
            rendered.append(result)
            if events:
                events.track_finished(track, None)

    try:
        await asyncio.gather(*(render_one(track) for track in tracks))
    except asyncio.CancelledError:
        # Threads cannot be cancelled; killing their ffmpeg ends them at once, and
        # render_track then removes the unfinished output instead of renaming it.
        stop_all()
        raise
    return rendered, failed
