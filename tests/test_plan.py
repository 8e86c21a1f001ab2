"""The plan is pure data: every rule checked without touching a file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest

from assembler.manifest import AUDIO_PARTS, VIDEO_PARTS, Documents, Participant, parse_document
from assembler.plan import (
    Segment,
    Slot,
    TrackPlan,
    make_plan,
    place,
    plan_as_json,
    split,
    to_units,
)

STAMP = "2025-07-17T00:00:00Z"


def part(part_id: str, who: int, start: float, duration: float, *, kind: str | None = None,
         name: str | None = "Ada") -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": part_id, "participant": {"id": who, "name": name},
        "start_timestamp": {"relative": start, "absolute": STAMP}, "duration": duration,
        "download_url": f"https://media.example/{part_id}.mp4?X-Amz-Signature=s3cr3t"}
    if kind:
        entry["type"] = kind
    return entry


def documents(audio: Sequence[dict[str, Any]] = (),
              video: Sequence[dict[str, Any]] = ()) -> Documents:
    audio_parts = parse_document(json.dumps(list(audio)).encode(), AUDIO_PARTS, "a")
    video_parts = parse_document(json.dumps(list(video)).encode(), VIDEO_PARTS, "v")
    return Documents(audio_parts=tuple(audio_parts), video_parts=tuple(video_parts))


def spans(segments: tuple[Segment, ...]) -> list[tuple[int, int, str | None]]:
    return [(segment.start, segment.end, segment.part_id) for segment in segments]


@pytest.mark.parametrize(("seconds", "rate", "units"), [
    (Fraction("9.73"), Fraction(48000), 467040),
    (Fraction(1, 60), Fraction(30), 1),  # half a frame rounds up
    (Fraction(1, 61), Fraction(30), 0),
    (Fraction("45"), Fraction(30000, 1001), 1349),
], ids=["decimal-exact", "half-up", "below-half", "ntsc"])
def test_to_units_rounds_to_nearest_half_up(seconds: Fraction, rate: Fraction,
                                            units: int) -> None:
    assert to_units(seconds, rate) == units


@pytest.mark.parametrize(("slots", "length", "expected"), [
    ([(0, 2)], 4, [(0, 2, "p0"), (2, 4, None)]),
    ([(1, 4)], 4, [(0, 1, None), (1, 4, "p0")]),
    ([(0, 4)], 4, [(0, 4, "p0")]),
    ([(1, 2), (3, 4)], 5, [(0, 1, None), (1, 2, "p0"), (2, 3, None), (3, 4, "p1"),
                          (4, 5, None)]),
    ([(1, 2), (2, 3)], 3, [(0, 1, None), (1, 2, "p0"), (2, 3, "p1")]),
    ([(5, 6)], 4, [(0, 4, None)]),
], ids=["gap-at-end", "gap-at-start", "no-gap", "gaps-between", "back-to-back",
        "past-the-end"])
def test_place_covers_the_track_exactly(slots: list[tuple[int, int]], length: int,
                                        expected: list[tuple[int, int, str | None]]) -> None:
    placed = place([Slot(part_id=f"p{i}", start=Fraction(a), end=Fraction(b))
                    for i, (a, b) in enumerate(slots)], length, Fraction(1))
    assert spans(placed) == expected
    assert sum(segment.length for segment in placed) == length


def test_rejoin_gap_and_timeline_end_from_latest_part() -> None:
    plan = make_plan(documents(audio=[part("a1", 100, 0, 20), part("a2", 100, 25, 15),
                                      part("b1", 7, 3.5, 41.5, name="Zoë Ünicode/🎥")]))
    assert plan.duration == 45
    ada = next(person for person in plan.participants if person.id == 100)
    (track,) = ada.tracks
    assert track.path == "participants/100-ada/audio.flac"
    assert track.length == 45 * 48000
    assert spans(track.segments) == [(0, 960000, "a1"), (960000, 1200000, None),
                                     (1200000, 1920000, "a2"), (1920000, 2160000, None)]
    assert [(track.seconds(g.start), track.seconds(g.end)) for g in track.gaps] == [
        (20.0, 25.0), (40.0, 45.0)]
    zoe = next(person for person in plan.participants if person.id == 7)
    assert zoe.dir == "participants/7-zoe-unicode"


def test_every_track_has_the_same_length_in_seconds() -> None:
    plan = make_plan(documents(audio=[part("a", 1, 0.013, 9.73)],
                               video=[part("v", 1, 0.5, 3.3, kind="webcam"),
                                      part("s", 2, 1, 2.25, kind="screenshare")]))
    assert {track.length / track.rate for track in plan.tracks} == {Fraction("9.743")} | {
        Fraction(to_units(Fraction("9.743"), Fraction(30)), 30)}
    assert all(sum(s.length for s in track.segments) == track.length for track in plan.tracks)


def test_overlap_later_start_wins_and_warns() -> None:
    plan = make_plan(documents(video=[part("early", 1, 0, 10, kind="webcam"),
                                      part("late", 1, 4, 8, kind="webcam")]))
    (track,) = plan.tracks
    assert spans(track.segments) == [(0, 120, "early"), (120, 360, "late")]
    assert [(w.part_id, w.message) for w in plan.warnings] == [
        ("early", "overlaps part late; cut at 4 s")]


def test_a_part_inside_an_earlier_one_plays_and_the_earlier_one_resumes() -> None:
    # Two devices, or a second screenshare inside a first: none of either is lost.
    plan = make_plan(documents(video=[part("long", 1, 0, 10, kind="webcam"),
                                      part("short", 1, 3, 2, kind="webcam"),
                                      part("inner", 1, 3.5, 0.5, kind="webcam")]))
    (track,) = plan.tracks
    assert spans(track.segments) == [(0, 90, "long"), (90, 105, "short"), (105, 120, "inner"),
                                     (120, 150, "short"), (150, 300, "long")]
    # Each resumed run plays its part's media from where the timeline is.
    assert [segment.offset for segment in track.segments] == [0, 0, 0, 30, 150]
    assert [(w.part_id, w.message) for w in plan.warnings] == [
        ("long", "overlaps part short; cut at 3 s"),
        ("short", "overlaps part inner; cut at 3.5 s"),
        ("short", "resumes at 4 s, where part inner inside it ends"),
        ("long", "resumes at 5 s, where part short inside it ends")]


def test_equal_starts_play_the_later_listed_part_first() -> None:
    plan = make_plan(documents(audio=[part("first", 1, 2, 2), part("second", 1, 2, 1),
                                      part("hidden", 1, 6, 1), part("cover", 1, 6, 2)]))
    (track,) = plan.tracks
    assert spans(track.segments) == [(0, 96000, None), (96000, 144000, "second"),
                                     (144000, 192000, "first"), (192000, 288000, None),
                                     (288000, 384000, "cover")]
    assert ("hidden", "hidden by later parts over its whole slot; left out") in [
        (w.part_id, w.message) for w in plan.warnings]


def test_a_part_hidden_once_the_recording_starts_is_left_out_not_cut_before_0() -> None:
    plan = make_plan(documents(audio=[part("early", 1, -2, 2.5), part("later", 1, -1, 2)]),
                     duration=2.0)
    (track,) = plan.tracks
    assert spans(track.segments) == [(0, 48000, "later"), (48000, 96000, None)]
    assert track.segments[0].offset == 48000
    messages = [(w.part_id, w.message) for w in plan.warnings]
    assert [message for part_id, message in messages if part_id == "early"] == [
        "hidden by later parts over its whole slot; left out"]


def test_a_part_hidden_until_the_timeline_end_is_left_out_with_a_warning() -> None:
    plan = make_plan(documents(audio=[part("early", 1, 0, 10), part("later", 1, 0, 5)]),
                     duration=5.0)
    (track,) = plan.tracks
    assert track.parts == ("later",)
    assert [(w.part_id, w.message) for w in plan.warnings] == [
        ("early", "hidden by later parts until the timeline end, 5 s; left out")]


def test_a_resumed_part_is_cut_at_the_timeline_end() -> None:
    plan = make_plan(documents(audio=[part("long", 1, 0, 10), part("short", 1, 2, 1)]),
                     duration=6.0)
    (track,) = plan.tracks
    assert spans(track.segments) == [(0, 96000, "long"), (96000, 144000, "short"),
                                     (144000, 288000, "long")]
    assert track.segments[-1].offset == 144000
    assert ("long", "cut at the timeline end, 6 s") in [
        (w.part_id, w.message) for w in plan.warnings]


@pytest.mark.parametrize(("duration", "expected_parts", "warned"), [
    (5.0, ("a1",), {"a1", "a2"}),
    (60.0, ("a1", "a2"), set()),
], ids=["cut", "extend"])
def test_duration_option_cuts_or_extends_every_track(duration: float,
                                                     expected_parts: tuple[str, ...],
                                                     warned: set[str]) -> None:
    plan = make_plan(documents(audio=[part("a1", 1, 0, 10), part("a2", 1, 20, 5)],
                               video=[part("v", 2, 0, 1, kind="webcam")]), duration=duration)
    audio = plan.participants[0].tracks[0]
    assert audio.parts == expected_parts
    assert audio.length == duration * 48000
    assert plan.participants[1].tracks[0].length == duration * 30
    assert {w.part_id for w in plan.warnings} == warned


def test_participant_without_a_kind_gets_no_track_of_it() -> None:
    plan = make_plan(documents(audio=[part("a", 1, 0, 1)],
                               video=[part("s", 2, 0, 1, kind="screenshare")]))
    assert [(p.id, [t.kind for t in p.tracks]) for p in plan.participants] == [
        (1, ["audio"]), (2, ["screenshare"])]


def test_participants_document_name_wins_and_null_name_gives_bare_id() -> None:
    docs = documents(audio=[part("a", 1, 0, 1, name=None), part("b", 2, 0, 1, name=None)])
    docs = Documents(audio_parts=docs.audio_parts,
                     participants=(Participant(id=2, name="Grace Hopper"),))
    assert [p.dir for p in make_plan(docs).participants] == [
        "participants/1", "participants/2-grace-hopper"]


def test_plan_json_has_no_signed_url() -> None:
    text = str(plan_as_json(make_plan(documents(audio=[part("a", 1, 0, 1)]))))
    assert "s3cr3t" not in text
    assert "segments" in text


def test_at_rate_replaces_the_same_slots() -> None:
    plan = make_plan(documents(video=[part("v", 1, 1, 2, kind="webcam")]), duration=4)
    (track,) = plan.tracks
    at_25 = track.at_rate(Fraction(25))
    assert spans(at_25.segments) == [(0, 25, None), (25, 75, "v"), (75, 100, None)]


@pytest.mark.parametrize(("max_parts", "expected"), [
    (1, [[(0, 1, None), (1, 2, "p0"), (2, 3, None)], [(0, 2, "p1")], [(0, 1, "p2"), (1, 2, None)]]),
    (2, [[(0, 1, None), (1, 2, "p0"), (2, 3, None), (3, 5, "p1")], [(0, 1, "p2"), (1, 2, None)]]),
    (3, [[(0, 1, None), (1, 2, "p0"), (2, 3, None), (3, 5, "p1"), (5, 6, "p2"), (6, 7, None)]]),
], ids=["one-part-each", "two-parts", "whole"])
def test_split_pieces_join_back_into_the_track(
        max_parts: int, expected: list[list[tuple[int, int, str | None]]]) -> None:
    slots = [Slot(part_id=f"p{i}", start=Fraction(a), end=Fraction(b))
             for i, (a, b) in enumerate([(1, 2), (3, 5), (5, 6)])]
    track = TrackPlan(participant_id=1, kind="audio", path="a.flac", rate=Fraction(1),
                      length=7, slots=tuple(slots), segments=place(slots, 7, Fraction(1)))
    pieces = split(track, max_parts)
    assert [spans(piece.segments) for piece in pieces] == expected
    assert sum(piece.length for piece in pieces) == track.length
    assert all(sum(s.length for s in piece.segments) == piece.length for piece in pieces)


def test_a_part_before_the_recording_start_is_cut_at_zero_and_played_from_its_offset() -> None:
    plan = make_plan(documents(audio=[part("early", 1, -1.2, 3.0), part("gone", 1, -3.0, 1.0)],
                               video=[part("cam", 1, -0.5, 2.0, kind="webcam")]))
    assert plan.duration == Fraction("1.8")
    audio, webcam = plan.tracks
    assert [(s.start, s.length, s.part_id, s.offset) for s in audio.segments] == [
        (0, 86400, "early", 57600)]
    assert [(s.start, s.length, s.part_id, s.offset) for s in webcam.segments] == [
        (0, 45, "cam", 15), (45, 9, None, 0)]
    assert {(w.part_id, w.message) for w in plan.warnings} == {
        ("early", "starts at -1.2 s, before the recording start; cut at 0 (its media from "
                  "1.2 s)"),
        ("gone", "ends at -2 s, before the recording start; left out"),
        ("cam", "starts at -0.5 s, before the recording start; cut at 0 (its media from "
                "0.5 s)")}
    piece = split(audio, 1)[0]
    assert piece.segments[0].offset == 57600
    shown = plan_as_json(plan)["participants"]
    assert shown[0]["tracks"][0]["segments"] == [  # type: ignore[index]
        {"start": 0, "length": 86400, "part": "early", "offset": 57600}]


def test_a_timeline_shorter_than_a_frame_leaves_video_out_with_a_warning() -> None:
    plan = make_plan(documents(audio=[part("mic", 1, 0.0, 1.0)],
                               video=[part("cam", 1, 0.0, 1.0, kind="webcam")]),
                     duration=0.0001)
    assert [(track.kind, track.length) for track in plan.tracks] == [("audio", 5)]
    assert ("cam", "its 0.0001 s in the timeline are less than one frame at 30 per second; "
                   "left out") in [(w.part_id, w.message) for w in plan.warnings]


def test_a_plan_made_alone_names_every_parts_file() -> None:
    plan = make_plan(documents(audio=[part("a/1", 1, 0, 2)],
                               video=[part("v 2", 2, 1, 2, kind="webcam")]))
    assert plan.part_files == {"a/1": "a-1.mp4", "v 2": "v-2.mp4"}


def test_a_selection_leaves_other_tracks_out_but_keeps_the_timeline() -> None:
    docs = documents(audio=[part("a1", 1, 0, 2), part("a2", 2, 0, 9)],
                     video=[part("v1", 1, 1, 2, kind="webcam"),
                            part("s1", 1, 1, 2, kind="screenshare")])
    whole = make_plan(docs)
    chosen = make_plan(docs, participants=[1], kinds=["audio", "webcam"])
    assert [(track.participant_id, track.kind) for track in chosen.tracks] == [
        (1, "audio"), (1, "webcam")]
    assert chosen.duration == whole.duration == 9
    assert chosen.tracks == whole.tracks[:2]  # the same tracks as in the whole plan
    with pytest.raises(ValueError, match="kinds must be among"):
        make_plan(docs, kinds=["slides"])  # type: ignore[list-item]


def test_a_part_of_no_length_is_left_out_with_a_warning_and_cuts_nothing() -> None:
    plan = make_plan(documents(audio=[part("long", 1, 0.0, 10.0), part("empty", 1, 5.0, 0.0)]))
    (audio,) = plan.tracks
    assert [(s.start, s.length, s.part_id) for s in audio.segments] == [(0, 480000, "long")]
    assert {(w.part_id, w.message) for w in plan.warnings} == {("empty", "lasts 0 s; left out")}
