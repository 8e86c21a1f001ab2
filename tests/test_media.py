"""The ffmpeg edge: probing without ffprobe, many files per process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assembler.errors import MediaError
from assembler.media import ffmpeg_version, probe, probe_many
from tests.support.media import make_colour_video, make_tone

if TYPE_CHECKING:
    from pathlib import Path


def test_probe_many_reads_every_file_around_an_unreadable_one(tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "tone.m4a", seconds=0.5, rate=44100, channels=2)
    video = make_colour_video(tmp_path / "cam.webm", seconds=0.5, colour="red", size=(64, 48),
                              fps=10, codec="vp8")
    html = tmp_path / "error.mp4"
    html.write_bytes(b"<html><body>AccessDenied</body></html>")
    wav = make_tone(tmp_path / "tone.wav", seconds=0.25, rate=16000)
    found = probe_many([tone, html, video, tmp_path / "missing.wav", wav], group=3)
    assert [type(found[path]).__name__ for path in (tone, html, video, wav)] == [
        "MediaInfo", "MediaError", "MediaInfo", "MediaInfo"]
    assert isinstance(found[tmp_path / "missing.wav"], MediaError)
    assert str(found[html]).startswith("error.mp4: not readable media")
    assert found[tone] == probe(tone)
    info = found[video]
    assert not isinstance(info, MediaError)
    assert info.video is not None
    assert (info.video.codec, info.video.width, info.video.height) == ("vp8", 64, 48)
    tone_info = found[tone]
    assert not isinstance(tone_info, MediaError)
    assert tone_info.audio is not None
    assert (tone_info.audio.sample_rate, tone_info.audio.channels) == (44100, 2)


def test_ffmpeg_version_is_read() -> None:
    major, _ = ffmpeg_version()
    assert major >= 5
