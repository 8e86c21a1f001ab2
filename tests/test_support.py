"""The test toolkit measured on inputs whose answers are known, so other tests can trust it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from http.client import IncompleteRead
from typing import TYPE_CHECKING

import numpy as np
import pytest

from assembler.ffmpeg_process import ffmpeg_version, file_arg
from tests.support import server as server_support
from tests.support.media import (
    active_spans,
    colour_spans,
    decode_audio,
    decode_errors,
    decode_frames,
    dominant_frequency,
    ffmpeg,
    frame_colours,
    frame_times,
    is_black,
    is_silent,
    make_colour_video,
    make_tone,
    media_info,
)
from tests.support.recording import RecordingBuilder
from tests.support.server import S3_EXPIRED, serve_directory

if TYPE_CHECKING:
    from email.message import Message
    from pathlib import Path

    from tests.support.server import MediaServer

# The fixture, so this file also runs where no conftest.py imports it.
media_server = server_support.media_server


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive) and body of a GET, error statuses included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


@pytest.mark.parametrize(
    ("ext", "rate", "channels"),
    [(".m4a", 44100, 1), (".mp3", 44100, 2), (".wav", 16000, 1), (".webm", 48000, 2)],
    ids=["aac-44k-mono", "mp3-44k-stereo", "wav-16k", "opus-webm-stereo"],
)
def test_tone_decodes_to_exact_length_and_frequency(tmp_path: Path, ext: str, rate: int,
                                                    channels: int) -> None:
    path = make_tone(tmp_path / f"tone{ext}", seconds=1.0, freq=440.0, rate=rate,
                     channels=channels)
    samples = decode_audio(path)
    info = media_info(path)
    measured = info.samples
    if ext == ".m4a" and ffmpeg_version() < (6, 0):
        # ffmpeg 5's MP4 demuxer ignores the edit list's end: up to one AAC frame of the
        # encoder's padding shows (players and newer ffmpeg trim it).
        assert 0 <= len(samples) - 48000 <= 1024 * 48000 // rate + 1
        assert 0 <= measured - rate <= 1024
        samples, measured = samples[:48000], rate
    # Priming is trimmed by MP4's edit list, LAME's tag and Opus pre-skip (FIELD-NOTES).
    assert samples.shape == (48000, channels)
    assert samples.dtype == np.float32
    assert dominant_frequency(samples, 48000) == pytest.approx(440.0, abs=0.5)
    assert (measured, info.sample_rate, info.channels, info.frames) == (rate, rate,
                                                                        channels, 0)


def test_active_spans_find_a_delayed_tone_within_a_millisecond(tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "tone.wav", seconds=0.5, freq=1000.0)
    delayed = tmp_path / "delayed.wav"
    # 12345 samples of digital silence first, then 0.5 s of tone, then 0.25 s of silence.
    ffmpeg(["-i", file_arg(tone), "-af", "adelay=delays=12345S:all=1,apad=pad_len=12000",
            "-c:a", "pcm_s16le", file_arg(delayed)])
    samples = decode_audio(delayed)
    (start, end), = active_spans(samples, 48000)
    assert start == pytest.approx(12345 / 48000, abs=0.001)
    assert end == pytest.approx(12345 / 48000 + 0.5, abs=0.001)
    assert is_silent(samples[:12345])
    assert is_silent(samples[-11000:])
    assert not is_silent(samples)


def test_active_spans_split_on_gaps_longer_than_min_gap() -> None:
    samples = np.zeros((4800, 1), dtype=np.float32)
    samples[100:1000] = 0.5
    samples[1100:1200] = 0.5  # 100 samples (2 ms) later: the same span
    samples[2000:2400] = 0.5  # 800 samples later: a new span
    assert active_spans(samples, 48000) == [(100 / 48000, 1200 / 48000),
                                            (2000 / 48000, 2400 / 48000)]


def test_colour_detection_tells_red_from_black(tmp_path: Path) -> None:
    red = make_colour_video(tmp_path / "red.mp4", seconds=1.0, colour="red", fps=10)
    black = make_colour_video(tmp_path / "black.webm", seconds=0.5, colour="black", fps=10)
    joined = tmp_path / "joined.mp4"
    ffmpeg(["-i", file_arg(red), "-i", file_arg(black), "-filter_complex",
            "[0:v][1:v]concat=n=2:v=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            file_arg(joined)])
    colours = frame_colours(joined)
    assert colour_spans(colours, "red") == [(0, 10)]
    assert colour_spans(colours, (0, 0, 0)) == [(10, 15)]
    assert [is_black(c) for c in colours] == [False] * 10 + [True] * 5
    assert decode_frames(joined, size=(8, 6), fps=20).shape == (30, 6, 8, 3)
    assert decode_errors(joined) == ""


def test_vfr_video_has_uneven_frame_times_and_keeps_its_length(tmp_path: Path) -> None:
    path = make_colour_video(tmp_path / "vfr.mp4", seconds=2.0, colour="blue", fps=15, vfr=True)
    steps = np.round(np.diff(frame_times(path)) * 15).astype(int)
    assert set(steps) > {1}  # some frames last two or more frame intervals
    info = media_info(path)
    assert info.frames < 30
    assert info.duration == pytest.approx(2.0, abs=1e-3)


def test_decode_errors_reports_a_truncated_file(tmp_path: Path) -> None:
    path = make_colour_video(tmp_path / "v.mp4", seconds=1.0, colour="green", fps=10)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert decode_errors(broken) != ""


def test_server_serves_identical_bytes_and_honours_range(media_server: MediaServer) -> None:
    payload = bytes(range(256)) * 40
    (media_server.root / "parts").mkdir()
    (media_server.root / "parts" / "a b.bin").write_bytes(payload)
    url = media_server.url("parts/a b.bin", "X-Amz-Signature=abc")

    status, headers, body = _get(url)
    assert (status, body) == (200, payload)
    etag = headers["ETag"]

    status, headers, body = _get(url, {"Range": "bytes=1000-"})
    assert (status, body) == (206, payload[1000:])
    assert headers["Content-Range"] == f"bytes 1000-{len(payload) - 1}/{len(payload)}"

    assert _get(url, {"If-None-Match": etag})[0] == 304
    assert media_server.requests["/parts/a b.bin"] == 3
    assert media_server.hits[1].range == "bytes=1000-"
    assert media_server.hits[0].query == "X-Amz-Signature=abc"
    assert _get(media_server.url("../etc/passwd"))[0] == 404


def test_faults_apply_for_their_count_then_the_file_returns(media_server: MediaServer) -> None:
    (media_server.root / "f.bin").write_bytes(b"x" * 5000)
    media_server.fail("f.bin", 503, times=2)
    media_server.fail("gone.bin", 404)
    media_server.fail("old.bin", 403, body=S3_EXPIRED, headers={"Content-Type": "application/xml"})

    assert [_get(media_server.url("f.bin"))[0] for _ in range(3)] == [503, 503, 200]
    assert [_get(media_server.url("gone.bin"))[0] for _ in range(3)] == [404] * 3
    status, headers, body = _get(media_server.url("old.bin"))
    assert (status, headers["Content-Type"], body) == (403, "application/xml", S3_EXPIRED)


def test_cut_closes_the_connection_short_of_content_length(media_server: MediaServer) -> None:
    (media_server.root / "f.bin").write_bytes(b"y" * 100_000)
    media_server.cut("f.bin", after=1000)
    with urllib.request.urlopen(media_server.url("f.bin"), timeout=10) as response:
        assert response.headers["Content-Length"] == "100000"
        with pytest.raises(IncompleteRead) as caught:
            response.read()
    assert len(caught.value.partial) == 1000
    assert len(_get(media_server.url("f.bin"))[2]) == 100_000


def test_server_stops_cleanly(tmp_path: Path) -> None:
    with serve_directory(tmp_path) as server:
        url = server.url("nothing")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_builder_writes_schema_shaped_manifests(tmp_path: Path) -> None:
    builder = RecordingBuilder(tmp_path)
    builder.audio_part(7, "Zoë Ünicode", 0.5, 1.0, media_seconds=1.2, freq=500.0, rate=16000,
                       ext=".wav")
    builder.audio_part(9, None, 1.0, 1.0, freq=700.0)
    builder.video_part(7, "Zoë Ünicode", 0.5, 1.0, media_seconds=0.6, colour="red", fps=10,
                       size=(64, 48))
    builder.video_part(9, None, 0.0, 2.0, kind="screenshare", colour="blue", fps=10,
                       size=(64, 48), ext=".webm")
    manifests = builder.write("http://127.0.0.1:1", signed_at=builder.started_at)

    audio = json.loads(manifests.audio_parts.read_text(encoding="utf-8"))
    video = json.loads(manifests.video_parts.read_text(encoding="utf-8"))
    assert [set(part) for part in audio] == [
        {"id", "participant", "start_timestamp", "duration", "download_url"}] * 2
    assert [part["type"] for part in video] == ["webcam", "screenshare"]
    assert set(audio[0]["participant"]) == {"id", "name", "is_host", "platform", "extra_data",
                                            "email"}
    assert audio[0]["participant"]["name"] == "Zoë Ünicode"
    assert audio[0]["start_timestamp"] == {"absolute": "2025-07-17T14:00:00.500000Z",
                                           "relative": 0.5}
    assert "X-Amz-Date=20250717T140000Z&X-Amz-Expires=604800" in audio[0]["download_url"]
    assert audio[0]["download_url"].startswith(
        f"http://127.0.0.1:1/parts/{manifests.expected[0].part_id}.wav?")

    first, _, webcam, _ = manifests.expected
    assert (first.end, first.slot_end) == (1.5, 1.5)  # longer media is cut at the slot
    assert (webcam.end, webcam.slot_end, webcam.marker) == (1.1, 1.5, (255, 0, 0))
    assert manifests.duration == 2.0
    assert media_info(manifests.parts_dir / first.file).samples == 19200

    timeline = json.loads(manifests.speaker_timeline.read_text(encoding="utf-8"))
    assert [(t["participant"]["id"], t["start_timestamp"]["relative"],
             t["end_timestamp"]["relative"]) for t in timeline] == [(7, 0.5, 1.0), (9, 1.0, 2.0)]
    events = json.loads(manifests.participant_events.read_text(encoding="utf-8"))
    assert [(e["action"], e["participant"]["id"]) for e in events][:5] == [
        ("join", 9), ("screenshare_on", 9), ("join", 7), ("webcam_on", 7), ("speech_on", 7)]
    assert events[-1]["action"] == "leave"
    assert json.loads(manifests.transcript.read_text(encoding="utf-8"))[0]["words"]
