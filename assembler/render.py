"""Rendering one track with ffmpeg: one process per track, output renamed into place.

Audio: every part decoded, resampled to 48 kHz, padded or cut to its slot in
samples, joined with digital silence by the `concat` filter, encoded once.
Video (encode): every part made constant frame rate, scaled and padded into
the track's frame size, padded or cut to its slot in frames, joined with
black. Video (copy): see `_copy.py`.

The argv builders are pure functions of the track plan and the probed parts;
only `render_track` touches files and runs ffmpeg.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import ffmpeg

from ._copy import concat_list, copy_argv, copy_track, ending_args
from ._copy_layout import Entry, midway_blocker
from ._publish import clear_leftovers, temporary_name
from ._stamp import bwf_args, timecode_args, track_timecode, with_output_args
from .errors import CopyNotPossibleError, MediaError, RenderError
from .ffmpeg_process import FfmpegSlots, Progress, ffmpeg_binary, file_arg, run_ffmpeg
from .media import AudioStream, MediaInfo
from .naming import display_name
from .plan import (
    AUDIO_FORMATS,
    AUDIO_RATE,
    VIDEO_STRATEGIES,
    X264_PRESETS,
    TrackPlan,
    VideoStrategy,
    split,
    to_units,
)

__all__ = ["RenderSettings", "RenderedTrack", "audio_argv", "render_track",
           "video_encode_argv"]

Strategy = Literal["encode", "copy"]

# Output codec settings per audio format (plan.AUDIO_FORMATS names them): (muxer, options).
AUDIO_CODECS: dict[str, tuple[str, dict[str, Any]]] = {
    # A fixed frame size: the encoder takes its block size from the first frame
    # otherwise, and refuses one under 16 samples (a track that short).
    "flac": ("flac", {"acodec": "flac", "sample_fmt": "s16", "frame_size": 4096}),
    "wav": ("wav", {"acodec": "pcm_s16le"}),
    "opus": ("ogg", {"acodec": "libopus", "b:a": "128k"}),
    "m4a": ("ipod", {"acodec": "aac", "b:a": "192k", "movflags": "+faststart"}),
    "mp3": ("mp3", {"acodec": "libmp3lame", "b:a": "192k"}),
}
EMPTY_TRACK_SIZE = (640, 360)
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# Channels an output format holds at most (8 where not listed: FLAC's limit and the widest
# layout above); a wider part is downmixed, with a warning. libmp3lame: mono or stereo.
MAX_CHANNELS = {"mp3": 2}
# Layouts an encoder wants instead: libopus takes 3 channels only as L C R (Vorbis order).
FORMAT_LAYOUTS = {"opus": {3: "3.0"}}


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderSettings:
    """How tracks are written: audio format, video strategy and H.264 quality.

    `crf` is x264's constant rate factor (0-51, lower is better, 18-23 is
    usual); `x264_preset` trades encode speed for size; `max_height` (pixels,
    None: no limit) scales encoded video down to at most that height, keeping
    its shape. Raises `ValueError` for a value outside these.
    """

    audio_format: str = "flac"
    video_strategy: VideoStrategy = "auto"
    x264_preset: str = "veryfast"
    crf: int = 20
    max_height: int | None = None
    # Parts one ffmpeg process decodes at most; a track with more is rendered in pieces
    # and joined. A video decoder holds frames (scripts/bench_long.py: 100 parts at once
    # peaked at 322 MB, pieces of 32 at 129 MB, and ran faster); an audio one holds
    # little (200 at once: 122 MB), while audio pieces cost a float PCM round trip.
    max_video_parts: int = 32
    max_audio_parts: int = 256

    def __post_init__(self) -> None:
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio format must be one of {', '.join(AUDIO_FORMATS)}")
        if self.video_strategy not in VIDEO_STRATEGIES:
            raise ValueError("video strategy must be auto, copy or encode")
        if min(self.max_video_parts, self.max_audio_parts) < 1:
            raise ValueError("max_video_parts and max_audio_parts must be >= 1")
        if not 0 <= self.crf <= 51:
            raise ValueError("crf must be between 0 and 51")
        if self.x264_preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}")
        if self.max_height is not None and self.max_height < 2:
            raise ValueError("max height must be >= 2 pixels")


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedTrack:
    """A track written to `path`, with how (`copy` or `encode`), why and what was cut or padded."""

    track: TrackPlan  # as rendered: a copied video track is placed at its parts' frame rate
    path: Path
    strategy: Strategy
    reason: str | None = None  # why auto chose encode, when it did
    blank: tuple[tuple[float, float], ...] = ()  # (start, end) seconds of silence or black
    warnings: tuple[tuple[str, str], ...] = field(default=())  # (part id, message)
    kept: bool = False  # kept as an earlier run made it (see `rerun.py`), not rendered now


@dataclass(frozen=True, slots=True)
class _Placed:
    """A part with the gaps around it: silence or black is added to the part's own stream."""

    part_id: str
    lead: int  # gap before the part: only the track's first part has one
    length: int
    tail: int  # gap after the part, up to the next part or the track's end
    offset: int = 0  # units of the part's media skipped (see `Segment.offset`)
    # Units of the part's media this run needs, when the part plays again later in
    # the track: this run's input stops reading there (and is not the later one's).
    until: int | None = None


def _placements(track: TrackPlan, probes: Mapping[str, MediaInfo]) -> list[_Placed]:
    # Gaps ride on their neighbouring part (apad/tpad), so a track needs one
    # ffmpeg input per run of a part and none per gap, however many gaps it has.
    # A part without packets is a gap too: two runs of silence from one source
    # would be one ffmpeg input feeding two chains, which ffmpeg-python refuses.
    placed: list[_Placed] = []
    lead = 0
    last_run = {segment.part_id: number for number, segment in enumerate(track.segments)}
    for number, segment in enumerate(track.segments):
        if segment.part_id is not None and not is_empty(probes[segment.part_id], track.kind):
            again = last_run[segment.part_id] > number
            placed.append(_Placed(segment.part_id, 0 if placed else lead, segment.length, 0,
                                  segment.offset,
                                  segment.offset + segment.length if again else None))
        elif placed:
            placed[-1] = replace(placed[-1], tail=placed[-1].tail + segment.length)
        else:
            lead += segment.length
    return placed


def _input_options(placed: _Placed, rate: Fraction) -> dict[str, str]:
    """`-t` for a run of a part that plays again later: a second read would start over.

    A second past what the run shows: the graph cuts it on its unit exactly.
    """
    return {} if placed.until is None else {"t": f"{float(placed.until / rate) + 1:.6f}"}


def audio_channels(probes: Mapping[str, MediaInfo], audio_format: str) -> int:
    """The track's channel count: the widest among its parts that `audio_format` holds."""
    widest = max((info.audio.channels for info in probes.values() if info.audio), default=1)
    return min(widest, MAX_CHANNELS.get(audio_format, len(LAYOUTS)))


def channel_layout(channels: int, audio_format: str) -> str:
    """The ffmpeg layout name a track of `channels` is encoded with in `audio_format`."""
    return FORMAT_LAYOUTS.get(audio_format, {}).get(channels) or LAYOUTS[channels]


def is_empty(info: MediaInfo, kind: str) -> bool:
    """True when a part has no packets for a track of `kind`: its slot is silence or black."""
    stream = info.audio if kind == "audio" else info.video
    return info.holds_nothing or (stream is not None and stream.packets == 0)


def _audio_input(path: Path, audio: AudioStream, placed: _Placed) -> Any:
    """A run of a part's audio, from `placed.offset` on.

    Its timestamps are moved back by what goes unplayed, and aresample's first_pts
    then drops what falls before 0: a container that does not state the codec's
    delay starts `priming` samples (the encoder's) before the file's 0, and a
    run with an offset that much later again.
    """
    unplayed = Fraction(audio.priming, audio.sample_rate) + Fraction(placed.offset, AUDIO_RATE)
    options = _input_options(placed, Fraction(AUDIO_RATE))
    if unplayed:
        options["itsoffset"] = f"{-float(unplayed):.6f}"
    return ffmpeg.input(file_arg(path), **options).audio


def _audio_graph(track: TrackPlan, parts: Mapping[str, Path], probes: Mapping[str, MediaInfo],
                 layout: str) -> Any:
    """The track's audio, exactly `track.length` samples: parts placed, silence between."""
    pieces = []
    for placed in _placements(track, probes):
        audio = probes[placed.part_id].audio
        assert audio is not None  # narrowing: a part without audio has no packets for it
        stream = (_audio_input(parts[placed.part_id], audio, placed)
                  # Timestamps are the truth inside a part too: a gap in them (packets lost,
                  # a mute) becomes silence, and audio that starts late in its file starts
                  # late in its slot. Any difference over 1 ms is filled or dropped at once
                  # (the default, 0.1 s, let WebRTC's 20-60 ms holes pull the rest early);
                  # millisecond timestamps (WebM) jitter by 0.5 ms at most.
                  .filter("aresample", AUDIO_RATE, first_pts=0, min_comp=0.001,
                          min_hard_comp=0.001)
                  .filter("aformat", sample_fmts="fltp", sample_rates=AUDIO_RATE,
                          channel_layouts=layout))
        stream = (stream
                  # The slot is the truth: pad short media, then cut at the slot's end.
                  .filter("apad", whole_len=placed.length)
                  .filter("atrim", end_sample=placed.length))
        if placed.tail:
            stream = stream.filter("apad", pad_len=placed.tail)
        if placed.lead:
            stream = stream.filter("adelay", delays=f"{placed.lead}S", all=1)
        pieces.append(stream.filter("asetpts", "N/SR/TB"))
    if not pieces:  # every part is empty: the track is silence
        pieces.append(ffmpeg.input(f"anullsrc=r={AUDIO_RATE}:cl={layout}", f="lavfi").audio
                      .filter("atrim", end_sample=track.length))
    # Even frames for the encoder: a part of a few samples would otherwise make a frame
    # FLAC refuses ("invalid block size"). The last frame keeps what is left, unpadded.
    return ffmpeg.concat(*pieces, v=0, a=1).filter("asetnsamples", n=4096, p=0)


def audio_argv(track: TrackPlan, parts: Mapping[str, Path], probes: Mapping[str, MediaInfo],
               layout: str, output: Path, audio_format: str) -> list[str]:
    """ffmpeg arguments (no binary) rendering an audio track exactly `track.length` samples."""
    muxer, codec = AUDIO_CODECS[audio_format]
    return with_output_args(_compile(_audio_graph(track, parts, probes, layout).output(
        file_arg(output), f=muxer, ar=AUDIO_RATE, **codec)), _file_args(track, audio_format))


def audio_piece_argv(piece: TrackPlan, parts: Mapping[str, Path],
                     probes: Mapping[str, MediaInfo], layout: str, output: Path) -> list[str]:
    """A piece of a long audio track as float PCM: joining pieces loses nothing."""
    return _compile(_audio_graph(piece, parts, probes, layout).output(
        file_arg(output), f="wav", acodec="pcm_f32le", ar=AUDIO_RATE))


def audio_join_argv(track: TrackPlan, listing: Path, output: Path, audio_format: str
                    ) -> list[str]:
    """Join the PCM pieces of `track` named in an ffconcat `listing`, encoding it once."""
    muxer, codec = AUDIO_CODECS[audio_format]
    return with_output_args(_compile(ffmpeg.input(file_arg(listing), f="concat", safe=0).audio
                                     .output(file_arg(output), f=muxer, ar=AUDIO_RATE, **codec)),
                            _file_args(track, audio_format))


def _file_args(track: TrackPlan, audio_format: str) -> list[str]:
    """What an audio file says about itself: a `wav` is a Broadcast WAV (see `_stamp`)."""
    if audio_format != "wav":
        return []
    return bwf_args(display_name(track.participant_id, track.participant_name),
                    track.recording_start)


def video_size(probes: Mapping[str, MediaInfo], max_height: int | None = None
               ) -> tuple[int, int]:
    """The largest part's size as shown (by area), in even numbers for yuv420p.

    As shown: a portrait phone's part is portrait, non-square pixels are made square;
    an odd side is padded by one. Taller than `max_height`, it is scaled down to at
    most that height (an odd limit counts as the even one below), to the even width
    that keeps its shape best: 1280x720 under 240 is 426x240, not 428x240.
    """
    sizes = [info.video.display_size for info in probes.values() if info.video]
    # Parts that are all header-only show no size: their black is the usual webcam size.
    width, height = max(sizes or [EMPTY_TRACK_SIZE], key=lambda size: size[0] * size[1])
    if max_height is not None and height > max_height:
        scaled = max(2, max_height - max_height % 2)
        return max(2, 2 * round(Fraction(width * scaled, 2 * height))), scaled
    return width + width % 2, height + height % 2


def _video_input(path: Path, placed: _Placed, rate: Fraction) -> Any:
    """A run of a part's video, from its first frame (`placed.offset` is cut in the graph)."""
    # A part may change resolution midway (WebRTC adapts to bandwidth); rebuilding the
    # whole graph then would restart every trim and concat: let `scale` absorb it.
    return ffmpeg.input(file_arg(path), reinit_filter=0, **_input_options(placed, rate)).video


def video_encode_argv(track: TrackPlan, parts: Mapping[str, Path],
                      probes: Mapping[str, MediaInfo], size: tuple[int, int], output: Path, *,
                      preset: str, crf: int) -> list[str]:
    """ffmpeg arguments (no binary) encoding a constant-frame-rate H.264 track."""
    width, height = size
    rate = _rate_text(track.rate)
    pieces = []
    for placed in _placements(track, probes):
        stream = (_video_input(parts[placed.part_id], placed, track.rate)
                  # Timestamps from the part's first frame, then a constant rate.
                  .filter("setpts", "PTS-STARTPTS")
                  .filter("fps", fps=rate)
                  # Square pixels first (ffmpeg has already turned the picture upright), so
                  # fitting into the frame keeps the shape the part is shown with.
                  .filter("scale", "iw*sar", "ih")
                  .filter("setsar", 1)
                  .filter("scale", width, height, force_original_aspect_ratio="decrease")
                  .filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2", color="black")
                  .filter("setsar", 1)
                  .filter("format", "yuv420p"))
        if placed.offset:  # play from that far into the part (see `Segment.offset`)
            stream = (stream.filter("trim", start_frame=placed.offset)
                      .filter("setpts", "PTS-STARTPTS"))
        stream = (stream
                  # The slot is the truth: hold black after short media, cut at the slot end.
                  .filter("tpad", stop=-1, color="black")
                  .filter("trim", end_frame=placed.length))
        if placed.tail:
            stream = stream.filter("tpad", stop=placed.tail, color="black")
        if placed.lead:
            stream = stream.filter("tpad", start=placed.lead, color="black")
        pieces.append(stream.filter("setpts", "N/FRAME_RATE/TB"))
    if not pieces:  # every part is empty: the track is black
        pieces.append(ffmpeg.input(f"color=c=black:s={width}x{height}:r={rate}", f="lavfi")
                      .video.filter("trim", end_frame=track.length))
    joined = ffmpeg.concat(*pieces, v=1, a=0)
    return _compile(joined.output(
        file_arg(output), f="mp4", vcodec="libx264", preset=preset, crf=crf, pix_fmt="yuv420p",
        r=rate, fps_mode="cfr", movflags="+faststart", an=None, timecode=track_timecode(track),
        video_track_timescale=timescale(track.rate)))


def timescale(rate: Fraction) -> int:
    """An MP4 time scale in which every frame lasts a whole number of ticks.

    Pieces of one track share it, so they join by stream copy without drift.
    """
    if (90000 * rate.denominator) % rate.numerator == 0:
        return 90000  # 24, 25, 30, 60 and their /1001 rates
    return rate.numerator * math.ceil(10000 / rate.numerator)


def _rate_text(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def _compile(stream: Any) -> list[str]:
    argv: list[str] = stream.compile(cmd=ffmpeg_binary())
    return ["-y", *argv[1:]]


def _check_streams(track: TrackPlan, probes: Mapping[str, MediaInfo]) -> None:
    needed = "audio" if track.kind == "audio" else "video"
    for part_id in track.parts:
        if getattr(probes[part_id], needed) is None and not probes[part_id].holds_nothing:
            raise MediaError(f"part {part_id} has no {needed} stream", part_id=part_id)


# `ffmpeg -i` prints durations to 10 ms and AAC frames last 21 ms: closer than
# this, media and slot agree as far as anyone can tell.
_LENGTH_TOLERANCE = 0.025


def _media_length(info: MediaInfo, kind: str) -> float | None:
    """Seconds the part's stream fills from its slot start, as measured from its packets."""
    stream = info.audio if kind == "audio" else info.video
    return stream.length if stream else None


def _audio_warnings(track: TrackPlan, probes: Mapping[str, MediaInfo], audio_format: str
                    ) -> list[tuple[str, str]]:
    """What the track changes in a part's audio: channels folded, a delay assumed."""
    channels = audio_channels(probes, audio_format)
    warnings = []
    for part_id in dict.fromkeys(track.parts):
        audio = probes[part_id].audio
        if audio is None:
            continue
        if audio.channels > channels:
            warnings.append((part_id, f"{audio.channels} channels downmixed to "
                                      f"{LAYOUTS[channels]}: {audio_format} tracks hold at most "
                                      f"{channels}"))
        if audio.priming:
            warnings.append((part_id, f"the container does not state the {audio.codec} encoder "
                                      f"delay; assumed the usual {audio.priming} samples"))
    return warnings


def _part_warnings(track: TrackPlan, probes: Mapping[str, MediaInfo], audio_format: str
                   ) -> tuple[tuple[str, str], ...]:
    """A warning for each part whose media is clearly shorter (padded) or longer (cut),
    or has nothing in it (its slot is silence or black)."""
    tolerance = max(_LENGTH_TOLERANCE, 1 / float(track.rate))
    filler = "silence" if track.kind == "audio" else "black"
    warnings = []
    for part_id in dict.fromkeys(track.parts):
        runs = [segment for segment in track.segments if segment.part_id == part_id]
        info = probes[part_id]
        # From where its media begins to where its last run ends: a part resumed after
        # a part inside it is measured whole.
        slot = track.seconds(runs[-1].end - runs[0].start + runs[0].offset)
        if is_empty(info, track.kind):
            what = "a header without packets" if info.holds_nothing else "no packets"
            warnings.append((part_id, f"media has {what}; its {slot:.3f} s slot is {filler}"))
            continue
        media = _media_length(info, track.kind)
        # Media running on where --duration ends the timeline, or where a later part starts,
        # is cut by that, not by its own slot: the plan warns about those cuts.
        # (The slot of its last run: a later slot may round to no unit and be left out.)
        last = [placed for placed in track.slots if placed.part_id == part_id
                and to_units(placed.start, track.rate) < runs[-1].end][-1]
        if media is not None and abs(media - slot) > tolerance and (
                media < slot or not (last.cut_at_end or last.cut_by_part)):
            verdict = "shorter" if media < slot else "longer"
            action = "padded" if media < slot else "cut"
            warnings.append((part_id, f"media is {media:.3f} s, {verdict} than its "
                                      f"{slot:.3f} s slot; {action}"))
    if track.kind == "audio":
        warnings.extend(_audio_warnings(track, probes, audio_format))
    return tuple(warnings)


def blank_spans(track: TrackPlan, probes: Mapping[str, MediaInfo]
                ) -> tuple[tuple[float, float], ...]:
    """Every span (seconds) where the track is silence or black, merged where they touch.

    Gaps between parts, and what follows media shorter than its slot (all of a
    slot whose media holds nothing).
    """
    spans: list[list[float]] = []
    tolerance = max(_LENGTH_TOLERANCE, 1 / float(track.rate))
    # The last frame may be shortened to end at the timeline (29.97 fps: 6.5 s is 194.8
    # frames): no span runs past the track's exact end.
    track_end = round(float(track.end), 6)
    for segment in track.segments:
        start, end = track.seconds(segment.start), min(track.seconds(segment.end), track_end)
        if segment.part_id is not None:
            info = probes[segment.part_id]
            media = 0.0 if is_empty(info, track.kind) else _media_length(info, track.kind)
            if media is not None:  # what is left of it from where this run plays it
                media = max(0.0, media - segment.offset / float(track.rate))
            if media is None or media >= end - start - tolerance:
                continue
            start += media
        if spans and abs(spans[-1][1] - start) < 1e-9:
            spans[-1][1] = end
        else:
            spans.append([round(start, 6), end])
    return tuple((start, end) for start, end in spans)


def render_track(track: TrackPlan, parts: Mapping[str, Path], probes: Mapping[str, MediaInfo],
                 out_dir: Path, settings: RenderSettings, *,
                 ffmpeg: FfmpegSlots | None = None,
                 progress: Progress | None = None) -> RenderedTrack:
    """Render `track` to `out_dir / track.path`; the file appears only when complete.

    `parts` and `probes` give every part of the track its file and its probe.
    `ffmpeg`: the `--jobs` cap when the caller holds one of its slots; stream copy
    then reads parts on any other slots free at the time. `progress` hears the
    seconds of the track encoded so far, from this thread (not for stream copy).
    """
    output = out_dir / track.path
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"cannot create {output.parent}: {exc.strerror or exc}") from exc
    probes = {part_id: probes[part_id] for part_id in track.parts}  # this track's parts only
    _check_streams(track, probes)
    warnings = _part_warnings(track, probes, settings.audio_format)
    try:
        clear_leftovers(output)
        temporary = temporary_name(output)
    except OSError as exc:
        raise RenderError(f"cannot write in {output.parent}: {exc.strerror or exc}") from exc
    try:
        rendered = _render_to(track, parts, probes, temporary, settings, ffmpeg, progress)
        os.replace(temporary, output)
    except OSError as exc:
        raise RenderError(f"cannot write {track.path}: {exc.strerror or exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    return RenderedTrack(track=rendered.track, path=output, strategy=rendered.strategy,
                         reason=rendered.reason, warnings=warnings,
                         blank=blank_spans(rendered.track, probes))


def _render_to(track: TrackPlan, parts: Mapping[str, Path], probes: Mapping[str, MediaInfo],
               output: Path, settings: RenderSettings, ffmpeg: FfmpegSlots | None,
               progress: Progress | None) -> RenderedTrack:
    if track.kind == "audio":
        _encode_audio(track, parts, probes, output, settings, progress)
        return RenderedTrack(track=track, path=output, strategy="encode")
    reason = (_copy_refusal(track, probes, settings.max_height)
              if settings.video_strategy != "encode" else None)
    if reason is not None and settings.video_strategy == "copy":
        raise CopyNotPossibleError(f"cannot copy {track.path}: {reason}")
    if reason is None and settings.video_strategy != "encode":
        try:
            copied = copy_track(track, parts, probes, output, preset=settings.x264_preset,
                                ffmpeg=ffmpeg)
            return RenderedTrack(track=copied, path=output, strategy="copy")
        except CopyNotPossibleError as error:
            if settings.video_strategy == "copy":
                raise CopyNotPossibleError(f"cannot copy {track.path}: {error}") from error
            reason = str(error)
        except RenderError as error:
            if settings.video_strategy == "copy":
                raise
            # auto stays safe: a copy that fails for any other reason falls back to encode.
            reason = f"stream copy failed: {error}"
    _encode_video(track, parts, probes, output, settings, progress)
    return RenderedTrack(track=track, path=output, strategy="encode", reason=reason)


def _copy_refusal(track: TrackPlan, probes: Mapping[str, MediaInfo],
                  max_height: int | None) -> str | None:
    """Why the track's parts need encoding whatever they hold, or None."""
    for segment in track.segments:
        if segment.part_id is None:
            continue
        if is_empty(probes[segment.part_id], track.kind):
            return f"part {segment.part_id} has no frames: its slot is black"
        if probes[segment.part_id].format == "h264":
            # A raw stream states no times: B-frames copied from it lose their order.
            return f"part {segment.part_id} is a raw H.264 stream, with no timestamps to copy"
    midway = midway_blocker(track)  # known before any part is read for copy
    if midway:
        return midway
    # Copy keeps the parts' frames as they are: it cannot scale them down.
    tallest = max((info.video.display_size[1] for info in probes.values() if info.video),
                  default=0)
    if max_height is not None and tallest > max_height:
        return f"parts are {tallest} px high, over --max-height {max_height}: copy cannot scale"
    return None


def _encode_audio(track: TrackPlan, parts: Mapping[str, Path], probes: Mapping[str, MediaInfo],
                  output: Path, settings: RenderSettings, progress: Progress | None) -> None:
    layout = channel_layout(audio_channels(probes, settings.audio_format), settings.audio_format)
    pieces = split(track, settings.max_audio_parts)
    if len(pieces) == 1:
        run_ffmpeg(audio_argv(track, parts, probes, layout, output, settings.audio_format),
                   progress=progress)
        return
    with _scratch(output) as scratch:
        listing = _render_pieces(pieces, scratch, ".wav", lambda piece, path: audio_piece_argv(
            piece, parts, probes, layout, path), progress)
        run_ffmpeg(audio_join_argv(track, listing, output, settings.audio_format))


def _encode_video(track: TrackPlan, parts: Mapping[str, Path], probes: Mapping[str, MediaInfo],
                  output: Path, settings: RenderSettings, progress: Progress | None) -> None:
    size = video_size(probes, settings.max_height)

    def argv(piece: TrackPlan, path: Path) -> list[str]:
        return video_encode_argv(piece, parts, probes, size, path,
                                 preset=settings.x264_preset, crf=settings.crf)

    pieces = split(track, settings.max_video_parts)
    whole_frames = track.end * track.rate == track.length
    if len(pieces) == 1 and whole_frames:
        run_ffmpeg(argv(track, output), progress=progress)
        return
    with _scratch(output) as scratch:
        listing = _render_pieces(pieces, scratch, ".mp4", argv, progress)
        # Same encoder settings in every piece: their streams join by copy. The join
        # also ends the last frame on the timeline's end, which whole frames miss: the
        # encoder's packets count in frames, the join's in the MP4's fine time scale.
        ending = [] if whole_frames else ending_args(
            track.end, Fraction(track.length - 1) / track.rate, track.rate)
        run_ffmpeg(copy_argv(listing, output, time_base=Fraction(1, timescale(track.rate)),
                             in_band=False, samples=track.length, ending=ending,
                             timecode=timecode_args(track)))


def _shifted(progress: Progress | None, offset: float) -> Progress | None:
    """`progress` for a piece that starts `offset` seconds into its track."""
    if progress is None:
        return None
    return lambda seconds: progress(offset + seconds)


def _scratch(output: Path) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(dir=output.parent, prefix=f"{output.name}.pieces-")


def _render_pieces(pieces: Sequence[TrackPlan], scratch: str, suffix: str,
                   argv: Callable[[TrackPlan, Path], list[str]],
                   progress: Progress | None) -> Path:
    """Render each piece to its own file; return the ffconcat list that joins them.

    `progress` hears seconds of the whole track: each piece's from where it starts.
    """
    entries = []
    done = 0.0  # seconds of the track in the pieces rendered so far
    for index, piece in enumerate(pieces):
        path = Path(scratch) / f"{index:05d}{suffix}"
        run_ffmpeg(argv(piece, path), progress=_shifted(progress, done))
        entries.append(Entry(path=path, duration=Fraction(piece.length) / piece.rate))
        done += piece.duration
    listing = Path(scratch) / "pieces.ffconcat"
    listing.write_text(concat_list(entries), encoding="utf-8")
    return listing
