"""The stream-copy layout of a video track: pure data from plan and probed packets, no I/O.

`copy_layout` decides, from probed data alone, whether the parts can become one
H.264 stream (codec, profile, level, size, pixel format, SAR, time base, frame
rate, whether each part can be cut where its slot ends, and whether black with
some B-frame delay keeps decode timestamps rising at every join), and returns
the decision together with the layout it was made on: the track placed at the
parts' frame rate, piece by piece, and black's B-frame delay.

Pieces: an `Entry` per part copied (its first frame placed on its slot start,
`outpoint` at the first packet in decode order that is not shown inside its
slot), a `Tail` where a part's slot ends inside a reordered run of B-frames (the
part is copied up to its last keyframe before the cut and only the frames from
there to the cut are re-encoded: a smart cut), an int for a run of black frames.

Cuts: dropping packets is exact when the packets kept are a prefix in decode order
holding exactly the frames shown before the cut, which is always so without
B-frames. Black and tails are encoded with the same x264 settings, so at their
joins they behave alike: one B-frame delay fits both.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .errors import CopyNotPossibleError
from .media import PacketTrace, VideoStream, VideoSurvey
from .plan import TrackPlan, to_units

__all__ = [
    "AvcRecord",
    "BlackGop",
    "CopyLayout",
    "Entry",
    "H264Headers",
    "PartProbe",
    "Piece",
    "Tail",
    "black_delay",
    "black_runs",
    "clean_prefixes",
    "copy_layout",
    "cut_packets",
    "entries",
    "gop_frames",
    "gop_repeats",
    "keyframe_cut",
    "last_frame",
    "lead",
    "midway_blocker",
    "nal_units",
    "parameter_set_id",
    "parse_h264_headers",
    "part_entry",
    "pieces",
    "real_rate",
    "shared_avcc",
    "spare_parameter_set_ids",
    "split_black",
    "stream_blocker",
    "surveyed_h264",
]

# x264 profile names by the SPS's profile_idc: the black filler must not use coding
# tools the first segment's avcC says the stream lacks.
X264_PROFILES = {66: "baseline", 77: "main", 100: "high", 110: "high10", 122: "high422",
                 244: "high444"}
# B-frame delays (frames from the first packet's dts to the first frame's pts) x264
# can give black: 0 without B-frames, 1 with B-frames but no pyramid, 2 with a pyramid.
X264_DELAYS = {0: "bframes=0", 1: "bframes=1:b-pyramid=none", 2: "bframes=3:b-pyramid=normal"}
# x264 gives n frames a B-frame delay of at most n - 1: a smart-cut tail shorter than
# the longest delay black may take could not join it.
SHORTEST_TAIL = max(X264_DELAYS) + 1
# Black GOP length: x264 needs ~0.3 s for 2 s of 720p black; a long gap repeats the
# GOP (a 3 h gap is 5400 concat entries, opened in about a second).
GOP_SECONDS = 2
# The longest frame interval (seconds) a copied track's grid may have where it would
# move a slot: beyond it parts are a slide show, placed by encode at --fps instead.
SPARSE_FRAME = Fraction(1, 5)
_NAL_SPS, _NAL_PPS, _NAL_IDR = 7, 8, 5


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
    extradata: bytes = b""  # the codec's private data: for H.264 in MP4, its avcC record
    in_band: tuple[bytes, ...] = ()  # the SPS and PPS its packets carry, each once
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
    last: Fraction = Fraction(0)  # seconds from its start on the track to its last frame shown


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
    # Files of the GOP back to back, by how many times (powers of two, see `gop_repeats`):
    # the concat demuxer takes ~2 ms to open a file, so a long gap is a few of them.
    repeats: Mapping[int, Path] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyLayout:
    """A track that can be copied, as it will be: the decision and its layout in one."""

    track: TrackPlan  # placed at the parts' frame rate
    pieces: tuple[Piece, ...]
    delay: int  # B-frame delay of black and re-encoded tails, frames (a key of X264_DELAYS)
    # What black and tails must match: the parts' stream, headers and time base.
    video: VideoStream
    headers: H264Headers
    time_base: Fraction


def parse_h264_headers(units: Sequence[bytes]) -> H264Headers:
    """Profile, level and IDR-ness from an access unit's NAL units (SPS first bytes, types)."""
    sps = next((unit for unit in units if unit[0] & 0x1F == _NAL_SPS and len(unit) > 3), None)
    return H264Headers(profile_idc=sps[1] if sps else 0, level_idc=sps[3] if sps else 0,
                       idr=any(unit[0] & 0x1F == _NAL_IDR for unit in units))


def surveyed_h264(survey: VideoSurvey) -> tuple[H264Headers, int, tuple[bytes, ...]]:
    """The headers of a surveyed part's first access unit, its count of distinct SPS, and
    its distinct in-band SPS and PPS units."""
    length_size, header_units = _extradata_units(survey.extradata)
    first = header_units + nal_units(survey.first_packet, length_size)
    in_band = tuple(dict.fromkeys(nal_units(survey.in_band_sets, None)))
    sps = {unit for unit in (*header_units, *in_band) if unit[0] & 0x1F == _NAL_SPS}
    return parse_h264_headers(first), len(sps), in_band


def nal_units(data: bytes, length_size: int | None) -> list[bytes]:
    """The NAL units of `data`: each after a `length_size`-byte length, or Annex B (None)."""
    if length_size is None:
        # Start codes are 00 00 01 or 00 00 00 01: strip the zeros either way leaves.
        return [unit for part in data.split(b"\x00\x00\x01") if (unit := part.strip(b"\x00"))]
    units, position = [], 0
    while position + length_size < len(data):
        size = int.from_bytes(data[position:position + length_size], "big")
        position += length_size
        if size:
            units.append(data[position:position + size])
        position += size
    return units


def _extradata_units(extradata: bytes) -> tuple[int | None, list[bytes]]:
    """(NAL length size, parameter set units) of H.264 extradata: an avcC record, or
    Annex B units as a raw or MPEG-TS stream has (length size None)."""
    record = AvcRecord.parse(extradata)
    if record is None:
        return None, nal_units(extradata, None)
    return record.length_size, list(record.units)


@dataclass(frozen=True, slots=True, kw_only=True)
class AvcRecord:
    """An avcC record (AVCDecoderConfigurationRecord, ISO/IEC 14496-15 5.3.3.1) taken apart."""

    profile_idc: int
    compatibility: int  # the constraint_set flags byte
    level_idc: int
    length_size: int  # bytes of each NAL unit's length in the samples
    units: tuple[bytes, ...]  # its SPS, then its PPS
    extension: bytes  # what follows the PPS: the High profiles' chroma and bit depth fields

    @classmethod
    def parse(cls, extradata: bytes) -> AvcRecord | None:
        """The record `extradata` holds, or None when it is not an avcC record."""
        if len(extradata) < 7 or extradata[0] != 1:
            return None
        units: list[bytes] = []
        position = 5
        for count_bits in (0x1F, 0xFF):  # how many SPS (low 5 bits), then how many PPS
            if position >= len(extradata):
                break
            count = extradata[position] & count_bits
            position += 1
            for _ in range(count):  # each a 16-bit size, then the unit
                size = int.from_bytes(extradata[position:position + 2], "big")
                units.append(extradata[position + 2:position + 2 + size])
                position += 2 + size
        return cls(profile_idc=extradata[1], compatibility=extradata[2],
                   level_idc=extradata[3], length_size=(extradata[4] & 3) + 1,
                   units=tuple(unit for unit in units if unit), extension=extradata[position:])

    def to_bytes(self) -> bytes:
        sps = [unit for unit in self.units if unit[0] & 0x1F == _NAL_SPS]
        pps = [unit for unit in self.units if unit[0] & 0x1F == _NAL_PPS]
        record = bytearray([1, self.profile_idc, self.compatibility, self.level_idc,
                            0xFC | (self.length_size - 1), 0xE0 | len(sps)])
        for index, unit in enumerate(sps + pps):
            if index == len(sps):
                record.append(len(pps))
            record += len(unit).to_bytes(2, "big") + unit
        if not pps:
            record.append(0)
        return bytes(record + self.extension)


def parameter_set_id(unit: bytes) -> tuple[int, int] | None:
    """(NAL type, id) of an SPS or PPS unit, or None for any other unit or a short one.

    The id is the unit's first Exp-Golomb field after its fixed bytes:
    seq_parameter_set_id after profile, flags and level, pic_parameter_set_id
    first (ITU-T H.264 7.3.2.1.1, 7.3.2.2, 9.1).
    """
    kind = unit[0] & 0x1F if unit else 0
    if kind not in (_NAL_SPS, _NAL_PPS):
        return None
    # Emulation prevention bytes (00 00 03) are not part of the fields (7.4.1).
    payload = unit[1:12].replace(b"\x00\x00\x03", b"\x00\x00")
    bits = "".join(f"{byte:08b}" for byte in payload)[24 if kind == _NAL_SPS else 0:]
    zeros = len(bits) - len(bits.lstrip("0"))
    if 2 * zeros + 1 > len(bits):
        return None
    return kind, int(bits[zeros:2 * zeros + 1], 2) - 1


def spare_parameter_set_ids(records: Iterable[bytes], in_band: Iterable[bytes] = ()
                            ) -> Iterator[int]:
    """Ids from 1 up (x264's `sps-id`: 0 to 31) no SPS or PPS uses, of `records` (avcC)
    or of `in_band` (units the parts' packets carry, which replace a decoder's set of
    the same id).

    Black and each re-encoded tail take one, so their parameter sets can sit in one
    avcC record beside the parts' (`shared_avcc`).
    """
    units = [*(unit for record in records if (parsed := AvcRecord.parse(record))
               for unit in parsed.units), *in_band]
    used = {found[1] for unit in units if (found := parameter_set_id(unit))}
    return (number for number in range(1, 32) if number not in used)


def shared_avcc(records: Sequence[bytes], in_band: Iterable[bytes] = ()) -> bytes | None:
    """One avcC record holding the parameter sets of every record of `records` and the
    units of `in_band`, or None. The first record's header leads.

    A record may hold several SPS and PPS: a decoder loads them all and each slice
    names its PPS (and so its SPS) by id, so segments coded with different
    parameter sets play from one `avc1` sample entry without parameter sets in band.
    That needs every record to be avcC with one NAL length size, profile and
    extension, and no id naming two different units, in a record or in band (a
    part's own in-band set would replace another segment's). The header claims
    what holds for all: the flags they share and the highest level.
    """
    parsed = [record for raw in records if (record := AvcRecord.parse(raw)) is not None]
    if not parsed or len(parsed) != len(records):
        return None
    first = parsed[0]
    if any((record.length_size, record.profile_idc, record.extension)
           != (first.length_size, first.profile_idc, first.extension) for record in parsed):
        return None
    by_id: dict[tuple[int, int], bytes] = {}
    for unit in [*(unit for record in parsed for unit in record.units), *in_band]:
        found = parameter_set_id(unit)
        if found is None or by_id.setdefault(found, unit) != unit:
            return None
    if sum(kind == _NAL_SPS for kind, _ in by_id) > 0x1F:
        return None
    flags = functools.reduce(operator.and_, (record.compatibility for record in parsed))
    level = max(record.level_idc for record in parsed)
    return AvcRecord(profile_idc=first.profile_idc, compatibility=flags, level_idc=level,
                     length_size=first.length_size, units=tuple(by_id.values()),
                     extension=first.extension).to_bytes()


# --- the decision ------------------------------------------------------------------------


def copy_layout(track: TrackPlan, probes: Mapping[str, PartProbe]) -> CopyLayout:
    """`track` as stream copy will make it, placed at its parts' frame rate.

    Raises `CopyNotPossibleError`, its message the one-line reason, when the parts
    cannot be copied.
    """
    blocker = stream_blocker([probe.video for probe in probes.values()]) \
        or _packet_blocker(probes)
    if blocker:
        raise CopyNotPossibleError(blocker)
    rates = _rates(probes)
    blocker = _differ("frame rate", (f"{float(rate):g} fps" for rate in rates)) \
        or _bframe_time_base_blocker(probes)
    if blocker:
        raise CopyNotPossibleError(blocker)
    placed = track.at_rate(rates[0])
    blocker = _grid_blocker(track, placed) or midway_blocker(placed)
    if blocker:
        raise CopyNotPossibleError(blocker)
    layout = pieces(placed, probes)
    delay = black_delay(layout, placed.rate)
    if delay is None:
        raise CopyNotPossibleError(_delay_blocker(probes, placed.rate))
    first = next(iter(probes.values()))
    # Narrowing only: _packet_blocker has refused any part without headers or packets.
    assert first.headers is not None
    assert first.packets is not None
    return CopyLayout(track=placed, pieces=tuple(layout), delay=delay, video=first.video,
                      headers=first.headers, time_base=first.packets.time_base)


def _delay_blocker(probes: Mapping[str, PartProbe], rate: Fraction) -> str:
    """Why no black fits: the parts decode different numbers of frames ahead (parts
    encoded with and without B-frames), or more than x264 makes black do."""
    delays = [f"{round(lead(probe.packets) * rate)} frames" for probe in probes.values()
              if probe.packets]
    return ((_differ("B-frame delay", delays) or f"the parts' B-frame delay of {delays[0]}")
            + ": no black x264 makes keeps decode timestamps rising where they join")


def _differ(label: str, values: Iterable[object]) -> str | None:
    seen = list(dict.fromkeys(values))
    return f"parts differ in {label} ({' vs '.join(map(str, seen[:2]))})" if len(seen) > 1 else None


def _size(video: VideoStream) -> str:
    return f"{video.width}x{video.height}"


def stream_blocker(videos: Sequence[VideoStream]) -> str | None:
    """Why streams so described cannot be joined by copy, in one line; None when they can."""
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


def midway_blocker(track: TrackPlan) -> str | None:
    """Why a part of `track` would have to start midway, which copy cannot; None if none.

    Copy plays every part from its first frame. Checked at the plan's rate and
    again at the parts', where a slot's edges round anew.
    """
    for segment in track.segments:
        if segment.part_id is None or not segment.offset:
            continue
        if segment.start == 0:
            return f"part {segment.part_id} starts before the recording: cut at 0"
        return (f"part {segment.part_id} resumes after a part inside it: copy cannot start "
                "it midway")
    return None


def _part_blocker(part_id: str, probe: PartProbe) -> str | None:
    if probe.packets is None or probe.headers is None or not probe.packets.pts:
        return f"part {part_id} has no readable H.264 packets"
    if probe.packets.corrupt:
        # Copied, it breaks the picture there, or ends the whole track at it.
        return f"part {part_id} has a packet cut short: its file ends mid-write"
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
    return None


def _packet_blocker(probes: Mapping[str, PartProbe]) -> str | None:
    for part_id, probe in probes.items():
        blocker = _part_blocker(part_id, probe)
        if blocker:
            return blocker
    headers = [probe.headers for probe in probes.values() if probe.headers]
    return _differ("H.264 level", (_level(header.level_idc) for header in headers))


def _grid_blocker(track: TrackPlan, placed: TrackPlan) -> str | None:
    """Why the parts' frame grid would misplace a slot: an edge off by more than a frame.

    A frame at the parts' rate, but never more than `SPARSE_FRAME`: a sparse
    screenshare (a frame every few seconds) makes so coarse a grid that its first
    picture would show seconds early. `track` is the plan's, `placed` at the parts' rate.
    """
    allowed = min(1 / placed.rate, SPARSE_FRAME)
    for slot in placed.slots:
        for edge in (slot.start, slot.end):
            moved = to_units(edge, placed.rate) / placed.rate - edge
            if abs(moved) > allowed and edge < track.end:
                return (f"part {slot.part_id} has a frame every {float(1 / placed.rate):.3g} s: "
                        f"copied on that grid, its slot edge at {float(edge):g} s would fall at "
                        f"{float(edge + moved):g} s, {float(abs(moved)):.3f} s off (more than the "
                        f"{float(allowed):.3g} s allowed)")
    return None


def _bframe_time_base_blocker(probes: Mapping[str, PartProbe]) -> str | None:
    """Why B-frames cannot be joined: a time base too coarse for the frame times.

    Copy keeps each part's decode timestamps, and black's (x264's) must fall between
    them at every join: in Matroska's milliseconds a 30 fps frame is 33.3 ms, so
    reordered frames' timestamps are rounded and no black's B-frame delay matches.
    """
    for part_id, probe in probes.items():
        packets = probe.packets
        if packets is None or not lead(packets):
            continue
        frame = 1 / real_rate(packets)
        if (frame / packets.time_base).denominator != 1:
            return (f"part {part_id} has B-frames with timestamps in 1/"
                    f"{packets.time_base.denominator} s, which cannot hold its "
                    f"{float(1 / frame):g} fps frame times exactly (Matroska counts "
                    "milliseconds): joins would reorder frames")
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


# --- layout: from plan and probes to concat entries --------------------------------------


def cut_packets(packets: PacketTrace, frames: int, rate: Fraction) -> int | None:
    """How many packets to keep to show exactly the first `frames` frames at `rate`.

    A frame belongs to the first `frames` when its time from the first frame rounds
    to an index below `frames` (the plan's rounding rule). The packets kept must be a
    prefix in decode order; None when no prefix holds exactly those frames.
    """
    # The first pts at or past the end, in whole ticks: integer comparisons over every
    # packet of an hour-long part, not Fraction ones.
    end = math.ceil(min(packets.pts) + (frames - Fraction(1, 2)) / rate / packets.time_base)
    kept = sum(pts < end for pts in packets.pts)
    return kept if all(pts < end for pts in packets.pts[:kept]) else None


def keyframe_cut(packets: PacketTrace, frames: int, rate: Fraction) -> int:
    """The most frames, fewer than `frames`, a packet prefix shows exactly: up to a keyframe
    leaving at least `SHORTEST_TAIL` frames to re-encode.

    0 when no keyframe after the first comes early enough: the whole slot is re-encoded.
    """
    first = min(packets.pts)
    starts = sorted({to_units((pts - first) * packets.time_base, rate)
                     for pts, key in zip(packets.pts, packets.keyframe, strict=True) if key})
    for start in reversed(starts):
        if 0 < start <= frames - SHORTEST_TAIL and cut_packets(packets, start, rate) is not None:
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
            entry, shown = part_entry(probe.path, probe.packets, segment.length, track.rate)
            layout.append(entry)
            if shown < segment.length:  # media shorter than its slot: black follows
                layout.append(segment.length - shown)
            continue
        copied = keyframe_cut(probe.packets, segment.length, track.rate)
        if copied:
            layout.append(part_entry(probe.path, probe.packets, copied, track.rate)[0])
        layout.append(Tail(path=probe.path, start=copied / track.rate,
                           frames=segment.length - copied))
    return layout


def part_entry(path: Path, packets: PacketTrace, frames: int, rate: Fraction
               ) -> tuple[Entry, int]:
    """The entry showing a file's first `frames` frames at `rate`, and how many it shows.

    Fewer are shown when the media ends sooner. Raises `CopyNotPossibleError` when
    no packet prefix shows exactly those frames.
    """
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
    last_pts = max(packets.pts[:kept]) if kept else first
    return Entry(path=path, duration=shown / rate, inpoint=first * base, outpoint=outpoint,
                 lead=lead(packets), tail=shown / rate - (last_dts - first) * base,
                 last=(last_pts - first) * base), shown


def black_runs(layout: Iterable[Piece]) -> list[int]:
    """The lengths (frames) of the layout's runs of black, in order."""
    return [piece for piece in layout if isinstance(piece, int)]


def gop_repeats(runs: Iterable[int], frames: int) -> set[int]:
    """How many times over (powers of two from 2) the `frames`-frame GOP must be on file for
    `_black_entries` to join each run's whole GOPs from one file per binary digit."""
    return {1 << digit for run in runs for digit in range(1, (run // frames).bit_length())
            if run // frames >> digit & 1}


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
    result = []
    files = {1: black.path, **black.repeats}
    for count in sorted(files, reverse=True):  # the most GOPs a file holds first
        times, whole = divmod(whole, count)
        length = count * black.frames
        result += [Entry(path=files[count], duration=length / black.rate,
                         last=(length - 1) / black.rate)] * times
    for piece in split_black(rest, black.cuts):
        kept = cut_packets(black.packets, piece, black.rate)
        if kept is None:
            raise CopyNotPossibleError(f"black of {piece} frames cannot be cut from the GOP")
        result.append(Entry(path=black.path, duration=piece / black.rate,
                            outpoint=black.packets.dts[kept] * black.packets.time_base,
                            last=(piece - 1) / black.rate))
    return result


def last_frame(items: Sequence[Entry]) -> Fraction:
    """Seconds from the first entry's start to the last frame the entries show."""
    return sum((item.duration for item in items[:-1]), Fraction(0)) + items[-1].last
