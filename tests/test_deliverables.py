"""The deliverables stage: made after render, each file whole or absent, failures reported."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from assembler.deliverables import (
    DeliverableContext,
    DeliverableOptions,
    Output,
    make_deliverables,
    registry,
)
from assembler.errors import DeliverableError
from assembler.ffmpeg_process import FfmpegSlots
from assembler.manifest import Sources
from assembler.pipeline import RunOptions, plan_recording, run_recording
from assembler.report import OutputKind
from tests.support.recording import RecordingBuilder
from tests.support.server import serve_directory

if TYPE_CHECKING:
    from pathlib import Path

    from assembler.pipeline import RunOutcome


@dataclass
class TrackList:
    """Writes the list of the run's tracks; a stand-in for a real deliverable."""

    kind: OutputKind = "timeline"
    seen_before: tuple[str, ...] = ()

    def wanted(self, options: DeliverableOptions) -> bool:
        return "otio" in options.timeline

    def outputs(self, context: DeliverableContext) -> list[Output]:
        return [Output(kind=self.kind, format="txt", path="tracks.txt")]

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        self.seen_before = tuple(entry["path"] for entry in context.made)
        target.write_text("\n".join(track.track.path for track in context.tracks))
        return ["one warning"]


@dataclass
class Broken:
    """Fails after writing half a file, as a crashing encoder would."""

    kind: OutputKind = "mix"

    def wanted(self, options: DeliverableOptions) -> bool:
        return options.mix

    def outputs(self, context: DeliverableContext) -> list[Output]:
        return [Output(kind=self.kind, format="flac", path="mix.flac", participant=None)]

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        target.write_bytes(b"half a file")
        raise DeliverableError("the encoder gave up\nsecond line")


@dataclass
class Buggy:
    """Raises what no deliverable should: a bug must cost its file, never the run."""

    kind: OutputKind = "av"

    def wanted(self, options: DeliverableOptions) -> bool:
        return options.av

    def outputs(self, context: DeliverableContext) -> list[Output]:
        return [Output(kind=self.kind, format="mp4", path="av.mp4")]

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        raise ValueError("SMPTE timecode does not support this rate")


@pytest.fixture
def finished_run(tmp_path: Path) -> tuple[Path, Sources, RunOutcome]:
    build = RecordingBuilder(tmp_path / "www")
    build.audio_part(1, "Ada", 0.0, 0.5, freq=440.0, ext=".wav")
    build.audio_part(2, "Bob", 0.25, 0.5, freq=660.0, ext=".wav")
    out = tmp_path / "out"
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        sources = Sources(audio_parts=str(manifests.audio_parts))
        outcome = asyncio.run(run_recording(sources, out, RunOptions(jobs=1)))
    return out, sources, outcome


def _context(out: Path, sources: Sources, outcome: RunOutcome,
             options: DeliverableOptions) -> DeliverableContext:
    documents, plan = asyncio.run(plan_recording(sources, RunOptions()))
    from assembler.render import RenderSettings

    return DeliverableContext(out_dir=out, documents=documents, plan=plan, tracks=(),
                              render=RenderSettings(), options=options, report=outcome.report)


def test_a_run_without_deliverable_options_makes_none(
        finished_run: tuple[Path, Sources, RunOutcome]) -> None:
    out, _, outcome = finished_run
    assert outcome.report["outputs"] == []
    assert outcome.exit_status == 0
    assert json.loads((out / "report.json").read_text())["outputs"] == []


def test_made_and_failed_deliverables_are_reported_and_only_whole_files_stay(
        finished_run: tuple[Path, Sources, RunOutcome]) -> None:
    out, sources, outcome = finished_run
    (out / "mix.flac").write_bytes(b"an older mix")  # a stale file must not pass for new
    listing, broken = TrackList(), Broken()
    context = _context(out, sources, outcome, DeliverableOptions(timeline=("otio",), mix=True))
    report = asyncio.run(make_deliverables(context, FfmpegSlots(1), [listing, broken]))

    made, failed = report["outputs"]
    assert made["path"] == "tracks.txt"
    assert made["sha256"] == hashlib.sha256((out / "tracks.txt").read_bytes()).hexdigest()
    assert failed == {"kind": "mix", "format": "flac", "path": "mix.flac",
                      "error": "the encoder gave up; second line"}
    assert not (out / "mix.flac").exists()
    assert not [path for path in out.iterdir() if path.name.startswith(".")]
    assert report["complete"] is False
    assert {"output": "tracks.txt", "message": "one warning"} in report["warnings"]


def test_later_deliverables_see_earlier_outputs(
        finished_run: tuple[Path, Sources, RunOutcome]) -> None:
    out, sources, outcome = finished_run
    first, second = TrackList(), TrackList(kind="archive")
    context = _context(out, sources, outcome, DeliverableOptions(timeline=("otio",)))
    asyncio.run(make_deliverables(context, FfmpegSlots(1), [first, second]))
    assert first.seen_before == ()
    assert second.seen_before == ("tracks.txt",)


def test_deliverables_not_asked_for_are_not_made(
        finished_run: tuple[Path, Sources, RunOutcome]) -> None:
    out, sources, outcome = finished_run
    context = _context(out, sources, outcome, DeliverableOptions())
    report = asyncio.run(make_deliverables(context, FfmpegSlots(1), [TrackList(), Broken()]))
    assert report["outputs"] == []
    assert report["complete"] is True


def test_every_registered_deliverable_names_a_contract_kind() -> None:
    kinds = [deliverable.kind for deliverable in registry()]
    assert len(kinds) == len(set(kinds))
    assert set(kinds) <= {"captions", "timeline", "mix", "av", "archive"}


def test_loudness_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="loudness"):
        DeliverableOptions(loudness=5.0)


def test_a_deliverable_that_crashes_is_an_error_entry_and_the_others_are_made(
        finished_run: tuple[Path, Sources, RunOutcome]) -> None:
    out, sources, outcome = finished_run
    context = _context(out, sources, outcome, DeliverableOptions(timeline=("otio",), av=True))
    report = asyncio.run(make_deliverables(context, FfmpegSlots(1), [Buggy(), TrackList()]))
    crashed, made = report["outputs"]
    assert crashed["error"] == "unexpected ValueError: SMPTE timecode does not support this rate"
    assert not (out / "av.mp4").exists()
    assert "sha256" in made
