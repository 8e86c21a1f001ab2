"""The ffmpeg edge: probing without ffprobe, many files per process."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from assembler.errors import FFmpegError, MediaError
from assembler.ffmpeg_process import (
    ffmpeg_binary,
    ffmpeg_output,
    ffmpeg_version,
    file_arg,
    run_ffmpeg,
)
from assembler.media import MediaInfo, probe, probe_many
from tests.support.media import make_colour_video, make_tone


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
    major, minor = ffmpeg_version()
    first_line = subprocess.run([ffmpeg_binary(), "-version"], capture_output=True, text=True,
                                check=True).stdout.splitlines()[0]
    assert re.search(rf"version n?{major}\.{minor}\b", first_line), first_line
    assert 5 <= major < 100  # a parse that fell back to "newest" (999) fails here


def test_without_any_ffmpeg_the_cli_says_how_to_get_one(tmp_path: Path) -> None:
    parts = tmp_path / "audio_parts.json"
    parts.write_text(json.dumps([{
        "id": "a", "participant": {"id": 1, "name": None}, "duration": 1.0,
        "start_timestamp": {"relative": 0.0, "absolute": "2025-07-17T00:00:00Z"},
        "download_url": "http://127.0.0.1:9/a.wav"}]))
    environment = {**os.environ, "ASSEMBLER_FFMPEG": "/nonexistent/ffmpeg",
                   "IMAGEIO_FFMPEG_EXE": "/nonexistent/ffmpeg",
                   "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                           if not (Path(p) / "ffmpeg").exists())}
    done = subprocess.run([sys.executable, "-m", "assembler", "run", "--out",
                           str(tmp_path / "out"), "--audio-parts", str(parts), "--dry-run"],
                          capture_output=True, text=True, env=environment, check=False)
    assert done.returncode == 0, done.stderr  # planning needs no ffmpeg
    (tmp_path / "out" / "parts").mkdir(parents=True)
    (tmp_path / "out" / "parts" / "a.wav").write_bytes(b"RIFF")  # complete: no request
    done = subprocess.run([sys.executable, "-m", "assembler", "run", "--out",
                           str(tmp_path / "out"), "--audio-parts", str(parts)],
                          capture_output=True, text=True, env=environment, check=False)
    assert done.returncode == 1
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: no working ffmpeg found: install ffmpeg on PATH")
    assert "Traceback" not in done.stderr


def test_a_failing_ffmpeg_says_why_not_just_that_it_failed(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "out.wav"
    with pytest.raises(FFmpegError) as raised:
        run_ffmpeg(["-f", "lavfi", "-i", "anullsrc", "-t", "0.1", file_arg(missing)])
    assert "Conversion failed!" not in str(raised.value)
    assert "No such file or directory" in str(raised.value)


def test_run_ffmpeg_reports_progress_in_seconds_written(tmp_path: Path) -> None:
    heard: list[float] = []
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=3",
                "-f", "wav", file_arg(tmp_path / "tone.wav")], progress=heard.append)
    assert heard
    assert heard == sorted(heard)
    assert 2.9 <= heard[-1] <= 3.1
    assert (tmp_path / "tone.wav").stat().st_size > 3 * 8000 * 2  # the output is whole


def _wav_header(data_bytes: int) -> bytes:
    """A 48 kHz 16-bit stereo PCM WAV header stating `data_bytes` of samples."""
    return (b"RIFF" + (data_bytes + 36).to_bytes(4, "little") + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 2, 48000, 48000 * 4, 4, 16)
            + b"data" + data_bytes.to_bytes(4, "little"))


@pytest.mark.parametrize(("stated", "held", "seconds"), [
    (192_000, 192_000, 1.0),  # whole
    (384_000, 96_000, 0.5),  # cut short: its header states twice what it holds
    (0xFFFF_FFFF - 36, 96_000, 0.5),  # written as a stream, size never filled in
    (0, 0, None),  # a header only
])
def test_a_pcm_wav_is_measured_by_what_it_holds(tmp_path: Path, stated: int, held: int,
                                                seconds: float | None) -> None:
    wav = tmp_path / "part.wav"
    wav.write_bytes(_wav_header(stated) + bytes(held))
    audio = probe(wav).audio
    assert audio is not None
    assert audio.end == seconds
    assert audio.packets == held // 4
    if held:  # what a decoder gets out of it
        samples = ffmpeg_output(["-i", file_arg(wav), "-f", "s16le", "-"])
        assert len(samples) == held


def _ffmpeg_found(environment: dict[str, str]) -> tuple[str, str]:
    """The ffmpeg a fresh process picks under `environment`, and what it logged."""
    code = ("import logging; logging.basicConfig(format='%(message)s'); "
            "from assembler.ffmpeg_process import ffmpeg_binary; print(ffmpeg_binary())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, check=True)
    return done.stdout.strip(), done.stderr


def test_an_ffmpeg_older_than_the_minimum_on_path_is_passed_over(tmp_path: Path) -> None:
    old = tmp_path / "ffmpeg"
    old.write_text("#!/bin/sh\necho 'ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024'\n")
    old.chmod(0o755)
    environment = {key: value for key, value in os.environ.items() if key != "ASSEMBLER_FFMPEG"}
    environment["PATH"] = f"{tmp_path}{os.pathsep}{environment['PATH']}"
    used, logged = _ffmpeg_found(environment)
    assert used != str(old)
    assert f"{old} is ffmpeg 5.1, older than 9.0: using {used} instead" in logged
    used, logged = _ffmpeg_found({**environment, "ASSEMBLER_FFMPEG": str(old)})
    assert used == str(old)  # named by the user: obeyed, with a warning
    assert "older than 9.0: tracks may be misaligned" in logged


def test_one_ffmpeg_describes_and_measures_a_group_whatever_streams_its_files_hold(
        tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "tone.m4a", seconds=0.5, rate=48000)
    video = make_colour_video(tmp_path / "cam.webm", seconds=0.5, colour="red", size=(64, 48),
                              fps=10, codec="vp8")
    cues = tmp_path / "cues.srt"
    cues.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n", encoding="utf-8")
    subtitles = tmp_path / "subtitles.mkv"  # neither audio nor video: nothing to copy
    run_ffmpeg(["-i", file_arg(cues), "-c:s", "srt", file_arg(subtitles)])
    found = probe_many([tone, subtitles, video])
    tone_info, subtitles_info, video_info = (found[path] for path in (tone, subtitles, video))
    assert isinstance(tone_info, MediaInfo)
    assert tone_info.audio is not None
    assert tone_info.audio.packets == 25  # 24 000 samples + 1 024 priming, in 1 024s
    assert isinstance(subtitles_info, MediaInfo)
    assert (subtitles_info.audio, subtitles_info.video, subtitles_info.streams) == (None, None, 1)
    assert isinstance(video_info, MediaInfo)
    assert video_info.video is not None
    assert video_info.video.packets == 5
    assert found == probe_many([tone, video]) | {subtitles: subtitles_info}
