"""When a file says it was recorded: a video's start timecode, a Broadcast WAV's `bext`.

Both carry the recording's start as a time of day (`plan.time_of_day`): a
timecode in frames at the video's frame rate, a `TimeReference` in samples
since midnight. An editor or a DAW that spots to them lines every file up
with any other recording of the same meeting. Pure functions: ffmpeg output
options as data.
"""

from __future__ import annotations

from datetime import UTC
from fractions import Fraction
from typing import TYPE_CHECKING

from .plan import AUDIO_RATE, time_of_day

if TYPE_CHECKING:
    from datetime import datetime

    from .plan import TrackPlan

__all__ = ["bwf_args", "smpte_timecode", "timecode_args", "track_timecode",
           "with_output_args"]

ORIGINATOR = "assembler"
_DESCRIPTION_BYTES = 256  # the bext chunk's Description field (EBU Tech 3285)


def smpte_timecode(frames: int, rate: Fraction) -> str:
    """`frames` counted from midnight as non-drop-frame SMPTE timecode, `HH:MM:SS:FF`.

    Seconds of `round(rate)` frames; hours wrap at 24. Non-drop at 29.97 and
    59.94 too, although its label then runs 0.1 % behind the clock (13:59:09:20
    for 14:00 real time): ffmpeg keeps a copied track's `tmcd` at the parts'
    average rate, where a drop-frame label is refused as invalid, and one
    convention for every track keeps them comparable. The frame count is exact
    either way.
    """
    seconds_total, frame = divmod(frames, max(1, round(rate)))
    minutes, second = divmod(seconds_total, 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours % 24:02d}:{minute:02d}:{second:02d}:{frame:02d}"


def track_timecode(track: TrackPlan) -> str:
    """A video track's start timecode (ffmpeg's `-timecode`, an MP4 `tmcd` track): the
    recording's start at `track.rate`, `00:00:00:00` when the start is unknown.

    Give it always: ffmpeg would otherwise copy a part's own timecode into the track.
    """
    return smpte_timecode(track.time_of_day, track.rate)


def timecode_args(track: TrackPlan) -> list[str]:
    """MP4 output options giving a stream-copied video track its start timecode.

    ffmpeg runs the `tmcd` track at the stream's average frame rate: for parts of
    variable rate that is not the track's, and the label (right at the track's
    rate) is then counted at the average rate in the `tmcd` sample. `-r` would
    fix that but makes every copied packet one frame long, undoing the exact end.
    """
    return ["-timecode", track_timecode(track)]


def _clip_utf8(text: str, size: int) -> str:
    """`text` cut to at most `size` bytes of UTF-8 without splitting a character."""
    return text.encode("utf-8")[:size].decode("utf-8", "ignore")


def bwf_args(text: str, start: datetime | None) -> list[str]:
    """wav muxer options making a Broadcast WAV: a `bext` chunk, and RF64 past 4 GB.

    `TimeReference` is `start`'s time of day in samples at 48 kHz (0 when
    unknown), `Description` `text` (UTF-8, cut to 256 bytes), `Originator`
    `assembler`, `OriginationDate`/`OriginationTime` the start in UTC (empty
    when unknown). Input metadata is dropped, so a part's own `bext` fields
    never leak into the file.
    """
    fields = {"description": _clip_utf8(text, _DESCRIPTION_BYTES), "originator": ORIGINATOR,
              "time_reference": str(time_of_day(start, Fraction(AUDIO_RATE)))}
    if start is not None:
        utc = start.astimezone(UTC)
        fields |= {"origination_date": utc.strftime("%Y-%m-%d"),
                   "origination_time": utc.strftime("%H:%M:%S")}
    return ["-map_metadata", "-1", "-write_bext", "1", "-rf64", "auto",
            *(arg for key, value in fields.items() for arg in ("-metadata", f"{key}={value}"))]


def with_output_args(argv: list[str], options: list[str]) -> list[str]:
    """`argv` (ending in its output file, as ffmpeg-python compiles it) with `options`
    added to that output."""
    return [*argv[:-1], *options, argv[-1]]
