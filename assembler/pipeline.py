"""One recording, end to end, in named steps: plan, fetch, render, deliverables, report.

The library never prints or exits: what happened comes back as a `RunOutcome`
(or a `DownloadOutcome` for `download_recording`) and through the `RunEvents`
a caller passes in; each outcome knows the exit status it means (`errors.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ._arrivals import PartArrivals
from .deliverables import DeliverableContext, DeliverableOptions, make_deliverables
from .download import (
    DownloadProgress,
    DownloadSettings,
    PartDownload,
    download_parts,
    fetch_document,
)
from .errors import (
    EXIT_DOWNLOAD_FAILED,
    EXIT_OK,
    EXIT_TRACK_FAILED,
    AssemblerError,
    InvalidInputsError,
    OutputDirError,
    RenderError,
    StorageError,
    UsageError,
)
from .ffmpeg_process import FfmpegSlots, stop_all
from .manifest import (
    Documents,
    Sources,
    describe_source,
    is_url,
    load_document,
    load_documents,
)
from .media import MediaInfo
from .plan import DEFAULT_FPS, KINDS, MAX_SECONDS, Kind, Plan, TrackPlan, make_plan
from .render import RenderedTrack, RenderSettings, render_track
from .report import FailureEntry, Report, build_report, write_json
from .rerun import PreviousRun, drop_parts, remove_stale, track_inputs

if TYPE_CHECKING:
    from .manifest import AudioPart, FetchDocument, VideoPart

__all__ = ["NOT_IN_FINGERPRINT", "DownloadOutcome", "RunEvents", "RunOptions", "RunOutcome",
           "download_recording", "inputs_fingerprint", "plan_recording", "prepare_out_dir",
           "run_recording"]

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"
PARTS_DIR = "parts"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How to make a recording: timeline length (seconds), frame rate (frames per second),
    download, render and deliverable settings, and `jobs`, the ffmpeg processes at once.

    Raises `ValueError` for a duration or frame rate <= 0 or jobs < 1.
    """

    duration: float | None = None
    fps: Fraction = DEFAULT_FPS
    participants: tuple[int, ...] = ()  # the participant ids to make tracks for; () everyone
    kinds: tuple[Kind, ...] = KINDS  # the kinds of track to make
    download: DownloadSettings = field(default_factory=DownloadSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    deliverables: DeliverableOptions = field(default_factory=DeliverableOptions)
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)  # ffmpeg processes at once
    force: bool = False  # make every file again, even one an earlier run made from the same
    keep_parts: bool = True  # False: remove parts/ after a complete run

    def __post_init__(self) -> None:
        if self.duration is not None and not 0 < self.duration <= MAX_SECONDS:
            raise ValueError(f"duration must be > 0 and <= {MAX_SECONDS} seconds (a week)")
        if self.jobs < 1:
            raise ValueError("jobs must be >= 1")
        if not self.fps > 0:
            raise ValueError("fps must be > 0")
        if not self.kinds or not set(self.kinds) <= set(KINDS):
            raise ValueError(f"kinds must be among {', '.join(KINDS)}")

    def fingerprint_fields(self) -> dict[str, object]:
        """Every setting that changes what is written, by dotted name; see `NOT_IN_FINGERPRINT`."""
        return {name: str(value) if isinstance(value, Fraction) else value
                for name, value in _settings(self) if name not in NOT_IN_FINGERPRINT}


# Settings that change how a run goes but not what it writes: a recording made with
# other values of these is still complete. Every other setting is in the fingerprint.
NOT_IN_FINGERPRINT = frozenset({
    "download",  # concurrency, retries, timeouts
    "jobs",
    "render.max_video_parts",  # pieces are joined without loss: the same track
    "render.max_audio_parts",
    "force",  # how much is made again, not what
    "keep_parts",  # parts/ is a cache of the downloads, not an output
})


def _settings(options: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted name, value) of every setting, nested settings flattened unless excluded whole."""
    for item in dataclasses.fields(options):  # type: ignore[arg-type]
        name, value = prefix + item.name, getattr(options, item.name)
        if dataclasses.is_dataclass(value) and name not in NOT_IN_FINGERPRINT:
            yield from _settings(value, f"{name}.")
        else:
            yield name, value


class RunEvents(DownloadProgress, Protocol):
    """What a caller hears about a run: download progress plus track progress.

    `parts_planned` comes once, before any download, with the plan and the ids
    of the parts to fetch. Track events come from the worker thread rendering
    the track, while other parts may still download; `track_advanced` gives the
    seconds of it encoded so far (never for a stream copy); `track_finished`
    the track written (or kept as an earlier run made it: `RenderedTrack.kept`),
    or why it was not.
    """

    def parts_planned(self, plan: Plan, part_ids: Sequence[str]) -> None: ...
    def track_started(self, track: TrackPlan) -> None: ...
    def track_advanced(self, track: TrackPlan, seconds: float) -> None: ...
    def track_finished(self, track: TrackPlan, result: RenderedTrack | AssemblerError) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """What `run_recording` made: the report written, and what failed (by part, by track)."""

    report: Report
    download_failures: Mapping[str, AssemblerError]  # parts lost: not fetched, or unreadable
    render_failures: Mapping[str, AssemblerError]  # by track path
    kept: frozenset[str] = frozenset()  # paths of files kept from the earlier run, not remade

    @property
    def exit_status(self) -> int:
        """What `assembler run` returns: a lost part outranks a failed track or deliverable."""
        if self.download_failures:
            return EXIT_DOWNLOAD_FAILED
        if self.render_failures or any("error" in output for output in self.report["outputs"]):
            return EXIT_TRACK_FAILED
        return EXIT_OK


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadOutcome:
    """What `download_recording` fetched: each part's file, and the parts lost."""

    files: Mapping[str, Path]  # by part id
    failures: Mapping[str, AssemblerError]  # by part id: not fetched, or unreadable

    @property
    def exit_status(self) -> int:
        return EXIT_DOWNLOAD_FAILED if self.failures else EXIT_OK


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
    """Load and validate every document, then plan; nothing is downloaded but URL manifests.

    Raises `InvalidInputsError` for invalid documents and `UsageError` for options
    the sources cannot serve (captions without a transcript).
    """
    if options.deliverables.captions and sources.transcript is None:
        raise UsageError("--captions needs --transcript")
    documents = await load_documents(sources, _fetcher(options.download))
    known = {part.participant.id for part in (*documents.audio_parts, *documents.video_parts)}
    unknown = sorted(set(options.participants) - known)
    if unknown:
        raise UsageError(f"--participant {unknown[0]}: no part of the recording is theirs "
                         f"(participants with parts: {', '.join(map(str, sorted(known)))})")
    plan = make_plan(documents, duration=options.duration,
                     audio_format=options.render.audio_format, fps=options.fps,
                     participants=options.participants, kinds=options.kinds)
    if not plan.tracks:
        # Every slot is empty (duration 0), under one unit, past --duration, or of a kind
        # --kinds leaves out: a run would write an empty report and claim success.
        why = "; ".join(f"part {warning.part_id}: {warning.message}"
                        for warning in plan.warnings[:3])
        raise UsageError("nothing to assemble: no track has a part in the timeline"
                         + (f" ({why})" if why else " (every slot lasts 0 s, or --kinds and "
                                                    "--participant leave none)"))
    return documents, plan


def prepare_out_dir(out_dir: Path) -> None:
    """Create `out_dir` (parents too) and check it can be written, before any download.

    Raises `OutputDirError` when it is a file or cannot be created or written.
    """
    where = f"output directory {out_dir}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputDirError(f"{where}: exists and is not a directory") from None
    except OSError as exc:
        raise OutputDirError(f"{where}: cannot create: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputDirError(f"{where}: cannot write in it: permission denied")


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
        except InvalidInputsError as exc:
            log.warning("could not reload %s for fresh links: %s", name, exc.problems[0])
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


async def _fetch_parts(sources: Sources, documents: Documents, plan: Plan, out_dir: Path,
                       options: RunOptions, events: RunEvents | None, arrivals: PartArrivals,
                       *, tracks: Sequence[TrackPlan] | None) -> None:
    """Download the parts (all, or only those `tracks` use); each is probed as it lands.

    When the download fails as a whole (cancelled, `parts/` not writable),
    probing stops and no track waits any longer for a part.
    """
    wanted: list[AudioPart | VideoPart] = [*documents.audio_parts, *documents.video_parts]
    if tracks is not None:
        # Parts no track to make uses (past the timeline end, wholly overlapped, of tracks
        # kept from an earlier run) are not fetched.
        used = {part_id for track in tracks for part_id in track.parts}
        wanted = [part for part in wanted if part.id in used]
    # A track's parts are fetched together, parts in slot order, so each track can render
    # once its own parts are in while the next ones download, whatever order the
    # manifests list them in. Audio first: small to fetch, long to encode.
    making = sorted(plan.tracks if tracks is None else tracks,
                    key=lambda track: KINDS.index(track.kind))
    order = {part_id: index for index, part_id in enumerate(dict.fromkeys(
        part_id for track in making for part_id in track.parts))}
    wanted.sort(key=lambda part: order.get(part.id, len(order)))
    if events:
        events.parts_planned(plan, [part.id for part in wanted])
    if not wanted:  # nothing to fetch: not even parts/ is made
        await arrivals.finish()
        return
    fetch = _fetcher(options.download)
    try:
        await download_parts(
            _downloads(wanted, plan.part_files), out_dir / PARTS_DIR, options.download,
            progress=arrivals, refresh_url=_url_refresher(sources, documents, fetch))
        await arrivals.finish()
    except BaseException:
        arrivals.abandon()
        raise


async def download_recording(sources: Sources, out_dir: Path, options: RunOptions = RunOptions(),
                             *, events: RunEvents | None = None,
                             ffmpeg: FfmpegSlots | None = None) -> DownloadOutcome:
    """Fetch and probe every part of one recording into `out_dir/parts/`; render nothing.

    Each part is probed as soon as it lands, while the others download.
    Raises `InvalidInputsError` before any media request when a document is
    invalid, and `OutputDirError` when `out_dir` is a file or cannot be created.
    """
    documents, plan = await plan_recording(sources, options)
    prepare_out_dir(out_dir)
    arrivals = PartArrivals(ffmpeg or FfmpegSlots(options.jobs), events)
    await _fetch_parts(sources, documents, plan, out_dir, options, events, arrivals,
                       tracks=None)
    return DownloadOutcome(files=arrivals.files, failures=arrivals.lost)


async def run_recording(sources: Sources, out_dir: Path, options: RunOptions = RunOptions(),
                        *, events: RunEvents | None = None,
                        ffmpeg: FfmpegSlots | None = None) -> RunOutcome:
    """Make every track and deliverable of one recording under `out_dir`; write `report.json`.

    A file the previous run in `out_dir` made from the same inputs, and that is
    unchanged since, is kept (no download, no ffmpeg) unless `options.force`;
    one it listed that this run does not make is removed (see `rerun.py`).
    `ffmpeg` caps ffmpeg processes (default: `options.jobs` for this run alone).
    Raises `InvalidInputsError` before any media request when a document is
    invalid, `UsageError` for a selection the documents cannot serve, and
    `OutputDirError` when `out_dir` is a file or cannot be created; every other
    failure is per part, track or deliverable and is listed in the outcome and report.
    """
    ffmpeg = ffmpeg or FfmpegSlots(options.jobs)
    documents, plan = await plan_recording(sources, options)
    prepare_out_dir(out_dir)
    previous = PreviousRun.read(out_dir, REPORT_NAME, reuse=not options.force)
    inputs = {track.path: track_inputs(track, documents, plan, options.render)
              for track in plan.tracks}
    kept = _kept_tracks(plan, previous, inputs)
    to_make = [track for track in plan.tracks if track.path not in kept]
    arrivals = PartArrivals(ffmpeg, events, surveyed=_may_copy(to_make, options.render))
    report_of = functools.partial(  # of the tracks written, with each one's inputs
        build_report, plan, out_dir=out_dir, inputs=inputs_fingerprint(sources, options),
        track_inputs=inputs, checksums={
            path: previous.tracks[path].entry["sha256"] for path in kept})
    finished: dict[str, RenderedTrack] = {}  # by path, as they are written
    # Tracks render as their own parts are in and probed, while other parts download.
    rendering = asyncio.ensure_future(
        _render_all(to_make, arrivals, out_dir, options.render, events, ffmpeg, finished))
    try:
        try:
            await _fetch_parts(sources, documents, plan, out_dir, options, events, arrivals,
                               tracks=to_make)
        except asyncio.CancelledError:
            rendering.cancel()
            raise
        except BaseException:
            await rendering  # tracks rendering finish; those still waiting give up
            raise
        if events:  # after `parts_planned`: a kept track counts as written
            for track in kept.values():
                events.track_finished(track.track, track)
        rendered, render_failures = await rendering
        renderable = _renderable(to_make, arrivals.lost)
        failures = [*_lost_part_failures(arrivals.lost),
                    *_track_failures(renderable, render_failures)]
        tracks = _written(plan, kept, rendered)
        report = report_of(tracks, failures)
        report = await make_deliverables(DeliverableContext(
            out_dir=out_dir, documents=documents, plan=plan, tracks=tuple(tracks),
            render=options.render, options=options.deliverables, report=report), ffmpeg,
            previous=previous)
    except asyncio.CancelledError:
        # A rerun keeps what a report lists: list what this run finished. Over an earlier
        # run's report, that one stays: it names the files a finished rerun must clean up.
        if finished and previous.raw is None:
            interrupted = report_of(_written(plan, kept, finished.values()), [])
            _write_report(out_dir, {**interrupted, "complete": False}, previous)
        raise
    remove_stale(previous, report)
    _write_report(out_dir, report, previous)
    if report["complete"] and not options.keep_parts:
        drop_parts(out_dir / PARTS_DIR, plan.part_files)
    return RunOutcome(report=report, download_failures=arrivals.lost,
                      render_failures=render_failures, kept=frozenset(previous.kept))


def _written(plan: Plan, kept: Mapping[str, RenderedTrack], rendered: Iterable[RenderedTrack]
             ) -> list[RenderedTrack]:
    """The tracks kept and rendered, in plan order."""
    written = {item.track.path: item for item in (*kept.values(), *rendered)}
    return [written[track.path] for track in plan.tracks if track.path in written]


def _may_copy(tracks: Sequence[TrackPlan], render: RenderSettings) -> frozenset[str]:
    """The parts of the video tracks that stream copy may make: their probe surveys them."""
    if render.video_strategy == "encode":
        return frozenset()
    return frozenset(part_id for track in tracks if track.kind != "audio"
                     for part_id in track.parts)


def _kept_tracks(plan: Plan, previous: PreviousRun, inputs: Mapping[str, str]
                 ) -> dict[str, RenderedTrack]:
    """The tracks an earlier run made from the same inputs and left unchanged, by path."""
    kept = {}
    for track in plan.tracks:
        found = previous.kept_track(track, inputs[track.path], plan)
        if found is not None:
            log.debug("%s kept: made from the same inputs by an earlier run", track.path)
            kept[track.path] = found
    return kept


def _renderable(tracks: Sequence[TrackPlan], lost: Mapping[str, AssemblerError]
                ) -> list[TrackPlan]:
    """The tracks whose every part is in; a track missing one is not written at all."""
    renderable = []
    for track in tracks:
        missing = list(dict.fromkeys(part_id for part_id in track.parts if part_id in lost))
        if missing:
            others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            log.error("%s not written: part %s is lost%s", track.path, missing[0], others,
                      extra={"fields": {"track": track.path, "part": missing[0]}})
        else:
            renderable.append(track)
    return renderable


def _lost_part_failures(lost: Mapping[str, AssemblerError]) -> list[FailureEntry]:
    return [{"part": part_id, "error": str(error)} for part_id, error in lost.items()]


def _track_failures(tracks: list[TrackPlan], errors: Mapping[str, AssemblerError]
                    ) -> list[FailureEntry]:
    """The contract names a part per failure: the one at fault, else each of the track's."""
    failures: list[FailureEntry] = []
    for track in tracks:
        error = errors.get(track.path)
        if error is None:
            continue
        culprits = [error.part_id] if isinstance(error, RenderError) and error.part_id \
            else list(dict.fromkeys(track.parts))
        failures.extend({"part": part_id, "track": track.path, "error": str(error)}
                        for part_id in culprits)
    return failures


def _write_report(out_dir: Path, report: Report, previous: PreviousRun) -> None:
    """Write `report.json`, unless it would say what it says already (a rerun that kept all)."""
    if previous.raw is not None and json.loads(json.dumps(report)) == previous.raw:
        return
    try:
        write_json(out_dir / REPORT_NAME, report)
    except OSError as exc:
        raise StorageError("", f"cannot write {out_dir / REPORT_NAME}: "
                               f"{exc.strerror or exc}") from exc


async def _render_all(tracks: Sequence[TrackPlan], arrivals: PartArrivals, out_dir: Path,
                      settings: RenderSettings, events: RunEvents | None, ffmpeg: FfmpegSlots,
                      rendered: dict[str, RenderedTrack]
                      ) -> tuple[list[RenderedTrack], dict[str, AssemblerError]]:
    """Render each track once its parts are probed, in a worker thread holding one ffmpeg slot.

    Each track written is added to `rendered` (by path) at once, so a caller that
    cancels this still knows them. A track with a part lost (or never settled) is
    left out, without an error of its own: `_renderable` names it.
    """
    failed: dict[str, AssemblerError] = {}

    def render_one(track: TrackPlan, files: Mapping[str, Path],
                   probes: Mapping[str, MediaInfo]) -> None:
        if events:
            events.track_started(track)
        progress = functools.partial(events.track_advanced, track) if events else None
        result: RenderedTrack | AssemblerError
        try:
            result = rendered[track.path] = render_track(
                track, files, probes, out_dir, settings, ffmpeg=ffmpeg, progress=progress)
        except AssemblerError as exc:
            culprit = {"part": exc.part_id} if isinstance(exc, RenderError) and exc.part_id else {}
            log.error("%s not written: %s", track.path, exc,
                      extra={"fields": {"track": track.path, **culprit}})
            result = failed[track.path] = exc
        if events:
            events.track_finished(track, result)

    async def when_ready(track: TrackPlan) -> None:
        await arrivals.settled(track.parts)
        if all(part_id in arrivals.probes for part_id in track.parts):
            # Copies taken on the loop: the download goes on adding to these maps.
            await ffmpeg.call(render_one, track,
                              {part_id: arrivals.files[part_id] for part_id in track.parts},
                              {part_id: arrivals.probes[part_id] for part_id in track.parts})

    try:
        await asyncio.gather(*(when_ready(track) for track in tracks))
    except asyncio.CancelledError:
        # Threads cannot be cancelled: closing the slots stops tracks not yet started, and
        # killing ffmpeg ends the others at once (render_track then removes their output).
        ffmpeg.close()
        stop_all()
        raise
    return [rendered[track.path] for track in tracks if track.path in rendered], failed
