"""Reruns into the same directory: what is kept, what is made again, what is removed.

A real recording on a loopback server, `assembler run` as a user runs it; "kept"
is proven by the server's request count and by file times that do not move.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from assembler.deliverables import (
    DeliverableContext,
    DeliverableOptions,
    Output,
    make_deliverables,
)
from assembler.ffmpeg_process import FfmpegSlots, ffmpeg_binary
from assembler.manifest import Sources
from assembler.media import probe_many
from assembler.pipeline import RunOptions, plan_recording
from assembler.render import RenderSettings
from assembler.report import OutputKind, Report, write_json
from assembler.rerun import PreviousRun, track_inputs
from tests.support.media import active_spans, decode_audio, media_info
from tests.support.recording import Manifests, RecordingBuilder
from tests.support.server import MediaServer, serve_directory

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RATE = 48000


def run_cli(out: Path, manifests: Manifests, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assembler", "run", "--out", str(out), *manifests.cli_args(),
         "--quiet", "--jobs", "2", *args], capture_output=True, text=True, timeout=300,
        check=False, env={**os.environ, **(env or {})})


def counting_ffmpeg(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An ffmpeg that notes each command line it is given, then runs the real one."""
    calls = tmp_path / "ffmpeg-calls.txt"
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{ffmpeg_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    return {"ASSEMBLER_FFMPEG": str(wrapper)}, calls


def media_runs(calls: Path) -> list[str]:
    """The ffmpeg runs noted, but the `-version` check that finds a working binary."""
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [line for line in lines if line != "-version"]


def report_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())  # type: ignore[no-any-return]


def tracks_of(out: Path) -> dict[str, dict[str, Any]]:
    return {track["path"]: track for person in report_of(out)["participants"]
            for track in person["tracks"]}


def mtimes(out: Path) -> dict[str, int]:
    return {str(path.relative_to(out)): path.stat().st_mtime_ns
            for path in out.rglob("*") if path.is_file()}


def first_run(manifests: Manifests, tmp_path: Path, *args: str) -> tuple[Path, dict[str, int]]:
    """A complete run into `tmp_path/out`, and the times of the files it wrote."""
    out = tmp_path / "out"
    done = run_cli(out, manifests, *args)
    assert done.returncode == 0, done.stderr
    return out, mtimes(out)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[MediaServer, Manifests]]:
    """Two people: Ada talks and shows her webcam (320x240 H.264), Grace only talks."""
    build = RecordingBuilder(tmp_path / "www")
    build.audio_part(1, "Ada", 0.0, 1.0, freq=440, ext=".wav")
    build.video_part(1, "Ada", 0.0, 1.0, colour="red", size=(320, 240), fps=10)
    build.audio_part(2, "Grace", 0.5, 0.5, freq=660, ext=".wav")
    with serve_directory(build.root) as server:
        yield server, build.write(server.base_url)


ADA_AUDIO = "participants/1-ada/audio.flac"
ADA_WEBCAM = "participants/1-ada/webcam.mp4"
GRACE_AUDIO = "participants/2-grace/audio.flac"


def test_a_complete_rerun_fetches_nothing_and_writes_nothing(
        served: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    server, manifests = served
    out = tmp_path / "out"
    env, calls = counting_ffmpeg(tmp_path)
    assert run_cli(out, manifests, env=env).returncode == 0
    assert media_runs(calls)  # the wrapper does see the first run's ffmpeg
    calls.unlink()
    before, requests, report = mtimes(out), sum(server.requests.values()), report_of(out)
    again = run_cli(out, manifests, env=env)
    assert again.returncode == 0, again.stderr
    assert media_runs(calls) == []  # no probe, no render
    # Only the manifests are read: they are local files here, so no request at all.
    assert sum(server.requests.values()) == requests
    assert mtimes(out) == before  # no track, no part, not even report.json was rewritten
    assert report_of(out) == report
    assert report["complete"] is True
    assert all(len(track["inputs"]) == 64 for track in tracks_of(out).values())


def test_force_makes_every_track_again_from_the_kept_parts(
        served: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    server, manifests = served
    out, before = first_run(manifests, tmp_path)
    requests = sum(server.requests.values())
    again = run_cli(out, manifests, "--force")
    assert again.returncode == 0, again.stderr
    assert sum(server.requests.values()) == requests  # parts are kept even with --force
    after = mtimes(out)
    for path in (ADA_AUDIO, ADA_WEBCAM, GRACE_AUDIO):
        assert after[path] != before[path]


def test_other_options_keep_what_they_do_not_change_and_remove_stale_files(
        served: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = served
    out, before = first_run(manifests, tmp_path)
    # Files the user put in the tree, one of them named like a track: never touched.
    (out / "participants/1-ada/notes.txt").write_text("mine")
    (out / "participants/1-ada/audio.opus").write_bytes(b"not made by assembler")
    again = run_cli(out, manifests, "--audio-format", "wav")
    assert again.returncode == 0, again.stderr
    assert not (out / ADA_AUDIO).exists()  # the 1 s FLAC of the run before is gone
    assert not (out / GRACE_AUDIO).exists()
    assert set(tracks_of(out)) == {"participants/1-ada/audio.wav", ADA_WEBCAM,
                                   "participants/2-grace/audio.wav"}
    assert mtimes(out)[ADA_WEBCAM] == before[ADA_WEBCAM]  # video does not depend on it
    assert (out / "participants/1-ada/notes.txt").read_text() == "mine"
    assert (out / "participants/1-ada/audio.opus").read_bytes() == b"not made by assembler"
    assert media_info(out / "participants/1-ada/audio.wav").samples == RATE


def test_a_participant_left_out_loses_their_files_and_their_empty_directory(
        served: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = served
    out, before = first_run(manifests, tmp_path)
    again = run_cli(out, manifests, "--participant", "1", "--kinds", "audio")
    assert again.returncode == 0, again.stderr
    assert set(tracks_of(out)) == {ADA_AUDIO}
    assert mtimes(out)[ADA_AUDIO] == before[ADA_AUDIO]
    assert not (out / ADA_WEBCAM).exists()
    assert not (out / "participants/2-grace").exists()


def test_a_changed_manifest_never_reuses_a_stale_track(
        served: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = served
    out, before = first_run(manifests, tmp_path)
    parts = json.loads(manifests.audio_parts.read_text())
    grace = next(part for part in parts if part["participant"]["id"] == 2)
    grace["start_timestamp"]["relative"] = 0.0  # Grace now speaks from 0 s, not 0.5 s
    manifests.audio_parts.write_text(json.dumps(parts))
    again = run_cli(out, manifests)
    assert again.returncode == 0, again.stderr
    spans = active_spans(decode_audio(out / GRACE_AUDIO)[:, 0], RATE)
    assert spans[0][0] == pytest.approx(0.0, abs=0.01)
    assert mtimes(out)[ADA_WEBCAM] == before[ADA_WEBCAM]  # Ada's parts did not move


def test_no_keep_parts_removes_the_downloads_and_a_rerun_needs_none(
        served: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    server, manifests = served
    out = tmp_path / "out"
    done = run_cli(out, manifests, "--no-keep-parts")
    assert done.returncode == 0, done.stderr
    assert not (out / "parts").exists()
    assert report_of(out)["complete"] is True
    requests = sum(server.requests.values())
    again = run_cli(out, manifests, "--no-keep-parts")
    assert again.returncode == 0, again.stderr
    assert sum(server.requests.values()) == requests
    assert not (out / "parts").exists()


def test_an_unknown_participant_is_bad_input(served: tuple[MediaServer, Manifests],
                                             tmp_path: Path) -> None:
    server, manifests = served
    done = run_cli(tmp_path / "out", manifests, "--participant", "9")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --participant 9: no part of the recording is theirs (participants with "
        "parts: 1, 2)"]
    assert sum(server.requests.values()) == 0


def _height(path: Path) -> int:
    info = probe_many([path])[path]
    assert not isinstance(info, Exception)
    assert info.video is not None
    return info.video.display_size[1]


@pytest.mark.parametrize(("strategy", "expected"), [("encode", 0), ("auto", 0), ("copy", 1)])
def test_max_height_scales_encoded_video_and_copy_refuses_it(
        served: tuple[MediaServer, Manifests], tmp_path: Path, strategy: str,
        expected: int) -> None:
    _, manifests = served
    out = tmp_path / "out"
    done = run_cli(out, manifests, "--max-height", "120", "--video-strategy", strategy,
                   "--kinds", "webcam")
    assert done.returncode == expected, done.stderr
    if expected:
        failure = report_of(out)["failures"][0]
        assert "over --max-height 120" in failure["error"]
        return
    track = tracks_of(out)[ADA_WEBCAM]
    assert track["strategy"] == "encode"
    assert _height(out / ADA_WEBCAM) == 120
    if strategy == "auto":
        assert "240 px high, over --max-height 120" in track["reason"]


def test_crf_changes_the_encoded_size(served: tuple[MediaServer, Manifests],
                                      tmp_path: Path) -> None:
    _, manifests = served
    sizes = {}
    for crf in ("10", "45"):
        out = tmp_path / crf
        done = run_cli(out, manifests, "--crf", crf, "--preset", "ultrafast",
                       "--video-strategy", "encode", "--kinds", "webcam")
        assert done.returncode == 0, done.stderr
        sizes[crf] = os.path.getsize(out / ADA_WEBCAM)
    assert sizes["45"] < sizes["10"]


@dataclass
class Notes:
    """A stand-in deliverable: the loudness target and the tracks, counting its writes."""

    kind: OutputKind = "mix"
    path: str = "notes.txt"
    writes: int = 0

    def wanted(self, options: DeliverableOptions) -> bool:
        return True

    def outputs(self, context: DeliverableContext) -> list[Output]:
        return [Output(kind=self.kind, format="txt", path=self.path)]

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        self.writes += 1
        target.write_text(f"{context.options.loudness} {[t.path.name for t in context.tracks]}")
        return ["a warning"]


def make_outputs(out: Path, sources: Sources, registry: list[Notes], *, loudness: float = -16.0
                 ) -> Report:
    """The deliverables stage as a run does it, over the tracks the run made: report written."""
    async def stage() -> Report:
        documents, plan = await plan_recording(sources, RunOptions())
        previous = PreviousRun.read(out, "report.json")
        report = previous.raw
        assert report is not None
        tracks = tuple(kept for track in plan.tracks
                       if (kept := previous.kept_track(
                           track, track_inputs(track, documents, plan, RenderSettings()),
                           plan)) is not None)
        context = DeliverableContext(
            out_dir=out, documents=documents, plan=plan, tracks=tracks,
            render=RenderSettings(), options=DeliverableOptions(loudness=loudness),
            report=report)  # type: ignore[arg-type]
        made = await make_deliverables(context, FfmpegSlots(1), registry, previous=previous)
        write_json(out / "report.json", made)
        return made
    return asyncio.run(stage())


def test_a_deliverable_made_from_the_same_inputs_is_kept_and_reported_as_made(
        served: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = served
    out, _ = first_run(manifests, tmp_path)
    sources = Sources(audio_parts=str(manifests.audio_parts),
                      video_parts=str(manifests.video_parts))
    notes = Notes()
    first = make_outputs(out, sources, [notes])
    assert notes.writes == 1
    assert first["outputs"][0]["path"] == "notes.txt"
    assert len(first["outputs"][0]["inputs"]) == 64
    # Same inputs, another deliverable added after it: the notes are kept, exactly as made.
    later = Notes(kind="archive", path="later.txt")
    second = make_outputs(out, sources, [notes, later])
    assert (notes.writes, later.writes) == (1, 1)
    assert second["outputs"][0] == first["outputs"][0]
    assert {"output": "notes.txt", "message": "a warning"} in second["warnings"]
    # Another loudness, or a file changed on disk: made again.
    make_outputs(out, sources, [notes], loudness=-23.0)
    assert notes.writes == 2
    (out / "notes.txt").write_text("edited")
    make_outputs(out, sources, [notes], loudness=-23.0)
    assert notes.writes == 3
    assert (out / "notes.txt").read_text().startswith("-23.0 ")


def test_a_rerun_lists_what_it_kept_as_kept(served: tuple[MediaServer, Manifests],
                                            tmp_path: Path) -> None:
    _, manifests = served
    out = tmp_path / "out"
    assert run_cli(out, manifests).returncode == 0
    again = subprocess.run([sys.executable, "-m", "assembler", "run", "--out", str(out),
                            *manifests.cli_args()], capture_output=True, text=True, timeout=300,
                           check=False)
    assert again.returncode == 0, again.stderr
    listed = [line for line in again.stdout.splitlines() if str(out / "participants") in line]
    assert listed
    assert all(line.startswith("kept   ") for line in listed), listed
    assert f"{len(listed)} file(s) kept" in again.stdout
    # A track changed on disk is made again: it comes out the same, and is not called kept,
    # in the listing nor in --json-logs' events.
    webcam = out / "participants" / "1-ada" / "webcam.mp4"
    runs = []
    for logs in ((), ("--json-logs",)):
        data = bytearray(webcam.read_bytes())
        data[-100] ^= 0xFF
        webcam.write_bytes(bytes(data))
        runs.append(subprocess.run([sys.executable, "-m", "assembler", "run", "--out", str(out),
                                    *logs, *manifests.cli_args()], capture_output=True,
                                   text=True, timeout=300, check=False))
        assert runs[-1].returncode == 0, runs[-1].stderr
    listing, logged = runs
    shown = {line.split()[-1]: line.split()[0] for line in listing.stdout.splitlines()
             if str(out / "participants") in line}
    assert shown.pop(str(webcam)) in ("copy", "encode")
    assert set(shown.values()) == {"kept"}
    assert f"{len(shown)} file(s) kept" in listing.stdout
    events = [json.loads(line) for line in logged.stderr.splitlines() if line.startswith("{")]
    tracks = {event["track"]: event["event"] for event in events if "track" in event}
    assert tracks.pop("participants/1-ada/webcam.mp4") == "wrote track"
    assert set(tracks.values()) == {"kept track"}
