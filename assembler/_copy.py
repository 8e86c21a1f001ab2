"""Stream-copy rendering of a video track, the ffmpeg side: black, tails, the concat run.

The layout (what is copied, cut, re-encoded or black) is decided in `_copy_layout`,
from what `_copy_probe` reads. Here:

1. One black GOP is encoded with x264 to the parts' parameters (once per process
   for each set of them). A gap is that GOP repeated, then prefixes of it that cut
   cleanly (the IDR frame alone always does). Every piece of black then has the
   same parameter sets and the same B-frame timing at its joins.
2. A smart-cut tail is re-encoded with black's x264 settings.
3. The concat demuxer joins parts and black with `-c copy`. Each entry's `duration`
   places the next one on its exact frame; `inpoint` puts a part's first frame on
   its slot start (a VFR part keeps its own timestamps after that); `outpoint` ends
   a part at the first packet, in decode order, that is not shown inside its slot.

Parameter sets: black and each re-encoded tail get SPS/PPS ids the parts do not use
(x264's `sps-id`), so one avcC record can hold every segment's parameter sets: the
packets are copied untouched into an `avc1` track, and that record is written in
place of the one ffmpeg took from the first segment (an `avc1` MP4 keeps only the
first segment's, see FIELD-NOTES). Only when the records cannot share one (parts
coded with different parameter sets under one id) does the concat demuxer's
`h264_mp4toannexb` put each file's SPS/PPS in front of its IDR frames, the track
then tagged `avc3`, the sample entry that tells players parameter sets can change
in the stream; that round trip through Annex B costs as much again as the copy.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ._copy_layout import (
    X264_DELAYS,
    X264_PROFILES,
    BlackGop,
    CopyLayout,
    Entry,
    Piece,
    Tail,
    black_runs,
    clean_prefixes,
    copy_layout,
    entries,
    gop_frames,
    gop_repeats,
    last_frame,
    lead,
    part_entry,
    shared_avcc,
    spare_parameter_set_ids,
)
from ._copy_probe import probe_parts, timescale_args
from ._mp4 import (
    align_timecode,
    has_timecode,
    media_seconds,
    read_avcc,
    replace_avcc,
    shown_seconds,
)
from ._stamp import timecode_args
from .errors import CopyNotPossibleError
from .ffmpeg_process import FfmpegSlots, file_arg, run_ffmpeg, setts_sets_duration
from .media import MediaInfo, PacketTrace, read_packets
from .plan import TrackPlan

__all__ = ["BlackSpec", "black_argv", "concat_list", "copy_argv", "copy_track", "ending_args",
           "tail_argv"]


# --- argv and list text: pure -----------------------------------------------------------


def _microseconds(seconds: Fraction) -> int:
    # Floor: an outpoint must not pass the dts of the packet it leaves out.
    return (seconds * 1_000_000).__floor__()


def _time_text(microseconds: int) -> str:
    sign = "-" if microseconds < 0 else ""
    whole, fraction = divmod(abs(microseconds), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def _quote(path: Path) -> str:
    # ffconcat reads '...' literally; a quote inside is closed, escaped and reopened.
    return "'" + file_arg(path).replace("'", "'\\''") + "'"


def concat_list(items: Iterable[Entry]) -> str:
    """The ffconcat text for `items`, durations in microseconds that never drift.

    Each duration is the difference of rounded running totals, so a thousand entries
    end exactly where their exact sum does.
    """
    lines = ["ffconcat version 1.0"]
    total = Fraction(0)
    for item in items:
        start = round(total * 1_000_000)
        total += item.duration
        lines += [f"file {_quote(item.path)}",
                  f"duration {_time_text(round(total * 1_000_000) - start)}"]
        if item.inpoint is not None:
            lines.append(f"inpoint {_time_text(_microseconds(item.inpoint))}")
        if item.outpoint is not None:
            lines.append(f"outpoint {_time_text(_microseconds(item.outpoint))}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class BlackSpec:
    """Everything black frames must share with the parts to join their stream."""

    width: int
    height: int
    pix_fmt: str
    sar: Fraction | None
    rate: Fraction
    time_base: Fraction
    profile: str  # x264's name
    level_idc: int
    delay: int  # frames from the first dts to the first pts, see X264_DELAYS
    # The id of its SPS and PPS: one the parts do not use, so all can share one avcC.
    parameter_set_id: int = 0


def black_argv(spec: BlackSpec, frames: int, output: Path, *, preset: str) -> list[str]:
    """ffmpeg arguments (no binary) encoding `frames` black frames as one closed GOP."""
    rate = spec.rate
    source = f"color=c=black:s={spec.width}x{spec.height}:r={rate.numerator}/{rate.denominator}"
    return ["-y", "-f", "lavfi", "-i", f"{source},{_pixels(spec)}",
            *_x264_args(spec, frames, output, preset=preset)]


def tail_argv(spec: BlackSpec, tail: Tail, output: Path, *, preset: str) -> list[str]:
    """ffmpeg arguments (no binary) re-encoding a part's tail to the parts' parameters.

    The input seek is exact: ffmpeg decodes from the keyframe at `tail.start` on.
    """
    rate = spec.rate
    return ["-y", "-ss", _time_text(_microseconds(tail.start)), "-i", file_arg(tail.path),
            "-map", "0:v:0", "-vf", f"fps={rate.numerator}/{rate.denominator},{_pixels(spec)}",
            *_x264_args(spec, tail.frames, output, preset=preset)]


def _pixels(spec: BlackSpec) -> str:
    sar = f",setsar={spec.sar.numerator}/{spec.sar.denominator}" if spec.sar else ""
    return f"format={spec.pix_fmt}{sar}"


def _level(level_idc: int) -> str:
    return f"{level_idc // 10}.{level_idc % 10}"


def _x264_args(spec: BlackSpec, frames: int, output: Path, *, preset: str) -> list[str]:
    """Encoder and muxer arguments for `frames` frames matching the parts' stream."""
    ids = f":sps-id={spec.parameter_set_id}" if spec.parameter_set_id else ""
    return ["-frames:v", str(frames), "-c:v", "libx264", "-preset", preset,
            "-profile:v", spec.profile, "-pix_fmt", spec.pix_fmt,
            # No lookahead: it halves the time for black and changes no header.
            "-x264-params", f"level={_level(spec.level_idc)}:keyint={frames}:scenecut=0:"
                            f"rc-lookahead=0:sync-lookahead=0:{X264_DELAYS[spec.delay]}{ids}",
            *timescale_args(spec.time_base), "-an", "-f", "mp4", file_arg(output)]


def copy_argv(concat: Path, output: Path, *, time_base: Fraction, in_band: bool, samples: int,
              timecode: Sequence[str], ending: Sequence[str] = ()) -> list[str]:
    """ffmpeg arguments (no binary) joining the entries listed in `concat` by stream copy.

    `samples`: at most how many packets the track holds; `timecode`: the options
    giving the track its start timecode (`_stamp.timecode_args`); `ending`:
    `ending_args` of the track, placing its end exactly.
    """
    return ["-y", "-f", "concat", "-safe", "0", "-auto_convert", "1" if in_band else "0",
            "-i", file_arg(concat), "-map", "0:v:0", "-c", "copy", *ending,
            "-tag:v", "avc3" if in_band else "avc1", *timescale_args(time_base),
            *timecode, "-moov_size", str(moov_bytes(samples)), "-f", "mp4", file_arg(output)]


def moov_bytes(samples: int) -> int:
    """Room to reserve for the index (moov) of an MP4 track of `samples` video samples.

    Reserved in front of the media, the index is written there at the end: the file
    plays before it has all arrived (as `+faststart` makes it) without rewriting
    the whole file a second time. Per sample at most: size 4, time 8, composition
    offset 8, sync 4, chunk offset 8 and dependency 1 bytes; 48 leaves room.
    """
    return 65536 + 48 * samples


def ending_args(end: Fraction, last: Fraction, rate: Fraction) -> list[str]:
    """`-bsf:v setts` making a video end at exactly `end` seconds from its first frame.

    The MP4 muxer reads a track's end from two packets, which B-frames make different:
    its edit list (what players show) ends where the last frame shown ends, its `mdhd`
    (where a demuxer ends the stream) where the last packet decoded ends. The last
    frame shown, the packet `last` seconds from the first (within half a frame at
    `rate`), lasts up to `end`. The last packet decoded (the one with no next) does
    too when its decode time is that late (it is, unless the stream stopped early),
    never past `end` when shown. Whole frames cannot end there: 12.5 s at 15 fps is
    187.5 frames. Empty when this ffmpeg's `setts` cannot set durations (the track
    then ends on its last frame's end).
    """
    if not setts_sets_duration():
        return []
    ticks = f"round({_seconds(end)}/TB)"
    late = _seconds(last - 1 / (2 * rate))
    # setts takes TS as the dts for pts too: both are restated. `\,` keeps an expression's
    # commas from splitting the bitstream filter list. PTS-STARTPTS counts from the first
    # frame shown (decoded first), DTS-STARTDTS from the first packet decoded.
    to_end = f"{ticks}-(PTS-STARTPTS)"
    decoded_last = f"eq(NEXT_DTS\\,NOPTS)*gte((DTS-STARTDTS)*TB\\,{late})"
    last_decoded = (f"if({decoded_last}\\,min({ticks}-(DTS-STARTDTS)\\,{to_end})"
                    "\\,DURATION)")
    duration = f"if(gte((PTS-STARTPTS)*TB\\,{late})\\,{to_end}\\,{last_decoded})"
    return ["-bsf:v", f"setts=pts=PTS:dts=DTS:duration='{duration}'"]


def _seconds(value: Fraction) -> str:
    return f"{float(value):.9f}"


# --- running it --------------------------------------------------------------------------


def copy_track(track: TrackPlan, parts: Mapping[str, Path], infos: Mapping[str, MediaInfo],
               output: Path, *, preset: str, ffmpeg: FfmpegSlots | None = None) -> TrackPlan:
    """Write `track` to `output` by stream copy; return it as placed at the parts' rate.

    `ffmpeg`: the `--jobs` cap, one of whose slots the caller holds (see `probe_parts`).
    Raises `CopyNotPossibleError` (the one-line reason) before writing anything when
    the parts cannot be copied.
    """
    # Named after the (hidden, per-render) output: a killed run's scratch is found by name.
    with tempfile.TemporaryDirectory(prefix=f"{output.name}.copy-", dir=output.parent) as name:
        scratch = Path(name)
        probes = probe_parts(track, parts, infos, scratch, ffmpeg)
        layout = copy_layout(track, probes)
        copied = [probe for probe in probes.values() if probe.packets]  # in track order
        in_band = [unit for probe in copied for unit in probe.in_band]
        spare_ids = spare_parameter_set_ids([probe.extradata for probe in copied], in_band)
        spec = _black_spec(layout, next(spare_ids, 0))
        black = _make_black(black_runs(layout.pieces), spec, preset)
        encoded = _encode_tails(layout.pieces, spec, spare_ids, scratch, preset)
        # Listed in track order, each once: the avcC written is the same every run.
        made = [*([black.path] if black else []),
                *(scratch / f"tail-{index}.mp4" for index in encoded)]
        records = list(dict.fromkeys([*(probe.extradata for probe in copied),
                                      *(read_avcc(path) for path in made)]))
        joined = [part_entry(scratch / f"tail-{index}.mp4", encoded[index], piece.frames,
                             spec.rate)[0] if isinstance(piece, Tail) else piece
                  for index, piece in enumerate(layout.pieces)]
        listing = scratch / "track.ffconcat"
        items = entries(joined, black)
        listing.write_text(concat_list(items), encoding="utf-8")
        samples = sum(len(probe.packets.pts) for probe in copied if probe.packets)
        # Segments coded with different parameter sets share one avcC when their ids
        # differ; only when they cannot does every packet go through Annex B and back.
        shared = shared_avcc(records, in_band) if len(records) > 1 else None
        ending = ending_args(layout.track.end, last_frame(items), spec.rate)
        run_ffmpeg(copy_argv(listing, output, time_base=spec.time_base,
                             in_band=shared is None and (len(records) != 1 or b"" in records),
                             samples=samples + layout.track.length,
                             timecode=timecode_args(layout.track), ending=ending))
        if shared is not None:
            replace_avcc(output, shared)
        align_timecode(output)
    _check_length(output, layout.track.end, spec.rate, exact=bool(ending))
    if not has_timecode(output):  # ffmpeg leaves it out, with a warning, below 0.5 fps
        raise CopyNotPossibleError(f"its frames come too seldom ({float(spec.rate):.3g} a "
                                   "second) for the copy to carry a timecode track")
    return layout.track


def _check_length(output: Path, end: Fraction, rate: Fraction, *, exact: bool) -> None:
    """Raise `CopyNotPossibleError` unless the video of `output` lasts `end` seconds: its
    samples (`mdhd`) to within a frame, and when `exact` (its end was set) to within a
    millisecond, as is its edit list, what players show.

    The concat demuxer ends the whole track, silently, at a part it cannot read to its
    end (a file cut short under an index that promises more); a variable frame rate
    near the end can leave the last packet decoded too early for its duration to reach
    `end` without its frame running past it; and a coarse time scale (1/25 s) cannot
    hold `end` at all. (Samples may run longer than `end` by the B-frame delay, which
    the edit list takes back.)
    """
    written = media_seconds(output)
    slack = Fraction(1, 1000) if exact else 1 / rate
    if written is None or written < end - slack:
        held = "none" if written is None else f"{float(written):.3f} s"
        raise CopyNotPossibleError(f"the copy's samples end at {held}, not {float(end):g} s: a"
                                   " part could not be read to its end, or its last frames'"
                                   " timestamps cannot end there")
    if not exact:  # its edit list ends on its last frame's end, not on `end`
        return
    shown = shown_seconds(output)
    if shown is None or abs(shown - end) > slack:
        held = "nothing" if shown is None else f"{float(shown):.3f} s"
        raise CopyNotPossibleError(f"the copy shows {held}, not {float(end):g} s: its time "
                                   "scale cannot end it there")


def _encode_tails(layout: Sequence[Piece], spec: BlackSpec, spare_ids: Iterator[int],
                  scratch: Path, preset: str) -> dict[int, PacketTrace]:
    """Re-encode every smart-cut tail to `scratch/tail-<index in layout>.mp4`.

    Tails of each length take the next of `spare_ids` for their parameter sets (the
    length shapes the SPS). Returns each file's packets by the tail's index in the layout.
    """
    encoded: dict[int, PacketTrace] = {}
    ids: dict[int, int] = {}  # by length in frames
    for index, tail in enumerate(layout):
        if not isinstance(tail, Tail):
            continue
        path = scratch / f"tail-{index}.mp4"
        if tail.frames not in ids:
            ids[tail.frames] = next(spare_ids, 0)
        tail_spec = dataclasses.replace(spec, parameter_set_id=ids[tail.frames])
        run_ffmpeg(tail_argv(tail_spec, tail, path, preset=preset))
        packets = read_packets(path)
        if lead(packets) != spec.delay / spec.rate or len(packets.pts) != tail.frames:
            raise CopyNotPossibleError(f"the re-encoded end of {tail.path.name} does not "
                                       "match the stream")
        encoded[index] = packets
    return encoded


def _black_spec(layout: CopyLayout, parameter_set_id: int) -> BlackSpec:
    video = layout.video
    return BlackSpec(width=video.width, height=video.height, pix_fmt=video.pix_fmt or "yuv420p",
                     sar=video.sar, rate=layout.track.rate, time_base=layout.time_base,
                     profile=X264_PROFILES[layout.headers.profile_idc],
                     level_idc=layout.headers.level_idc, delay=layout.delay,
                     parameter_set_id=parameter_set_id)


def _make_black(runs: Sequence[int], spec: BlackSpec, preset: str) -> BlackGop | None:
    if not runs:
        return None
    frames = gop_frames(runs, spec.rate)
    path = BLACK.file(spec, frames, preset)
    packets = _checked_black(path, spec)
    return BlackGop(path=path, frames=frames, rate=spec.rate, packets=packets,
                    cuts=clean_prefixes(packets, spec.rate),
                    repeats={count: BLACK.file(spec, frames, preset, count)
                             for count in gop_repeats(runs, frames)})


def _checked_black(path: Path, spec: BlackSpec) -> PacketTrace:
    """The packets of a black file, which must start with the B-frame delay chosen."""
    packets = _black_packets(path)
    if lead(packets) != spec.delay / spec.rate:
        raise CopyNotPossibleError(f"x264 black did not get a B-frame delay of {spec.delay} "
                                   "frames")
    return packets


@functools.cache
def _black_packets(path: Path) -> PacketTrace:
    return read_packets(path)


class BlackCache:
    """Black segments this process has encoded, by everything that shapes them.

    Tracks with one webcam's settings (across a whole batch) share their black:
    it is encoded once. The files live in a temporary directory removed when
    the process exits.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._files: dict[tuple[BlackSpec, int, str, int], Path] = {}
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    def file(self, spec: BlackSpec, frames: int, preset: str, times: int = 1) -> Path:
        """A file of a GOP of `frames` black frames to `spec`, `times` over (a power of
        two), made on first use: the GOP by x264, then each by joining two of half as
        many, packets copied."""
        key = (spec, frames, preset, times)
        # Made under the lock: two tracks needing the same black wait for one encode.
        with self._lock:
            if key in self._files:
                return self._files[key]
            if self._directory is None:
                self._directory = tempfile.TemporaryDirectory(prefix="assembler-black-")
            half = self.file(spec, frames, preset, times // 2) if times > 1 else None
            path = Path(self._directory.name) / f"black-{len(self._files)}-{frames}x{times}.mp4"
            if half is None:
                run_ffmpeg(black_argv(spec, frames, path, preset=preset))
            else:
                listing = path.with_suffix(".ffconcat")
                entry = Entry(path=half, duration=times // 2 * frames / spec.rate)
                listing.write_text(concat_list([entry, entry]), encoding="utf-8")
                run_ffmpeg(["-y", "-f", "concat", "-safe", "0", "-auto_convert", "0",
                            "-i", file_arg(listing), "-c", "copy",
                            *timescale_args(spec.time_base), "-f", "mp4", file_arg(path)])
            self._files[key] = path  # only once it is whole
        return path


BLACK = BlackCache()
