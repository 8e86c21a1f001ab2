"""Recordings as real recorders make them (issue 14), measured by decoding the output.

Each test builds the kind of part a public bug report describes (WebRTC packet
holes, raw ADTS, MP3 without a LAME tag, streams that start late in their
container, header-only WebM, 5.1 in MP3, times before the recording start)
and checks where the marker tone or colour lands: audio to 2 ms, video to
the frame, lengths exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from assembler.errors import FFmpegError, MediaError
from assembler.ffmpeg_process import file_arg, run_ffmpeg
from assembler.media import MediaInfo, probe, probe_many
from assembler.plan import AUDIO_FORMATS, AUDIO_RATE, Slot, TrackPlan, place
from assembler.render import RenderSettings, is_empty, render_track
from tests.support.media import (
    active_spans,
    audio_channels,
    colour_spans,
    decode_audio,
    decode_errors,
    decode_frames,
    ffmpeg,
    make_colour_video,
    make_tone,
)
from tests.support.server import serve_directory

if TYPE_CHECKING:
    from pathlib import Path

RATE = AUDIO_RATE
TOLERANCE = 0.002  # seconds: audio placed to 2 ms
FPS = 30


def bursts(spans: list[tuple[float, float]], seconds: float, rate: int = RATE) -> str:
    """An lavfi source: a 440 Hz tone inside each `(start, end)` span, silence elsewhere."""
    gate = "+".join(f"between(t,{start},{end})" for start, end in spans)
    return (f"aevalsrc='0.5*sin(2*PI*440*t)*({gate})':s={rate},"
            f"atrim=end_sample={round(seconds * rate)}")


def make_part(path: Path, source: str, *codec: str) -> Path:
    ffmpeg(["-y", "-f", "lavfi", "-i", source, *codec, file_arg(path)])
    return path


def audio_track(slots: list[tuple[str, float, float]], seconds: float,
                audio_format: str = "flac") -> TrackPlan:
    placed = tuple(Slot(part_id=part, start=Fraction(start), end=Fraction(end))
                   for part, start, end in slots)
    length = round(seconds * RATE)
    return TrackPlan(participant_id=1, kind="audio", path=f"audio.{audio_format}",
                     rate=Fraction(RATE), length=length, slots=placed,
                     segments=place(placed, length, Fraction(RATE)))


def render_audio(tmp_path: Path, parts: dict[str, Path], track: TrackPlan,
                 audio_format: str = "flac") -> tuple[np.ndarray, tuple[tuple[str, str], ...]]:
    """Render `track`; return its decoded samples (checked exact in length) and warnings."""
    probes = {part_id: probe(path) for part_id, path in parts.items()}
    rendered = render_track(track, parts, probes, tmp_path / "out",
                            RenderSettings(audio_format=audio_format))
    assert decode_errors(rendered.path) == ""
    samples = decode_audio(rendered.path, rate=None)
    assert len(samples) == track.length
    return samples, rendered.warnings


def assert_spans(samples: np.ndarray, expected: list[tuple[float, float]]) -> None:
    found = active_spans(samples, RATE)
    assert len(found) == len(expected), found
    for (start, end), (due_start, due_end) in zip(found, expected, strict=True):
        assert abs(start - due_start) <= TOLERANCE, (found, expected)
        assert abs(end - due_end) <= TOLERANCE, (found, expected)


# --- 1. short timestamp holes (WebRTC packet loss) ------------------------------------

TONES = [(0.5, 1.0), (2.0, 2.5), (4.0, 4.5), (6.0, 6.5)]


def holed_opus(path: Path, holes: list[tuple[float, float]]) -> Path:
    """7 s of Opus whose packets inside each hole are dropped, timestamps kept."""
    drop = "+".join(f"between(pts*tb,{start},{end})" for start, end in holes)
    return make_part(path, bursts(TONES, 7.0), "-c:a", "libopus", "-b:a", "128k",
                     "-bsf:a", f"noise=drop='{drop}'")


@pytest.mark.parametrize(("container", "audio_format"), [
    *((".webm", audio_format) for audio_format in AUDIO_FORMATS),
    (".ogg", "flac"), (".mka", "wav")])
def test_short_holes_in_opus_keep_the_rest_in_place(tmp_path: Path, container: str,
                                                    audio_format: str) -> None:
    # Two 40 ms holes in quiet stretches: the tones after them were 40 and 80 ms early.
    part = holed_opus(tmp_path / f"mic{container}", [(1.095, 1.135), (3.095, 3.135)])
    samples, _ = render_audio(tmp_path, {"mic": part}, audio_track([("mic", 0.5, 7.5)], 8.0,
                                                                   audio_format), audio_format)
    assert_spans(samples, [(start + 0.5, end + 0.5) for start, end in TONES])


def test_holes_of_any_size_and_number_stay_silence(tmp_path: Path) -> None:
    holes = [(1.095, 1.115), (1.315, 1.375), (3.015, 3.175), (5.095, 5.655)]
    part = holed_opus(tmp_path / "mic.webm", holes)
    samples, _ = render_audio(tmp_path, {"mic": part}, audio_track([("mic", 0.0, 7.0)], 7.0))
    assert_spans(samples, TONES)
    for start, end in holes:  # a hole is digital silence (Opus rings into its first ms)
        assert not np.any(samples[round((start + 0.03) * RATE):round((end - 0.005) * RATE)])


# --- 2. encoder delay the container does not state --------------------------------------

UNSTATED = {
    "adts": ("x.aac", ["-c:a", "aac", "-f", "adts"]),
    "mp3-no-xing": ("x.mp3", ["-c:a", "libmp3lame", "-write_xing", "0"]),
    "mpegts-aac": ("x.ts", ["-c:a", "aac"]),
    "flv-aac": ("x.flv", ["-c:a", "aac"]),
    "mp4-without-edit-list": ("x.m4a", ["-c:a", "aac", "-use_editlist", "0"]),
}
STATED = {
    "mp4": ("x.m4a", ["-c:a", "aac"]),
    "mp3-lame-tag": ("x.mp3", ["-c:a", "libmp3lame"]),
    "mka-aac": ("x.mka", ["-c:a", "aac"]),
}


@pytest.mark.parametrize(("kind", "rate"), [
    *((kind, 48000) for kind in (*UNSTATED, *STATED)),
    ("adts", 44100), ("mp3-no-xing", 44100), ("mp3-lame-tag", 44100)])
def test_encoder_delay_is_taken_off_where_the_container_does_not(tmp_path: Path, kind: str,
                                                                  rate: int) -> None:
    name, codec = {**UNSTATED, **STATED}[kind]
    # Tone to within 0.1 s of the media's end: a part that lands late loses its tail.
    part = make_part(tmp_path / name, bursts([(0.3, 0.9)], 1.0, rate), *codec)
    samples, warnings = render_audio(tmp_path, {"mic": part},
                                     audio_track([("mic", 0.5, 1.5)], 2.0))
    assert_spans(samples, [(0.8, 1.4)])
    assumed = [message for _, message in warnings if "does not state" in message]
    assert len(assumed) == (kind in UNSTATED)


# --- 4. times before the recording start ------------------------------------------------

def test_a_part_that_starts_before_the_recording_plays_from_its_offset(tmp_path: Path) -> None:
    part = make_part(tmp_path / "mic.wav", bursts([(1.5, 2.0)], 3.0), "-c:a", "pcm_s16le")
    samples, _ = render_audio(tmp_path, {"mic": part}, audio_track([("mic", -1.2, 1.8)], 2.0))
    assert_spans(samples, [(0.3, 0.8)])


def test_a_webcam_part_before_the_recording_is_cut_at_zero(tmp_path: Path) -> None:
    red = make_colour_video(tmp_path / "red.mp4", seconds=1.0, colour="red", size=(64, 48),
                            fps=FPS)
    blue = make_colour_video(tmp_path / "blue.mp4", seconds=1.0, colour="blue", size=(64, 48),
                             fps=FPS)
    listing = tmp_path / "list.ffconcat"
    listing.write_text(f"ffconcat version 1.0\nfile '{red.name}'\nfile '{blue.name}'\n")
    part = tmp_path / "cam.mp4"
    ffmpeg(["-f", "concat", "-safe", "0", "-i", file_arg(listing), "-c", "copy", file_arg(part)])
    slots = (Slot(part_id="cam", start=Fraction(-1, 2), end=Fraction(3, 2)),)
    track = TrackPlan(participant_id=1, kind="webcam", path="webcam.mp4", rate=Fraction(FPS),
                      length=2 * FPS, slots=slots, segments=place(slots, 2 * FPS, Fraction(FPS)))
    for strategy in ("auto", "encode"):
        rendered = render_track(track, {"cam": part}, {"cam": probe(part)},
                                tmp_path / strategy, RenderSettings(video_strategy=strategy))
        frames = decode_frames(rendered.path)
        assert len(frames) == 2 * FPS
        assert colour_spans(frames, "red", tol=60) == [(0, 15)]
        assert colour_spans(frames, "blue", tol=60) == [(15, 45)]
        assert colour_spans(frames, "black", tol=20) == [(45, 60)]


def serve_and_run(tmp_path: Path, documents: dict[str, list[dict[str, Any]]],
                  files: dict[str, Path], *options: str) -> tuple[int, dict[str, Any]]:
    """Write the documents, serve the part files on loopback, run the CLI; (exit, report)."""
    www = tmp_path / "www"
    www.mkdir()
    for name, path in files.items():
        path.rename(www / name)
    with serve_directory(www) as server:
        args = []
        for name, document in documents.items():
            text = json.dumps(document).replace("BASE", server.base_url)
            (tmp_path / f"{name}.json").write_text(text)
            args += [f"--{name.replace('_', '-')}", str(tmp_path / f"{name}.json")]
        out = tmp_path / "out"
        done = subprocess.run([sys.executable, "-m", "assembler", "run", "--out", str(out),
                               *args, "--quiet", *options],
                              capture_output=True, text=True, timeout=300, check=False)
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads((out / "report.json").read_text())


PERSON = {"id": 1, "name": "Ada"}


def stamp(relative: float) -> dict[str, Any]:
    return {"relative": relative, "absolute": None}


def audio_part(part_id: str, start: float, duration: float, file: str) -> dict[str, Any]:
    return {"id": part_id, "participant": PERSON, "start_timestamp": stamp(start),
            "duration": duration, "download_url": f"BASE/{file}"}


def test_side_documents_may_say_before_the_recording_start(tmp_path: Path) -> None:
    tone = make_part(tmp_path / "a.wav", bursts([(1.5, 2.0)], 3.0), "-c:a", "pcm_s16le")
    code, report = serve_and_run(tmp_path, {
        "audio_parts": [audio_part("a", -1.2, 3.0, "a.wav")],
        "speaker_timeline": [{"participant": PERSON, "start_timestamp": stamp(-1.2),
                              "end_timestamp": stamp(1.0)}],
        "participant_events": [{"id": "j", "action": "join", "participant": PERSON,
                                "timestamp": stamp(-5.0)}],
        "transcript": [{"participant": PERSON, "words": [
            {"text": "hi", "start_timestamp": stamp(-0.4), "end_timestamp": stamp(0.2)}]}],
    }, {"a.wav": tone})
    assert code == 0
    assert report["timeline"]["duration"] == pytest.approx(1.8)
    assert any("before the recording start; cut at 0" in warning["message"]
               for warning in report["warnings"])
    track = report["participants"][0]["tracks"][0]
    samples = decode_audio(tmp_path / "out" / track["path"], rate=None)
    assert len(samples) == round(1.8 * RATE)
    assert_spans(samples, [(0.3, 0.8)])


# --- 5. lengths measured from the media, not the container -------------------------------

@pytest.mark.parametrize(("name", "offset"), [("late.mka", 1.5), ("late.webm", 1.5),
                                              ("granule.ogg", 80000.0), ("late.ts", 100.0)])
def test_a_stream_that_starts_late_in_its_container_is_measured_and_placed(
        tmp_path: Path, name: str, offset: float) -> None:
    codec = ["-c:a", "aac"] if name.endswith(".ts") else ["-c:a", "libopus"]
    part = make_part(tmp_path / name, bursts([(0.5, 1.5)], 2.0), *codec,
                     "-output_ts_offset", str(offset))
    samples, warnings = render_audio(tmp_path, {"mic": part},
                                     audio_track([("mic", 1.0, 3.0)], 4.0))
    assert not [message for _, message in warnings if "slot" in message], warnings
    assert_spans(samples, [(1.5, 2.5)])


def test_a_longer_part_is_reported_with_its_own_length(tmp_path: Path) -> None:
    part = make_part(tmp_path / "late.mka", bursts([(0.2, 2.8)], 3.0), "-c:a", "libopus",
                     "-output_ts_offset", "1.5")
    # The slot ends before the timeline does: the slot, not the timeline end, cuts it.
    _, warnings = render_audio(tmp_path, {"mic": part}, audio_track([("mic", 0.0, 2.0)], 3.0))
    assert [part_id for part_id, _ in warnings] == ["mic"]
    words = warnings[0][1].split()
    assert abs(float(words[2]) - 3.0) <= TOLERANCE  # Matroska counts in milliseconds
    assert " ".join(words[3:]) == "s, longer than its 2.000 s slot; cut"


def test_raw_adts_is_not_measured_by_its_bit_rate(tmp_path: Path) -> None:
    # A quiet start makes ffmpeg's bit-rate guess of the length far too short.
    part = make_part(tmp_path / "x.aac", bursts([(1.5, 2.0)], 2.0), "-c:a", "aac", "-f", "adts")
    _, warnings = render_audio(tmp_path, {"mic": part}, audio_track([("mic", 0.0, 2.0)], 2.0))
    assert not [message for _, message in warnings if "slot" in message], warnings


# --- 6. tiny tracks, and why ffmpeg failed -----------------------------------------------

@pytest.mark.parametrize("audio_format", ["flac", "wav", "opus", "m4a"])
def test_a_track_of_five_samples_is_written_exactly(tmp_path: Path, audio_format: str) -> None:
    part = make_tone(tmp_path / "mic.wav", seconds=0.5)
    samples, _ = render_audio(tmp_path, {"mic": part},
                              audio_track([("mic", 0.0, 0.5)], 5 / RATE, audio_format),
                              audio_format)
    assert len(samples) == 5


def test_a_timeline_under_one_frame_says_why_a_track_is_missing(tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "a.wav", seconds=0.5)
    cam = make_colour_video(tmp_path / "c.mp4", seconds=0.5, colour="red", size=(64, 48))
    video = [{**audio_part("c", 0.0, 0.5, "c.mp4"), "type": "webcam"}]
    code, report = serve_and_run(tmp_path, {"audio_parts": [audio_part("a", 0.0, 0.5, "a.wav")],
                                            "video_parts": video},
                                 {"a.wav": tone, "c.mp4": cam}, "--duration", "0.0001")
    assert code == 0
    tracks = report["participants"][0]["tracks"]
    assert [track["kind"] for track in tracks] == ["audio"]
    assert len(decode_audio(tmp_path / "out" / tracks[0]["path"], rate=None)) == 5
    assert {"part": "c", "message": "its 0.0001 s in the timeline are less than one frame at "
                                    "30 per second; left out"} in report["warnings"]


def test_an_ffmpeg_failure_quotes_the_cause_not_the_progress_line(tmp_path: Path) -> None:
    with pytest.raises(FFmpegError) as raised:
        run_ffmpeg(["-f", "lavfi", "-i", "sine", "-af", "atrim=end_sample=5", "-c:a", "flac",
                    file_arg(tmp_path / "x.flac")])
    assert str(raised.value) == "ffmpeg failed: [flac] invalid block size: 5"


# --- 7. header-only media ---------------------------------------------------------------

def header_only(source: Path, path: Path) -> Path:
    """The first bytes of a WebM, up to its first Cluster: a track that never flowed."""
    data = source.read_bytes()
    path.write_bytes(data[:data.index(bytes.fromhex("1F43B675"))])
    return path


def test_a_header_only_part_is_silence_and_the_track_is_written(tmp_path: Path) -> None:
    good = make_part(tmp_path / "good.webm", bursts([(0.0, 1.0)], 1.0), "-c:a", "libopus")
    empty = header_only(make_tone(tmp_path / "full.webm", seconds=1.0), tmp_path / "empty.webm")
    code, report = serve_and_run(tmp_path, {"audio_parts": [
        audio_part("good", 0.0, 1.0, "good.webm"), audio_part("empty", 1.0, 1.0, "empty.webm")]},
        {"good.webm": good, "empty.webm": empty})
    assert code == 0
    assert report["failures"] == []
    assert {"part": "empty", "message": "media has a header without packets; its 1.000 s slot "
                                        "is silence"} in report["warnings"]
    track = report["participants"][0]["tracks"][0]
    samples = decode_audio(tmp_path / "out" / track["path"], rate=None)
    assert len(samples) == 2 * RATE
    assert_spans(samples, [(0.0, 1.0)])
    assert not np.any(samples[RATE:])


def test_a_header_only_webcam_part_is_black(tmp_path: Path) -> None:
    good = make_colour_video(tmp_path / "good.webm", seconds=1.0, colour="red", size=(64, 48),
                             fps=FPS, codec="vp8")
    empty = header_only(good, tmp_path / "empty.webm")
    slots = (Slot(part_id="empty", start=Fraction(0), end=Fraction(1)),
             Slot(part_id="good", start=Fraction(1), end=Fraction(2)))
    track = TrackPlan(participant_id=1, kind="webcam", path="webcam.mp4", rate=Fraction(FPS),
                      length=2 * FPS, slots=slots, segments=place(slots, 2 * FPS, Fraction(FPS)))
    parts = {"empty": empty, "good": good}
    probes: dict[str, MediaInfo] = {"empty": probe(empty), "good": probe(good)}
    assert probes["empty"].header_only
    rendered = render_track(track, parts, probes, tmp_path / "out", RenderSettings())
    assert rendered.reason == "part empty has no frames: its slot is black"
    assert rendered.warnings[0][0] == "empty"
    frames = decode_frames(rendered.path)
    assert len(frames) == 2 * FPS
    assert colour_spans(frames, "black", tol=20) == [(0, FPS)]
    assert colour_spans(frames, "red", tol=60) == [(FPS, 2 * FPS)]


def test_headers_without_packets_are_told_from_garbage(tmp_path: Path) -> None:
    webm = header_only(make_tone(tmp_path / "a.webm", seconds=0.2), tmp_path / "empty.webm")
    mka = header_only(make_part(tmp_path / "a.mka", bursts([(0, 0.2)], 0.2), "-c:a", "aac"),
                      tmp_path / "empty.mka")
    ogg_pages = make_tone(tmp_path / "a.ogg", seconds=0.2).read_bytes().split(b"OggS")
    ogg = tmp_path / "empty.ogg"  # the OpusHead and OpusTags pages only
    ogg.write_bytes(b"OggS" + b"OggS".join(ogg_pages[1:3]))
    wav = make_part(tmp_path / "empty.wav", "anullsrc", "-frames:a", "0", "-c:a", "pcm_s16le")
    # ffmpeg's MP4 muxer leaves out a track without samples: a file of no streams.
    mp4 = make_part(tmp_path / "empty.mp4", "anullsrc", "-frames:a", "0", "-c:a", "aac")
    garbage = tmp_path / "garbage.webm"
    garbage.write_bytes(bytes.fromhex("1A45DFA3") + b"\x00garbage" * 50)
    found = probe_many([webm, mka, ogg, wav, mp4, garbage])
    for path in (webm, mka, ogg):
        info = found[path]
        assert isinstance(info, MediaInfo), path
        assert info.header_only
        assert is_empty(info, "audio")
        assert is_empty(info, "webcam")
    wav_info = found[wav]
    assert isinstance(wav_info, MediaInfo)
    assert wav_info.audio is not None
    assert wav_info.audio.packets == 0
    assert is_empty(wav_info, "audio")
    mp4_info = found[mp4]
    assert isinstance(mp4_info, MediaInfo)
    assert mp4_info.holds_nothing
    assert is_empty(mp4_info, "webcam")
    assert isinstance(found[garbage], MediaError)


# --- 8. channel limits of the output formats ---------------------------------------------

@pytest.mark.parametrize(("audio_format", "channels"), [
    ("mp3", 2), ("opus", 6), ("m4a", 6), ("flac", 6), ("wav", 6)])
def test_a_51_part_keeps_its_channels_or_says_it_is_downmixed(
        tmp_path: Path, audio_format: str, channels: int) -> None:
    part = make_tone(tmp_path / "mic.wav", seconds=0.5, channels=6)
    probes = {"mic": probe(part)}
    rendered = render_track(audio_track([("mic", 0.0, 0.5)], 0.5, audio_format), {"mic": part},
                            probes, tmp_path / "out", RenderSettings(audio_format=audio_format))
    assert audio_channels(rendered.path) == channels
    downmixed = [message for _, message in rendered.warnings if "downmixed" in message]
    assert downmixed == ([f"6 channels downmixed to stereo: {audio_format} tracks hold at "
                          f"most 2"] if channels < 6 else [])


def test_three_channels_make_an_opus_track(tmp_path: Path) -> None:
    part = make_tone(tmp_path / "mic.wav", seconds=0.5, channels=3)
    samples, _ = render_audio(tmp_path, {"mic": part}, audio_track([("mic", 0.0, 0.5)], 0.5,
                                                                   "opus"), "opus")
    assert samples.shape[1] == 3
