"""`--av`: `participants/<dir>/av.mp4`, a participant's webcam with their voice, in sync.

The webcam track is stream-copied; the audio track is encoded once to AAC at
48 kHz and cut or padded to exactly the video's length in samples. Both start
at 0: the MP4 muxer writes the AAC encoder's priming (1024 samples) into an
edit list, so a player's first audio sample is the one under the first frame.
The file carries the webcam's start timecode and is fast-start.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from .._copy import ending_args
from .._mp4 import align_timecode
from .._stamp import track_timecode
from ..ffmpeg_process import file_arg, run_ffmpeg
from ..media import read_packets
from ..plan import AUDIO_RATE, to_units
from . import Output

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ..render import RenderedTrack
    from ..report import OutputKind
    from . import DeliverableContext, DeliverableOptions

__all__ = ["AV", "AvFile", "av_argv"]

AAC_BITRATE = "192k"


def av_argv(webcam: RenderedTrack, audio: RenderedTrack, output: Path,
            ending: Sequence[str] = ()) -> list[str]:
    """ffmpeg arguments (no binary): `webcam` copied, `audio` as AAC exactly as long.

    `ending`: `_copy.ending_args` for the webcam, which a copy of it needs again: its
    last frame's duration, shortened or stretched to the timeline, is not read back.
    """
    video = webcam.track
    samples = to_units(video.end, Fraction(AUDIO_RATE))  # the webcam's exact length
    return ["-y", "-nostats", "-i", file_arg(webcam.path), "-i", file_arg(audio.path),
            "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *ending,
            "-af", f"apad=whole_len={samples},atrim=end_sample={samples}",
            "-c:a", "aac", "-b:a", AAC_BITRATE, "-ar", str(AUDIO_RATE),
            "-map_metadata", "-1", "-timecode", track_timecode(video),
            "-movflags", "+faststart", "-f", "mp4", file_arg(output)]


def _by_participant(context: DeliverableContext) -> dict[int, tuple[RenderedTrack, RenderedTrack]]:
    """Each participant with both a webcam and an audio track written: (webcam, audio)."""
    kinds: dict[tuple[int, str], RenderedTrack] = {
        (rendered.track.participant_id, rendered.track.kind): rendered
        for rendered in context.tracks}
    return {person.id: (kinds[person.id, "webcam"], kinds[person.id, "audio"])
            for person in context.plan.participants
            if (person.id, "webcam") in kinds and (person.id, "audio") in kinds}


class AvFile:
    """The `--av` deliverable (see the module docstring)."""

    kind: OutputKind = "av"

    def wanted(self, options: DeliverableOptions) -> bool:
        return options.av

    def outputs(self, context: DeliverableContext) -> list[Output]:
        having = _by_participant(context)
        return [Output(kind=self.kind, format="mp4", path=f"{person.dir}/av.mp4",
                       participant=person.id)
                for person in context.plan.participants if person.id in having]

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        assert output.participant is not None  # every av output names its participant
        webcam, audio = _by_participant(context)[output.participant]
        shown = read_packets(webcam.path)
        last = (max(shown.pts) - min(shown.pts)) * shown.time_base  # seconds after the first
        video = webcam.track
        run_ffmpeg(av_argv(webcam, audio, target, ending_args(video.end, last, video.rate)))
        align_timecode(target)  # the muxer may make it a frame longer than the video
        return []


AV = AvFile()
