"""Rendering against awkward parts, and parts that cannot be used, measured by decoding."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import pytest

from assembler.ffmpeg_process import ffmpeg_version, file_arg
from assembler.media import MediaInfo, VideoStream, probe
from assembler.plan import Slot, TrackPlan, place, resolve_overlaps
from assembler.render import RenderSettings, render_track, video_size
from tests.support.media import (
    active_spans,
    colour_spans,
    decode_audio,
    decode_errors,
    decode_frames,
    dominant_frequency,
    ffmpeg,
    is_black,
    make_colour_video,
    make_tone,
)
from tests.support.recording import RecordingBuilder
from tests.support.server import serve_directory

if TYPE_CHECKING:
    from pathlib import Path

FPS = 30


def webcam_track(start: float, end: float, length: int) -> TrackPlan:
    slots = (Slot(part_id="cam", start=Fraction(start), end=Fraction(end)),)
    return TrackPlan(participant_id=1, kind="webcam", path="webcam.mp4", rate=Fraction(FPS),
                     length=length, slots=slots, segments=place(slots, length, Fraction(FPS)))


def test_resolution_change_inside_a_part_keeps_every_frame_in_place(tmp_path: Path) -> None:
    # WebRTC senders drop resolution with bandwidth: one VP8 stream, two sizes.
    first = make_colour_video(tmp_path / "a.webm", seconds=1.0, colour="red", size=(320, 240),
                              fps=15, codec="vp8")
    second = make_colour_video(tmp_path / "b.webm", seconds=1.0, colour="blue",
                               size=(160, 120), fps=15, codec="vp8")
    listing = tmp_path / "list.ffconcat"
    listing.write_text(f"ffconcat version 1.0\nfile '{first.name}'\nfile '{second.name}'\n")
    part = tmp_path / "cam.webm"
    ffmpeg(["-f", "concat", "-safe", "0", "-i", file_arg(listing), "-c", "copy",
            file_arg(part)])
    track = webcam_track(1.0, 3.0, 4 * FPS)
    rendered = render_track(track, {"cam": part}, {"cam": probe(part)}, tmp_path / "out",
                            RenderSettings())
    assert decode_errors(rendered.path) == ""
    frames = decode_frames(rendered.path)
    assert len(frames) == 4 * FPS
    assert colour_spans(frames, "red", tol=60) == [(30, 60)]
    assert colour_spans(frames, "blue", tol=60) == [(60, 90)]
    assert colour_spans(frames, "black", tol=20) == [(0, 30), (90, 120)]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assembler", "run", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_unusable_parts_fail_their_tracks_only(tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    corrupt = build.audio_part(1, "Ada", 0.0, 1.0, ext=".wav")
    silent_video = build.video_part(2, "Bob", 0.0, 1.0, colour="red", size=(64, 48), fps=10)
    build.audio_part(3, "Cy", 0.0, 1.0, ext=".wav")
    # Ada's part is garbage behind a 200; Bob's audio "part" is a video without sound.
    (build.parts_dir / corrupt.file).write_bytes(b"\x00\x01garbage" * 1000)
    manifests = build.write("http://127.0.0.1:1")
    audio = json.loads(manifests.audio_parts.read_text())
    video = json.loads(manifests.video_parts.read_text())
    bob = {**video[0], "id": "bob-audio"}
    del bob["type"]
    manifests.audio_parts.write_text(json.dumps([*audio, bob]))
    with serve_directory(build.root) as server:
        for document in (manifests.audio_parts, manifests.video_parts):
            document.write_text(document.read_text().replace("http://127.0.0.1:1",
                                                             server.base_url))
        out = tmp_path / "out"
        done = run_cli("--out", str(out), "--audio-parts", str(manifests.audio_parts),
                       "--video-parts", str(manifests.video_parts), "--quiet")
    report = json.loads((out / "report.json").read_text())
    written = {track["path"] for person in report["participants"] for track in person["tracks"]}
    assert written == {"participants/2-bob/webcam.mp4", "participants/3-cy/audio.flac"}
    failures = {(f["part"], f.get("track")): f["error"] for f in report["failures"]}
    assert failures.keys() == {(corrupt.part_id, None),
                               ("bob-audio", "participants/2-bob/audio.flac")}
    assert "not readable media" in failures[corrupt.part_id, None]
    assert "has no audio stream" in failures["bob-audio", "participants/2-bob/audio.flac"]
    # The unreadable part is set aside, so a rerun fetches it again.
    assert (out / "parts" / (corrupt.file + ".unreadable")).is_file()
    assert not (out / "parts" / corrupt.file).exists()
    assert done.returncode == 3
    assert report["complete"] is False
    bob_tracks = next(p["tracks"] for p in report["participants"] if p["id"] == 2)
    assert [track["parts"] for track in bob_tracks] == [[silent_video.part_id]]


def audio_track(start: float, end: float, length: int, audio_format: str) -> TrackPlan:
    slots = (Slot(part_id="mic", start=Fraction(start), end=Fraction(end)),)
    rate = Fraction(48000)
    return TrackPlan(participant_id=1, kind="audio", path=f"audio.{audio_format}", rate=rate,
                     length=length, slots=slots, segments=place(slots, length, rate))


def test_a_gap_in_a_parts_timestamps_stays_a_gap(tmp_path: Path) -> None:
    # Packets lost (or a mute) between 1 s and 2 s: the part's own timestamps say the
    # sound after the gap belongs 2 s in, not right after the first second.
    tone = make_tone(tmp_path / "tone.wav", seconds=3.0, freq=440.0)
    part = tmp_path / "mic.mkv"
    ffmpeg(["-i", file_arg(tone), "-af", "asetnsamples=n=480,aselect='not(between(t,1,2-1e-4))'",
            "-c:a", "pcm_s16le", file_arg(part)])
    track = audio_track(0.5, 3.5, 4 * 48000, "wav")
    rendered = render_track(track, {"mic": part}, {"mic": probe(part)}, tmp_path / "out",
                            RenderSettings(audio_format="wav"))
    samples = decode_audio(rendered.path, rate=None)
    assert len(samples) == 4 * 48000
    spans = active_spans(samples, 48000)
    assert [(round(start, 3), round(end, 3)) for start, end in spans] == [(0.5, 1.5),
                                                                          (2.5, 3.5)]
    assert not np.any(samples[int(1.5 * 48000) + 1:int(2.5 * 48000) - 1])


def test_portrait_and_non_square_parts_keep_their_shape(tmp_path: Path) -> None:
    landscape = make_colour_video(tmp_path / "land.mp4", seconds=1.0, colour="red",
                                  size=(320, 240), fps=15)
    # A phone held upright: stored 320x240, turned 90 degrees by its display matrix.
    portrait = tmp_path / "portrait.mp4"
    turn = (["-display_rotation", "90", "-i", file_arg(landscape)] if ffmpeg_version() >= (6, 0)
            else ["-i", file_arg(landscape), "-metadata:s:v:0", "rotate=90"])
    ffmpeg([*turn, "-c", "copy", file_arg(portrait)])
    # Pixels twice as wide as tall: stored 160x240, shown 320x240.
    wide = tmp_path / "wide.mp4"
    ffmpeg(["-f", "lavfi", "-i", "color=c=blue:s=160x240:r=15:d=1,setsar=2/1",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", file_arg(wide)])
    slots = (Slot(part_id="portrait", start=Fraction(0), end=Fraction(1)),
             Slot(part_id="wide", start=Fraction(1), end=Fraction(2)))
    track = TrackPlan(participant_id=1, kind="webcam", path="webcam.mp4", rate=Fraction(FPS),
                      length=2 * FPS, slots=slots, segments=place(slots, 2 * FPS,
                                                                   Fraction(FPS)))
    parts = {"portrait": portrait, "wide": wide}
    rendered = render_track(track, parts, {name: probe(path) for name, path in parts.items()},
                            tmp_path / "out", RenderSettings())
    assert rendered.strategy == "encode"
    info = probe(rendered.path).video
    assert info is not None
    assert (info.width, info.height) == (240, 320)  # the portrait part's shape
    frames = decode_frames(rendered.path, size=(24, 32))
    # The portrait part fills the frame; the 4:3 part is letterboxed, not squashed.
    assert colour_spans(frames, "red", tol=60) == [(0, FPS)]
    wide_frame = frames[FPS + 5]
    assert is_black(wide_frame[:6])
    assert is_black(wide_frame[-6:])
    blue_rows = [row for row in range(32) if not is_black(wide_frame[row:row + 1], tol=60)]
    assert 16 <= len(blue_rows) <= 20  # 240 x 180 of blue in a 240 x 320 frame: 18 rows


def test_a_part_of_a_few_samples_first_still_makes_a_flac_track(tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "mic.wav", seconds=0.5, freq=440.0)
    track = audio_track(0.0, 0.0002, 48000, "flac")  # 10 samples of tone, then silence
    rendered = render_track(track, {"mic": tone}, {"mic": probe(tone)}, tmp_path / "out",
                            RenderSettings(audio_format="flac"))
    samples = decode_audio(rendered.path, rate=None)
    assert len(samples) == 48000
    assert np.any(samples[:10])
    assert not np.any(samples[10:])


def test_every_audio_format_has_its_codec_settings() -> None:
    from assembler.plan import AUDIO_FORMATS
    from assembler.render import AUDIO_CODECS

    assert set(AUDIO_CODECS) == set(AUDIO_FORMATS)


def _shown(width: int, height: int) -> MediaInfo:
    return MediaInfo(format="mp4", duration=1.0, start=0.0, audio=None, streams=1,
                     video=VideoStream(codec="h264", profile=None, pix_fmt="yuv420p",
                                       width=width, height=height, sar=None, fps=None,
                                       time_base=None))


@pytest.mark.parametrize(("size", "max_height", "expected"), [
    ((1280, 720), 240, (426, 240)),  # 426.67 wide: the nearest even width, not 428
    ((1280, 720), 239, (424, 238)),  # never over the limit: yuv420p needs an even height
    ((1280, 720), 720, (1280, 720)),  # at the limit: left alone
    ((641, 481), None, (642, 482)),  # odd sides are padded by one
    ((720, 1280), 640, (360, 640)),  # portrait keeps its shape
])
def test_video_size_is_even_and_keeps_the_shape(size: tuple[int, int], max_height: int | None,
                                                expected: tuple[int, int]) -> None:
    assert video_size({"part": _shown(*size)}, max_height) == expected


def nested_track(kind: str, rate: Fraction, seconds: int) -> TrackPlan:
    """Part `long` over the whole track, part `short` inside it from 1 s to 3 s."""
    slots, _ = resolve_overlaps([Slot(part_id="long", start=Fraction(0), end=Fraction(seconds)),
                                 Slot(part_id="short", start=Fraction(1), end=Fraction(3))],
                                Fraction(seconds))
    length = seconds * int(rate)
    return TrackPlan(participant_id=1, kind=kind, path=f"{kind}.out",  # type: ignore[arg-type]
                     rate=rate, length=length, slots=slots,
                     segments=place(slots, length, rate))


def test_a_part_resumes_on_its_own_sample_after_a_part_inside_it(tmp_path: Path) -> None:
    # AAC without stated priming would be off by 1024 samples; an M4A states it.
    long = tmp_path / "long.m4a"
    ffmpeg(["-y", "-filter_complex", "sine=f=300:d=2[a];sine=f=500:d=2[b];sine=f=700:d=2[c];"
            "[a][b][c]concat=n=3:v=0:a=1", "-c:a", "aac", "-b:a", "128k", file_arg(long)])
    short = make_tone(tmp_path / "short.m4a", seconds=2, freq=1000.0)
    track = nested_track("audio", Fraction(48000), 6)
    parts = {"long": long, "short": short}
    rendered = render_track(track, parts, {name: probe(path) for name, path in parts.items()},
                            tmp_path / "out", RenderSettings(audio_format="wav"))
    samples = decode_audio(rendered.path)
    assert len(samples) == 6 * 48000

    def tone(start: float, end: float) -> float:
        return round(dominant_frequency(samples[int(start * 48000):int(end * 48000)], 48000))

    # long's own 2 s and 4 s changes stay where its media has them: it resumes at its 3 s.
    assert [tone(0.1, 0.9), tone(1.1, 2.9), tone(3.01, 3.99), tone(4.01, 5.9)] == [
        pytest.approx(300, abs=5), pytest.approx(1000, abs=5), pytest.approx(500, abs=5),
        pytest.approx(700, abs=5)]
    assert tone(3.95, 3.999) == pytest.approx(500, abs=30)
    assert tone(4.001, 4.05) == pytest.approx(700, abs=30)


def test_a_resumed_part_is_encoded_on_its_own_frame_after_a_part_inside_it(
        tmp_path: Path) -> None:
    pieces = [make_colour_video(tmp_path / f"{colour}.mp4", seconds=2, colour=colour, fps=FPS)
              for colour in ("red", "green", "blue")]
    listing = tmp_path / "list.ffconcat"
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file '{piece.name}'\n"
                                                           for piece in pieces))
    long = tmp_path / "long.mp4"
    ffmpeg(["-f", "concat", "-safe", "0", "-i", file_arg(listing), "-c", "copy",
            file_arg(long)])
    short = make_colour_video(tmp_path / "short.mp4", seconds=2, colour="yellow", fps=FPS)
    track = nested_track("webcam", Fraction(FPS), 6)
    parts = {"long": long, "short": short}
    rendered = render_track(track, parts, {name: probe(path) for name, path in parts.items()},
                            tmp_path / "out", RenderSettings())
    # Copy cannot start a part midway: auto encodes, and says why.
    assert rendered.strategy == "encode"
    assert rendered.reason == "part long resumes after a part inside it: copy cannot start it " \
                              "midway"
    frames = decode_frames(rendered.path)
    assert len(frames) == 6 * FPS
    assert colour_spans(frames, "red") == [(0, FPS)]
    assert colour_spans(frames, "yellow") == [(FPS, 3 * FPS)]
    assert colour_spans(frames, "green") == [(3 * FPS, 4 * FPS)]
    assert colour_spans(frames, "blue") == [(4 * FPS, 6 * FPS)]


def test_a_part_cut_by_a_later_one_is_not_called_longer_than_its_slot(
        tmp_path: Path) -> None:
    # Both media last their declared 3 s; the plan warns of the overlap, render of nothing.
    slots, _ = resolve_overlaps([Slot(part_id="first", start=Fraction(0), end=Fraction(3)),
                                 Slot(part_id="next", start=Fraction(2), end=Fraction(5))],
                                Fraction(5))
    track = TrackPlan(participant_id=1, kind="audio", path="audio.flac", rate=Fraction(48000),
                      length=5 * 48000, slots=slots, segments=place(slots, 5 * 48000,
                                                                     Fraction(48000)))
    parts = {name: make_tone(tmp_path / f"{name}.wav", seconds=3, freq=freq)
             for name, freq in (("first", 300.0), ("next", 700.0))}
    rendered = render_track(track, parts, {name: probe(path) for name, path in parts.items()},
                            tmp_path / "out", RenderSettings())
    assert rendered.warnings == ()
    samples = decode_audio(rendered.path)
    assert round(dominant_frequency(samples[: 2 * 48000], 48000)) == pytest.approx(300, abs=5)
    assert round(dominant_frequency(samples[2 * 48000:], 48000)) == pytest.approx(700, abs=5)


def test_an_empty_part_that_plays_twice_is_silence_both_times(tmp_path: Path) -> None:
    # A header only: no samples. Resumed after `short`, its two runs are two gaps.
    long = tmp_path / "long.wav"
    ffmpeg(["-y", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "0",
            file_arg(long)])
    short = make_tone(tmp_path / "short.wav", seconds=2, freq=1000.0)
    track = nested_track("audio", Fraction(48000), 6)
    parts = {"long": long, "short": short}
    rendered = render_track(track, parts, {name: probe(path) for name, path in parts.items()},
                            tmp_path / "out", RenderSettings())
    samples = decode_audio(rendered.path)
    assert len(samples) == 6 * 48000
    assert active_spans(samples, 48000) == [pytest.approx((1.0, 3.0), abs=0.002)]
    assert rendered.blank == ((0.0, 1.0), (3.0, 6.0))


def test_a_resumed_run_is_blank_where_its_part_has_no_media_left(tmp_path: Path) -> None:
    # long is declared 6 s but holds 4 s: resumed at 3 s, 1 s of it plays, then silence.
    long = make_tone(tmp_path / "long.wav", seconds=4, freq=300.0)
    short = make_tone(tmp_path / "short.wav", seconds=2, freq=1000.0)
    track = nested_track("audio", Fraction(48000), 6)
    parts = {"long": long, "short": short}
    rendered = render_track(track, parts, {name: probe(path) for name, path in parts.items()},
                            tmp_path / "out", RenderSettings())
    assert rendered.blank == ((4.0, 6.0),)
    samples = decode_audio(rendered.path)
    assert active_spans(samples, 48000) == [pytest.approx((0.0, 4.0), abs=0.002)]


def test_a_resumed_run_shorter_than_a_frame_leaves_no_false_warning(tmp_path: Path) -> None:
    # long would resume for 0.01 s, less than a frame: its run before short is its last.
    slots, _ = resolve_overlaps([Slot(part_id="long", start=Fraction(0), end=Fraction(4)),
                                 Slot(part_id="short", start=Fraction(1),
                                      end=Fraction("3.99"))], Fraction(4))
    track = TrackPlan(participant_id=1, kind="webcam", path="webcam.mp4", rate=Fraction(FPS),
                      length=4 * FPS, slots=slots, segments=place(slots, 4 * FPS, Fraction(FPS)))
    assert track.parts == ("long", "short")
    parts = {"long": make_colour_video(tmp_path / "long.mp4", seconds=4, colour="red",
                                       size=(64, 48), fps=FPS),
             "short": make_colour_video(tmp_path / "short.mp4", seconds=2.99, colour="blue",
                                        size=(64, 48), fps=FPS)}
    rendered = render_track(track, parts, {name: probe(path) for name, path in parts.items()},
                            tmp_path / "out", RenderSettings(video_strategy="encode"))
    assert rendered.warnings == ()
    assert colour_spans(decode_frames(rendered.path), "blue") == [(FPS, 4 * FPS)]
