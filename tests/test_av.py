"""`--av`: one MP4 per participant with a webcam and a voice: the webcam copied, the voice
as AAC, the audio's first sample under the first frame, equally long, fast-start."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from assembler.ffmpeg_process import file_arg
from assembler.media import read_packets
from assembler.plan import to_units
from tests.support.media import (
    active_spans,
    colour_spans,
    decode_audio,
    dominant_frequency,
    ffmpeg,
    frame_colours,
    track_spans,
)
from tests.support.recording import RecordingBuilder
from tests.support.server import serve_directory
from tests.support.stamps import mp4_timecode

if TYPE_CHECKING:
    from pathlib import Path

RATE = 48000
DURATION = 2.5


def frames_at_25(seconds: float) -> int:
    """Frames of Ada's 25 fps webcam by the plan's one rounding rule (halves up)."""
    return to_units(Fraction(str(seconds)), Fraction(25))


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    build = RecordingBuilder(tmp_path_factory.mktemp("www"))
    # Ada: webcam and voice from 0.5 s (her webcam at 25 fps, copied); Bob: a voice only.
    build.video_part(1, "Ada", 0.5, 1.5, colour="red", fps=25, gop=25)
    build.audio_part(1, "Ada", 0.5, 1.5, freq=440.0, ext=".m4a")
    build.audio_part(2, "Bob", 0.0, 1.0, freq=660.0, ext=".wav")
    out = tmp_path_factory.mktemp("out")
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        done = subprocess.run(
            [sys.executable, "-m", "assembler", "run", "--out", str(out), "--quiet", "--av",
             "--video-parts", str(manifests.video_parts), "--audio-parts",
             str(manifests.audio_parts), "--duration", str(DURATION)],
            capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return out, json.loads((out / "report.json").read_text())


def test_only_a_participant_with_webcam_and_voice_gets_one(
        made: tuple[Path, dict[str, Any]]) -> None:
    out, report = made
    avs = [entry for entry in report["outputs"] if entry["kind"] == "av"]
    assert [(entry["path"], entry["participant"], entry["format"]) for entry in avs] == [
        ("participants/1-ada/av.mp4", 1, "mp4")]
    assert "sha256" in avs[0]
    assert not (out / "participants/2-bob/av.mp4").exists()


def test_the_webcam_is_copied_frame_for_frame(made: tuple[Path, dict[str, Any]]) -> None:
    out, _ = made
    webcam = read_packets(out / "participants/1-ada/webcam.mp4")
    copied = read_packets(out / "participants/1-ada/av.mp4")
    assert copied.pts == webcam.pts
    assert copied.keyframe == webcam.keyframe
    assert copied.extradata == webcam.extradata


def _first_times(path: Path) -> dict[str, float]:
    """Time of the first decoded video frame and audio sample, as a player sees them."""
    text = ffmpeg(["-i", file_arg(path), "-map", "0:v:0", "-map", "0:a:0",
                   "-c:a", "pcm_f32le", "-f", "framecrc", "-"], stdout=True).decode()
    bases = {int(m[1]): int(m[2]) / int(m[3])
             for m in re.finditer(r"^#tb (\d+): (\d+)/(\d+)", text, re.M)}
    first: dict[str, float] = {}
    for m in re.finditer(r"^(\d+),\s*(-?\d+),\s*(-?\d+),", text, re.M):
        kind = "video" if m[1] == "0" else "audio"
        first.setdefault(kind, int(m[3]) * bases[int(m[1])])
    return first


def test_audio_starts_under_the_first_frame_and_lasts_as_long(
        made: tuple[Path, dict[str, Any]]) -> None:
    out, _ = made
    path = out / "participants/1-ada/av.mp4"
    first = _first_times(path)
    assert abs(first["audio"] - first["video"]) <= 0.002
    samples = decode_audio(path, rate=None)
    frames = frame_colours(path)
    assert len(frames) == frames_at_25(DURATION)
    assert len(samples) == round(DURATION * RATE)  # AAC priming and padding trimmed
    # Every track, the timecode's too, presents the timeline to the millisecond.
    assert all(abs(span - DURATION) < 0.001 for span in track_spans(path)), track_spans(path)


def test_voice_and_picture_start_together(made: tuple[Path, dict[str, Any]]) -> None:
    out, _ = made
    path = out / "participants/1-ada/av.mp4"
    samples = decode_audio(path, rate=None)
    (start, end), = active_spans(samples, RATE, threshold=0.05)
    assert start == pytest.approx(0.5, abs=0.002)
    assert end == pytest.approx(2.0, abs=0.005)
    assert dominant_frequency(samples[round(0.7 * RATE):round(1.8 * RATE)], RATE) == \
        pytest.approx(440.0, abs=3)
    assert colour_spans(frame_colours(path), "red") == [(frames_at_25(0.5), frames_at_25(2.0))]
    assert not np.any(samples[:round(0.45 * RATE)])


def _top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            size = struct.unpack_from(">Q", data, offset + 8)[0]
        boxes.append(kind.decode("ascii"))
        offset += size if size else len(data)
    return boxes


def test_av_file_is_fast_start_and_carries_the_start_timecode(
        made: tuple[Path, dict[str, Any]]) -> None:
    out, _ = made
    path = out / "participants/1-ada/av.mp4"
    boxes = _top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")
    assert mp4_timecode(path) == ("14:00:00:00", 14 * 3600 * 25)
