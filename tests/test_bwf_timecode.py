"""Files say when they were recorded: Broadcast WAV `bext`, MP4 start timecode, report.json.

Read back from the files themselves: the RIFF chunks walked, the `tmcd`
sample's frame number copied out, the label `ffmpeg -i` prints.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from fractions import Fraction
from typing import TYPE_CHECKING

import pytest

from assembler._stamp import bwf_args, smpte_timecode
from assembler.manifest import Sources
from assembler.pipeline import RunOptions, run_recording
from assembler.plan import time_of_day
from assembler.render import RenderSettings
from tests.support.recording import RECORDING_START, RecordingBuilder
from tests.support.server import serve_directory
from tests.support.stamps import mp4_timecode, read_bext, riff_chunks

if TYPE_CHECKING:
    from pathlib import Path

    from assembler.pipeline import RunOutcome

# Not on a second: the sample and frame counts are not round.
STARTED = datetime(2025, 7, 17, 9, 26, 41, 234567, tzinfo=UTC)


def _run(tmp_path: Path, started: datetime, options: RunOptions, *,
         absolute: bool = True) -> tuple[Path, RunOutcome]:
    """Zoë: two wav voice parts, a 30 fps H.264 webcam (copied), a VP8 screenshare (encoded)."""
    build = RecordingBuilder(tmp_path / "www", started_at=started)
    build.audio_part(1, "Zoë", 0.0, 0.5, ext=".wav")
    build.audio_part(1, "Zoë", 0.7, 0.5, ext=".wav")
    build.video_part(1, "Zoë", 0.0, 1.0, colour="red", fps=30)
    build.video_part(1, "Zoë", 0.2, 1.0, kind="screenshare", colour="blue", codec="vp8",
                     ext=".webm", fps=15)
    out = tmp_path / "out"
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        if not absolute:
            for path in (manifests.audio_parts, manifests.video_parts):
                parts = json.loads(path.read_text())
                for part in parts:
                    part["start_timestamp"]["absolute"] = None
                path.write_text(json.dumps(parts))
        sources = Sources(audio_parts=str(manifests.audio_parts),
                          video_parts=str(manifests.video_parts))
        outcome = asyncio.run(run_recording(sources, out, options))
    assert outcome.exit_status == 0
    return out / "participants/1-zoe", outcome


def test_tracks_carry_the_recording_start(tmp_path: Path) -> None:
    # Two voice parts rendered as pieces and joined: the join is what gets the bext chunk.
    options = RunOptions(jobs=1, render=RenderSettings(audio_format="wav", max_audio_parts=1))
    folder, outcome = _run(tmp_path, STARTED, options)
    assert outcome.report["recording_start"] == "2025-07-17T09:26:41.234567Z"

    bext = read_bext(folder / "audio.wav")
    assert bext.time_reference == time_of_day(STARTED, Fraction(48000)) == 1632059259
    assert (bext.description, bext.originator) == ("Zoë", "assembler")
    assert (bext.origination_date, bext.origination_time) == ("2025-07-17", "09:26:41")
    form, chunks = riff_chunks(folder / "audio.wav")
    names = [name for name, _, _ in chunks]
    # RIFF below 4 GB, with room kept for the ds64 chunk RF64 needs past it.
    assert form == "RIFF"
    assert "JUNK" in names
    assert names.index("bext") < names.index("data")

    # The copied webcam runs at its parts' 30 fps; the encoded screenshare at --fps 30.
    for name in ("webcam.mp4", "screenshare.mp4"):
        frames = time_of_day(STARTED, Fraction(30))
        assert mp4_timecode(folder / name) == ("09:26:41:07", frames), name
    assert {track["path"].rsplit("/", 1)[1]: track["strategy"]
            for person in outcome.report["participants"] for track in person["tracks"]} == {
        "audio.wav": "encode", "webcam.mp4": "copy", "screenshare.mp4": "encode"}


def test_timecode_at_an_ntsc_rate_counts_the_frames(tmp_path: Path) -> None:
    """--fps 30000/1001, encoded: the label is non-drop, its frame count exact."""
    options = RunOptions(jobs=1, fps=Fraction(30000, 1001),
                         render=RenderSettings(video_strategy="encode", max_video_parts=1))
    folder, _ = _run(tmp_path, RECORDING_START, options)
    frames = time_of_day(RECORDING_START, Fraction(30000, 1001))
    assert mp4_timecode(folder / "webcam.mp4") == ("13:59:09:20", frames)
    assert mp4_timecode(folder / "screenshare.mp4") == ("13:59:09:20", frames)


def test_without_absolute_times_timecode_and_time_reference_are_zero(tmp_path: Path) -> None:
    options = RunOptions(jobs=1, render=RenderSettings(audio_format="wav"))
    folder, outcome = _run(tmp_path, STARTED, options, absolute=False)
    assert "recording_start" not in outcome.report
    bext = read_bext(folder / "audio.wav")
    assert (bext.time_reference, bext.origination_date, bext.origination_time) == (0, "", "")
    assert bext.description == "Zoë"
    assert mp4_timecode(folder / "webcam.mp4") == ("00:00:00:00", 0)
    assert mp4_timecode(folder / "screenshare.mp4") == ("00:00:00:00", 0)


def test_report_has_the_builders_recording_start(tmp_path: Path) -> None:
    _, outcome = _run(tmp_path, RECORDING_START, RunOptions(jobs=1))
    assert outcome.report["recording_start"] == RECORDING_START.isoformat().replace(
        "+00:00", "Z")


# --- pure ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("frames", "rate", "label"), [
    (0, Fraction(30), "00:00:00:00"),
    (14 * 3600 * 30 + 3 * 60 * 30 + 7 * 30 + 12, Fraction(30), "14:03:07:12"),
    (14 * 3600 * 25 + 24, Fraction(25), "14:00:00:24"),
    (24 * 3600 * 30, Fraction(30), "00:00:00:00"),  # wraps at midnight
    (1800, Fraction(30000, 1001), "00:01:00:00"),  # non-drop: frames counted in 30s
    (14 * 3600 * 15 + 14, Fraction(15), "14:00:00:14"),
], ids=["zero", "30", "25", "midnight", "ntsc", "15"])
def test_smpte_timecode(frames: int, rate: Fraction, label: str) -> None:
    assert smpte_timecode(frames, rate) == label


def test_bwf_args_name_the_fields_and_cut_the_description_whole() -> None:
    args = bwf_args("abc" + "Zoë " * 100, RECORDING_START)
    assert args[:6] == ["-map_metadata", "-1", "-write_bext", "1", "-rf64", "auto"]
    fields = dict(arg.split("=", 1) for arg in args[7::2])
    # 256 bytes would end inside the 51st "ë": it is left out, not split.
    assert fields == {"description": "abc" + "Zoë " * 50 + "Zo", "originator": "assembler",
                      "time_reference": str(14 * 3600 * 48000),
                      "origination_date": "2025-07-17", "origination_time": "14:00:00"}
