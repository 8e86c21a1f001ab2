"""Stream-copy rendering of a video track: the parts' compressed frames, black only in gaps.

1. `copy_blocker` decides, from probed data alone, whether the parts can become one
   H.264 stream: codec, profile, level, size, pixel format, SAR, time base, frame
   rate, whether each part can be cut where its slot ends, and whether black with
   some B-frame delay keeps decode timestamps rising at every join.
2. One black GOP is encoded with x264 to the parts' parameters (once per process
   for each set of them). A gap is that GOP repeated, then prefixes of it that cut
   cleanly (the IDR frame alone always does). Every piece of black then has the
   same parameter sets and the same B-frame timing at its joins.
3. The concat demuxer joins parts and black with `-c copy`. Each entry's `duration`
   places the next one on its exact frame; `inpoint` puts a part's first frame on
   its slot start (a VFR part keeps its own timestamps after that); `outpoint` ends
   a part at the first packet, in decode order, that is not shown inside its slot.

Parameter sets: when every part and the black GOP share one avcC, packets are copied
untouched into an `avc1` track. Otherwise the concat demuxer's `h264_mp4toannexb`
puts each file's SPS/PPS in front of its IDR frames and the track is tagged `avc3`,
the sample entry that tells players parameter sets can change in the stream (an
`avc1` MP4 keeps only the first segment's, see FIELD-NOTES).

Cuts: dropping packets is exact when the packets kept are a prefix in decode order
holding exactly the frames shown before the cut, which is always so without
B-frames. Where a part's slot ends inside a reordered run of B-frames, the part is
copied up to its last keyframe before the cut and only the frames from there to the
cut are re-encoded (a smart cut). That tail is encoded with black's x264 settings,
so at its joins it behaves exactly like black: one B-frame delay fits both.
"""

from __future__ import annotations

import functools
import itertools
import statistics
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .errors import CopyNotPossibleError
from .media import (
    MediaInfo,
    PacketTrace,
    VideoStream,
    file_arg,
    first_access_unit,
    read_packets,
    run_ffmpeg,
    sequence_parameter_sets,
)
from .plan import TrackPlan, to_units

__all__ = [
    "BlackGop",
    "Entry",
    "H264Headers",
    "PartProbe",
    "Piece",
    "Tail",
    "black_argv",
    "clean_prefixes",
    "concat_list",
    "copy_argv",
    "copy_blocker",
    "copy_track",
    "cut_packets",
    "entries",
    "keyframe_cut",
    "parse_h264_headers",
    "pieces",
    "split_black",
]

# x264 profile names by the SPS's profile_idc: the black filler must not use coding
# tools the first segment's avcC says the stream lacks.
X264_PROFILES = {66: "baseline", 77: "main", 100: "high", 110: "high10", 122: "high422",
                 244: "high444"}
# B-frame delays (frames from the first packet's dts to the first frame's pts) x264
# can give black: 0 without B-frames, 1 with B-frames but no pyramid, 2 with a pyramid.
X264_DELAYS = {0: "bframes=0", 1: "bframes=1:b-pyramid=none", 2: "bframes=3:b-pyramid=normal"}
# Black GOP length: x264 needs ~0.3 s for 2 s of 720p black; a long gap repeats the
# GOP (a 3 h gap is 5400 concat entries, opened in about a second).
GOP_SECONDS = 2
_NAL_SPS, _NAL_IDR = 7, 5


@dataclass(frozen=True, slots=True, kw_only=True)
class H264Headers:
    """What the first access unit of a part says about its stream."""

    profile_idc: int
    level_idc: int
    idr: bool  # the access unit holds an IDR slice: the part decodes from its first packet


@dataclass(frozen=True, slots=True, kw_only=True)
class PartProbe:
    """A part as the copy path sees it; packets and headers only for H.264 parts."""

    path: Path  # the file to copy from: the part, or a video-only extract of it
    video: VideoStream
    packets: PacketTrace | None = None
    headers: H264Headers | None = None
    parameter_sets: int = 1  # distinct SPS in the stream: more means it changes midway
    # The container's start disagrees with the first frame's time: an edit list, as a
    # cut made by stream copy leaves, moves the part in a way the concat demuxer does not.
    start_moved: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One file of a concat list: what of it plays and for how long on the track."""

    path: Path
    duration: Fraction  # seconds on the track; the next entry starts after exactly this
    inpoint: Fraction | None = None  # seconds in the file: its first frame, placed at the start
    outpoint: Fraction | None = None  # seconds in the file: the dts of the first packet left out
    lead: Fraction = Fraction(0)  # seconds its first dts comes before its start on the track
    tail: Fraction = Fraction(0)  # seconds from its last dts kept to its end on the track


@dataclass(frozen=True, slots=True, kw_only=True)
class Tail:
    """The end of a part that must be re-encoded to cut it on its slot's last frame."""

    path: Path
    start: Fraction  # seconds from the part's first frame: a keyframe, where copying stops
    frames: int


Piece = Entry | Tail | int  # a part (copied), a part's re-encoded tail, a run of black


@dataclass(frozen=True, slots=True, kw_only=True)
class BlackGop:
    """The track's black GOP on disk, and the prefix lengths that cut it cleanly."""

    path: Path
    frames: int
    rate: Fraction
    packets: PacketTrace
    cuts: tuple[int, ...]  # frame counts, ascending, whose packet prefix shows just them


# --- probing ---------------------------------------------------------------------------


def parse_h264_headers(access_unit: bytes) -> H264Headers:
    """Profile, level and IDR-ness from an Annex B access unit (SPS first bytes, NAL types)."""
    units = [unit for unit in access_unit.split(b"\x00\x00\x01") if unit]
    sps = next((unit for unit in units if unit[0] & 0x1F == _NAL_SPS and len(unit) > 3), None)
    return H264Headers(profile_idc=sps[1] if sps else 0, level_idc=sps[3] if sps else 0,
                       idr=any(unit[0] & 0x1F == _NAL_IDR for unit in units))


def probe_parts(track: TrackPlan, parts: Mapping[str, Path], infos: Mapping[str, MediaInfo],
                scratch: Path) -> dict[str, PartProbe]:
    """Probes for `copy_blocker`; packets and headers are read only when streams allow copy."""
    probes = {part_id: PartProbe(path=parts[part_id], video=_video(infos[part_id], part_id))
              for part_id in dict.fromkeys(track.parts)}
    if _stream_blocker(probes) is not None:
        return probes
    return {part_id: _deep_probe(probe, infos[part_id], scratch / f"part-{number}.mp4")
            for number, (part_id, probe) in enumerate(probes.items())}


def _video(info: MediaInfo, part_id: str) -> VideoStream:
    if info.video is None:
        raise CopyNotPossibleError(f"part {part_id} has no video stream")
    return info.video


def _deep_probe(probe: PartProbe, info: MediaInfo, extract: Path) -> PartProbe:
    path, stream = probe.path, probe.video.index
    if info.streams > 1:
        # The concat demuxer pairs streams by index and ends a file at `outpoint` on any
        # stream's packet: other streams would land in the video track or cut it short.
        path = extract
        run_ffmpeg(["-y", "-i", file_arg(probe.path), "-map", f"0:{stream}", "-c", "copy",
                    *_timescale(probe.video.time_base), "-f", "mp4", file_arg(path)])
        stream = 0
    packets = read_packets(path, stream)
    first_frame = float(min(packets.pts) * packets.time_base) if packets.pts else info.start
    return PartProbe(path=path, video=probe.video, packets=packets,
                     headers=parse_h264_headers(first_access_unit(path, stream)),
                     parameter_sets=len(sequence_parameter_sets(path, stream)),
                     start_moved=path == probe.path and abs(first_frame - info.start) > 1e-3)


def _timescale(time_base: Fraction | None) -> list[str]:
    return ["-video_track_timescale", str(time_base.denominator)] if time_base else []


# --- the decision ------------------------------------------------------------------------


def copy_blocker(track: TrackPlan, probes: Mapping[str, PartProbe]) -> str | None:
    """Why `track` cannot be made by stream copy, in one line; None when it can."""
    return _stream_blocker(probes) or _packet_blocker(track, probes)


def _differ(label: str, values: Iterable[object]) -> str | None:
    seen = list(dict.fromkeys(values))
    return f"parts differ in {label} ({' vs '.join(map(str, seen[:2]))})" if len(seen) > 1 else None


def _size(video: VideoStream) -> str:
    return f"{video.width}x{video.height}"


def _stream_blocker(probes: Mapping[str, PartProbe]) -> str | None:
    videos = [probe.video for probe in probes.values()]
    codecs = {video.codec for video in videos}
    if "vp8" in codecs:
        return "VP8 cannot be stored in MP4"
    return (_differ("codec", (video.codec for video in videos))
            or (None if codecs == {"h264"} else
                f"{videos[0].codec} parts cannot be copied: only H.264 can")
            or _differ("H.264 profile", (video.profile for video in videos))
            or _differ("frame size", map(_size, videos))
            or _differ("pixel format", (video.pix_fmt for video in videos))
            or _differ("sample aspect ratio", (video.sar for video in videos))
            or _differ("time base", (video.time_base for video in videos)))


def _packet_blocker(track: TrackPlan, probes: Mapping[str, PartProbe]) -> str | None:
    for part_id, probe in probes.items():
        if probe.packets is None or probe.headers is None or not probe.packets.pts:
            return f"part {part_id} has no readable H.264 packets"
        if not (probe.headers.idr and probe.packets.keyframe[0]):
            return f"part {part_id} does not start with an IDR frame"
        if probe.start_moved:
            return f"part {part_id} has an edit list that moves its start"
        if min(probe.packets.pts) < probe.packets.pts[0]:
            # Leading frames of a part cut by stream copy: they reference pictures from
            # before its first keyframe, which are gone; copied, they decode as errors.
            return f"part {part_id} has frames shown before its first keyframe"
        if probe.video.rotation:
            # The concat demuxer keeps no display matrix: copied, it would show sideways.
            return f"part {part_id} is turned {probe.video.rotation} degrees for display"
        if probe.parameter_sets > 1:
            # Copied, the stream would change size or format mid-track: many players can't.
            return f"part {part_id} changes its H.264 parameters (size or format) midway"
        if probe.headers.profile_idc not in X264_PROFILES:
            return f"part {part_id} has H.264 profile_idc {probe.headers.profile_idc}, " \
                   "which x264 cannot match for black"
    headers = [probe.headers for probe in probes.values() if probe.headers]
    blocker = (_differ("H.264 level", (_level(header.level_idc) for header in headers))
               or _differ("frame rate", (f"{float(rate):g} fps" for rate in _rates(probes))))
    if blocker:
        return blocker
    placed = track.at_rate(_rates(probes)[0])
    if black_delay(pieces(placed, probes), placed.rate) is None:
        return ("no black fits the parts' B-frame delays: decode timestamps would go "
                "backwards at a join")
    return None


def _level(level_idc: int) -> str:
    return f"{level_idc // 10}.{level_idc % 10}"


def _rates(probes: Mapping[str, PartProbe]) -> list[Fraction]:
    return [real_rate(probe.packets) for probe in probes.values() if probe.packets]


def real_rate(packets: PacketTrace) -> Fraction:
    """The frame rate the timestamps show, snapped to a whole or NTSC rate when close.

    The frame interval is the mean of the intervals near the median: the median
    ignores a VFR part's dropped frames, the mean recovers 1001-based rates from
    timestamps rounded to a coarse time base.
    """
    shown = sorted(packets.pts)
    steps = [later - earlier for earlier, later in itertools.pairwise(shown) if later > earlier]
    if not steps:
        return Fraction(30)
    typical = statistics.median_low(steps)
    regular = [step for step in steps if abs(step - typical) * 10 <= typical]
    rate = len(regular) / (sum(regular) * packets.time_base)
    candidates = (Fraction(round(rate)), Fraction(round(rate * 1001 / 1000) * 1000, 1001))
    nearest = min(candidates, key=lambda candidate: abs(rate - candidate))
    return nearest if nearest and abs(rate - nearest) <= nearest / 200 else \
        rate.limit_denominator(1001)


def lead(packets: PacketTrace) -> Fraction:
    """Seconds from the first packet's dts to the first frame's pts (B-frame delay)."""
    return (min(packets.pts) - packets.dts[0]) * packets.time_base


def black_delay(layout: Sequence[Piece], rate: Fraction) -> int | None:
    """The least B-frame delay for black (frames) that keeps dts rising at every join.

    At a join the next piece's first dts (its start minus its `lead`) must come after
    the previous piece's last dts (its end minus its `tail`). Anything x264 encodes
    with delay d, black or a re-encoded tail, has lead d and tail d + 1 frames: its
    dts are its frame indices minus d. None when no delay in `X264_DELAYS` fits.
    """
    for frames in X264_DELAYS:
        black = Entry(path=Path(), duration=Fraction(0), lead=frames / rate,
                      tail=(frames + 1) / rate)
        placed = [piece if isinstance(piece, Entry) else black for piece in layout]
        if all(later.lead < earlier.tail for earlier, later in itertools.pairwise(placed)):
            return frames
    return None


def cut_packets(packets: PacketTrace, frames: int, rate: Fraction) -> int | None:
    """How many packets to keep to show exactly the first `frames` frames at `rate`.

    A frame belongs to the first `frames` when its time from the first frame rounds
    to an index below `frames` (the plan's rounding rule). The packets kept must be a
    prefix in decode order; None when no prefix holds exactly those frames.
    """
    end = min(packets.pts) + (frames - Fraction(1, 2)) / rate / packets.time_base
    kept = sum(pts < end for pts in packets.pts)
    return kept if all(pts < end for pts in packets.pts[:kept]) else None


# --- layout: pure, from plan and probes to concat entries --------------------------------


def keyframe_cut(packets: PacketTrace, frames: int, rate: Fraction) -> int:
    """The most frames, at most `frames`, a packet prefix shows exactly: up to a keyframe.

    0 when no keyframe after the first comes early enough: the whole slot is re-encoded.
    """
    first = min(packets.pts)
    starts = sorted({to_units((pts - first) * packets.time_base, rate)
                     for pts, key in zip(packets.pts, packets.keyframe, strict=True) if key})
    for start in reversed(starts):
        if 0 < start <= frames and cut_packets(packets, start, rate) is not None:
            return start
    return 0


def pieces(track: TrackPlan, probes: Mapping[str, PartProbe]) -> list[Piece]:
    """The track in order: an `Entry` per part, its `Tail` where it must be smart-cut,
    an int for each run of black frames.

    `track` must be at the parts' frame rate and its parts' streams must allow copy.
    """
    layout: list[Piece] = []
    for segment in track.segments:
        probe = probes.get(segment.part_id or "")
        if probe is None or probe.packets is None:
            layout.append(segment.length)
            continue
        if cut_packets(probe.packets, segment.length, track.rate) is not None:
            entry, shown = _part_entry(probe.path, probe.packets, segment.length, track.rate)
            layout.append(entry)
            if shown < segment.length:  # media shorter than its slot: black follows
                layout.append(segment.length - shown)
            continue
        copied = keyframe_cut(probe.packets, segment.length, track.rate)
        if copied:
            layout.append(_part_entry(probe.path, probe.packets, copied, track.rate)[0])
        layout.append(Tail(path=probe.path, start=copied / track.rate,
                           frames=segment.length - copied))
    return layout


def _part_entry(path: Path, packets: PacketTrace, frames: int, rate: Fraction
                ) -> tuple[Entry, int]:
    kept = cut_packets(packets, frames, rate)
    if kept is None:
        raise CopyNotPossibleError(f"{path.name} cannot be cut after {frames} frames")
    base = packets.time_base
    first = min(packets.pts)
    outpoint = packets.dts[kept] * base if kept < len(packets.dts) else None
    last_dts = packets.dts[kept - 1] if kept else packets.dts[0]
    shown = frames
    if outpoint is None:
        # All the media plays: it covers its frames up to its last frame's end, and at
        # least up to just after its last frame, so that frame is on screen.
        end = max(pts + length for pts, length in zip(packets.pts, packets.duration, strict=True))
        last = to_units((max(packets.pts) - first) * base, rate)
        shown = min(frames, max(last + 1, to_units((end - first) * base, rate)))
    return Entry(path=path, duration=shown / rate, inpoint=first * base, outpoint=outpoint,
                 lead=lead(packets), tail=shown / rate - (last_dts - first) * base), shown


def black_runs(layout: Iterable[Piece]) -> list[int]:
    return [piece for piece in layout if isinstance(piece, int)]


def gop_frames(runs: Sequence[int], rate: Fraction) -> int:
    """Frames in the black GOP: `GOP_SECONDS`, or the longest run when all are shorter."""
    return min(to_units(Fraction(GOP_SECONDS), rate), max(runs))


def clean_prefixes(packets: PacketTrace, rate: Fraction) -> tuple[int, ...]:
    """Frame counts below the whole whose packets form a decode-order prefix."""
    return tuple(count for count in range(1, len(packets.pts))
                 if cut_packets(packets, count, rate) is not None)


def split_black(frames: int, cuts: Sequence[int]) -> list[int]:
    """Fewest clean prefix lengths adding up to `frames` (1 is always among `cuts`).

    x264 gives no B-frame delay to a GOP of a frame or two, so a short remainder
    encoded on its own would break the decode timestamps at its joins; several
    prefixes of the one GOP never do.
    """
    fewest: list[list[int] | None] = [[]] + [None] * frames
    for total in range(1, frames + 1):
        options = [[*previous, cut] for cut in cuts if cut <= total
                   if (previous := fewest[total - cut]) is not None]
        fewest[total] = min(options, key=len, default=None)
    best = fewest[frames]
    if best is None:
        raise CopyNotPossibleError(f"black of {frames} frames cannot be cut from the GOP")
    return sorted(best, reverse=True)


def entries(layout: Iterable[Entry | int], black: BlackGop | None) -> list[Entry]:
    """The concat entries of a layout (tails already encoded): black runs as whole GOPs
    plus clean prefixes of one."""
    result: list[Entry] = []
    for piece in layout:
        if isinstance(piece, Entry):
            result.append(piece)
        elif black is not None:
            result.extend(_black_entries(piece, black))
    return result


def _black_entries(frames: int, black: BlackGop) -> list[Entry]:
    whole, rest = divmod(frames, black.frames)
    result = [Entry(path=black.path, duration=black.frames / black.rate)] * whole
    for piece in split_black(rest, black.cuts):
        kept = cut_packets(black.packets, piece, black.rate)
        assert kept is not None, "split_black uses clean prefixes only"
        result.append(Entry(path=black.path, duration=piece / black.rate,
                            outpoint=black.packets.dts[kept] * black.packets.time_base))
    return result


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


def _x264_args(spec: BlackSpec, frames: int, output: Path, *, preset: str) -> list[str]:
    """Encoder and muxer arguments for `frames` frames matching the parts' stream."""
    return ["-frames:v", str(frames), "-c:v", "libx264", "-preset", preset,
            "-profile:v", spec.profile, "-pix_fmt", spec.pix_fmt,
            # No lookahead: it halves the time for black and changes no header.
            "-x264-params", f"level={_level(spec.level_idc)}:keyint={frames}:scenecut=0:"
                            f"rc-lookahead=0:sync-lookahead=0:{X264_DELAYS[spec.delay]}",
            *_timescale(spec.time_base), "-an", "-f", "mp4", file_arg(output)]


def copy_argv(concat: Path, output: Path, *, time_base: Fraction, in_band: bool) -> list[str]:
    """ffmpeg arguments (no binary) joining the entries listed in `concat` by stream copy."""
    return ["-y", "-f", "concat", "-safe", "0", "-auto_convert", "1" if in_band else "0",
            "-i", file_arg(concat), "-map", "0:v:0", "-c", "copy",
            "-tag:v", "avc3" if in_band else "avc1", *_timescale(time_base),
            "-movflags", "+faststart", "-f", "mp4", file_arg(output)]


# --- running it --------------------------------------------------------------------------


def copy_track(track: TrackPlan, parts: Mapping[str, Path], infos: Mapping[str, MediaInfo],
               output: Path, *, preset: str) -> TrackPlan:
    """Write `track` to `output` by stream copy; return it as placed at the parts' rate.

    Raises `CopyNotPossibleError` (the one-line reason) before writing anything when
    the parts cannot be copied.
    """
    # Named after the (hidden, per-render) output: a killed run's scratch is found by name.
    with tempfile.TemporaryDirectory(prefix=f"{output.name}.copy-", dir=output.parent) as name:
        scratch = Path(name)
        probes = probe_parts(track, parts, infos, scratch)
        blocker = copy_blocker(track, probes)
        if blocker is not None:
            raise CopyNotPossibleError(blocker)
        placed = track.at_rate(_rates(probes)[0])
        layout = pieces(placed, probes)
        delay = black_delay(layout, placed.rate)
        assert delay is not None, "copy_blocker checks that some delay fits"
        spec = _black_spec(placed.rate, delay, probes)
        black = _make_black(black_runs(layout), spec, preset)
        extradata = {probe.packets.extradata for probe in probes.values() if probe.packets}
        if black is not None:
            extradata.add(black.packets.extradata)
        encoded = _encode_tails(layout, spec, scratch, preset)
        extradata |= {packets.extradata for packets in encoded.values()}
        joined = [_part_entry(scratch / f"tail-{index}.mp4", encoded[index], piece.frames,
                              spec.rate)[0] if isinstance(piece, Tail) else piece
                  for index, piece in enumerate(layout)]
        listing = scratch / "track.ffconcat"
        listing.write_text(concat_list(entries(joined, black)), encoding="utf-8")
        run_ffmpeg(copy_argv(listing, output, time_base=_time_base(probes),
                             in_band=len(extradata) != 1 or None in extradata))
    return placed


def _encode_tails(layout: Sequence[Piece], spec: BlackSpec, scratch: Path, preset: str
                  ) -> dict[int, PacketTrace]:
    """Re-encode every smart-cut tail to `scratch/tail-<index in layout>.mp4`.

    Returns each file's packets by the tail's index in the layout.
    """
    encoded: dict[int, PacketTrace] = {}
    for index, tail in enumerate(layout):
        if not isinstance(tail, Tail):
            continue
        path = scratch / f"tail-{index}.mp4"
        run_ffmpeg(tail_argv(spec, tail, path, preset=preset))
        packets = read_packets(path)
        if lead(packets) != spec.delay / spec.rate or len(packets.pts) != tail.frames:
            raise CopyNotPossibleError(f"the re-encoded end of {tail.path.name} does not "
                                       "match the stream")
        encoded[index] = packets
    return encoded


def _time_base(probes: Mapping[str, PartProbe]) -> Fraction:
    packets = next(probe.packets for probe in probes.values() if probe.packets)
    return packets.time_base


def _black_spec(rate: Fraction, delay: int, probes: Mapping[str, PartProbe]) -> BlackSpec:
    probe = next(iter(probes.values()))
    assert probe.headers is not None
    assert probe.packets is not None
    video = probe.video
    return BlackSpec(width=video.width, height=video.height, pix_fmt=video.pix_fmt or "yuv420p",
                     sar=video.sar, rate=rate, time_base=probe.packets.time_base,
                     profile=X264_PROFILES[probe.headers.profile_idc],
                     level_idc=probe.headers.level_idc, delay=delay)


def _make_black(runs: Sequence[int], spec: BlackSpec, preset: str) -> BlackGop | None:
    if not runs:
        return None
    frames = gop_frames(runs, spec.rate)
    path = BLACK.file(spec, frames, preset)
    packets = _checked_black(path, spec)
    return BlackGop(path=path, frames=frames, rate=spec.rate, packets=packets,
                    cuts=clean_prefixes(packets, spec.rate))


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
        self._lock = threading.Lock()
        self._files: dict[tuple[BlackSpec, int, str], Path] = {}
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    def file(self, spec: BlackSpec, frames: int, preset: str) -> Path:
        """The file of `frames` black frames to `spec`, encoded on first use."""
        key = (spec, frames, preset)
        with self._lock:
            if key in self._files:
                return self._files[key]
            if self._directory is None:
                self._directory = tempfile.TemporaryDirectory(prefix="assembler-black-")
            path = Path(self._directory.name) / f"black-{len(self._files)}-{frames}.mp4"
            # Encoded under the lock: two tracks needing the same black wait for one encode.
            run_ffmpeg(black_argv(spec, frames, path, preset=preset))
            self._files[key] = path  # only once it is whole
        return path


BLACK = BlackCache()
