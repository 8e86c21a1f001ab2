"""The timeline plan: plain, immutable data computed from the manifests, no I/O.

Seconds from the manifests become integer units once, here: samples for
audio (at `AUDIO_RATE`), frames for video (at the track's frame rate), with
one rounding rule (`to_units`). Every later stage works in those integers,
so the segments of a track add up to exactly its length and never drift.

Rules:
- a part's declared slot is the truth: the track plays the part's media from
  its first sample/frame for exactly the slot's length; a slot that starts
  before 0 is cut at 0 and plays its media from that far in (a warning says so);
- where two parts of one track overlap, the later start wins: the earlier part
  is cut where the later one starts, and resumes (from that far into its own
  media) where a later part inside it ends (warnings say so);
- the timeline runs from 0 to `duration` (default: the latest part end over
  every part of the recording); parts are cut at its end;
- a participant with no part of a kind gets no track of that kind;
- a selection (some participants, some kinds) leaves the other tracks out
  but not the timeline: a selected track is the same as in a whole run.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, get_args

from .naming import part_filenames, participant_dir

if TYPE_CHECKING:
    from .manifest import AudioPart, Documents, Timestamp, VideoPart

__all__ = [
    "AUDIO_RATE",
    "DEFAULT_FPS",
    "KINDS",
    "MAX_SECONDS",
    "Kind",
    "ParticipantPlan",
    "Plan",
    "PlanWarning",
    "Segment",
    "Slot",
    "TrackPlan",
    "make_plan",
    "place",
    "plan_as_json",
    "recording_start",
    "split",
    "time_of_day",
    "to_units",
]

Kind = Literal["audio", "webcam", "screenshare"]
KINDS: tuple[Kind, ...] = ("audio", "webcam", "screenshare")
AUDIO_RATE = 48000
DEFAULT_FPS = Fraction(30)
# No meeting lasts a week: a larger time is a broken document or a typo (1e12 s would
# plan a timeline ffmpeg grinds at for hours, or 1e308 s one it fails on after every
# download).
MAX_SECONDS = 7 * 24 * 3600
AUDIO_FORMATS = ("flac", "wav", "opus", "m4a", "mp3")
CAPTION_FORMATS = ("vtt", "srt")  # --captions
TIMELINE_FORMATS = ("otio", "fcp7xml")  # --timeline
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
VideoStrategy = Literal["auto", "copy", "encode"]
VIDEO_STRATEGIES: tuple[VideoStrategy, ...] = get_args(VideoStrategy)


def seconds(value: float) -> Fraction:
    """A manifest number as the exact decimal it was written as (9.73, not 9.7299999...)."""
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def to_units(time: Fraction, rate: Fraction) -> int:
    """The one rounding rule: nearest unit, halves rounded up."""
    return math.floor(time * rate + Fraction(1, 2))


@dataclass(frozen=True, slots=True, kw_only=True)
class Slot:
    """Where a part plays on the timeline, in exact seconds, after overlaps are resolved."""

    part_id: str
    start: Fraction
    end: Fraction
    cut_at_end: bool = False  # the timeline ends before the declared slot does
    cut_by_part: bool = False  # a later part starts before it ends: its media runs on unseen
    # Where on the timeline the part's media begins, when before `start`: the part
    # resumes after a later part inside it ended. None: at `start`.
    origin: Fraction | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """A run of a track, in track units: a part's media from `offset` on, or a gap."""

    start: int
    length: int
    part_id: str | None = None  # None: a gap of silence or black
    # Units of the part's media skipped: its slot started before 0, or it resumes after
    # a later part inside it.
    offset: int = 0

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def is_gap(self) -> bool:
        return self.part_id is None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanWarning:
    part_id: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackPlan:
    """One output track: `length` units (samples for audio, frames for video) at `rate` per
    second, covered exactly by `segments` (parts and gaps) in order; `path` relative to DIR."""

    participant_id: int
    kind: Kind
    path: str  # relative to the output directory
    rate: Fraction  # units per second: sample rate or frame rate
    length: int  # units
    slots: tuple[Slot, ...]
    segments: tuple[Segment, ...]  # cover [0, length) in order, exactly
    # The exact seconds the track lasts, the timeline's, which whole units may not hold
    # (12.5 s is 187.5 frames at 15 fps): the last unit is shortened or stretched to
    # end there. None: exactly `length` units.
    timeline: Fraction | None = None
    # What the file says about itself (Broadcast WAV `bext`, video start timecode):
    participant_name: str | None = None
    recording_start: datetime | None = None  # wall-clock time (UTC) of unit 0, when known

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(segment.part_id for segment in self.segments if segment.part_id)

    @property
    def gaps(self) -> tuple[Segment, ...]:
        return tuple(segment for segment in self.segments if segment.is_gap)

    def seconds(self, units: int) -> float:
        return round(float(units / self.rate), 6)

    @property
    def end(self) -> Fraction:
        """Where the track ends, in exact seconds: `timeline`, else `length` units."""
        return self.timeline if self.timeline is not None else Fraction(self.length) / self.rate

    @property
    def duration(self) -> float:
        return round(float(self.end), 6)

    @property
    def time_of_day(self) -> int:
        """Units from midnight UTC to unit 0: the start timecode in frames, or BWF samples."""
        return time_of_day(self.recording_start, self.rate)

    def at_rate(self, rate: Fraction) -> TrackPlan:
        """The same track placed at another rate (e.g. the frame rate of its parts)."""
        length = to_units(self.end, rate)
        return replace(self, rate=rate, length=length, segments=place(self.slots, length, rate),
                       timeline=self.end)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantPlan:
    id: int
    name: str | None
    dir: str
    tracks: tuple[TrackPlan, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """One recording's timeline: its length in exact seconds and every participant's tracks.

    Made by `make_plan`, which raises `ValueError` for an unknown audio format.
    """

    duration: Fraction  # seconds
    participants: tuple[ParticipantPlan, ...]
    warnings: tuple[PlanWarning, ...] = ()
    part_files: dict[str, str] = field(default_factory=dict)  # part id -> file under parts/
    start: datetime | None = None  # wall-clock time (UTC) of timeline 0, when documents say

    @property
    def tracks(self) -> tuple[TrackPlan, ...]:
        return tuple(track for person in self.participants for track in person.tracks)


def place(slots: Sequence[Slot], length: int, rate: Fraction) -> tuple[Segment, ...]:
    """Segments covering `[0, length)`: each slot at its rounded start, gaps between.

    Slots must not overlap (see `resolve_overlaps`); a slot that rounds to zero
    units or starts at or past the end is left out. A slot that starts before 0
    is cut at 0, and a slot whose media begins before it (`origin`) plays from
    there: its segment's `offset` skips that much of its media.
    """
    segments: list[Segment] = []
    cursor = 0
    for slot in slots:
        start = min(max(to_units(slot.start, rate), 0), length)
        end = min(to_units(slot.end, rate), length)
        if end <= start:
            continue
        if start > cursor:
            segments.append(Segment(start=cursor, length=start - cursor))
        origin = to_units(slot.start if slot.origin is None else slot.origin, rate)
        segments.append(Segment(start=start, length=end - start, part_id=slot.part_id,
                                offset=start - origin))
        cursor = end
    if cursor < length:
        segments.append(Segment(start=cursor, length=length - cursor))
    return tuple(segments)


def resolve_overlaps(
    slots: Iterable[Slot], duration: Fraction
) -> tuple[tuple[Slot, ...], list[PlanWarning]]:
    """The slots as they play, in order, none overlapping and none past `duration`.

    Where parts overlap, the one that started last plays (on equal starts, the
    one listed later); an earlier part resumes from its own media's point where
    a later part inside it ends (`Slot.origin`), so none of its media is lost.
    """
    listed = list(slots)
    # A part of no length places nothing, and must not cut the part before it either.
    warnings = [PlanWarning(part_id=slot.part_id, message="lasts 0 s; left out")
                for slot in listed if slot.end <= slot.start]
    # What plays before the recording starts is not placed (`place` cuts at 0).
    pieces = [piece for piece in _playing(listed) if piece[2] > 0]
    kept: list[Slot] = []
    shown: set[int] = set()  # indices in `listed` of the slots with a run kept
    for number, (index, start, end) in enumerate(pieces):
        slot = listed[index]
        before = listed[pieces[number - 1][0]] if number else None
        after = listed[pieces[number + 1][0]] if number + 1 < len(pieces) else None
        # A run that ends before its slot does has a later part after it, which cut it.
        cut_by_part = end < slot.end and after is not None
        if start > max(slot.start, Fraction(0)) and before is not None and start < duration:
            warnings.append(PlanWarning(part_id=slot.part_id, message=(
                f"resumes at {float(start):g} s, where part {before.part_id} inside it ends")))
        if after is not None and cut_by_part and end < duration:
            warnings.append(PlanWarning(part_id=slot.part_id, message=(
                f"overlaps part {after.part_id}; cut at {float(end):g} s")))
        if start >= duration:
            if start == slot.start:
                warnings.append(PlanWarning(part_id=slot.part_id, message=(
                    f"starts at {float(start):g} s, after the timeline end; left out")))
            continue
        if end > duration:
            end = duration
            warnings.append(PlanWarning(
                part_id=slot.part_id, message=f"cut at the timeline end, {float(duration):g} s"))
        kept.append(replace(slot, start=start, end=end, cut_at_end=slot.end > duration,
                            cut_by_part=cut_by_part,
                            origin=None if start == slot.start else slot.start))
        shown.add(index)
    for index, slot in enumerate(listed):
        # Of no length, ending by 0 (see `_before_start`) or starting after the end: told so.
        if index in shown or slot.end <= max(slot.start, Fraction(0)) or slot.start >= duration:
            continue
        where = "over its whole slot" if slot.end <= duration else \
            f"until the timeline end, {float(duration):g} s"
        warnings.append(PlanWarning(part_id=slot.part_id, message=(
            f"hidden by later parts {where}; left out")))
    return tuple(kept), warnings


def _playing(slots: Sequence[Slot]) -> list[tuple[int, Fraction, Fraction]]:
    """(index in `slots`, start, end) of each run of one part playing, in time order.

    At every moment the slot started last plays (equal starts: the one listed
    later). A sweep over the slots' edges with a heap of those started.
    """
    edges = sorted({edge for slot in slots if slot.end > slot.start
                    for edge in (slot.start, slot.end)})
    by_start = sorted((index for index, slot in enumerate(slots) if slot.end > slot.start),
                      key=lambda index: slots[index].start)
    started: list[tuple[Fraction, int]] = []  # (-start, -index): the top plays
    pieces: list[tuple[int, Fraction, Fraction]] = []
    waiting = 0
    for left, right in itertools.pairwise(edges):
        while waiting < len(by_start) and slots[by_start[waiting]].start <= left:
            index = by_start[waiting]
            heapq.heappush(started, (-slots[index].start, -index))
            waiting += 1
        while started and slots[-started[0][1]].end <= left:  # ended: no longer plays
            heapq.heappop(started)
        if not started:
            continue
        index = -started[0][1]
        if pieces and pieces[-1][0] == index and pieces[-1][2] == left:
            pieces[-1] = (index, pieces[-1][1], right)
        else:
            pieces.append((index, left, right))
    return pieces


def _timestamps(documents: Documents) -> Iterator[Timestamp]:
    for part in (*documents.audio_parts, *documents.video_parts):
        yield part.start_timestamp
    for event in documents.participant_events:
        yield event.timestamp
    for turn in documents.speaker_timeline:
        yield turn.start_timestamp
    for entry in documents.transcript:
        for word in entry.words:
            yield word.start_timestamp


def recording_start(documents: Documents) -> datetime | None:
    """When timeline 0 was, in UTC: `absolute - relative` of the first timestamp that has both.

    Parts come first (they define the timeline), then events, speaker turns and
    words. A time without a zone is taken as UTC. None when no document says.
    """
    for stamp in _timestamps(documents):
        if stamp.absolute is not None:
            moment = datetime.fromisoformat(stamp.absolute)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return (moment - timedelta(seconds=stamp.relative)).astimezone(UTC)
    return None


def time_of_day(start: datetime | None, rate: Fraction) -> int:
    """Units (frames, samples) from midnight UTC to `start`, by the one rounding rule.

    This is the start timecode of video, a Broadcast WAV's `TimeReference` and
    the timeline's start; 0 (`00:00:00:00`) when the start is unknown.
    """
    if start is None:
        return 0
    start = start.astimezone(UTC)
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = start - midnight
    exact = Fraction(elapsed.days * 86400 + elapsed.seconds) + Fraction(elapsed.microseconds,
                                                                         1_000_000)
    return to_units(exact, rate)


def make_plan(
    documents: Documents,
    *,
    duration: float | None = None,
    audio_format: str = "flac",
    fps: Fraction = DEFAULT_FPS,
    participants: Iterable[int] = (),
    kinds: Iterable[Kind] = KINDS,
) -> Plan:
    """The plan for one recording: a track per participant and kind that has parts.

    `duration` is in seconds (default: the latest part end), `fps` in frames
    per second. `participants` (ids; empty: everyone) and `kinds` select which
    tracks are planned; the timeline is the whole recording's either way.
    `Plan.part_files` names every part's file under `parts/`. Raises
    `ValueError` for an unknown audio format or kind.
    """
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio format must be one of {', '.join(AUDIO_FORMATS)}")
    selected_kinds = set(kinds)
    if not selected_kinds <= set(KINDS):
        raise ValueError(f"kinds must be among {', '.join(KINDS)}")
    selected = set(participants)
    slots_by_track: dict[tuple[int, Kind], list[Slot]] = {}
    names: dict[int, str | None] = {person.id: person.name for person in documents.participants}
    kinds_of_parts: list[tuple[AudioPart | VideoPart, Kind]] = [
        *((part, "audio") for part in documents.audio_parts),
        *((part, part.type) for part in documents.video_parts)]
    warnings: list[PlanWarning] = []
    for part, kind in kinds_of_parts:
        start = seconds(part.start)
        slot = Slot(part_id=part.id, start=start, end=start + seconds(part.duration))
        if slot.end <= 0:  # one that plays from before 0 is told so once placed
            warnings.append(_before_start(slot))
        slots_by_track.setdefault((part.participant.id, kind), []).append(slot)
        if names.get(part.participant.id) is None:
            names[part.participant.id] = part.participant.name
    latest_end = max((slot.end for slots in slots_by_track.values() for slot in slots),
                     default=Fraction(0))
    timeline = seconds(duration) if duration is not None else latest_end
    wall_start = recording_start(documents)
    people: list[ParticipantPlan] = []
    for participant_id in sorted({key[0] for key in slots_by_track}):
        if selected and participant_id not in selected:
            continue
        directory = participant_dir(participant_id, names.get(participant_id))
        tracks = []
        for kind in KINDS:
            if kind not in selected_kinds or (participant_id, kind) not in slots_by_track:
                continue
            slots, cut = resolve_overlaps(slots_by_track[participant_id, kind], timeline)
            warnings.extend(_before_start(slot) for slot in slots if slot.start < 0)
            warnings.extend(cut)
            rate = Fraction(AUDIO_RATE) if kind == "audio" else fps
            length = to_units(timeline, rate)
            segments = place(slots, length, rate)
            warnings.extend(_too_short(slots, segments, rate, kind))
            if not any(segment.part_id for segment in segments):
                continue  # every part was left out (warned): nothing to show
            filename = f"audio.{audio_format}" if kind == "audio" else f"{kind}.mp4"
            tracks.append(TrackPlan(
                participant_id=participant_id, kind=kind, path=f"{directory}/{filename}",
                rate=rate, length=length, slots=slots, segments=segments, timeline=timeline,
                participant_name=names.get(participant_id), recording_start=wall_start))
        if not tracks:
            continue
        people.append(ParticipantPlan(id=participant_id, name=names.get(participant_id),
                                      dir=directory, tracks=tuple(tracks)))
    files = part_filenames((part.id, part.download_url) for part, _ in kinds_of_parts)
    return Plan(duration=timeline, participants=tuple(people), warnings=tuple(warnings),
                part_files=files, start=wall_start)


def _before_start(slot: Slot) -> PlanWarning:
    if slot.end <= 0:
        return PlanWarning(part_id=slot.part_id, message=(
            f"ends at {float(slot.end):g} s, before the recording start; left out"))
    return PlanWarning(part_id=slot.part_id, message=(
        f"starts at {float(slot.start):g} s, before the recording start; cut at 0 "
        f"(its media from {float(-slot.start):g} s)"))


def _too_short(slots: Sequence[Slot], segments: Sequence[Segment], rate: Fraction,
               kind: Kind) -> list[PlanWarning]:
    """A warning for each slot (within the timeline) that is shorter than one unit."""
    placed = {segment.part_id for segment in segments}
    unit = "sample" if kind == "audio" else "frame"
    return [PlanWarning(part_id=slot.part_id, message=(
                f"its {float(slot.end - max(slot.start, Fraction(0))):g} s in the timeline "
                f"are less than one {unit} at {rate} per second; left out"))
            for slot in slots if slot.part_id not in placed and slot.end > 0]


def split(track: TrackPlan, max_parts: int) -> tuple[TrackPlan, ...]:
    """Consecutive pieces of `track` with at most `max_parts` parts each, covering it exactly.

    Each piece starts where its first part starts (the first piece at 0) and
    ends where the next begins, its segments shifted to start at 0; pieces
    rendered one after another and joined make the whole track. Their `slots`
    are left empty: a piece is placed by its segments alone.
    """
    if max_parts < 1:
        raise ValueError("max_parts must be >= 1")
    starts = [segment.start for segment in track.segments if segment.part_id is not None]
    cuts = [0, *starts[max_parts::max_parts], track.length]
    pieces = []
    for begin, end in itertools.pairwise(cuts):
        segments = tuple(replace(segment, start=segment.start - begin)
                         for segment in track.segments if begin <= segment.start < end)
        pieces.append(replace(track, length=end - begin, slots=(), segments=segments,
                              timeline=None))
    return tuple(pieces)


def plan_as_json(plan: Plan) -> dict[str, object]:
    """The plan as JSON-ready data, for `--dry-run`."""
    return {
        "duration": float(plan.duration),
        "participants": [
            {"id": person.id, "name": person.name, "dir": person.dir, "tracks": [
                {"kind": track.kind, "path": track.path, "rate": str(track.rate),
                 "length": track.length, "duration": track.duration,
                 "segments": [
                     {"start": segment.start, "length": segment.length, "part": segment.part_id,
                      **({"offset": segment.offset} if segment.offset else {})}
                     for segment in track.segments]}
                for track in person.tracks]}
            for person in plan.participants],
        "warnings": [{"part": warning.part_id, "message": warning.message}
                     for warning in plan.warnings],
        "part_files": plan.part_files,
        "start": plan.start.isoformat() if plan.start else None,
    }
