"""An editor's timeline of the run: OpenTimelineIO (`timeline.otio`) and FCP 7 XML (`timeline.xml`).

`build_timeline` is pure (OTIO objects in memory, no I/O): one track per
rendered track, named `<name> <kind>`, holding one clip of the whole track
file, referred to by its path relative to the output directory (DaVinci
Resolve refuses `file://` URLs, OpenTimelineIO issue #1985). The timeline
runs at the video tracks' frame rate (`DEFAULT_FPS` with audio only) and
starts at the recording's time of day as timecode (`plan.time_of_day`, the
same figure the track files carry); a video file's media starts at that
timecode too, and so does a WAV's (Broadcast WAV `TimeReference`).

Markers sit on the timeline's stack, in timeline frames: one per speaker
turn (named after the speaker, spanning the turn, one colour per
participant) and one per participant event (`<action> <name>`, a chat
message's text as its comment). Turns and events are clipped to the
timeline; one wholly before 0 or after the end is left out with a warning.

FCP 7 XML is written by the OTIO FCP adapter (`otio-fcp-adapter`), which
adds the `<format>` element Resolve needs (OTIO issue #839). In that file
audio clips are counted in timeline frames, as FCP 7 XML counts every
clip item (Premiere and Resolve read `<in>`/`<out>` in the sequence's
timebase); in the OTIO file they keep their sample rate, exactly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import opentimelineio as otio

from ..errors import DeliverableError
from ..plan import AUDIO_RATE, DEFAULT_FPS, seconds, time_of_day, to_units
from . import DeliverableContext, DeliverableOptions, Output
from .captions import speaker_name

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ..manifest import Documents
    from ..plan import Plan, TrackPlan
    from ..report import OutputKind

__all__ = ["TIMELINE", "build_timeline"]

# Colours a participant's markers cycle through (OTIO's marker colours, less black and white).
_COLOURS = ("RED", "GREEN", "BLUE", "YELLOW", "CYAN", "MAGENTA", "ORANGE", "PURPLE", "PINK")
_FILES = {"otio": ("timeline.otio", "otio_json"), "fcp7xml": ("timeline.xml", "fcp_xml")}


def _rational(units: int, rate: Fraction) -> otio.opentime.RationalTime:
    return otio.opentime.RationalTime(units, float(rate))


def _range(start: int, length: int, rate: Fraction) -> otio.opentime.TimeRange:
    return otio.opentime.TimeRange(_rational(start, rate), _rational(length, rate))


# Frame rates SMPTE timecode counts in (OTIO's `to_timecode` and FCP 7 XML refuse others).
TIMECODE_RATES = frozenset(Fraction(rate) for rate in (
    Fraction(24000, 1001), 24, 25, Fraction(30000, 1001), 30, 48, 50, Fraction(60000, 1001), 60))


def timeline_rate(tracks: Sequence[TrackPlan]) -> Fraction:
    """The first video track's frame rate where timecode can count in it, else `DEFAULT_FPS`.

    A copied 15 fps webcam or a screenshare with a frame every 3 s keeps its own rate
    in its file; the timeline then runs at `DEFAULT_FPS` and counts that clip in it.
    """
    return next((track.rate for track in tracks if track.kind != "audio"
                 and track.rate in TIMECODE_RATES), DEFAULT_FPS)


def _media_start(plan: Plan, track: TrackPlan, rate: Fraction) -> int:
    """Where the file's own time starts, in `rate` units: its timecode, where it has one."""
    if track.kind == "audio" and not track.path.endswith(".wav"):
        return 0
    return time_of_day(plan.start, rate)


def _clip(plan: Plan, track: TrackPlan, frame_rate: Fraction, *, audio_in_frames: bool
          ) -> otio.schema.Clip:
    in_frames = audio_in_frames if track.kind == "audio" else track.rate not in TIMECODE_RATES
    rate = frame_rate if in_frames else track.rate
    length = track.length if rate == track.rate \
        else to_units(track.end, rate)  # the exact end, which whole frames may not reach
    available = _range(_media_start(plan, track, rate), length, rate)
    media = {"audio": {"samplecharacteristics": {"samplerate": AUDIO_RATE}}} \
        if track.kind == "audio" else {"video": {}}
    reference = otio.schema.ExternalReference(target_url=track.path, available_range=available,
                                              metadata={"fcp_xml": {"media": media}})
    name = f"{speaker_name(plan, track.participant_id)} {track.kind}"
    return otio.schema.Clip(name=name, media_reference=reference, source_range=available)


def _track(plan: Plan, track: TrackPlan, frame_rate: Fraction, *, audio_in_frames: bool
           ) -> otio.schema.Track:
    kind = otio.schema.TrackKind.Audio if track.kind == "audio" else otio.schema.TrackKind.Video
    clip = _clip(plan, track, frame_rate, audio_in_frames=audio_in_frames)
    return otio.schema.Track(name=clip.name, kind=kind, children=[clip])


def _colours(plan: Plan, documents: Documents) -> dict[int, str]:
    ids = [person.id for person in plan.participants]
    ids += sorted({turn.participant.id for turn in documents.speaker_timeline} - set(ids))
    ids += sorted({event.participant.id for event in documents.participant_events} - set(ids))
    return {pid: getattr(otio.schema.MarkerColor, _COLOURS[index % len(_COLOURS)])
            for index, pid in enumerate(ids)}


@dataclass(frozen=True, slots=True)
class _Span:
    """A marker's place in timeline frames, or why it has none."""

    start: int
    length: int
    left_out: str | None = None


def _span(start: float, end: float, plan: Plan, rate: Fraction) -> _Span:
    if end < 0 or (end == 0 and start < 0):
        return _Span(0, 0, "before the recording start")
    if seconds(start) > plan.duration:
        return _Span(0, 0, "after the timeline end")
    first = to_units(max(seconds(start), Fraction(0)), rate)
    last = to_units(min(seconds(end), plan.duration), rate)
    return _Span(first, max(last - first, 0))


def _markers(plan: Plan, documents: Documents, rate: Fraction
             ) -> tuple[list[otio.schema.Marker], list[str]]:
    colours = _colours(plan, documents)
    markers: list[otio.schema.Marker] = []
    left_out: Counter[tuple[str, str]] = Counter()
    for turn in documents.speaker_timeline:
        who = turn.participant
        span = _span(turn.start_timestamp.relative, turn.end_timestamp.relative, plan, rate)
        if span.left_out:
            left_out["speaker turn", span.left_out] += 1
            continue
        markers.append(otio.schema.Marker(
            name=speaker_name(plan, who.id, who.name), color=colours[who.id],
            marked_range=_range(span.start, span.length, rate)))
    for event in documents.participant_events:
        who, at = event.participant, event.timestamp.relative
        span = _span(at, at, plan, rate)
        if span.left_out:
            left_out["participant event", span.left_out] += 1
            continue
        comment = event.data.text if event.data is not None else ""
        markers.append(otio.schema.Marker(
            name=f"{event.action} {speaker_name(plan, who.id, who.name)}", color=colours[who.id],
            marked_range=_range(span.start, 0, rate), comment=comment,
            metadata={"fcp_xml": {"comment": comment}} if comment else {}))
    warnings = [f"{count} {what}(s) {why} left out of the timeline markers"
                for (what, why), count in left_out.items()]
    return markers, warnings


def build_timeline(plan: Plan, tracks: Sequence[TrackPlan], documents: Documents, *,
                   audio_in_frames: bool = False) -> tuple[otio.schema.Timeline, list[str]]:
    """The run's timeline and warnings on markers left out; no I/O.

    `tracks` are the rendered tracks (as rendered: a copied video track keeps
    its parts' frame rate). `audio_in_frames` counts audio clips in timeline
    frames (for FCP 7 XML) instead of samples.
    """
    rate = timeline_rate(tracks)
    timeline = otio.schema.Timeline(
        name="recording", global_start_time=_rational(time_of_day(plan.start, rate), rate))
    for track in tracks:
        timeline.tracks.append(_track(plan, track, rate, audio_in_frames=audio_in_frames))
    markers, warnings = _markers(plan, documents, rate)
    timeline.tracks.markers.extend(markers)
    return timeline, warnings


class Timeline:
    """The timeline deliverable: `DIR/timeline.otio` and `DIR/timeline.xml` (FCP 7 XML)."""

    kind: OutputKind = "timeline"

    def wanted(self, options: DeliverableOptions) -> bool:
        return bool(options.timeline)

    def outputs(self, context: DeliverableContext) -> list[Output]:
        return [Output(kind="timeline", format=fmt, path=_FILES[fmt][0])
                for fmt in context.options.timeline]

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        if not context.tracks:
            raise DeliverableError("no track was written: a timeline would be empty")
        adapter = _FILES[output.format][1]
        timeline, warnings = build_timeline(
            context.plan, [rendered.track for rendered in context.tracks], context.documents,
            audio_in_frames=output.format == "fcp7xml")
        text = otio.adapters.write_to_string(timeline, adapter_name=adapter)
        target.write_text(text, encoding="utf-8")
        return warnings


TIMELINE = Timeline()
