"""`--mix`: everyone's aligned audio summed into `DIR/mix.<audio format>` at a loudness target.

Two streamed passes over the audio tracks; neither holds the mix (a 3-hour
stereo float mix is 4 GB):

1. sum and measure: EBU R128 integrated loudness and true peak (ffmpeg's
   `ebur128`), written nowhere;
2. sum again, apply one linear gain to reach `--loudness`, and encode. Only
   when that gain would lift the true peak above -1 dBTP does a look-ahead
   limiter (`alimiter`) hold the peaks down, at -1.5 dBFS: the 0.5 dB spare
   is for the overs between samples that a sample-peak limiter does not see.
   Held peaks take some loudness with them, so a limited pass measures what
   it wrote, and when that is more than 0.5 LU off, the pass is made again
   with the gain corrected (twice at most).

Tracks are summed as they are (`amix` with `normalize=0`: no 1/N scaling),
mono tracks spread over both channels of a stereo mix (-3 dB each, which keeps
their loudness). A gain is a multiplication and the limiter only ever turns
the gain down, so silence stays digitally silent and every sample stays where
its track put it.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import ffmpeg

from .._stamp import bwf_args, with_output_args
from ..errors import DeliverableError
from ..ffmpeg_process import ffmpeg_binary, ffmpeg_output, file_arg, run_ffmpeg
from ..naming import display_name
from ..plan import AUDIO_RATE
from ..render import AUDIO_CODECS
from . import Output

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from pathlib import Path

    from ..render import RenderedTrack
    from ..report import OutputKind
    from . import DeliverableContext, DeliverableOptions

__all__ = ["MIX", "Leveling", "Loudness", "Mix", "leveling", "measure_argv", "mix_argv",
           "parse_loudness"]

TRUE_PEAK_CEILING = -1.0  # dBTP: EBU R128 and the streaming services' ceiling
LIMIT = -1.5  # dBFS: where the limiter holds sample peaks, 0.5 dB under the ceiling
# ebur128 prints loudness and peak to 0.1 dB: a linear gain keeps this much spare.
_PRINTED = 0.1
_ATTACK_MS = 5.0  # the limiter's look-ahead: it turns down this long before a peak
_RELEASE_MS = 50.0
_CLOSE = 0.5  # LU: a limited mix this close to the target is kept
_CORRECTIONS = 2  # limited passes made again at most, with the gain corrected


@dataclass(frozen=True, slots=True)
class Loudness:
    """A measurement: integrated loudness in LUFS and true peak in dBTP.

    None: nothing rose above the absolute gate (-70 LUFS), or no sample was
    anything but zero.
    """

    integrated: float | None
    true_peak: float | None


_INTEGRATED = re.compile(r"Integrated loudness:\s*I:\s*(\S+) LUFS")
_TRUE_PEAK = re.compile(r"True peak:\s*Peak:\s*(\S+) dBFS")


def parse_loudness(stderr: str) -> Loudness:
    """The summary `ebur128` prints when it ends (`true_peak` None unless it measured
    with `peak=true`); raises `DeliverableError` when there is none."""
    integrated = _INTEGRATED.findall(stderr)
    if not integrated:
        raise DeliverableError("the loudness measurement printed no summary")
    loudness = float(integrated[-1])
    peak = _TRUE_PEAK.findall(stderr)
    true_peak = float(peak[-1]) if peak else -math.inf
    return Loudness(integrated=loudness if loudness > -70.0 else None,
                    true_peak=true_peak if math.isfinite(true_peak) else None)


@dataclass(frozen=True, slots=True)
class Leveling:
    """What the second pass does: `gain` dB, then the limiter at `limit` dBFS (None: no
    limiter, the gain alone keeps the true peak under the ceiling)."""

    gain: float
    limit: float | None


def leveling(measured: Loudness, target: float) -> Leveling:
    """The gain that brings `measured` to `target` LUFS, and whether peaks need a limiter.

    A mix with nothing above the gate (silence, or almost) is left as it is.
    """
    if measured.integrated is None or measured.true_peak is None:
        return Leveling(gain=0.0, limit=None)
    gain = round(target - measured.integrated, 2)
    if measured.true_peak + gain <= TRUE_PEAK_CEILING - _PRINTED:
        return Leveling(gain=gain, limit=None)
    return Leveling(gain=gain, limit=LIMIT)


def _summed(paths: Sequence[Path], layout: str) -> Any:
    """Every track's audio added sample by sample, in `layout` (mono or stereo)."""
    streams = [ffmpeg.input(file_arg(path)).audio.filter(
        "aformat", sample_fmts="fltp", sample_rates=AUDIO_RATE, channel_layouts=layout)
        for path in paths]
    return ffmpeg.filter(streams, "amix", inputs=len(streams), normalize=0, duration="longest")


def _compile(output: Any) -> list[str]:
    argv: list[str] = output.compile(cmd=ffmpeg_binary())
    return ["-y", "-nostats", *argv[1:]]  # no progress line twice a second for hours


def measure_argv(paths: Sequence[Path], layout: str) -> list[str]:
    """ffmpeg arguments (no binary) for pass 1: the sum's loudness summary, on stderr."""
    # framelog=verbose: no line per 100 ms at the default log level (5.1 lacks `quiet`).
    return _compile(_summed(paths, layout).filter("ebur128", peak="true", framelog="verbose")
                    .output("-", f="null"))


def mix_argv(paths: Sequence[Path], layout: str, level: Leveling, output: Path,
             audio_format: str, description: str, start: datetime | None) -> list[str]:
    """ffmpeg arguments (no binary) for pass 2: the sum at `level`, encoded as
    `audio_format` (as tracks are; a `wav` is a Broadcast WAV described by `description`).

    A limited mix is measured on its way to the encoder (`ebur128` passes it
    through untouched) and its loudness summary printed on stderr.
    """
    mixed = _summed(paths, layout).filter("volume", f"{level.gain:.2f}dB")
    if level.limit is not None:
        mixed = (mixed.filter("alimiter", limit=f"{10 ** (level.limit / 20):.6f}",
                              attack=_ATTACK_MS, release=_RELEASE_MS,
                              level=0,  # no make-up gain: the gain above is the loudness
                              latency=1)  # the look-ahead delay taken back: samples stay put
                 .filter("ebur128", framelog="verbose"))
    muxer, codec = AUDIO_CODECS[audio_format]
    argv = _compile(mixed.output(file_arg(output), f=muxer, ar=AUDIO_RATE, **codec))
    if audio_format != "wav":
        return argv
    return with_output_args(argv, bwf_args(description, start))


class Mix:
    """The `--mix` deliverable (see the module docstring)."""

    kind: OutputKind = "mix"

    def wanted(self, options: DeliverableOptions) -> bool:
        return options.mix

    def outputs(self, context: DeliverableContext) -> list[Output]:
        if not any(track.kind == "audio" for track in context.plan.tracks):
            return []
        audio_format = context.render.audio_format
        return [Output(kind=self.kind, format=audio_format, path=f"mix.{audio_format}")]

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        tracks = [rendered for rendered in context.tracks if rendered.track.kind == "audio"]
        if not tracks:
            raise DeliverableError("no audio track was written: nothing to mix")
        paths = [rendered.path for rendered in tracks]
        layout = _layout(paths)
        measured = parse_loudness(run_ffmpeg(measure_argv(paths, layout)))
        mixed = {rendered.track.participant_id for rendered in tracks}
        names = ", ".join(display_name(person.id, person.name)
                          for person in context.plan.participants if person.id in mixed)

        def encode(level: Leveling) -> str:
            return run_ffmpeg(mix_argv(paths, layout, level, target, output.format,
                                       f"mix of {names}", context.plan.start))

        loudness = context.options.loudness
        return [*_warnings(context, tracks, measured),
                *_encode_levelled(encode, leveling(measured, loudness), loudness)]


def _encode_levelled(encode: Callable[[Leveling], str], level: Leveling, target: float
                     ) -> list[str]:
    """Encode the mix at `level`; a limited one more than 0.5 LU off the `target` is
    encoded again with the gain corrected. Returns a warning when it stays off."""
    for _ in range(_CORRECTIONS + 1):
        stderr = encode(level)
        reached = parse_loudness(stderr).integrated if level.limit is not None else None
        if reached is None or abs(reached - target) <= _CLOSE:
            return []
        # A dB of gain adds at most 1 LU under a limiter (less, the more it holds):
        # adding the whole shortfall approaches the target from below, never past it.
        level = replace(level, gain=round(level.gain + target - reached, 2))
    return [f"the mix reached {reached:.1f} LUFS, not {target:g}: the limiter held its "
            "peaks down"]


def _layout(paths: Sequence[Path]) -> str:
    """`stereo` when any track has two channels or more, else `mono`."""
    return "stereo" if max(_channels(path) for path in paths) >= 2 else "mono"


def _channels(path: Path) -> int:
    """The channels of a track's first decoded frame (a full probe would read every packet)."""
    header = ffmpeg_output(["-i", file_arg(path), "-map", "0:a:0", "-frames:a", "1",
                            "-c:a", "pcm_s16le", "-f", "wav", "-"])
    offset = 12
    while offset + 8 <= len(header):
        chunk, size = header[offset:offset + 4], struct.unpack_from("<I", header, offset + 4)[0]
        if chunk == b"fmt ":
            return int(struct.unpack_from("<H", header, offset + 10)[0])
        offset += 8 + size
    raise DeliverableError(f"{path.name}: no audio to mix")


def _warnings(context: DeliverableContext, tracks: Sequence[RenderedTrack], measured: Loudness
              ) -> list[str]:
    written = {rendered.track.path for rendered in tracks}
    warnings = [f"{track.path} was not written: the mix is without it"
                for track in context.plan.tracks
                if track.kind == "audio" and track.path not in written]
    if measured.integrated is None:
        warnings.append("the mix is silent (nothing above -70 LUFS): left as it is, "
                        "not normalised")
    return warnings


MIX = Mix()
