"""Build whole recordings: marked media parts plus the manifests that describe them.

Each part's media carries a marker (a tone's frequency, a video's colour), and
the builder returns where each marker is due on the recording's timeline, so a
test can decode a track and check every part landed in its slot. The JSON
follows `docs/download-schemas.md` field for field.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from tests.support.media import make_colour_video, make_tone, rgb

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.media import RGB, Colour

__all__ = ["Manifests", "Participant", "RecordingBuilder", "Segment"]

Json = dict[str, Any]
VideoKind = Literal["webcam", "screenshare"]

RECORDING_START = datetime(2025, 7, 17, 14, 0, 0, tzinfo=UTC)
_IDS = uuid.UUID("6f1c0a52-3d4e-4b8f-9a61-0c2d7e5b9f13")  # namespace: stable part/event ids
_WORDS = ("so", "let's", "look", "at", "where", "the", "numbers", "landed", "this", "quarter",
          "and", "what", "we", "should", "change", "before", "the", "next", "release")
# Ties in participant_events.json: joins first, leaves last.
_EVENT_ORDER = {"join": 0, "webcam_on": 1, "screenshare_on": 1, "speech_on": 2,
                "chat_message": 3, "speech_off": 4, "webcam_off": 5, "screenshare_off": 5,
                "leave": 6}


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant object as every manifest embeds it."""

    id: int
    name: str | None
    is_host: bool | None = False
    platform: str | None = "desktop"
    email: str | None = None
    extra_data: Json | None = None

    def as_json(self) -> Json:
        """The schema's participant object."""
        return {"id": self.id, "name": self.name, "is_host": self.is_host,
                "platform": self.platform, "extra_data": self.extra_data, "email": self.email}


@dataclass(frozen=True, slots=True)
class Segment:
    """Where one part's marker is due: `start` to `end` on the recording's timeline.

    `duration` is the declared slot; `end` is where the media runs out or the
    slot ends, whichever is first. `marker` is a frequency (audio) or an RGB colour.
    """

    participant_id: int
    kind: Literal["audio", "webcam", "screenshare"]
    part_id: str
    file: str
    start: float
    duration: float
    end: float
    marker: float | RGB

    @property
    def slot_end(self) -> float:
        """The declared end of the part's slot."""
        return self.start + self.duration


@dataclass(frozen=True, slots=True)
class Manifests:
    """Paths of the written documents and the markers they promise."""

    root: Path
    parts_dir: Path
    video_parts: Path
    audio_parts: Path
    participants: Path
    participant_events: Path
    speaker_timeline: Path
    transcript: Path
    expected: list[Segment]
    duration: float

    def cli_args(self) -> list[str]:
        """`assembler run` options naming every document."""
        return ["--video-parts", str(self.video_parts), "--audio-parts", str(self.audio_parts),
                "--participants", str(self.participants),
                "--participant-events", str(self.participant_events),
                "--speaker-timeline", str(self.speaker_timeline),
                "--transcript", str(self.transcript)]


def _stamp(relative: float, started_at: datetime) -> Json:
    absolute = started_at + timedelta(seconds=relative)
    return {"absolute": absolute.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "relative": round(relative, 6)}


def _stable_id(*key: object) -> str:
    return str(uuid.uuid5(_IDS, "/".join(map(str, key))))


@dataclass
class RecordingBuilder:
    """Collects participants and parts, writes media as parts are added, then manifests.

    Media goes to `root/parts/<part id><ext>`; `write()` puts the JSON in `root`.
    """

    root: Path
    started_at: datetime = RECORDING_START
    participants: dict[int, Participant] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    chats: list[tuple[int, float, str]] = field(default_factory=list)

    @property
    def parts_dir(self) -> Path:
        """Where part media is written."""
        return self.root / "parts"

    def participant(self, participant_id: int, name: str | None, *, is_host: bool | None = None,
                    platform: str | None = "desktop", email: str | None = None,
                    extra_data: Json | None = None) -> Participant:
        """Declare a participant; unset `is_host` makes the first one declared the host."""
        if is_host is None:
            is_host = not self.participants
        person = Participant(participant_id, name, is_host, platform, email, extra_data)
        self.participants[participant_id] = person
        return person

    def _known(self, participant_id: int, name: str | None) -> Participant:
        known = self.participants.get(participant_id)
        return known if known is not None else self.participant(participant_id, name)

    def _new_part(self, participant_id: int, name: str | None, kind: str, ext: str,
                  ) -> tuple[str, Path]:
        self._known(participant_id, name)
        part_id = _stable_id(participant_id, kind, len(self.segments))
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        return part_id, self.parts_dir / f"{part_id}{ext}"

    def _add(self, participant_id: int, kind: Literal["audio", "webcam", "screenshare"],
             part_id: str, path: Path, start: float, duration: float, media_seconds: float,
             marker: float | RGB) -> Segment:
        segment = Segment(participant_id, kind, part_id, path.name, start, duration,
                          start + min(duration, media_seconds), marker)
        self.segments.append(segment)
        return segment

    def audio_part(self, participant_id: int, name: str | None, start: float, duration: float,
                   *, media_seconds: float | None = None, freq: float = 440.0,
                   rate: int = 48000, channels: int = 1, ext: str = ".m4a",
                   bitrate: str | None = None) -> Segment:
        """Add an audio part: a `freq` tone lasting `media_seconds` (default: the slot)."""
        seconds = duration if media_seconds is None else media_seconds
        part_id, path = self._new_part(participant_id, name, "audio", ext)
        make_tone(path, seconds=seconds, freq=freq, rate=rate, channels=channels,
                  bitrate=bitrate)
        return self._add(participant_id, "audio", part_id, path, start, duration, seconds, freq)

    def video_part(self, participant_id: int, name: str | None, start: float, duration: float,
                   *, kind: VideoKind = "webcam", media_seconds: float | None = None,
                   colour: Colour = "red", size: tuple[int, int] = (320, 240), fps: int = 30,
                   codec: str | None = None, ext: str = ".mp4", vfr: bool = False,
                   gop: int | None = None, clock: bool = False,
                   bitrate: str | None = None) -> Segment:
        """Add a webcam or screenshare part: `colour` lasting `media_seconds` (default: slot).

        `clock` burns the recording's time into every frame, from the part's start;
        `bitrate` caps the video's.
        """
        seconds = duration if media_seconds is None else media_seconds
        part_id, path = self._new_part(participant_id, name, kind, ext)
        make_colour_video(path, seconds=seconds, colour=colour, fps=fps, size=size, codec=codec,
                          gop=gop, vfr=vfr, clock=start if clock else None, bitrate=bitrate)
        return self._add(participant_id, kind, part_id, path, start, duration, seconds,
                         rgb(colour))

    def chat(self, participant_id: int, at: float, text: str) -> None:
        """Add a chat message to everyone at `at` seconds."""
        self.chats.append((participant_id, at, text))

    def write(self, base_url: str, *, signed: bool = True, signed_at: datetime | None = None,
              expires: int = 604800) -> Manifests:
        """Write all six documents under `root`; part URLs are `base_url/parts/<file>`.

        `signed` adds a fake S3 query string. With `signed_at` it is a complete
        SigV4 query whose `X-Amz-Date` + `X-Amz-Expires` say when it expires
        (a past `signed_at` makes expired links); without, it carries no date.
        """
        timeline = self._speaker_timeline()
        documents = {
            "video_parts": [self._part_json(s, base_url, signed, signed_at, expires)
                            for s in self.segments if s.kind != "audio"],
            "audio_parts": [self._part_json(s, base_url, signed, signed_at, expires)
                            for s in self.segments if s.kind == "audio"],
            "participants": [p.as_json() for p in self.participants.values()],
            "participant_events": self._events(timeline),
            "speaker_timeline": [self._speech_json(*entry) for entry in timeline],
            "transcript": [self._transcript_json(*entry) for entry in timeline],
        }
        paths = {}
        for key, document in documents.items():
            paths[key] = self.root / f"{key}.json"
            paths[key].write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n",
                                  encoding="utf-8")
        return Manifests(root=self.root, parts_dir=self.parts_dir, expected=list(self.segments),
                         duration=max((s.slot_end for s in self.segments), default=0.0),
                         **paths)

    def _url(self, segment: Segment, base_url: str, signed: bool, signed_at: datetime | None,
             expires: int) -> str:
        url = f"{base_url.rstrip('/')}/parts/{quote(segment.file)}"
        if not signed:
            return url
        signature = hashlib.sha256(segment.part_id.encode()).hexdigest()
        if signed_at is None:
            return f"{url}?X-Amz-Expires={expires}&X-Amz-Signature={signature}"
        day = signed_at.strftime("%Y%m%d")
        return (f"{url}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                f"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F{day}%2Fus-east-1%2Fs3%2Faws4_request"
                f"&X-Amz-Date={signed_at.strftime('%Y%m%dT%H%M%SZ')}&X-Amz-Expires={expires}"
                f"&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}")

    def _part_json(self, segment: Segment, base_url: str, signed: bool,
                   signed_at: datetime | None, expires: int) -> Json:
        part: Json = {
            "id": segment.part_id,
            "participant": self.participants[segment.participant_id].as_json(),
            "start_timestamp": _stamp(segment.start, self.started_at),
            "duration": segment.duration,
        }
        if segment.kind != "audio":
            part["type"] = segment.kind
        part["download_url"] = self._url(segment, base_url, signed, signed_at, expires)
        return part

    def _speaker_timeline(self) -> list[tuple[int, float, float]]:
        """Who speaks when: each audio marker, cut short where the next speaker starts."""
        spoken = sorted((s.start, s.end, s.participant_id) for s in self.segments
                        if s.kind == "audio")
        timeline = []
        for index, (start, end, participant_id) in enumerate(spoken):
            next_start = spoken[index + 1][0] if index + 1 < len(spoken) else end
            if min(end, next_start) > start:
                timeline.append((participant_id, start, min(end, next_start)))
        return timeline

    def _speech_json(self, participant_id: int, start: float, end: float) -> Json:
        return {"participant": self.participants[participant_id].as_json(),
                "start_timestamp": _stamp(start, self.started_at),
                "end_timestamp": _stamp(end, self.started_at)}

    def _transcript_json(self, participant_id: int, start: float, end: float) -> Json:
        count = max(1, int((end - start) * 2))
        step = (end - start) / count
        words = [{"text": _WORDS[(int(start) + i) % len(_WORDS)],
                  "start_timestamp": _stamp(start + i * step, self.started_at),
                  "end_timestamp": _stamp(start + (i + 0.8) * step, self.started_at)}
                 for i in range(count)]
        return {"participant": self.participants[participant_id].as_json(), "words": words}

    def _presence(self, participant_id: int) -> list[tuple[float, float]]:
        """Joined intervals: the union of the participant's part slots."""
        intervals: list[tuple[float, float]] = []
        for start, end in sorted((s.start, s.slot_end) for s in self.segments
                                 if s.participant_id == participant_id):
            if intervals and start <= intervals[-1][1]:
                intervals[-1] = (intervals[-1][0], max(intervals[-1][1], end))
            else:
                intervals.append((start, end))
        return intervals

    def _events(self, timeline: list[tuple[int, float, float]]) -> list[Json]:
        raw: list[tuple[float, str, int, Json | None]] = []
        for participant_id in self.participants:
            for start, end in self._presence(participant_id):
                raw += [(start, "join", participant_id, None), (end, "leave", participant_id, None)]
        for s in self.segments:
            if s.kind != "audio":
                raw += [(s.start, f"{s.kind}_on", s.participant_id, None),
                        (s.slot_end, f"{s.kind}_off", s.participant_id, None)]
        for participant_id, start, end in timeline:
            raw += [(start, "speech_on", participant_id, None),
                    (end, "speech_off", participant_id, None)]
        for participant_id, at, text in self.chats:
            raw.append((at, "chat_message", participant_id, {"text": text, "to": "everyone"}))
        raw.sort(key=lambda event: (event[0], _EVENT_ORDER[event[1]], event[2]))
        return [{"id": _stable_id("event", index), "action": action,
                 "participant": self.participants[participant_id].as_json(),
                 "timestamp": _stamp(at, self.started_at), "data": data}
                for index, (at, action, participant_id, data) in enumerate(raw)]
