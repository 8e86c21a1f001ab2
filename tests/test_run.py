"""`assembler run` end to end: a messy recording served on loopback, outputs measured."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from assembler.ffmpeg_process import ffmpeg_version
from tests.support.media import (
    active_spans,
    colour_spans,
    decode_audio,
    decode_errors,
    decode_frames,
    dominant_frequency,
    is_black,
    media_info,
)
from tests.support.recording import Manifests, RecordingBuilder
from tests.support.server import S3_EXPIRED, MediaServer, serve_directory

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RATE = 48000
FPS = 30
DURATION = 7.0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assembler", "run", *args],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MediaServer, Manifests]]:
    """Two participants, every kind, the messiness of real parts, served on loopback."""
    root = tmp_path_factory.mktemp("www")
    build = RecordingBuilder(root)
    zoe, ada = (1, "Zoë Ünicode/🎥"), (2, "Ada Lovelace")
    # Zoë drops and rejoins: 16 kHz mono WAV, then 44.1 kHz stereo MP3 shorter than its slot.
    build.audio_part(*zoe, 0.5, 2.5, freq=440, rate=16000, channels=1, ext=".wav")
    build.audio_part(*zoe, 4.0, 2.0, media_seconds=1.5, freq=660, rate=44100, channels=2,
                     ext=".mp3")
    # Webcam: H.264 320x240, then a VP8 WebM at another size, longer than its slot.
    build.video_part(*zoe, 0.0, 2.0, colour="red", size=(320, 240), fps=25)
    build.video_part(*zoe, 3.0, 2.0, media_seconds=3.0, colour="blue", size=(240, 136),
                     fps=15, ext=".webm", codec="vp8")
    # Ada: 48 kHz AAC in M4A running past its slot, and a variable-frame-rate screenshare.
    build.audio_part(*ada, 1.0, 6.0, media_seconds=6.5, freq=880, ext=".m4a")
    build.video_part(*ada, 2.0, 4.0, kind="screenshare", colour="green", size=(320, 180),
                     fps=30, vfr=True)
    with serve_directory(root) as server:
        yield server, build.write(server.base_url)


@pytest.fixture(scope="module")
def finished(messy: tuple[MediaServer, Manifests], tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[subprocess.CompletedProcess[str], Path, Manifests]:
    out = tmp_path_factory.mktemp("out")
    return run_cli("--out", str(out), *messy[1].cli_args(), "--quiet"), out, messy[1]


def report_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())  # type: ignore[no-any-return]


def test_run_exits_zero_and_reports_every_track(
        finished: tuple[subprocess.CompletedProcess[str], Path, Manifests]) -> None:
    done, out, manifests = finished
    assert done.returncode == 0, done.stderr
    report = report_of(out)
    assert report["version"] == 1
    assert report["timeline"] == {"duration": DURATION}
    assert report["failures"] == []
    dirs = {person["id"]: person["dir"] for person in report["participants"]}
    assert dirs == {1: "participants/1-zoe-unicode", 2: "participants/2-ada-lovelace"}
    kinds = {(person["id"], track["kind"]) for person in report["participants"]
             for track in person["tracks"]}
    assert kinds == {(1, "audio"), (1, "webcam"), (2, "audio"), (2, "screenshare")}
    zoe_audio = report["participants"][0]["tracks"][0]
    assert zoe_audio["path"] == "participants/1-zoe-unicode/audio.flac"
    assert zoe_audio["gaps"] == [[0.0, 0.5], [3.0, 4.0], [6.0, 7.0]]
    assert zoe_audio["parts"] == [s.part_id for s in manifests.expected
                                  if s.participant_id == 1 and s.kind == "audio"]
    for person in report["participants"]:
        for track in person["tracks"]:
            assert (out / track["path"]).is_file()
            assert len(track["sha256"]) == 64
            assert track["duration"] == DURATION
    warned = {warning["part"] for warning in report["warnings"]}
    assert {s.part_id for s in manifests.expected if s.end != s.slot_end} <= warned


def test_audio_tracks_are_sample_exact_and_aligned(
        finished: tuple[subprocess.CompletedProcess[str], Path, Manifests]) -> None:
    _, out, manifests = finished
    for person in report_of(out)["participants"]:
        (audio,) = [t for t in person["tracks"] if t["kind"] == "audio"]
        samples = decode_audio(out / audio["path"], rate=None)
        assert len(samples) == DURATION * RATE
        expected = [s for s in manifests.expected
                    if s.participant_id == person["id"] and s.kind == "audio"]
        spans = active_spans(samples, RATE)
        assert len(spans) == len(expected)
        for (start, end), segment in zip(spans, expected, strict=True):
            assert abs(start - segment.start) <= 0.002
            assert abs(end - min(segment.end, segment.slot_end)) <= 0.002
            middle = samples[int((start + 0.1) * RATE):int((end - 0.1) * RATE)]
            assert abs(dominant_frequency(middle, RATE) - float(segment.marker)) < 5  # type: ignore[arg-type]
        # Gaps are digital silence, not merely quiet.
        first = int(expected[0].start * RATE)
        assert not np.any(samples[:first - 1])


def test_mono_and_stereo_parts_make_a_stereo_track(
        finished: tuple[subprocess.CompletedProcess[str], Path, Manifests]) -> None:
    _, out, _ = finished
    assert media_info(out / "participants/1-zoe-unicode/audio.flac").channels == 2
    assert media_info(out / "participants/2-ada-lovelace/audio.flac").channels == 1


def test_video_tracks_are_frame_exact_and_aligned(
        finished: tuple[subprocess.CompletedProcess[str], Path, Manifests]) -> None:
    _, out, manifests = finished
    for person in report_of(out)["participants"]:
        for track in person["tracks"]:
            if track["kind"] == "audio":
                continue
            path = out / track["path"]
            assert decode_errors(path) == ""
            # The centre of each frame: smaller parts are letterboxed into the track's size.
            frames = decode_frames(path)[:, 4:8, 5:11]
            assert len(frames) == DURATION * FPS
            expected = [s for s in manifests.expected
                        if s.participant_id == person["id"] and s.kind == track["kind"]]
            covered: set[int] = set()
            for segment in expected:
                spans = colour_spans(frames, segment.marker, tol=60)  # type: ignore[arg-type]
                assert len(spans) == 1, (segment, spans)
                start, end = spans[0]
                assert abs(start - segment.start * FPS) <= 1
                assert abs(end - min(segment.end, segment.slot_end) * FPS) <= 1
                covered |= set(range(start, end))
            gaps = [i for i in range(len(frames)) if i not in covered]
            assert gaps
            assert all(is_black(frames[i], tol=40) for i in gaps)


def test_rerun_fetches_no_complete_part(finished: tuple[subprocess.CompletedProcess[str], Path,
                                                        Manifests],
                                        messy: tuple[MediaServer, Manifests]) -> None:
    _, out, manifests = finished
    server = messy[0]
    before = sum(server.requests.values())
    again = run_cli("--out", str(out), *manifests.cli_args(), "--quiet")
    assert again.returncode == 0, again.stderr
    assert sum(server.requests.values()) == before


def test_dry_run_prints_the_plan_and_fetches_nothing(
        messy: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    server, manifests = messy
    before = sum(server.requests.values())
    done = run_cli("--out", str(tmp_path / "out"), *manifests.cli_args(), "--dry-run")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["duration"] == DURATION
    assert sum(server.requests.values()) == before
    assert not (tmp_path / "out").exists()
    assert "X-Amz-Signature" not in done.stdout


def test_duration_option_cuts_every_track(messy: tuple[MediaServer, Manifests],
                                          tmp_path: Path) -> None:
    _, manifests = messy
    done = run_cli("--out", str(tmp_path), *manifests.cli_args(), "--duration", "2.5",
                   "--quiet", "--audio-format", "wav")
    assert done.returncode == 0, done.stderr
    report = report_of(tmp_path)
    assert report["timeline"]["duration"] == 2.5
    for person in report["participants"]:
        for track in person["tracks"]:
            info = media_info(tmp_path / track["path"])
            if track["kind"] == "audio":
                assert info.samples == 2.5 * RATE
            else:  # at its own frame rate: a copied track keeps its parts' rate
                rate = Fraction(track["rate"])
                assert info.frames == track["units"]
                assert abs(track["units"] / rate - Fraction("2.5")) <= 1 / (2 * rate)


@pytest.fixture
def expiring(tmp_path: Path) -> Iterator[tuple[MediaServer, Manifests]]:
    build = RecordingBuilder(tmp_path / "www")
    build.audio_part(1, "Ada", 0.0, 1.0, freq=440, ext=".wav")
    build.audio_part(2, "Grace", 0.0, 1.0, freq=660, ext=".wav")
    build.video_part(2, "Grace", 0.0, 1.0, colour="red", size=(64, 48), fps=10)
    with serve_directory(build.root) as server:
        yield server, build.write(server.base_url)


def test_expired_link_fails_its_track_only_and_exits_3(
        expiring: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    server, manifests = expiring
    lost = next(s for s in manifests.expected if s.participant_id == 1)
    server.fail(f"parts/{lost.file}", 403, body=S3_EXPIRED)
    done = run_cli("--out", str(tmp_path / "out"), *manifests.cli_args(), "--quiet")
    assert done.returncode == 3
    assert "expired" in done.stderr + (tmp_path / "out/report.json").read_text()
    report = report_of(tmp_path / "out")
    assert [f["part"] for f in report["failures"]] == [lost.part_id]
    written = {t["path"] for p in report["participants"] for t in p["tracks"]}
    assert written == {"participants/2-grace/audio.flac", "participants/2-grace/webcam.mp4"}
    assert not (tmp_path / "out/participants/1-ada").exists()
    assert server.requests[f"/parts/{lost.file}"] <= 2
    assert "X-Amz-Signature" not in done.stderr + done.stdout


@pytest.mark.parametrize("fmt", ["flac", "wav", "opus", "m4a", "mp3"])
def test_every_audio_format_starts_on_time_and_lasts_exactly(
        expiring: tuple[MediaServer, Manifests], tmp_path: Path, fmt: str) -> None:
    _, manifests = expiring
    done = run_cli("--out", str(tmp_path), "--audio-parts", str(manifests.audio_parts),
                   "--duration", "2", "--audio-format", fmt, "--quiet")
    assert done.returncode == 0, done.stderr
    samples = decode_audio(tmp_path / f"participants/1-ada/audio.{fmt}", rate=None)
    if fmt == "m4a" and ffmpeg_version() < (6, 0):
        # ffmpeg 5's MP4 demuxer ignores the edit list's end: the encoder's zero padding
        # (under one 1024-sample AAC frame) shows; players and newer ffmpeg trim it.
        padding = samples[2 * RATE:]
        assert len(padding) < 1024
        assert not np.any(padding)
        samples = samples[:2 * RATE]
    assert len(samples) == 2 * RATE
    ((start, end),) = active_spans(samples, RATE, threshold=0.05)
    assert start <= 0.002
    assert abs(end - 1.0) <= 0.002


@pytest.fixture
def process_groups() -> Iterator[list[int]]:
    """Process groups to kill after the test: an ffmpeg orphaned by kill -9 must not outlive it."""
    groups: list[int] = []
    yield groups
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def start_long_render(tmp_path: Path, server: MediaServer, manifests: Manifests,
                      process_groups: list[int]) -> tuple[subprocess.Popen[str], list[str]]:
    """`assembler run` busy rendering a long black tail; returns it once ffmpeg is writing."""
    command = [sys.executable, "-m", "assembler", "run", "--out", str(tmp_path / "out"),
               "--quiet", "--video-parts", str(manifests.video_parts), "--duration", "600",
               "--fps", "60", "--video-strategy", "encode"]
    # Its own process group, so that what it leaves running can be found and stopped.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    process_groups.append(process.pid)
    track_dir = tmp_path / "out/participants/1-ada"
    deadline = time.monotonic() + 60
    while not list(track_dir.glob(".*.rendering")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(track_dir.glob(".*.rendering")), "render never started"
    return process, command


def test_a_run_ignoring_ctrl_c_is_not_stopped_by_one_sent_to_its_group(
        tmp_path: Path, process_groups: list[int]) -> None:
    # `assembler run ... &` in a script ignores SIGINT; a Ctrl-C to the process group
    # must not reach its ffmpeg either, which would fail the track.
    build = RecordingBuilder(tmp_path / "www")
    build.video_part(1, "Ada", 0.0, 2.0, colour="red", size=(64, 48), fps=10)
    out = tmp_path / "out"
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        process = subprocess.Popen(
            [sys.executable, "-m", "assembler", "run", "--out", str(out), "--quiet",
             "--video-parts", str(manifests.video_parts), "--duration", "120", "--fps", "60",
             "--video-strategy", "encode"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        process_groups.append(process.pid)
        track_dir = out / "participants/1-ada"
        for _ in range(6000):  # a guard against a hang, not a timing: 60 s
            if list(track_dir.glob(".*.rendering")) or process.poll() is not None:
                break
            time.sleep(0.01)
        assert list(track_dir.glob(".*.rendering")), "render never started"
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert media_info(track_dir / "webcam.mp4").frames == 120 * 60


@pytest.fixture
def one_webcam_part(tmp_path: Path) -> Iterator[tuple[MediaServer, Manifests]]:
    build = RecordingBuilder(tmp_path / "www")
    build.video_part(1, "Ada", 0.0, 2.0, colour="red", size=(64, 48), fps=10)
    with serve_directory(build.root) as server:
        yield server, build.write(server.base_url)


@pytest.mark.parametrize(("stop", "status", "word"), [
    (signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"])
def test_interrupted_render_leaves_no_half_track(
        one_webcam_part: tuple[MediaServer, Manifests], tmp_path: Path,
        stop: signal.Signals, status: int, word: str, process_groups: list[int]) -> None:
    process, _ = start_long_render(tmp_path, *one_webcam_part, process_groups)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == status  # 128 + the signal, as a shell reports it
    assert stderr.strip().splitlines()[-1] == (
        f"error: {word}; complete parts and tracks are kept")
    assert "Traceback" not in stderr
    assert list((tmp_path / "out/participants/1-ada").iterdir()) == []
    assert [p.suffix for p in (tmp_path / "out/parts").iterdir()] == [".mp4"]


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_lists_what_it_finished_and_a_rerun_keeps_it(
        tmp_path: Path, process_groups: list[int], stop: signal.Signals, status: int) -> None:
    # Ada's audio is written in a second or two; her webcam, 30 minutes at 60 fps, is not.
    build = RecordingBuilder(tmp_path / "www")
    build.audio_part(1, "Ada", 0.0, 2.0, ext=".wav")
    build.video_part(1, "Ada", 0.0, 2.0, colour="red", size=(64, 48), fps=10)
    out = tmp_path / "out"
    audio = out / "participants/1-ada/audio.flac"
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        options = ["--out", str(out), "--quiet", "--audio-parts", str(manifests.audio_parts),
                   "--duration", "1800", "--fps", "60", "--video-strategy", "encode"]
        process = subprocess.Popen(
            [sys.executable, "-m", "assembler", "run", *options, "--video-parts",
             str(manifests.video_parts)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True)
        process_groups.append(process.pid)
        deadline = time.monotonic() + 120
        while not audio.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert audio.exists(), "the audio track was never written"
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == status, stderr
        report = report_of(out)
        assert report["complete"] is False
        (entry,) = [track for person in report["participants"] for track in person["tracks"]]
        assert entry["path"] == "participants/1-ada/audio.flac"
        assert entry["sha256"] == hashlib.sha256(audio.read_bytes()).hexdigest()
        written = audio.stat().st_mtime_ns
        rerun = run_cli(*options)  # the audio alone now: it is kept, not made again
        assert rerun.returncode == 0, rerun.stderr
        assert audio.stat().st_mtime_ns == written


def test_a_run_stopped_over_an_earlier_one_leaves_its_report_for_the_cleanup(
        tmp_path: Path, process_groups: list[int]) -> None:
    # FLAC first; then WAV and a long webcam, stopped once the WAV is written. The first
    # report stays, naming the FLAC, so the run that finishes the switch removes it.
    build = RecordingBuilder(tmp_path / "www")
    build.audio_part(1, "Ada", 0.0, 2.0, ext=".wav")
    build.video_part(1, "Ada", 0.0, 2.0, colour="red", size=(64, 48), fps=10)
    out = tmp_path / "out"
    flac, wav = out / "participants/1-ada/audio.flac", out / "participants/1-ada/audio.wav"
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        options = ["--out", str(out), "--quiet", "--audio-parts", str(manifests.audio_parts),
                   "--duration", "1800", "--fps", "60", "--video-strategy", "encode"]
        assert run_cli(*options).returncode == 0
        first = (out / "report.json").read_bytes()
        process = subprocess.Popen(
            [sys.executable, "-m", "assembler", "run", *options, "--audio-format", "wav",
             "--video-parts", str(manifests.video_parts)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        process_groups.append(process.pid)
        deadline = time.monotonic() + 120
        while not wav.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert (out / "report.json").read_bytes() == first
        assert flac.exists()
        assert run_cli(*options, "--audio-format", "wav").returncode == 0
        assert wav.exists()
        assert not flac.exists()


def test_rerun_after_kill_9_mid_render_is_whole(
        one_webcam_part: tuple[MediaServer, Manifests], tmp_path: Path,
        process_groups: list[int]) -> None:
    # kill -9 orphans the running ffmpeg, which goes on writing its temporary file
    # while the rerun renders: the two must never share a file.
    process, command = start_long_render(tmp_path, *one_webcam_part, process_groups)
    process.kill()
    process.communicate(timeout=30)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    track = tmp_path / "out/participants/1-ada/webcam.mp4"
    assert decode_errors(track) == ""
    assert media_info(track).frames == 600 * 60
    assert report_of(tmp_path / "out")["complete"] is True


def test_json_logs_are_one_object_per_line_without_secrets(
        expiring: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = expiring
    done = run_cli("--out", str(tmp_path), *manifests.cli_args(), "--json-logs", "-v")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    events = [(line["event"], line.get("part") or line.get("track"))
              for line in lines if "event" in line]
    assert sorted(event for event, _ in events) == (
        ["downloaded part"] * 3 + ["parts done", "run finished"] + ["wrote track"] * 3)
    assert {line["level"] for line in lines} <= {"debug", "info"}
    assert "X-Amz-Signature" not in done.stderr + done.stdout
    assert "X-Amz-Signature" not in (tmp_path / "report.json").read_text()


@pytest.mark.parametrize("kind", ["audio", "webcam"])
def test_a_track_rendered_in_pieces_is_the_same_track(tmp_path: Path, kind: str) -> None:
    """Hundreds of parts are rendered a few at a time and joined, exactly."""
    from assembler.manifest import Sources
    from assembler.pipeline import RunOptions, run_recording
    from assembler.render import RenderSettings

    build = RecordingBuilder(tmp_path / "www")
    starts = [0.25, 1.0, 1.75, 2.75, 3.5]
    colours = ["red", "green", "blue", "yellow", "magenta"]
    for index, start in enumerate(starts):
        if kind == "audio":
            build.audio_part(1, "Ada", start, 0.5, freq=300 + 100 * index, ext=".wav")
        else:
            build.video_part(1, "Ada", start, 0.5, colour=colours[index], size=(64, 48), fps=10)
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        source = manifests.audio_parts if kind == "audio" else manifests.video_parts
        sources = Sources(**{f"{'audio' if kind == 'audio' else 'video'}_parts": str(source)})
        options = RunOptions(duration=4.5, render=RenderSettings(
            video_strategy="encode", max_video_parts=2, max_audio_parts=2))
        outcome = asyncio.run(run_recording(sources, tmp_path / "out", options))
    assert outcome.report is not None
    ((track,),) = [person["tracks"] for person in outcome.report["participants"]]
    path = tmp_path / "out" / track["path"]
    if kind == "audio":
        samples = decode_audio(path, rate=None)
        assert len(samples) == 4.5 * RATE
        spans = active_spans(samples, RATE)
        assert [round(start, 3) for start, _ in spans] == starts
        assert all(abs(end - start - 0.5) <= 0.002 for start, end in spans)
    else:
        assert decode_errors(path) == ""
        frames = decode_frames(path)[:, 4:8, 5:11]
        assert len(frames) == 4.5 * FPS
        for start, colour in zip(starts, colours, strict=True):
            ((first, last),) = colour_spans(frames, colour, tol=60)
            assert abs(first - start * FPS) <= 1
            assert abs(last - (start + 0.5) * FPS) <= 1


def test_download_only_fetches_every_part_and_renders_nothing(
        messy: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = messy
    done = run_cli("--out", str(tmp_path), *manifests.cli_args(), "--download-only",
                   "--duration", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    # Every part, even those past a --duration that would leave them out of the tracks.
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == sorted(
        s.file for s in manifests.expected)
    assert not (tmp_path / "participants").exists()
    assert not (tmp_path / "report.json").exists()


def test_parts_are_fetched_track_by_track_whatever_the_manifest_order(tmp_path: Path) -> None:
    # The manifests list parts in time order, participants interleaved: fetched by track
    # (each may render once whole), audio tracks first, each track's parts in time order.
    build = RecordingBuilder(tmp_path / "www")
    for start in (0.0, 2.0):
        build.video_part(2, "Bob", start, 1.0, colour="blue", size=(64, 48))
        build.audio_part(2, "Bob", start, 1.0, ext=".wav")
        build.audio_part(1, "Ada", start + 0.5, 1.0, ext=".wav")
        build.video_part(1, "Ada", start + 0.5, 1.0, colour="red", size=(64, 48))
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        done = run_cli("--out", str(tmp_path / "out"), *manifests.cli_args(),
                       "--download-only", "--concurrency", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    fetched = [hit.path.rsplit("/", 1)[1] for hit in server.hits]
    by_track: dict[tuple[int, str], list[str]] = {
        (s.participant_id, s.kind): [] for s in manifests.expected}
    for segment in sorted(manifests.expected, key=lambda s: s.start):
        by_track[segment.participant_id, segment.kind].append(segment.file)
    assert fetched == [*by_track[1, "audio"], *by_track[2, "audio"], *by_track[1, "webcam"],
                       *by_track[2, "webcam"]]


def test_read_only_output_is_one_line_and_exit_3(
        expiring: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = expiring
    out = tmp_path / "out"
    out.mkdir()
    (out / "parts").write_text("a file where the parts directory should be")
    done = run_cli("--out", str(out), *manifests.cli_args(), "--quiet")
    assert done.returncode == 3
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: cannot create ")


def test_copy_that_cannot_be_done_fails_that_track_naming_its_parts(
        messy: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = messy
    done = run_cli("--out", str(tmp_path), *manifests.cli_args(), "--video-strategy", "copy",
                   "--quiet")
    assert done.returncode == 1
    report = report_of(tmp_path)
    webcam = "participants/1-zoe-unicode/webcam.mp4"
    failed = [failure for failure in report["failures"] if failure.get("track") == webcam]
    assert [failure["part"] for failure in failed] == [
        s.part_id for s in manifests.expected if s.participant_id == 1 and s.kind == "webcam"]
    assert all("VP8 cannot be stored in MP4" in failure["error"] or
               "differ" in failure["error"] for failure in failed)
    written = {track["path"] for person in report["participants"]
               for track in person["tracks"]}
    assert webcam not in written
    assert {"participants/1-zoe-unicode/audio.flac",
            "participants/2-ada-lovelace/audio.flac"} <= written
    assert not (tmp_path / webcam).exists()


def test_tracks_and_report_are_created_with_the_users_umask(
        finished: tuple[subprocess.CompletedProcess[str], Path, Manifests]) -> None:
    _, out, _ = finished
    expected = 0o666 & ~current_umask()
    for path in [out / "report.json", *out.glob("participants/*/*")]:
        assert path.stat().st_mode & 0o777 == expected, path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_expired_links_are_renewed_from_the_manifest_url_once(tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    for who in (1, 2, 3):
        build.audio_part(who, f"P{who}", 0.0, 1.0, freq=300 + 100 * who, ext=".wav")
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        fresh = manifests.audio_parts.read_text()
        # The first fetch of the manifest hands out links that have expired since.
        stale = fresh.replace("/parts/", "/old/parts/")
        server.fail("audio_parts.json", 200, times=1, body=stale.encode())
        for segment in manifests.expected:
            server.fail(f"old/parts/{segment.file}", 403, body=S3_EXPIRED)
        done = run_cli("--out", str(tmp_path / "out"), "--audio-parts",
                       server.url("audio_parts.json", "X-Amz-Signature=manifest"), "--quiet")
    assert done.returncode == 0, done.stderr
    assert server.requests["/audio_parts.json"] == 2  # loaded, then reloaded once for all
    assert all(server.requests[f"/old/parts/{s.file}"] <= 2 for s in manifests.expected)
    report = report_of(tmp_path / "out")
    assert report["complete"] is True
    assert len([t for p in report["participants"] for t in p["tracks"]]) == 3
