"""`--archive`: one Matroska file per recording, made by stream copy, read back with ffmpeg."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING

import pytest

from assembler.deliverables import DeliverableContext, DeliverableOptions, Output
from assembler.deliverables.archive import (
    ARCHIVE,
    Chapter,
    chapters_metadata,
    speaker_chapters,
    stored_as,
)
from assembler.ffmpeg_process import ffmpeg_version
from assembler.manifest import Documents, Participant, Sources, SpeakerSegment, Timestamp
from assembler.pipeline import RunOptions, plan_recording, run_recording
from assembler.plan import Plan
from assembler.render import RenderedTrack, RenderSettings
from tests.support.media import (
    active_spans,
    decode_audio,
    decode_errors,
    dominant_frequency,
    ffmpeg,
    ffmpeg_stderr,
)
from tests.support.recording import RecordingBuilder
from tests.support.server import serve_directory

if TYPE_CHECKING:
    from pathlib import Path

    from assembler.pipeline import RunOutcome

RATE = 48000
DURATION = 5.0
_STREAM = re.compile(r"^\s*Stream #0:(\d+)(?:\((\w+)\))?: (\w+): (.*)$", re.M)


def _recording(root: Path, audio_ext: str = ".wav") -> RecordingBuilder:
    build = RecordingBuilder(root)
    # Bob (id 2) is added first: the archive orders by participant id all the same.
    build.audio_part(2, "Bob", 2.5, 2.5, freq=660.0, ext=audio_ext)
    build.video_part(2, "Bob", 0.0, 4.0, kind="screenshare", colour="blue", gop=15)
    build.audio_part(1, "Ada Lovelace", 0.0, 2.5, freq=440.0, ext=audio_ext)
    build.video_part(1, "Ada Lovelace", 0.5, 4.5, colour="red", gop=15)
    return build


def _run(build: RecordingBuilder, out: Path, audio_format: str = "flac",
         strategy: str = "copy", captions: tuple[str, ...] = ()
         ) -> tuple[Sources, RunOutcome]:
    options = RunOptions(jobs=2, deliverables=DeliverableOptions(archive=True,
                                                                 captions=captions),
                         render=RenderSettings(audio_format=audio_format,
                                               video_strategy=strategy))  # type: ignore[arg-type]
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        sources = Sources(audio_parts=str(manifests.audio_parts),
                          video_parts=str(manifests.video_parts),
                          speaker_timeline=str(manifests.speaker_timeline),
                          transcript=str(manifests.transcript))
        return sources, asyncio.run(run_recording(sources, out, options))


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Sources, RunOutcome]:
    root = tmp_path_factory.mktemp("archive")
    sources, outcome = _run(_recording(root / "www"), root / "out", captions=("vtt",))
    return root / "out", sources, outcome


def _info(path: Path) -> str:
    """What `ffmpeg -i` says about `path`."""
    return ffmpeg_stderr(["-i", str(path)])


def _streams(path: Path) -> list[tuple[str, str, str]]:
    """(kind, description, metadata lines) of every stream, as `ffmpeg -i` shows them."""
    shown = _info(path)
    found = list(_STREAM.finditer(shown))
    ends = [match.start() for match in found[1:]] + [len(shown)]
    return [(match[3], match[4], shown[match.end():end])
            for match, end in zip(found, ends, strict=True)]


def _title(metadata: str) -> str:
    match = re.search(r"^\s*title\s*: (.*)$", metadata, re.M)
    return match[1] if match else ""


def _packet_md5s(path: Path, stream: str) -> list[str]:
    """MD5 of every packet of one stream, as stored (no decode)."""
    text = ffmpeg(["-i", str(path), "-map", stream, "-c", "copy", "-f", "framemd5", "-"],
                  stdout=True).decode()
    return [line.rsplit(",", 1)[1].strip() for line in text.splitlines()
            if line and not line.startswith("#")]


def _video_span(path: Path, stream: str) -> tuple[float, float, int]:
    """First frame's time, last frame's end (seconds) and frame count, by decoding."""
    text = ffmpeg(["-i", str(path), "-map", stream, "-fps_mode", "passthrough",
                   "-f", "framecrc", "-"], stdout=True).decode()
    base = re.search(r"^#tb 0: (\d+)/(\d+)", text, re.M)
    assert base
    time_base = Fraction(int(base[1]), int(base[2]))
    frames = [(int(pts), int(length)) for pts, length in
              re.findall(r"^0,\s*-?\d+,\s*(-?\d+),\s*(\d+),", text, re.M)]
    return (float(frames[0][0] * time_base), float((frames[-1][0] + frames[-1][1]) * time_base),
            len(frames))


def test_every_track_is_one_named_stream_in_participant_and_kind_order(
        archived: tuple[Path, Sources, RunOutcome]) -> None:
    out, _sources, outcome = archived
    assert outcome.exit_status == 0
    entry = outcome.report["outputs"][-1]
    assert entry["path"] == "recording.mkv"
    assert entry["kind"] == "archive"
    assert "sha256" in entry
    streams = _streams(out / "recording.mkv")
    media = [(kind, _title(meta), "(default)" in desc) for kind, desc, meta in streams
             if kind in ("Audio", "Video")]
    assert media == [("Audio", "Ada Lovelace audio", True),
                     ("Video", "Ada Lovelace webcam", False),
                     ("Audio", "Bob audio", False),
                     ("Video", "Bob screenshare", False)]
    assert "Input #0, matroska" in _info(out / "recording.mkv")
    assert decode_errors(out / "recording.mkv") == ""
    if ffmpeg_version() < (9, 0):
        # 5.1 ignores -r on stream copy: a track whose frame durations vary (black
        # filler after a short part) gets its average as frame rate, and decoding that
        # stream to `-f null` then complains of duplicate timestamps. The frames are fine.
        pytest.xfail("ffmpeg 5.1 writes the average frame rate of a copied stream")
    assert decode_errors(out / "recording.mkv", ["0:v", "0:a"]) == ""


def test_video_streams_are_the_tracks_packets_byte_for_byte(
        archived: tuple[Path, Sources, RunOutcome]) -> None:
    out, _, _ = archived
    archive = out / "recording.mkv"
    assert _packet_md5s(archive, "0:v:0") == _packet_md5s(
        out / "participants/1-ada-lovelace/webcam.mp4", "0:v:0")
    assert _packet_md5s(archive, "0:v:1") == _packet_md5s(
        out / "participants/2-bob/screenshare.mp4", "0:v:0")


def test_every_stream_starts_at_zero_and_lasts_the_timeline(
        archived: tuple[Path, Sources, RunOutcome]) -> None:
    out, _, _ = archived
    archive = out / "recording.mkv"
    for index in (0, 1):
        start, end, frames = _video_span(archive, f"0:v:{index}")
        assert start == 0.0
        assert abs(end - DURATION) < 1 / 30
        assert frames == round(DURATION * 30)
    for index, freq in ((0, 440.0), (1, 660.0)):
        samples = decode_audio(archive, rate=None, stream=f"0:a:{index}")
        assert abs(len(samples) - DURATION * RATE) <= 0.002 * RATE
        spoken = samples[:int(2.5 * RATE)] if index == 0 else samples[int(2.5 * RATE):]
        assert dominant_frequency(spoken, RATE) == pytest.approx(freq, abs=2)


def test_the_report_is_attached_and_the_start_is_the_creation_time(
        archived: tuple[Path, Sources, RunOutcome], tmp_path: Path) -> None:
    out, _sources, outcome = archived
    streams = _streams(out / "recording.mkv")
    [(_, _, meta)] = [stream for stream in streams if stream[0] == "Attachment"]
    assert re.search(r"mimetype\s*: application/json", meta)
    assert re.search(r"filename\s*: report.json", meta)
    attached = tmp_path / "attached.json"
    # ffmpeg dumps attachments while opening the input, then complains of no output.
    ffmpeg_stderr(["-y", "-dump_attachment:t:0", str(attached), "-i", str(out / "recording.mkv")])
    report = json.loads(attached.read_text())
    assert report["participants"] == outcome.report["participants"]
    # As it stood before the archive itself: the captions made before it, not the archive.
    assert [o["path"] for o in report["outputs"]] == [
        o["path"] for o in outcome.report["outputs"] if o["kind"] == "captions"]
    assert re.search(r"creation_time\s*: 2025-07-17T14:00:00", _info(out / "recording.mkv"))


def test_speaker_changes_are_chapters(archived: tuple[Path, Sources, RunOutcome]) -> None:
    out, _, _ = archived
    text = ffmpeg(["-i", str(out / "recording.mkv"), "-f", "ffmetadata", "-"],
                  stdout=True).decode()
    chapters = [(Fraction(start) * Fraction(base), Fraction(end) * Fraction(base), title)
                for base, start, end, title in re.findall(
                    r"TIMEBASE=(\d+/\d+)\nSTART=(\d+)\nEND=(\d+)\ntitle=(.*)", text)]
    assert chapters == [(0, Fraction(5, 2), "Ada Lovelace"), (Fraction(5, 2), 5, "Bob")]


@pytest.mark.parametrize("audio_format", ["m4a", "mp3", "opus", "wav"])
def test_each_audio_format_decodes_to_the_tracks_samples(tmp_path: Path,
                                                        audio_format: str) -> None:
    build = RecordingBuilder(tmp_path / "www")
    build.audio_part(1, "Ada", 0.5, 1.0, freq=440.0, ext=".wav")
    _, outcome = _run(build, tmp_path / "out", audio_format=audio_format)
    assert outcome.exit_status == 0
    track = decode_audio(tmp_path / "out" / f"participants/1-ada/audio.{audio_format}",
                         rate=None)
    archived = decode_audio(tmp_path / "out" / "recording.mkv", rate=None)
    assert abs(len(archived) - len(track)) <= 0.002 * RATE
    # The tone starts where it does in the track (priming trimmed), to 2 ms.
    [(onset, _)] = active_spans(archived, RATE, min_gap=0.1)
    assert abs(onset - active_spans(track, RATE, min_gap=0.1)[0][0]) <= 0.002
    assert dominant_frequency(archived[int(0.5 * RATE):], RATE) == pytest.approx(440, abs=2)
    stored = [desc for kind, desc, _ in _streams(tmp_path / "out/recording.mkv")
              if kind == "Audio"]
    converted = stored_as(audio_format)
    own = {"m4a": "aac", "mp3": "mp3", "opus": "opus", "wav": "pcm_s16le"}[audio_format]
    assert stored[0].startswith(converted or own)
    assert converted == ("flac" if audio_format == "mp3" or (
        audio_format == "m4a" and ffmpeg_version() < (9, 0)) else None)
    warned = [w for w in outcome.report["warnings"] if w.get("output") == "recording.mkv"]
    assert bool(warned) == bool(converted)


def test_captions_of_the_run_are_subtitle_streams_named_after_each_speaker(
        archived: tuple[Path, Sources, RunOutcome]) -> None:
    out, _, _ = archived
    subtitles = [(desc.split(",")[0], _title(meta)) for kind, desc, meta
                 in _streams(out / "recording.mkv") if kind == "Subtitle"]
    assert subtitles == [("webvtt", "Ada Lovelace"), ("webvtt", "Bob")]
    cues = ffmpeg(["-i", str(out / "recording.mkv"), "-map", "0:s:1", "-c", "copy",
                   "-f", "webvtt", "-"], stdout=True).decode()
    assert "<v Bob>" in cues
    assert "Ada" not in cues


def test_captions_made_before_are_one_subtitle_stream_per_participant(
        archived: tuple[Path, Sources, RunOutcome], tmp_path: Path) -> None:
    out, sources, outcome = archived
    vtt = tmp_path / "bob.vtt"
    vtt.write_text("WEBVTT\n\n00:00:02.600 --> 00:00:03.400\n<v Bob>numbers landed\n",
                   encoding="utf-8")
    context = replace(_context(out, sources, outcome), made=({"kind": "captions", "format": "vtt",
                                      "path": str(vtt),
                                      "participant": 2, "sha256": "0" * 64},))
    target = tmp_path / "archive.mkv"
    output = Output(kind="archive", format="mkv", path="recording.mkv")
    assert ARCHIVE.write(context, output, target) == []
    subtitles = [(desc.split(",")[0], _title(meta)) for kind, desc, meta in _streams(target)
                 if kind == "Subtitle"]
    assert subtitles == [("webvtt", "Bob")]
    cues = ffmpeg(["-i", str(target), "-map", "0:s:0", "-c", "copy", "-f", "webvtt", "-"],
                  stdout=True).decode()
    assert "00:02.600 --> 00:03.400" in cues
    assert "<v Bob>numbers landed" in cues


def _context(out: Path, sources: Sources, outcome: RunOutcome) -> DeliverableContext:
    """The archive's context as the run had it, rebuilt from the run's documents and tracks."""
    documents, plan = asyncio.run(plan_recording(sources, RunOptions()))
    tracks = tuple(RenderedTrack(track=track, path=out / track.path, strategy="copy")
                   for track in plan.tracks)
    return DeliverableContext(out_dir=out, documents=documents, plan=plan, tracks=tracks,
                              render=RenderSettings(), options=DeliverableOptions(archive=True),
                              report=outcome.report)


def _turn(participant: int, name: str, start: float, end: float) -> SpeakerSegment:
    return SpeakerSegment(participant=Participant(id=participant, name=name),
                          start_timestamp=Timestamp(relative=start),
                          end_timestamp=Timestamp(relative=end))


def test_chapters_merge_a_speakers_turns_and_skip_interjections() -> None:
    documents = Documents(speaker_timeline=(
        _turn(1, "Ada", 3.0, 20.0), _turn(2, "Bob", 20.0, 20.8),  # "mm-hm": no chapter
        _turn(1, "Ada", 21.0, 40.0), _turn(2, "Bob", 41.0, 70.0), _turn(3, "", 70.0, 99.0)))
    plan = Plan(duration=Fraction(90), participants=())
    assert speaker_chapters(documents, plan) == [
        Chapter(start=0, end=41000, title="Ada"),
        Chapter(start=41000, end=70000, title="Bob"),
        Chapter(start=70000, end=90000, title="Participant 3")]
    assert speaker_chapters(Documents(), plan) == []


def test_chapter_titles_are_escaped_for_ffmetadata() -> None:
    text = chapters_metadata([Chapter(start=0, end=10, title="A=B; #1 \\ x")])
    assert text.splitlines()[-1] == "title=A\\=B\\; \\#1 \\\\ x"
