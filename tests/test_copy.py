"""Stream-copy video: the builders as data, then real ffmpeg on small generated parts.

End-to-end tests measure the output by decoding it: each part's colour in its slot
within one frame, black in the gaps, the exact length, no decode error, and the
part's own compressed packets in the output (copied, not re-encoded).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import assembler._copy as copy_module
from assembler._copy import BlackSpec, black_argv, concat_list, copy_argv
from assembler._copy_layout import (
    AvcRecord,
    BlackGop,
    Entry,
    H264Headers,
    PartProbe,
    Tail,
    black_delay,
    clean_prefixes,
    copy_layout,
    cut_packets,
    entries,
    gop_repeats,
    keyframe_cut,
    nal_units,
    parameter_set_id,
    parse_h264_headers,
    pieces,
    real_rate,
    shared_avcc,
    spare_parameter_set_ids,
    split_black,
    surveyed_h264,
)
from assembler._copy_probe import probe_parts
from assembler._mp4 import align_timecode, has_timecode, media_seconds, read_avcc, replace_avcc
from assembler.errors import CopyNotPossibleError
from assembler.ffmpeg_process import FfmpegSlots, file_arg
from assembler.media import (
    MediaInfo,
    PacketTrace,
    VideoStream,
    VideoSurvey,
    probe,
    probe_many,
    read_packets,
    survey_video,
)
from assembler.plan import Slot, TrackPlan, place, resolve_overlaps, to_units
from assembler.render import RenderedTrack, RenderSettings, render_track
from tests.support.media import (
    colour_spans,
    decode_errors,
    decode_frames,
    ffmpeg,
    frame_times,
    is_black,
    make_colour_video,
    make_tone,
    mp4_durations,
    rgb,
    top_level_boxes,
    track_spans,
)

TB = Fraction(1, 15360)
TICK = 512  # one frame at 30 fps in 1/15360


def trace(pts: list[int], *, dts: list[int] | None = None, extradata: str = "44 bytes, crc 0x1",
          keyframes: tuple[int, ...] = (0,)) -> PacketTrace:
    """Packets in decode order with the given frame indexes (times TICK) as pts.

    `keyframes`: indexes, in decode order, of the keyframe packets.
    """
    decode = dts if dts is not None else sorted(pts)
    return PacketTrace(time_base=TB, extradata=extradata,
                       dts=tuple(index * TICK for index in decode),
                       pts=tuple(index * TICK for index in pts),
                       duration=(TICK,) * len(pts),
                       keyframe=tuple(index in keyframes for index in range(len(pts))))


# I0 P3 B1 B2 P6 B4 B5: decode order of a B-frame GOP; dts run two frames early.
B_FRAMES = [0, 3, 1, 2, 6, 4, 5]
B_DTS = [index - 2 for index in range(len(B_FRAMES))]


def video(**changes: object) -> VideoStream:
    fields: dict[str, object] = {
        "codec": "h264", "profile": "Constrained Baseline", "pix_fmt": "yuv420p",
        "width": 320, "height": 240, "sar": Fraction(1), "fps": Fraction(30), "time_base": TB}
    fields.update(changes)
    return VideoStream(**fields)  # type: ignore[arg-type]


def part_probe(frames: int = 60, *, level: int = 30, packets: PacketTrace | None = None,
               **changes: object) -> PartProbe:
    return PartProbe(path=Path(f"/parts/{frames}.mp4"), video=video(**changes),
                     packets=packets or trace(list(range(frames))),
                     headers=H264Headers(profile_idc=66, level_idc=level, idr=True))


def track(slots: list[tuple[str, Fraction, Fraction]], seconds: Fraction,
          rate: Fraction = Fraction(30)) -> TrackPlan:
    placed = tuple(Slot(part_id=part_id, start=start, end=end) for part_id, start, end in slots)
    length = to_units(seconds, rate)
    return TrackPlan(participant_id=1, kind="webcam", path="p/webcam.mp4", rate=rate,
                     length=length, slots=placed, segments=place(placed, length, rate),
                     timeline=seconds)


# --- pure: list text and argv --------------------------------------------------------------

PART = Path("/parts/a.mp4")
GOP = Path("/tmp/.copy-x/black-30.mp4")


@pytest.mark.parametrize(("items", "expected"), [
    ([Entry(path=GOP, duration=Fraction(1)),
      Entry(path=PART, duration=Fraction(2), inpoint=Fraction(0))],
     ["file 'file:/tmp/.copy-x/black-30.mp4'", "duration 1.000000",
      "file 'file:/parts/a.mp4'", "duration 2.000000", "inpoint 0.000000"]),
    ([Entry(path=PART, duration=Fraction(1), inpoint=Fraction(0)),
      Entry(path=GOP, duration=Fraction(1, 3), outpoint=Fraction(1, 3)),
      Entry(path=PART, duration=Fraction(1), inpoint=Fraction(1, 15360))],
     ["file 'file:/parts/a.mp4'", "duration 1.000000", "inpoint 0.000000",
      "file 'file:/tmp/.copy-x/black-30.mp4'", "duration 0.333333", "outpoint 0.333333",
      "file 'file:/parts/a.mp4'", "duration 1.000000", "inpoint 0.000065"]),
    ([Entry(path=PART, duration=Fraction(2), inpoint=Fraction(0), outpoint=Fraction(59, 30)),
      Entry(path=GOP, duration=Fraction(2, 3), outpoint=Fraction(2, 3))],
     ["file 'file:/parts/a.mp4'", "duration 2.000000", "inpoint 0.000000",
      "outpoint 1.966666", "file 'file:/tmp/.copy-x/black-30.mp4'", "duration 0.666667",
      "outpoint 0.666666"]),
    ([Entry(path=GOP, duration=Fraction(1, 3))] * 3,
     [line for micros in ("333333", "333334", "333333")
      for line in ("file 'file:/tmp/.copy-x/black-30.mp4'", f"duration 0.{micros}")]),
    ([Entry(path=Path("/parts/it's -odd:1.mp4"), duration=Fraction(1), inpoint=Fraction(-1, 3))],
     ["file 'file:/parts/it'\\''s -odd:1.mp4'", "duration 1.000000", "inpoint -0.333334"]),
], ids=["gap-at-start", "gap-between", "gap-at-end-part-cut", "durations-never-drift",
        "quoted-path-negative-inpoint"])
def test_concat_list_text(items: list[Entry], expected: list[str]) -> None:
    assert concat_list(items) == "\n".join(["ffconcat version 1.0", *expected]) + "\n"


def black_gop(packets: PacketTrace | None = None) -> BlackGop:
    packets = packets or trace(list(range(30)))
    return BlackGop(path=GOP, frames=len(packets.pts), rate=Fraction(30), packets=packets,
                    cuts=clean_prefixes(packets, Fraction(30)))


# An x264-like black GOP of 13 frames, B-frame pyramid: I0 P4 B2 b1 b3 P8 B6 b5 b7 P12 ...
PYRAMID = [0, 4, 2, 1, 3, 8, 6, 5, 7, 12, 10, 9, 11]
PYRAMID_GOP = trace(PYRAMID, dts=[index - 2 for index in range(len(PYRAMID))])


@pytest.mark.parametrize(("run", "gop", "expected"), [
    (0, None, []),
    (30, None, [(Fraction(1), None)]),
    (10, None, [(Fraction(1, 3), Fraction(10, 30))]),
    (65, None, [(Fraction(1), None)] * 2 + [(Fraction(1, 6), Fraction(5, 30))]),
    (13, PYRAMID_GOP, [(Fraction(13, 30), None)]),
    (9, PYRAMID_GOP, [(Fraction(9, 30), Fraction(7, 30))]),
    (7, PYRAMID_GOP, [(Fraction(5, 30), Fraction(3, 30)), (Fraction(1, 30), Fraction(-1, 30)),
                      (Fraction(1, 30), Fraction(-1, 30))]),
    (20, PYRAMID_GOP, [(Fraction(13, 30), None), (Fraction(5, 30), Fraction(3, 30)),
                       (Fraction(1, 30), Fraction(-1, 30)), (Fraction(1, 30), Fraction(-1, 30))]),
], ids=["zero-frames", "one-whole-gop", "gop-prefix", "gops-and-prefix", "b-frames-whole",
        "b-frames-clean-prefix", "b-frames-split", "b-frames-gop-and-split"])
def test_black_runs_are_whole_gops_and_clean_prefixes(
        run: int, gop: PacketTrace | None,
        expected: list[tuple[Fraction, Fraction | None]]) -> None:
    got = entries([run], black_gop(gop))
    assert [(entry.path, entry.duration, entry.outpoint) for entry in got] == [
        (GOP, duration, outpoint) for duration, outpoint in expected]


def test_a_long_gap_is_a_file_per_binary_digit_of_its_whole_gops() -> None:
    # 45 GOPs (101101 in binary) and a prefix; another run needs 2 GOPs only.
    assert gop_repeats([45 * 30 + 10, 2 * 30, 29], 30) == {4, 8, 32, 2}
    files = {count: Path(f"/tmp/.copy-x/black-x{count}.mp4") for count in (2, 4, 8, 32)}
    black = dataclasses.replace(black_gop(), repeats=files)
    got = entries([45 * 30 + 10], black)
    assert [(entry.path, entry.duration, entry.last) for entry in got] == [
        (files[32], Fraction(32), Fraction(32 * 30 - 1, 30)),
        (files[8], Fraction(8), Fraction(8 * 30 - 1, 30)),
        (files[4], Fraction(4), Fraction(4 * 30 - 1, 30)),
        (GOP, Fraction(1), Fraction(29, 30)),
        (GOP, Fraction(1, 3), Fraction(9, 30))]


def test_split_black_uses_fewest_clean_prefixes() -> None:
    assert clean_prefixes(PYRAMID_GOP, Fraction(30)) == (1, 5, 9)
    assert split_black(12, (1, 5, 9)) == [9, 1, 1, 1]
    assert split_black(10, (1, 5, 9)) == [9, 1]
    assert split_black(0, (1, 5, 9)) == []


def test_pieces_place_parts_and_black_in_frames() -> None:
    # gap 0-1 s, part "a" (90 frames of media) cut to 1-2 s, gap, part "b" (20 frames)
    # shorter than its 2.5-3.5 s slot, so 10 black frames follow it, then the end gap.
    plan = track([("a", Fraction(1), Fraction(2)), ("b", Fraction(5, 2), Fraction(7, 2))],
                 Fraction(4))
    probes = {"a": part_probe(90), "b": part_probe(20)}
    layout = pieces(plan, probes)
    shape = [(piece.path.name, piece.duration * 30, piece.outpoint)
             if isinstance(piece, Entry) else piece for piece in layout]
    assert shape == [30, ("90.mp4", 30, Fraction(30, 30)), 15, ("20.mp4", 20, None), 10, 15]


def test_black_argv_matches_the_parts() -> None:
    spec = BlackSpec(width=320, height=240, pix_fmt="yuv420p", sar=Fraction(1),
                     rate=Fraction(30000, 1001), time_base=Fraction(1, 30000), profile="high",
                     level_idc=31, delay=2)
    assert black_argv(spec, 300, Path("/t/black.mp4"), preset="veryfast") == [
        "-y", "-f", "lavfi", "-i",
        "color=c=black:s=320x240:r=30000/1001,format=yuv420p,setsar=1/1",
        "-frames:v", "300", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
        "-pix_fmt", "yuv420p", "-x264-params",
        "level=3.1:keyint=300:scenecut=0:rc-lookahead=0:sync-lookahead=0:"
        "bframes=3:b-pyramid=normal",
        "-video_track_timescale", "30000", "-an", "-f", "mp4", "file:/t/black.mp4"]


@pytest.mark.parametrize(("in_band", "tail"), [
    (False, ["-tag:v", "avc1"]), (True, ["-tag:v", "avc3"])], ids=["same-avcc", "in-band-sps"])
def test_copy_argv(in_band: bool, tail: list[str]) -> None:
    # The index is reserved in front (48 bytes a sample), not moved there afterwards.
    assert copy_argv(Path("/t/l.ffconcat"), Path("/o/.w.mp4.rendering"), time_base=TB,
                     in_band=in_band, samples=1000,
                     timecode=["-timecode", "14:03:07:12"]) == [
        "-y", "-f", "concat", "-safe", "0", "-auto_convert", "1" if in_band else "0",
        "-i", "file:/t/l.ffconcat", "-map", "0:v:0", "-c", "copy", *tail,
        "-video_track_timescale", "15360", "-timecode", "14:03:07:12",
        "-moov_size", "113536", "-f", "mp4",
        "file:/o/.w.mp4.rendering"]


# --- pure: the decision -------------------------------------------------------------------


def copy_blocker(plan: TrackPlan, probes: dict[str, PartProbe]) -> str | None:
    """Why `copy_layout` refuses the track, or None when it lays it out."""
    try:
        copy_layout(plan, probes)
    except CopyNotPossibleError as error:
        return str(error)
    return None

ONE_PART = [("a", Fraction(1), Fraction(2))]


@pytest.mark.parametrize(("probes", "reason"), [
    ({"a": part_probe(), "b": part_probe()}, None),
    ({"a": part_probe(), "b": part_probe(width=640, height=360)},
     "parts differ in frame size (320x240 vs 640x360)"),
    ({"a": part_probe(codec="vp8"), "b": part_probe(codec="vp8")}, "VP8 cannot be stored in MP4"),
    ({"a": part_probe(), "b": part_probe(codec="vp9")}, "parts differ in codec (h264 vs vp9)"),
    ({"a": part_probe(), "b": part_probe(profile="High")},
     "parts differ in H.264 profile (Constrained Baseline vs High)"),
    ({"a": part_probe(), "b": part_probe(level=31)}, "parts differ in H.264 level (3.0 vs 3.1)"),
    ({"a": part_probe(), "b": part_probe(time_base=Fraction(1, 90000))},
     "parts differ in time base (1/15360 vs 1/90000)"),
    ({"a": part_probe(), "b": part_probe(packets=trace(list(range(0, 120, 2))))},
     "parts differ in frame rate (30 fps vs 15 fps)"),
    ({"a": part_probe(), "b": part_probe(packets=trace(B_FRAMES, dts=B_DTS))},
     "parts differ in B-frame delay (0 frames vs 2 frames): no black x264 makes keeps "
     "decode timestamps rising where they join"),
], ids=["copyable", "sizes-differ", "vp8-in-mp4", "codecs-differ", "profiles-differ",
        "levels-differ", "time-bases-differ", "rates-differ", "b-frame-delays-differ"])
def test_copy_blocker_names_the_reason(probes: dict[str, PartProbe], reason: str | None) -> None:
    plan = track([("a", Fraction(0), Fraction(1)), ("b", Fraction(2), Fraction(3))], Fraction(4))
    assert copy_blocker(plan, probes) == reason


def test_a_b_frame_part_cut_inside_a_reordered_run_is_copied_to_its_keyframe() -> None:
    # Two GOPs; the slot ends after 12 frames, inside the second GOP's reordered run
    # (I7 P10 B8 B9 P13 B11 B12: frames 0-11 are no decode-order prefix). The first
    # GOP is copied, frames 7-11 are re-encoded, black fills the rest of the second.
    packets = trace([*B_FRAMES, *(7 + index for index in B_FRAMES)],
                    dts=[index - 2 for index in range(14)], keyframes=(0, 7))
    probes = {"a": part_probe(packets=packets)}
    plan = track([("a", Fraction(0), Fraction(12, 30))], Fraction(1))
    assert copy_blocker(plan, probes) is None
    copied, tail, black = pieces(plan, probes)
    assert isinstance(copied, Entry)
    assert (copied.duration, copied.outpoint) == (Fraction(7, 30), 5 * TICK * TB)
    assert tail == Tail(path=Path("/parts/60.mp4"), start=Fraction(7, 30), frames=5)
    assert black == 18


def test_keyframe_cut_is_zero_when_only_the_first_keyframe_comes_before() -> None:
    packets = trace(B_FRAMES, dts=B_DTS)
    assert keyframe_cut(packets, 5, Fraction(30)) == 0


def test_keyframe_cut_leaves_a_tail_x264_can_give_the_b_frame_delay() -> None:
    # Keyframes at 0 and 7. Cut 2 frames after the second, the tail could not have
    # black's delay of 2 frames (x264 gives 2 frames a delay of 1): start at the first.
    packets = trace([*B_FRAMES, *(7 + index for index in B_FRAMES)],
                    dts=[index - 2 for index in range(14)], keyframes=(0, 7))
    assert keyframe_cut(packets, 9, Fraction(30)) == 0
    assert keyframe_cut(packets, 10, Fraction(30)) == 7


def test_a_part_that_resumes_only_at_the_parts_frame_rate_is_not_copied() -> None:
    # At the plan's 15 fps `blip` rounds to no frame; at its parts' 30 fps it takes one,
    # and `cam` would have to start a frame into its media.
    slots, _ = resolve_overlaps([Slot(part_id="cam", start=Fraction(0), end=Fraction(3)),
                                 Slot(part_id="blip", start=Fraction(0),
                                      end=Fraction(2, 100))], Fraction(3))
    rate = Fraction(15)
    plan = TrackPlan(participant_id=1, kind="webcam", path="p/webcam.mp4", rate=rate,
                     length=45, slots=slots, segments=place(slots, 45, rate))
    assert [(segment.part_id, segment.offset) for segment in plan.segments] == [("cam", 0)]
    assert copy_blocker(plan, {"cam": part_probe(90), "blip": part_probe(90)}) == (
        "part cam resumes after a part inside it: copy cannot start it midway")


def test_a_part_with_frames_before_its_first_keyframe_is_not_copied() -> None:
    # Cut by stream copy mid-GOP: B-frames after the IDR are shown before it.
    packets = trace([3, 1, 2, 4, 5], dts=[0, 1, 2, 3, 4])
    assert copy_blocker(track(ONE_PART, Fraction(3)), {"a": part_probe(packets=packets)}) == (
        "part a has frames shown before its first keyframe")


def test_a_part_whose_edit_list_moves_its_start_is_not_copied() -> None:
    probe_ = PartProbe(path=PART, video=video(), packets=trace(list(range(30))),
                       headers=H264Headers(profile_idc=66, level_idc=30, idr=True),
                       start_moved=True)
    assert copy_blocker(track(ONE_PART, Fraction(3)), {"a": probe_}) == (
        "part a has an edit list that moves its start")


def test_a_part_turned_for_display_is_not_copied() -> None:
    # The concat demuxer keeps no display matrix: a phone's portrait part would lie down.
    assert copy_blocker(track(ONE_PART, Fraction(3)), {"a": part_probe(rotation=90)}) == (
        "part a is turned 90 degrees for display")


def test_a_part_must_start_with_an_idr_frame() -> None:
    probe_ = PartProbe(path=PART, video=video(), packets=trace(list(range(30))),
                       headers=H264Headers(profile_idc=66, level_idc=30, idr=False))
    assert copy_blocker(track(ONE_PART, Fraction(3)), {"a": probe_}) == (
        "part a does not start with an IDR frame")


@pytest.mark.parametrize(("pts", "dts", "frames", "kept"), [
    (list(range(10)), None, 4, 4),
    (list(range(10)), None, 10, 10),
    (list(range(10)), None, 20, 10),
    (B_FRAMES, B_DTS, 7, 7),
    (B_FRAMES, B_DTS, 4, 4),
    (B_FRAMES, B_DTS, 5, None),
    (B_FRAMES, B_DTS, 3, None),
], ids=["no-b-mid-gop", "no-b-whole", "no-b-shorter", "b-whole", "b-before-p6", "b-inside-run",
        "b-before-p3"])
def test_cut_packets_keeps_a_clean_decode_prefix(pts: list[int], dts: list[int] | None,
                                                 frames: int, kept: int | None) -> None:
    assert cut_packets(trace(pts, dts=dts), frames, Fraction(30)) == kept


def test_black_delay_follows_the_parts_b_frames() -> None:
    no_b = Entry(path=PART, duration=Fraction(1), tail=Fraction(1, 30))
    b_part = Entry(path=PART, duration=Fraction(1), lead=Fraction(2, 30), tail=Fraction(3, 30))
    rate = Fraction(30)
    assert black_delay([no_b, 10, no_b], rate) == 0
    assert black_delay([10, b_part, 10], rate) == 2
    # Black after a part without B-frames must have none; before one with them, two.
    assert black_delay([no_b, 10, b_part], rate) is None


@pytest.mark.parametrize(("steps", "rate"), [
    ([512] * 10, Fraction(30)),
    ([512, 513, 512, 512, 513] * 4, Fraction(30000, 1001)),
    ([512, 1024, 512, 512, 1536, 512], Fraction(30)),
], ids=["cfr-30", "ntsc-rounded", "vfr-dropped-frames"])
def test_real_rate_reads_the_timestamps(steps: list[int], rate: Fraction) -> None:
    pts = [sum(steps[:index]) for index in range(len(steps) + 1)]
    packets = PacketTrace(time_base=TB, extradata=None, dts=tuple(pts), pts=tuple(pts),
                          duration=(512,) * len(pts), keyframe=(True,) * len(pts))
    assert real_rate(packets) == rate


SPS, PPS, IDR = b"\x67\x42\xc0\x1e\xda", b"\x68\xce", b"\x65\x88\x84"


def test_parse_h264_headers() -> None:
    headers = parse_h264_headers([SPS, PPS, IDR])
    assert (headers.profile_idc, headers.level_idc, headers.idr) == (66, 30, True)


def avcc(*sps: bytes) -> bytes:
    """An avcC record (4-byte NAL lengths) holding `sps` and PPS."""
    units = b"".join(len(unit).to_bytes(2, "big") + unit for unit in sps)
    return (bytes([1, 66, 0xC0, 30, 0xFF, 0xE0 | len(sps)]) + units
            + bytes([1]) + len(PPS).to_bytes(2, "big") + PPS)


def prefixed(*units: bytes) -> bytes:
    return b"".join(len(unit).to_bytes(4, "big") + unit for unit in units)


OTHER_SPS = b"\x67\x42\xc0\x1f\xdb"  # another size or level


@pytest.mark.parametrize(("survey", "parameter_sets"), [
    # MP4/Matroska: an avcC and length-prefixed units; in-band SPS repeating the avcC's
    # (filter_units writes the SPS it keeps in Annex B whatever the stream's framing).
    ({"extradata": avcc(SPS), "first_packet": prefixed(IDR),
      "in_band_sets": b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + SPS}, 1),
    ({"extradata": avcc(SPS), "first_packet": prefixed(SPS, PPS, IDR),
      "in_band_sets": b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + OTHER_SPS}, 2),
    # A raw or MPEG-TS stream: Annex B throughout, 3- and 4-byte start codes.
    ({"extradata": b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS,
      "first_packet": b"\x00\x00\x00\x01" + IDR, "in_band_sets": b""}, 1),
    ({"extradata": b"", "first_packet": b"\x00\x00\x01" + SPS + b"\x00\x00\x01" + IDR,
      "in_band_sets": b"\x00\x00\x01" + SPS + b"\x00\x00\x01" + OTHER_SPS}, 2),
], ids=["avcc", "avcc-changes", "annex-b", "annex-b-in-band"])
def test_surveyed_h264_reads_either_framing(survey: dict[str, bytes],
                                            parameter_sets: int) -> None:
    headers, found, _ = surveyed_h264(VideoSurvey(packets=trace([0]), **survey))
    assert (headers.profile_idc, headers.level_idc, headers.idr) == (66, 30, True)
    assert found == parameter_sets


def test_nal_units_stop_at_a_cut_short_packet() -> None:
    assert nal_units(prefixed(SPS, IDR)[:-1], 4) == [SPS, IDR[:-1]]
    assert nal_units(b"\x00\x00", 4) == []


# avcC records x264 wrote: a part's (SPS and PPS id 0) and black's (`sps-id=1`).
PART_AVCC = bytes.fromhex("0142c01effe100196742c01eda0280bfe5c044000003000400000300f03c58ba80"
                          "01000468ce0fc8")
BLACK_AVCC = bytes.fromhex("0142c01effe100196742c01e5680a02ff970110000030001000003003c0f162e"
                           "a00100056848e0fc80")


def test_an_avcc_record_is_taken_apart_and_put_back_as_it_was() -> None:
    record = AvcRecord.parse(PART_AVCC)
    assert record is not None
    assert (record.profile_idc, record.level_idc, record.length_size) == (66, 30, 4)
    assert [parameter_set_id(unit) for unit in record.units] == [(7, 0), (8, 0)]
    assert record.to_bytes() == PART_AVCC
    assert AvcRecord.parse(bytes.fromhex("000000016742")) is None  # Annex B, not avcC


def test_parameter_sets_with_their_own_ids_share_one_avcc() -> None:
    shared = AvcRecord.parse(shared_avcc([PART_AVCC, BLACK_AVCC]) or b"")
    assert shared is not None
    assert [parameter_set_id(unit) for unit in shared.units] == [(7, 0), (7, 1), (8, 0), (8, 1)]
    assert set(shared.units) == {*AvcRecord.parse(PART_AVCC).units,  # type: ignore[union-attr]
                                 *AvcRecord.parse(BLACK_AVCC).units}  # type: ignore[union-attr]
    assert list(itertools.islice(spare_parameter_set_ids([PART_AVCC, BLACK_AVCC]), 2)) == [2, 3]


# PPS units under ids 2 and 1 (pic_parameter_set_id is their first field).
PPS_ID_2, PPS_ID_1 = b"\x68\x73\x80", b"\x68\x5c\x80"


def test_a_parts_in_band_parameter_sets_count_as_used_and_listed() -> None:
    # A part's packets may carry a set its avcC does not list: black must not take its id,
    # and the shared record lists it too.
    assert list(itertools.islice(spare_parameter_set_ids([PART_AVCC], [PPS_ID_2]), 2)) == [1, 3]
    shared = AvcRecord.parse(shared_avcc([PART_AVCC, BLACK_AVCC], [PPS_ID_2]) or b"")
    assert shared is not None
    assert PPS_ID_2 in shared.units
    # In band under black's id with other content: it would replace black's in a decoder.
    assert shared_avcc([PART_AVCC, BLACK_AVCC], [PPS_ID_1]) is None


@pytest.mark.parametrize("other", [
    PART_AVCC[:-1] + b"\xc9",  # another PPS under id 0
    PART_AVCC[:4] + b"\xfd" + PART_AVCC[5:],  # 2-byte NAL lengths
    bytes.fromhex("000000016742c01e"),  # Annex B
    b"",
], ids=["same-id", "length-size", "annex-b", "none"])
def test_parameter_sets_that_cannot_share_an_avcc_are_told(other: bytes) -> None:
    assert shared_avcc([PART_AVCC, other]) is None



# --- end to end: real ffmpeg --------------------------------------------------------------

RATE = 30


def make_webcam_part(path: Path, *, seconds: float, colour: str, vfr: bool = False,
                     size: tuple[int, int] = (320, 240)) -> Path:
    """A WebRTC-like part: constrained baseline, no B-frames, optionally with dropped frames.

    The toolkit's H.264 parts all have B-frames; webcams in meetings send none.
    """
    red, green, blue = rgb(colour)
    chain = (f"color=c=0x{red:02x}{green:02x}{blue:02x}:s={size[0]}x{size[1]}:r={RATE},"
             f"trim=end_frame={round(seconds * RATE)}")
    # Frames 3-5 of every 10 dropped, timestamps kept: a variable frame rate.
    chain += ",select='not(between(mod(n\\,10)\\,3\\,5))'" if vfr else ""
    ffmpeg(["-y", "-f", "lavfi", "-i", chain, "-c:v", "libx264", "-preset", "veryfast",
            "-profile:v", "baseline", "-bf", "0", "-g", "30", "-pix_fmt", "yuv420p",
            "-fps_mode", "vfr" if vfr else "cfr", file_arg(path)])
    return path


def render(plan: TrackPlan, parts: dict[str, Path], out: Path, strategy: str) -> RenderedTrack:
    # Surveyed as a run's probe surveys a video part: copy reads only parts with audio again.
    probes: dict[str, MediaInfo] = {part_id: probe(path, survey=True)
                                    for part_id, path in parts.items()}
    return render_track(plan, parts, probes, out,
                        RenderSettings(video_strategy=strategy))  # type: ignore[arg-type]


def assert_placed(rendered: RenderedTrack, colours: dict[str, str],
                  short: frozenset[str] = frozenset()) -> None:
    """Each part's colour within one frame of its slot, black elsewhere, exact length.

    Parts in `short` have media ending before their slot does: black follows them.
    """
    plan = rendered.track
    frames = decode_frames(rendered.path, fps=float(plan.rate))
    assert abs(len(frames) - plan.length) <= 1
    for segment in plan.segments:
        black_from = segment.start + 1
        if segment.part_id is not None:
            spans = [span for span in colour_spans(frames, colours[segment.part_id])
                     if span[0] < segment.end and span[1] > segment.start]
            assert len(spans) == 1, (segment, spans)
            start, end = spans[0]
            assert abs(start - segment.start) <= 1, (segment, spans)
            assert end <= segment.end + 1, (segment, spans)
            assert segment.part_id in short or end >= segment.end - 1, (segment, spans)
            black_from = end + 1
        assert all(is_black(frame) for frame in frames[black_from:segment.end - 1]), segment
    assert decode_errors(rendered.path) == ""


_NON_KEY_MD5 = re.compile(r"^0,.*, ([0-9a-f]{32}), F=0x0$", re.M)


def packet_md5s(path: Path) -> set[str]:
    """MD5s of the non-key packets as stored (keyframes may carry in-band SPS/PPS)."""
    text = ffmpeg(["-i", file_arg(path), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-"],
                  stdout=True).decode()
    return set(_NON_KEY_MD5.findall(text))


def avcc_ids(path: Path) -> list[tuple[int, int]]:
    """(NAL type, id) of each parameter set in the avc1 sample entry of the MP4 at `path`."""
    record = AvcRecord.parse(read_avcc(path))
    assert record is not None, "no avc1 sample entry"
    return sorted(found for unit in record.units if (found := parameter_set_id(unit)))


@pytest.fixture(scope="module")
def webcam_parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("webcam")
    return {
        "red": make_webcam_part(folder / "red.mp4", seconds=3, colour="red"),  # longer than slot
        "green": make_webcam_part(folder / "green.mp4", seconds=2, colour="green"),
        "blue": make_webcam_part(folder / "blue.mp4", seconds=1.5, colour="blue", vfr=True),
        "wide": make_webcam_part(folder / "wide.mp4", seconds=1, colour="yellow",
                                 size=(640, 480)),
    }


WEBCAM_SLOTS = [("red", Fraction(1), Fraction(2)), ("green", Fraction(3), Fraction(5)),
                ("blue", Fraction(11, 2), Fraction(7))]
COLOURS = {"red": "red", "green": "green", "blue": "blue", "wide": "yellow", "cyan": "cyan",
           "magenta": "magenta", "vfr": "orange"}


@pytest.mark.parametrize("strategy", ["copy", "auto"])
def test_webcam_parts_are_copied_frame_exact(webcam_parts: dict[str, Path], tmp_path: Path,
                                            strategy: str) -> None:
    # gap at start, a part cut mid-GOP, gap, a whole part, gap, a VFR part, gap at end
    rendered = render(track(WEBCAM_SLOTS, Fraction(8)), webcam_parts, tmp_path, strategy)
    assert (rendered.strategy, rendered.reason) == ("copy", None)
    assert_placed(rendered, COLOURS, short=frozenset({"blue"}))
    assert packet_md5s(webcam_parts["green"]) <= packet_md5s(rendered.path)
    # One avc1 sample entry holds the parts' parameter sets and black's, under its own ids.
    assert avcc_ids(rendered.path) == [(7, 0), (7, 1), (8, 0), (8, 1)]
    boxes = top_level_boxes(rendered.path)
    assert boxes.index(b"moov") < boxes.index(b"mdat"), boxes
    assert [path.name for path in rendered.path.parent.iterdir()] == ["webcam.mp4"]


@pytest.fixture(scope="module")
def b_frame_parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bframes")
    return {
        "vfr": make_colour_video(folder / "vfr.mp4", seconds=2, colour="orange", gop=30,
                                 vfr=True),
        "cyan": make_colour_video(folder / "cyan.mp4", seconds=2, colour="cyan", gop=30),
        "magenta": make_colour_video(folder / "magenta.mp4", seconds=1, colour="magenta",
                                     gop=30, with_tone=440.0),
    }


def test_b_frame_parts_are_copied_with_matching_black(b_frame_parts: dict[str, Path],
                                                      tmp_path: Path) -> None:
    # A VFR part at 0 (its B-frames start decoding 3 frames early: nothing may precede
    # it), then gaps around whole parts; magenta also carries audio, which is left out.
    slots = [("vfr", Fraction(0), Fraction(2)), ("cyan", Fraction(5, 2), Fraction(9, 2)),
             ("magenta", Fraction(5), Fraction(6))]
    rendered = render(track(slots, Fraction(7)), b_frame_parts, tmp_path, "copy")
    assert rendered.strategy == "copy"
    assert_placed(rendered, COLOURS)
    assert packet_md5s(b_frame_parts["cyan"]) <= packet_md5s(rendered.path)


@pytest.mark.parametrize(("end", "tail"), [(Fraction(32, 30), True), (Fraction(47, 30), False),
                                           (Fraction(48, 30), True), (Fraction(49, 30), True)],
                         ids=["32-frames", "47-frames", "48-frames", "49-frames"])
def test_b_frame_parts_cut_anywhere_are_copied_to_a_keyframe_and_smart_cut(
        b_frame_parts: dict[str, Path], tmp_path: Path, end: Fraction, tail: bool) -> None:
    # Cyan (2 s, GOP 30) plays for `end` seconds: a cut inside a reordered run for most
    # ends. Its first GOP is copied as is; frames 30 to the cut are re-encoded.
    slots = [("cyan", Fraction(0), end), ("magenta", Fraction(2), Fraction(3))]
    rendered = render(track(slots, Fraction(3)), b_frame_parts, tmp_path, "copy")
    assert rendered.strategy == "copy"
    assert_placed(rendered, COLOURS)
    first_gop = ffmpeg(["-i", file_arg(b_frame_parts["cyan"]), "-map", "0:v:0", "-c", "copy",
                        "-frames:v", "30", "-f", "framemd5", "-"], stdout=True).decode()
    assert set(_NON_KEY_MD5.findall(first_gop)) <= packet_md5s(rendered.path)
    # A re-encoded tail has parameter sets of its own beside the part's and black's.
    assert avcc_ids(rendered.path) == [
        (kind, number) for kind in (7, 8) for number in ((0, 1, 2) if tail else (0, 1))]


def test_a_long_gap_is_joined_from_black_repeated_on_file(b_frame_parts: dict[str, Path],
                                                         tmp_path: Path) -> None:
    # 18.5 s of black (GOPs of 2 s, B-frame pyramid): the GOP 8 times over on file (made
    # from 4 and 2 times), the GOP, then a prefix; every frame must be where it was.
    slots = [("magenta", Fraction(0), Fraction(1)), ("cyan", Fraction(39, 2), Fraction(43, 2))]
    rendered = render(track(slots, Fraction(43, 2)), b_frame_parts, tmp_path, "copy")
    assert rendered.strategy == "copy"
    assert_placed(rendered, COLOURS)
    frames = decode_frames(rendered.path)  # every frame as decoded, none resampled
    assert len(frames) == 43 * RATE // 2
    assert colour_spans(frames, "magenta") == [(0, RATE)]
    assert colour_spans(frames, "cyan") == [(39 * RATE // 2, 43 * RATE // 2)]
    made = {path.name for path in copy_module.BLACK._files.values()}
    assert {name.rsplit("x", 1)[1] for name in made if name.endswith(".mp4")} >= {
        "2.mp4", "4.mp4", "8.mp4"}


def test_mismatched_sizes_fail_copy_and_encode_under_auto(webcam_parts: dict[str, Path],
                                                          tmp_path: Path) -> None:
    plan = track([("red", Fraction(0), Fraction(1)), ("wide", Fraction(2), Fraction(3))],
                 Fraction(3))
    with pytest.raises(CopyNotPossibleError,
                       match=r"p/webcam.mp4: parts differ in frame size \(320x240 vs 640x480\)"):
        render(plan, webcam_parts, tmp_path, "copy")
    assert not (tmp_path / "p" / "webcam.mp4").exists()
    rendered = render(plan, webcam_parts, tmp_path, "auto")
    assert (rendered.strategy, rendered.reason) == (
        "encode", "parts differ in frame size (320x240 vs 640x480)")
    assert_placed(rendered, COLOURS)


@pytest.mark.parametrize("container", ["mpegts", "mp4"])
def test_parts_with_b_frames_and_sps_before_every_idr_are_copied_frame_exact(
        tmp_path: Path, container: str) -> None:
    # MPEG-TS as a recorder writes it: Annex B, SPS before every IDR, starting at 1.4 s.
    # The concat demuxer's seek in it lands a GOP late (a part with B-frames lost its
    # first second): copy reads a video-only MP4 of it. The MP4 keeps the in-band SPS,
    # each the avcC's own: one set of parameters, not a change midway.
    part = tmp_path / f"cam.{'ts' if container == 'mpegts' else 'mp4'}"
    ffmpeg(["-y", "-f", "lavfi", "-i", f"color=c=red:s=160x120:r={RATE}:d=1",
            "-f", "lavfi", "-i", f"color=c=blue:s=160x120:r={RATE}:d=2", "-filter_complex",
            "[0][1]concat=n=2:v=1:a=0", "-c:v", "libx264", "-preset", "veryfast", "-bf", "3",
            "-g", str(RATE), "-pix_fmt", "yuv420p", "-bsf:v", "dump_extra=freq=keyframe",
            "-f", container, file_arg(part)])
    plan = track([("cam", Fraction(1), Fraction(4))], Fraction(5))
    rendered = render(plan, {"cam": part}, tmp_path, "copy")
    assert rendered.strategy == "copy"
    frames = decode_frames(rendered.path)
    assert len(frames) == 5 * RATE
    assert colour_spans(frames, "red") == [(RATE, 2 * RATE)]
    assert colour_spans(frames, "blue") == [(2 * RATE, 4 * RATE)]
    assert all(is_black(frame) for frame in [*frames[:RATE], *frames[4 * RATE:]])
    # The survey keeps the in-band SPS and PPS, each once: ids black must not take.
    info = probe_many([part], survey=[part])[part]
    assert isinstance(info, MediaInfo)
    assert info.survey is not None
    _, _, in_band = surveyed_h264(info.survey)
    assert [parameter_set_id(unit) for unit in in_band] == [(7, 0), (8, 0)]


def test_a_raw_h264_part_with_b_frames_is_encoded_in_display_order(tmp_path: Path) -> None:
    # Its frames grow brighter one by one: shown in decode order, they would not.
    part = tmp_path / "cam.h264"
    ffmpeg(["-y", "-f", "lavfi", "-i", f"color=c=black:s=64x48:r={RATE}:d=2,"
            "geq=lum='16+3*N':cb=128:cr=128", "-c:v", "libx264", "-preset", "veryfast",
            "-bf", "2", "-g", "15", "-pix_fmt", "yuv420p", "-f", "h264", file_arg(part)])
    plan = track([("cam", Fraction(1), Fraction(3))], Fraction(3))
    rendered = render(plan, {"cam": part}, tmp_path, "auto")
    assert (rendered.strategy, rendered.reason) == (
        "encode", "part cam is a raw H.264 stream, with no timestamps to copy")
    frames = decode_frames(rendered.path)
    assert len(frames) == 3 * RATE
    brightness = [float(frame.mean()) for frame in frames[RATE:]]
    assert brightness == sorted(brightness)
    assert brightness[-1] - brightness[0] > 100


def test_a_part_cut_short_mid_packet_is_encoded_not_copied(tmp_path: Path) -> None:
    # A recorder that died mid-write: the index (moov, in front) promises a last packet
    # the file holds only part of. Copied, it broke that picture (or, with B-frames,
    # ended the whole track there while the run said copy).
    whole = make_webcam_part(tmp_path / "whole.mp4", seconds=4.0, colour="red")
    cut = tmp_path / "cut.mp4"
    ffmpeg(["-y", "-i", file_arg(whole), "-c", "copy", "-movflags", "+faststart",
            file_arg(cut)])
    cut.write_bytes(cut.read_bytes()[:-5])
    after = make_webcam_part(tmp_path / "after.mp4", seconds=2.0, colour="blue")
    plan = track([("cut", Fraction(0), Fraction(4)), ("after", Fraction(5), Fraction(7))],
                 Fraction(7))
    rendered = render(plan, {"cut": cut, "after": after}, tmp_path, "auto")
    assert (rendered.strategy, rendered.reason) == (
        "encode", "part cut has a packet cut short: its file ends mid-write")
    frames = decode_frames(rendered.path)
    assert len(frames) == 7 * RATE
    assert colour_spans(frames, "red") == [(0, 4 * RATE - 1)]  # the last, cut short: black
    assert colour_spans(frames, "blue") == [(5 * RATE, 7 * RATE)]


def test_an_avcc_is_replaced_only_in_the_room_reserved_for_the_index(tmp_path: Path) -> None:
    reserved, plain = tmp_path / "reserved.mp4", tmp_path / "plain.mp4"
    source = make_webcam_part(tmp_path / "cam.mp4", seconds=1.0, colour="red")
    ffmpeg(["-y", "-i", file_arg(source), "-c", "copy", "-moov_size", "65536", file_arg(reserved)])
    ffmpeg(["-y", "-i", file_arg(source), "-c", "copy", file_arg(plain)])
    before = decode_frames(reserved)
    record = shared_avcc([read_avcc(reserved), BLACK_AVCC])
    assert record is not None
    replace_avcc(reserved, record)
    assert read_avcc(reserved) == record
    assert np.array_equal(decode_frames(reserved), before)
    with pytest.raises(CopyNotPossibleError, match="no room"):
        replace_avcc(plain, record)  # its index is at the end, nothing reserved after it


def test_the_timecode_track_is_made_to_present_as_long_as_the_video(tmp_path: Path) -> None:
    source = make_webcam_part(tmp_path / "cam.mp4", seconds=1.0, colour="red")
    stamped = tmp_path / "stamped.mp4"
    ffmpeg(["-y", "-i", file_arg(source), "-c", "copy", "-timecode", "01:00:00:00",
            file_arg(stamped)])
    video, timecode = track_spans(stamped)
    assert timecode == video == 1.0
    # A frame longer, as ffmpeg's muxer leaves it after a B-frame delay.
    data = bytearray(stamped.read_bytes())
    edit = data.index(b"elst", data.index(b"elst") + 4) + 4  # the second track's, version 0
    (span,) = struct.unpack_from(">I", data, edit + 8)
    struct.pack_into(">I", data, edit + 8, span + span // 30)
    stamped.write_bytes(bytes(data))
    assert track_spans(stamped)[1] > 1.03
    align_timecode(stamped)
    assert track_spans(stamped) == [1.0, 1.0]
    assert decode_errors(stamped) == ""


def test_media_seconds_reads_an_mp4_index_and_nothing_else(tmp_path: Path) -> None:
    part = make_webcam_part(tmp_path / "cam.mp4", seconds=2.0, colour="red")
    assert media_seconds(part) == 2
    assert media_seconds(make_tone(tmp_path / "tone.wav", seconds=1.0)) is None


def test_a_part_that_changes_size_midway_is_encoded_not_copied(tmp_path: Path) -> None:
    # Two sizes in one stream, SPS in-band (avc3), as a sender adapting to bandwidth makes.
    first = make_webcam_part(tmp_path / "a.ts", seconds=1.0, colour="red")
    second = make_webcam_part(tmp_path / "b.ts", seconds=1.0, colour="blue", size=(160, 120))
    joined = tmp_path / "joined.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    part = tmp_path / "cam.mp4"
    ffmpeg(["-y", "-i", file_arg(joined), "-c", "copy", "-tag:v", "avc3", file_arg(part)])
    plan = track([("cam", Fraction(0), Fraction(2))], Fraction(2))
    with pytest.raises(CopyNotPossibleError, match=r"changes its H\.264 parameters"):
        render(plan, {"cam": part}, tmp_path, "copy")
    rendered = render(plan, {"cam": part}, tmp_path, "auto")
    assert rendered.strategy == "encode"
    frames = decode_frames(rendered.path)
    assert len(frames) == 2 * RATE
    assert colour_spans(frames, "red") == [(0, RATE)]
    assert colour_spans(frames, "blue") == [(RATE, 2 * RATE)]


def test_parts_are_read_once_many_per_ffmpeg_on_spare_slots(
        b_frame_parts: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Six parts, two of them with an audio stream (extracted first), a 2-slot cap of
    # which the caller holds one: two groups, read side by side, each by one ffmpeg.
    names = ["cyan", "vfr", "magenta"]
    parts = {f"{name}{copy}": b_frame_parts[name] for copy in range(2) for name in names}
    slots = [Slot(part_id=part_id, start=Fraction(3 * index), end=Fraction(3 * index + 2))
             for index, part_id in enumerate(parts)]
    plan = track([(slot.part_id, slot.start, slot.end) for slot in slots], Fraction(18))
    infos = {part_id: probe(path) for part_id, path in parts.items()}
    ffmpeg_slots = FfmpegSlots(2)
    with caplog.at_level(logging.DEBUG, logger="assembler.media"), ffmpeg_slots.held():
        probes = probe_parts(plan, parts, infos, tmp_path, ffmpeg_slots)
    runs = [record.getMessage() for record in caplog.records
            if record.getMessage().startswith("running")]
    # Extracting the magentas, one each side by side; then two surveys of three parts.
    assert [" -copyts " in run for run in runs].count(True) == 2
    assert len(runs) == 4
    for part_id, found in probes.items():
        alone = read_packets(found.path)  # the one-part-per-ffmpeg reading, as before
        assert found.packets == alone, part_id
        assert found.headers is not None
        assert found.headers.idr
        assert found.parameter_sets == 1
    assert probes["magenta0"].path.parent == tmp_path  # the video-only extract
    assert probes["cyan1"].path == b_frame_parts["cyan"]


def test_a_probe_surveys_a_part_as_reading_it_alone_would(
        b_frame_parts: dict[str, Path], tmp_path: Path) -> None:
    # Timestamps as stored whatever the file's start: B-frames (negative dts), audio
    # before the video, Matroska moved 1.5 s on, MPEG-TS (Annex B, starts at 1.4 s).
    moved = tmp_path / "moved.mkv"
    ffmpeg(["-y", "-i", file_arg(b_frame_parts["cyan"]), "-c", "copy", "-output_ts_offset",
            "1.5", file_arg(moved)])
    files = [*b_frame_parts.values(), moved,
             make_webcam_part(tmp_path / "cam.ts", seconds=1.0, colour="red")]
    infos = probe_many(files, survey=files)
    for number, path in enumerate(files):
        info = infos[path]
        assert isinstance(info, MediaInfo), path.name
        assert info.video is not None
        scratch = tmp_path / str(number)
        scratch.mkdir()
        (alone,) = survey_video([(path, info.video.index)], scratch)
        assert info.survey == alone, path.name
        assert alone.packets == read_packets(path, info.video.index)
    assert infos[moved].start == 1.5  # type: ignore[union-attr]


def test_a_part_ffmpeg_cannot_survey_is_probed_all_the_same(b_frame_parts: dict[str, Path],
                                                            tmp_path: Path) -> None:
    # filter_units splits no MPEG-4 Part 2: that group is probed without its surveys.
    mpeg4 = tmp_path / "cam.mp4"
    ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc=s=160x120:r=30:d=1", "-c:v", "mpeg4",
            file_arg(mpeg4)])
    files = [b_frame_parts["cyan"], mpeg4]
    infos = probe_many(files, survey=files)
    for path in files:
        info = infos[path]
        assert isinstance(info, MediaInfo)
        assert info.video is not None
        assert info.survey is None
        assert info.video.packets == (30 if path == mpeg4 else 60)


def test_spare_slots_take_only_what_is_free_now() -> None:
    slots = FfmpegSlots(3)
    with slots.held(), slots.spare(5) as extra:
        assert extra == 2
        with slots.spare(1) as none_left:
            assert none_left == 0
    with slots.spare(3) as all_free:
        assert all_free == 3


@pytest.mark.parametrize(("strategy", "part", "slot", "seconds"), [
    ("copy", "slow", (Fraction(1, 2), Fraction(5, 2)), Fraction(5, 2)),
    ("copy", "red", (Fraction(0), Fraction(1)), Fraction(251, 100)),
    ("encode", "red", (Fraction(0), Fraction(1)), Fraction(251, 100)),
    ("copy", "flat", (Fraction(0), Fraction(2)), Fraction(3)),
    ("copy", "medium", (Fraction(0), Fraction(3)), Fraction(277, 100)),
], ids=["copy-15fps-part-last-frame-shortened", "copy-black-last-frame-stretched",
        "encode-last-frame-stretched", "copy-b-frames-without-pyramid-then-black",
        "copy-b-frames-cut-inside-a-run"])
def test_every_track_lasts_the_timeline_to_the_millisecond(
        webcam_parts: dict[str, Path], tmp_path: Path, strategy: str, part: str,
        slot: tuple[Fraction, Fraction], seconds: Fraction) -> None:
    # 2.5 s at 15 fps is 37.5 frames, 2.51 s at 30 fps 75.3: whole frames cannot end
    # there, so the last frame is made shorter or longer in the container.
    # A part with B-frames but no pyramid, then black of a delay of 2: the timecode track
    # came out a frame longer than the video, and with it the file's duration. A part
    # cut at 2.77 s: its re-encoded tail ends on B-frames decoded after the last frame
    # shown, and the samples ended with them, short of the edit list.
    parts = {"red": webcam_parts["red"]}
    if part == "slow":
        parts[part] = make_colour_video(tmp_path / "slow.mp4", seconds=3, colour="magenta",
                                        fps=15)
    if part == "flat":
        parts[part] = tmp_path / "flat.mp4"
        ffmpeg(["-y", "-f", "lavfi", "-i", f"color=c=cyan:s=160x120:r={RATE}:d=2",
                "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-pix_fmt", "yuv420p",
                file_arg(parts[part])])
    rate = Fraction(RATE)
    if part == "medium":  # x264's default preset at 25 fps
        rate, parts[part] = Fraction(25), tmp_path / "medium.mp4"
        ffmpeg(["-y", "-f", "lavfi", "-i", "color=c=cyan:s=160x120:r=25:d=3", "-c:v", "libx264",
                "-preset", "medium", "-pix_fmt", "yuv420p", file_arg(parts[part])])
    rendered = render(track([(part, *slot)], seconds, rate), parts, tmp_path, strategy)
    assert rendered.strategy == strategy
    assert rendered.track.duration == float(seconds)
    stated = mp4_durations(rendered.path)
    for read in (stated.movie, stated.track, stated.shown, *track_spans(rendered.path)):
        assert abs(read - float(seconds)) < 0.001, (stated, track_spans(rendered.path))
    # Samples run to the edit list's end: a demuxer ends the stream where they do. (They
    # may run on by the B-frame delay: the edit list takes it back.)
    assert stated.media > float(seconds) - 0.001, stated
    assert len(frame_times(rendered.path)) == rendered.track.length
    assert decode_errors(rendered.path) == ""
    boxes = top_level_boxes(rendered.path)  # the index first: it plays while arriving
    assert boxes.index(b"moov") < boxes.index(b"mdat"), boxes


def test_b_frames_with_a_frame_rate_dip_at_the_end_are_encoded_to_end_exactly(
        tmp_path: Path) -> None:
    # Four frames dropped just before the end (VFR): x264's last decode time comes a frame
    # early, so no duration of the last packet decoded ends the samples on the timeline
    # without its frame running past it. Copy refuses; auto encodes, exact.
    part = tmp_path / "dip.mp4"
    ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc=s=160x120:r=25:d=4",
            "-vf", "select='lt(n,94)+gte(n,98)'", "-fps_mode", "vfr", "-c:v", "libx264",
            "-x264-params", "b-adapt=0:bframes=3", "-pix_fmt", "yuv420p", file_arg(part)])
    plan = track([("dip", Fraction(0), Fraction(4))], Fraction(4), Fraction(25))
    with pytest.raises(CopyNotPossibleError, match=r"the copy's samples end at 3\.\d+ s, not 4 s"):
        render(plan, {"dip": part}, tmp_path, "copy")
    rendered = render(plan, {"dip": part}, tmp_path, "auto")
    assert rendered.strategy == "encode"
    stated = mp4_durations(rendered.path)
    assert (stated.shown, stated.media, stated.track) == (4.0, 4.0, 4.0)


def test_a_time_scale_too_coarse_for_the_end_is_encoded_to_end_exactly(tmp_path: Path) -> None:
    # Ticks of 1/25 s cannot hold 3.87 s: the copy's edit list would say 3.88 s.
    part = tmp_path / "coarse.mp4"
    ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc=s=160x120:r=25:d=4", "-c:v", "libx264",
            "-preset", "medium", "-pix_fmt", "yuv420p", "-video_track_timescale", "25",
            file_arg(part)])
    plan = track([("coarse", Fraction(0), Fraction(4))], Fraction(387, 100), Fraction(25))
    with pytest.raises(CopyNotPossibleError, match=r"the copy shows 3\.880 s, not 3\.87 s"):
        render(plan, {"coarse": part}, tmp_path, "copy")
    rendered = render(plan, {"coarse": part}, tmp_path, "auto")
    assert rendered.strategy == "encode"
    stated = mp4_durations(rendered.path)
    for read in (stated.movie, stated.track, stated.shown, stated.media):
        assert abs(read - 3.87) < 0.001, stated


def make_sparse_screenshare(path: Path, times: tuple[float, ...], colour: str) -> Path:
    """A static screen as scrcpy or PrismCast send it: an H.264 frame every few seconds."""
    red, green, blue = rgb(colour)
    when = "+".join(f"eq(N\\,{index})*{time}" for index, time in enumerate(times))
    ffmpeg(["-y", "-f", "lavfi", "-i",
            f"color=c=0x{red:02x}{green:02x}{blue:02x}:s=320x240:r=1,"
            f"trim=end_frame={len(times)},setpts='({when})/TB'",
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-pix_fmt", "yuv420p",
            "-fps_mode", "passthrough", "-video_track_timescale", "1000", file_arg(path)])
    return path


def test_a_sparse_screenshare_is_encoded_where_copy_would_misplace_it(tmp_path: Path) -> None:
    # Frames at 0, 3.0 and 5.5 s in a 0.7-7.2 s slot: the gaps make a grid of seconds
    # on which the slot would start at 0 s.
    part = make_sparse_screenshare(tmp_path / "screen.mp4", (0.0, 3.0, 5.5), "green")
    plan = track([("screen", Fraction(7, 10), Fraction(36, 5))], Fraction(83, 10))
    with pytest.raises(CopyNotPossibleError,
                       match=r"part screen has a frame every [\d.]+ s: .* slot edge at 0\.7 s "
                             r"would fall at 0 s, 0\.700 s off \(more than the 0\.2 s allowed\)"):
        render(plan, {"screen": part}, tmp_path, "copy")
    rendered = render(plan, {"screen": part}, tmp_path, "auto")
    assert rendered.strategy == "encode"
    assert rendered.reason is not None
    assert rendered.reason.startswith("part screen has a frame every")
    assert_placed(rendered, {"screen": "green"}, short=frozenset({"screen"}))  # media: 6 s
    assert abs(mp4_durations(rendered.path).shown - 8.3) < 0.001


def test_a_screenshare_too_sparse_for_a_timecode_is_encoded_with_one(tmp_path: Path) -> None:
    # A frame every 3 s, slot on its grid: copy would place it, but ffmpeg gives a stream
    # of under 0.5 frames a second no timecode track, which every video track carries.
    part = make_sparse_screenshare(tmp_path / "screen.mp4", (0.0, 3.0, 6.0), "green")
    plan = track([("screen", Fraction(0), Fraction(9))], Fraction(9))
    with pytest.raises(CopyNotPossibleError, match=r"too seldom \(0\.333 a second\) for the "
                                                   r"copy to carry a timecode track"):
        render(plan, {"screen": part}, tmp_path, "copy")
    rendered = render(plan, {"screen": part}, tmp_path, "auto")
    assert rendered.strategy == "encode"
    assert has_timecode(rendered.path)
    assert_placed(rendered, {"screen": "green"}, short=frozenset({"screen"}))  # media: 7 s


def test_b_frames_in_matroska_are_refused_for_their_millisecond_timestamps(
        b_frame_parts: dict[str, Path], tmp_path: Path) -> None:
    part = tmp_path / "cam.mkv"
    ffmpeg(["-y", "-i", file_arg(b_frame_parts["cyan"]), "-c", "copy", file_arg(part)])
    plan = track([("cam", Fraction(1), Fraction(3))], Fraction(4))
    reason = (r"part cam has B-frames with timestamps in 1/1000 s, which cannot hold its "
              r"30 fps frame times exactly \(Matroska counts milliseconds\)")
    with pytest.raises(CopyNotPossibleError, match=reason):
        render(plan, {"cam": part}, tmp_path, "copy")
    rendered = render(plan, {"cam": part}, tmp_path, "auto")
    assert rendered.strategy == "encode"
    assert re.match(reason, rendered.reason or "")
    assert_placed(rendered, {"cam": "cyan"})


def test_a_vfr_matroska_part_read_as_ntsc_rate_lasts_the_run(tmp_path: Path) -> None:
    # 59.94 fps with dropped frames, in Matroska's milliseconds: 360 whole frames
    # at that rate would last 6.006 s of a 6.0 s run.
    part = tmp_path / "cam.mkv"
    ffmpeg(["-y", "-f", "lavfi", "-i", "color=c=red:s=320x240:r=60000/1001,trim=end_frame=360,"
            "select='not(eq(mod(n\\,17)\\,5))'", "-c:v", "libx264", "-preset", "veryfast",
            "-bf", "0", "-pix_fmt", "yuv420p", "-fps_mode", "vfr", file_arg(part)])
    plan = track([("cam", Fraction(0), Fraction(6))], Fraction(6))
    rendered = render(plan, {"cam": part}, tmp_path, "copy")
    assert rendered.track.rate == Fraction(60000, 1001)
    stated = mp4_durations(rendered.path)
    for read in (stated.movie, stated.track, stated.shown):
        assert abs(read - 6.0) < 0.001, stated
    assert_placed(rendered, {"cam": "red"})


@pytest.mark.parametrize(("frames", "reason"), [
    (list(range(0, 90, 3)), None),
    (list(range(0, 90, 2)), None),
    ([0, 75, 150], "part a has a frame every 2.5 s: copied on that grid, its slot edge at "
                   "0.75 s would fall at 0 s, 0.750 s off (more than the 0.2 s allowed)"),
], ids=["10-fps-edge-half-a-frame-off", "15-fps", "sparse-0.4-fps"])
def test_copy_places_every_slot_edge_within_a_frame(frames: list[int],
                                                    reason: str | None) -> None:
    plan = track([("a", Fraction(3, 4), Fraction(2))], Fraction(3))
    assert copy_blocker(plan, {"a": part_probe(packets=trace(frames))}) == reason
