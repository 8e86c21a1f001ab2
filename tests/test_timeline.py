"""The editor's timeline: OTIO and FCP 7 XML built as data, read back by OTIO, and end to end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import opentimelineio as otio
import pytest

from assembler.deliverables import DeliverableContext, DeliverableOptions, make_deliverables
from assembler.deliverables.timeline import build_timeline
from assembler.ffmpeg_process import FfmpegSlots
from assembler.manifest import (
    AUDIO_PARTS,
    PARTICIPANT_EVENTS,
    SPEAKER_TIMELINE,
    VIDEO_PARTS,
    Documents,
    Participant,
    SpeakerSegment,
    Timestamp,
)
from assembler.plan import make_plan, time_of_day
from assembler.render import RenderSettings
from assembler.report import build_report
from tests.support.recording import RecordingBuilder
from tests.support.server import serve_directory
from tests.support.stamps import mp4_timecode, read_bext

if TYPE_CHECKING:
    from pathlib import Path

    from assembler.plan import Plan

START = datetime(2025, 7, 17, 9, 30, 15, 500000, tzinfo=UTC)  # 09:30:15 and a half
ADA = {"id": 1, "name": "Ada Lovelace"}
BOB = {"id": 2, "name": None}


def _stamp(relative: float, absolute: bool = True) -> dict[str, Any]:
    moment = (START + timedelta(seconds=relative)).isoformat() if absolute else None
    return {"relative": relative, "absolute": moment}


def _part(part_id: str, who: dict[str, Any], start: float, duration: float,
          kind: str | None = None, absolute: bool = True) -> dict[str, Any]:
    part = {"id": part_id, "participant": who, "start_timestamp": _stamp(start, absolute),
            "duration": duration, "download_url": f"https://media.example/{part_id}.mp4"}
    return part | ({"type": kind} if kind else {})


def _documents(*, absolute: bool = True, video: bool = True) -> Documents:
    videos = [_part("v1", ADA, 0.0, 10.0, "webcam", absolute),
              _part("s2", BOB, 2.0, 3.0, "screenshare", absolute)] if video else []
    return Documents(
        audio_parts=tuple(AUDIO_PARTS.validate_python([
            _part("a1", ADA, 0.0, 10.0, absolute=absolute),
            _part("a2", BOB, 1.5, 8.5, absolute=absolute)])),
        video_parts=tuple(VIDEO_PARTS.validate_python(videos)),
        speaker_timeline=tuple(SPEAKER_TIMELINE.validate_python([
            {"participant": ADA, "start_timestamp": _stamp(0.51), "end_timestamp": _stamp(2.2)},
            {"participant": BOB, "start_timestamp": _stamp(2.2), "end_timestamp": _stamp(9.99)},
        ])),
        participant_events=tuple(PARTICIPANT_EVENTS.validate_python([
            {"id": "e1", "action": "join", "participant": BOB, "timestamp": _stamp(1.5)},
            {"id": "e2", "action": "chat_message", "participant": ADA,
             "timestamp": _stamp(4.25), "data": {"text": "slides <here> & there",
                                                 "to": "everyone"}},
            {"id": "e3", "action": "leave", "participant": BOB, "timestamp": _stamp(10.0)},
        ])),
    )


def _plan(documents: Documents, fps: Fraction = Fraction(25)) -> Plan:
    return make_plan(documents, fps=fps, audio_format="wav")


def test_one_track_per_rendered_track_each_one_clip_of_its_whole_file() -> None:
    documents = _documents()
    plan = _plan(documents)
    timeline, warnings = build_timeline(plan, plan.tracks, documents)
    assert warnings == []
    assert [(track.name, track.kind) for track in timeline.tracks] == [
        ("Ada Lovelace audio", "Audio"), ("Ada Lovelace webcam", "Video"),
        ("Participant 2 audio", "Audio"), ("Participant 2 screenshare", "Video")]
    tc_frames = time_of_day(START, Fraction(25))
    assert timeline.global_start_time == otio.opentime.RationalTime(tc_frames, 25)
    assert otio.opentime.to_timecode(timeline.global_start_time, 25) == "09:30:15:13"
    for track, planned in zip(timeline.tracks, plan.tracks, strict=True):
        (clip,) = track
        reference = clip.media_reference
        assert reference.target_url == planned.path  # relative to DIR, no file://
        assert clip.source_range == reference.available_range
        assert clip.source_range.duration.value == planned.length
        assert clip.source_range.duration.rate == float(planned.rate)
        assert clip.source_range.duration.to_seconds() == 10.0
        assert track.range_of_child_at_index(0).start_time.value == 0
    wav_start = timeline.tracks[0][0].source_range.start_time
    assert wav_start == otio.opentime.RationalTime(time_of_day(START, Fraction(48000)), 48000)
    webcam_start = timeline.tracks[1][0].source_range.start_time
    assert webcam_start == otio.opentime.RationalTime(tc_frames, 25)


def test_the_timeline_runs_at_the_video_tracks_rate_or_30_with_only_audio() -> None:
    documents = _documents()
    plan = _plan(documents)
    copied = [track.at_rate(Fraction(30000, 1001)) if track.kind != "audio" else track
              for track in plan.tracks]  # a copied track keeps its parts' frame rate
    timeline, _ = build_timeline(plan, copied, documents)
    assert timeline.global_start_time.rate == pytest.approx(30000 / 1001)
    audio_only = _documents(video=False)
    plan = _plan(audio_only)
    timeline, _ = build_timeline(plan, plan.tracks, audio_only)
    assert timeline.global_start_time.rate == 30
    assert [track.kind for track in timeline.tracks] == ["Audio", "Audio"]


def test_without_absolute_times_the_timeline_starts_at_zero() -> None:
    documents = _documents(absolute=False)
    documents = Documents(audio_parts=documents.audio_parts, video_parts=documents.video_parts)
    plan = _plan(documents)
    timeline, _ = build_timeline(plan, plan.tracks, documents)
    assert otio.opentime.to_timecode(timeline.global_start_time, 25) == "00:00:00:00"
    assert all(track[0].source_range.start_time.value == 0 for track in timeline.tracks)


def test_markers_for_speaker_turns_and_participant_events() -> None:
    documents = _documents()
    plan = _plan(documents)
    timeline, _ = build_timeline(plan, plan.tracks, documents)
    found = [(m.name, m.marked_range.start_time.value, m.marked_range.duration.value, m.color,
              m.comment) for m in timeline.tracks.markers]
    ada, bob = found[0][3], found[1][3]
    assert ada != bob
    assert found == [
        ("Ada Lovelace", 13, 42, ada, ""),  # 0.51 s = 12.75 frames, 2.2 s = 55 frames
        ("Participant 2", 55, 195, bob, ""),  # 9.99 s = 249.75 frames
        ("join Participant 2", 38, 0, bob, ""),  # 1.5 s = 37.5 frames, halves up
        ("chat_message Ada Lovelace", 106, 0, ada, "slides <here> & there"),
        ("leave Participant 2", 250, 0, bob, ""),
    ]


def test_turns_and_events_outside_the_timeline_are_clipped_or_left_out() -> None:
    documents = _documents()

    def turn(start: float, end: float) -> SpeakerSegment:
        return SpeakerSegment(participant=Participant(id=1, name="Ada Lovelace"),
                              start_timestamp=Timestamp(relative=start),
                              end_timestamp=Timestamp(relative=end))

    late = documents.participant_events[0].model_copy(
        update={"timestamp": Timestamp(relative=12.0)})
    documents = Documents(audio_parts=documents.audio_parts, video_parts=documents.video_parts,
                          speaker_timeline=(turn(-3.0, -1.0), turn(-1.0, 1.0), turn(9.0, 12.0)),
                          participant_events=(late,))
    plan = _plan(documents)
    timeline, warnings = build_timeline(plan, plan.tracks, documents)
    assert [(m.marked_range.start_time.value, m.marked_range.duration.value)
            for m in timeline.tracks.markers] == [(0, 25), (225, 25)]
    assert warnings == [
        "1 speaker turn(s) before the recording start left out of the timeline markers",
        "1 participant event(s) after the timeline end left out of the timeline markers"]


def test_fcp7_xml_has_a_format_relative_paths_and_reads_back_with_the_same_clips() -> None:
    documents = _documents()
    plan = _plan(documents)
    timeline, _ = build_timeline(plan, plan.tracks, documents, audio_in_frames=True)
    text = otio.adapters.write_to_string(timeline, adapter_name="fcp_xml")
    sequence = ElementTree.fromstring(text).find("./project/children/sequence")
    assert sequence is not None
    assert sequence.find("./media/video/format") is not None  # Resolve needs it (OTIO #839)
    assert sequence.findtext("./timecode/string") == "09:30:15:13"
    assert sorted(url.text or "" for url in sequence.iter("pathurl")) == sorted(
        track.path for track in plan.tracks)
    for item in sequence.iter("clipitem"):  # every clip item counted in sequence frames
        assert item.findtext("./rate/timebase") == "25"
        assert (item.findtext("start"), item.findtext("end")) == ("0", "250")
    back = otio.adapters.read_from_string(text, adapter_name="fcp_xml")
    clips = sorted((clip.name, clip.media_reference.target_url, clip.duration().to_seconds())
                   for clip in back.find_clips())
    assert clips == sorted((track.name, track[0].media_reference.target_url, 10.0)
                           for track in timeline.tracks)
    assert [(m.name, m.marked_range.start_time.value) for m in back.tracks.markers] == [
        (m.name, m.marked_range.start_time.value) for m in timeline.tracks.markers]
    chat = next(m for m in back.tracks.markers if m.name.startswith("chat_message"))
    assert chat.metadata["fcp_xml"]["comment"] == "slides <here> & there"


# End to end: `assembler run` on a recording served on loopback.

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assembler", "run", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def _within_a_frame(marker: otio.schema.Marker, start: float, end: float, rate: float) -> None:
    marked = marker.marked_range
    assert abs(marked.start_time.to_seconds() - start) <= 1 / rate
    assert abs(marked.end_time_exclusive().to_seconds() - end) <= 1 / rate


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run with every deliverable option of this issue: (output dir, documents dir)."""
    root = tmp_path_factory.mktemp("timeline")
    build = RecordingBuilder(root / "www")
    build.audio_part(1, "Ada Lovelace", 0.0, 3.0, ext=".wav")
    build.audio_part(2, None, 1.0, 2.0, freq=660.0, ext=".wav")
    build.video_part(1, "Ada Lovelace", 0.5, 2.5, colour="red")
    build.chat(2, 1.25, "can you see my screen?")
    out = root / "out"
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        result = run_cli("--out", str(out), *manifests.cli_args(), "--captions", "vtt,srt",
                         "--timeline", "otio,fcp7xml", "--audio-format", "wav", "--quiet")
    assert result.returncode == 0, result.stderr
    return out, build.root


def test_cli_timeline_clips_are_the_run_s_tracks_and_resolve_to_files(
        made: tuple[Path, Path]) -> None:
    out, _ = made
    report = json.loads((out / "report.json").read_text())
    tracks = {track["path"]: (person["name"] or f"Participant {person['id']}", track["kind"])
              for person in report["participants"] for track in person["tracks"]}
    for name in ("timeline.otio", "timeline.xml"):
        timeline = otio.adapters.read_from_file(str(out / name))
        clips = {clip.media_reference.target_url: clip for clip in timeline.find_clips()}
        assert set(clips) == set(tracks)
        for path, clip in clips.items():
            assert (out / path).is_file()
            assert clip.name == " ".join(tracks[path])
            assert clip.duration().to_seconds() == pytest.approx(3.0)
        assert otio.opentime.to_timecode(timeline.global_start_time) == "14:00:00:00"
    otio_file = otio.adapters.read_from_file(str(out / "timeline.otio"))
    assert [track.name for track in otio_file.tracks] == [
        "Ada Lovelace audio", "Ada Lovelace webcam", "Participant 2 audio"]
    # Read again without OpenTimelineIO: the .otio file is plain JSON a script can walk.
    raw = json.loads((out / "timeline.otio").read_text())
    assert raw["OTIO_SCHEMA"].startswith("Timeline.")
    urls = [child["media_references"][child["active_media_reference_key"]]["target_url"]
            for track in raw["tracks"]["children"] for child in track["children"]
            if child["OTIO_SCHEMA"].startswith("Clip.")]
    assert sorted(urls) == sorted(tracks)
    outputs = {entry["path"]: entry for entry in report["outputs"]}
    assert {"timeline.otio", "timeline.xml", "captions.vtt", "captions.srt"} <= set(outputs)
    assert outputs["timeline.xml"]["format"] == "fcp7xml"
    assert all("sha256" in entry for entry in outputs.values())


def test_cli_timeline_start_agrees_with_the_track_files_own_timecode(
        made: tuple[Path, Path]) -> None:
    out, _ = made
    timeline = otio.adapters.read_from_file(str(out / "timeline.otio"))
    starts = {}
    for clip in timeline.find_clips():
        start, path = clip.source_range.start_time, out / clip.media_reference.target_url
        if path.suffix == ".mp4":  # the tmcd track: ffmpeg's label and the frame number
            starts[path.name] = mp4_timecode(path)
            assert starts[path.name] == (otio.opentime.to_timecode(start), start.value)
        else:  # Broadcast WAV: samples since midnight
            starts[path.name] = ("", read_bext(path).time_reference)
            assert starts[path.name][1] == start.value
    assert starts == {"webcam.mp4": ("14:00:00:00", 14 * 3600 * 30),
                      "audio.wav": ("", 14 * 3600 * 48000)}


def test_cli_timeline_markers_are_within_a_frame_of_the_documents(
        made: tuple[Path, Path]) -> None:
    out, documents = made
    turns = json.loads((documents / "speaker_timeline.json").read_text())
    events = json.loads((documents / "participant_events.json").read_text())
    for name in ("timeline.otio", "timeline.xml"):
        markers = list(otio.adapters.read_from_file(str(out / name)).tracks.markers)
        assert len(markers) == len(turns) + len(events)
        for marker, turn in zip(markers, turns, strict=False):
            assert marker.name == (turn["participant"]["name"] or "Participant 2")
            _within_a_frame(marker, turn["start_timestamp"]["relative"],
                            turn["end_timestamp"]["relative"], 30)
        for marker, event in zip(markers[len(turns):], events, strict=True):
            assert marker.name.split(" ", 1)[0] == event["action"]
            at = event["timestamp"]["relative"]
            _within_a_frame(marker, at, at, 30)
    otio_markers = otio.adapters.read_from_file(str(out / "timeline.otio")).tracks.markers
    chat = next(m for m in otio_markers if m.name == "chat_message Participant 2")
    assert chat.comment == "can you see my screen?"


def test_a_run_whose_tracks_all_failed_gets_no_timeline_but_an_error(tmp_path: Path) -> None:
    documents = _documents()
    plan = _plan(documents)
    context = DeliverableContext(
        out_dir=tmp_path, documents=documents, plan=plan, tracks=(), render=RenderSettings(),
        options=DeliverableOptions(timeline=("otio", "fcp7xml")),
        report=build_report(plan, [], [], tmp_path, "inputs"))
    report = asyncio.run(make_deliverables(context, FfmpegSlots(1)))
    assert [(entry["path"], entry.get("error")) for entry in report["outputs"]] == [
        ("timeline.otio", "no track was written: a timeline would be empty"),
        ("timeline.xml", "no track was written: a timeline would be empty")]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("rate", [Fraction(15), Fraction(1, 3), Fraction(25, 2)],
                         ids=["15fps-webcam", "sparse-screenshare", "12.5fps"])
def test_a_copied_track_at_a_rate_timecode_cannot_count_in_is_counted_at_30(
        rate: Fraction) -> None:
    """OTIO's timecode (and FCP 7 XML) refuse 15 fps: the timeline runs at 30 and spans it."""
    documents = _documents()
    plan = _plan(documents)
    copied = [track.at_rate(rate) if track.kind != "audio" else track for track in plan.tracks]
    timeline, _ = build_timeline(plan, copied, documents, audio_in_frames=True)
    assert timeline.global_start_time == otio.opentime.RationalTime(
        time_of_day(START, Fraction(30)), 30)
    text = otio.adapters.write_to_string(timeline, adapter_name="fcp_xml")
    sequence = ElementTree.fromstring(text).find("./project/children/sequence")
    assert sequence is not None
    assert sequence.findtext("./timecode/string") == "09:30:15:15"
    for item in sequence.iter("clipitem"):  # every clip spans the whole 10 s timeline
        assert (item.findtext("start"), item.findtext("end")) == ("0", "300")
    otio_text = otio.adapters.write_to_string(timeline, adapter_name="otio_json")
    back = otio.adapters.read_from_string(otio_text, adapter_name="otio_json")
    assert {round(clip.duration().to_seconds(), 6) for clip in back.find_clips()} == {10.0}
