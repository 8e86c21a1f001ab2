"""Models of the download-schema documents, validated strictly once, at load.

Every problem is reported as `ManifestError(file, place, problem)`, e.g.
`audio_parts.json: [3].duration: must be >= 0`. Unknown extra keys are
ignored: the API adds fields over time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from .errors import AssemblerError, InvalidInputsError, ManifestError, redact_url
from .plan import MAX_SECONDS

__all__ = [
    "AudioPart",
    "ChatData",
    "Documents",
    "Participant",
    "ParticipantEvent",
    "ProviderData",
    "Sources",
    "SpeakerSegment",
    "Timestamp",
    "TranscriptEntry",
    "VideoPart",
    "decode_document",
    "describe_source",
    "load_document",
    "load_documents",
    "parse_document",
    "validate_document",
]


def _iso8601(value: str | None) -> str | None:
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 date-time") from None
    return value


_HOST = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=:\[\]-]+")


def _http_url(value: str) -> str:
    # Never echo the URL in the message: it is signed.
    try:
        parts = urlsplit(value)
        valid = (parts.scheme in ("http", "https") and bool(parts.hostname)
                 and _HOST.fullmatch(parts.netloc.rpartition("@")[2]) is not None)
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        valid = False
    if not valid:
        raise ValueError("must be an http(s) URL")
    return value


Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
# A time on the recording's clock: the API documents speaker turns, events, words and
# parts before the recording start with negative times. Outputs clip them at 0.
RecordingTime = Annotated[float, Field(ge=-MAX_SECONDS, le=MAX_SECONDS, allow_inf_nan=False)]
IsoDateTime = Annotated[str | None, AfterValidator(_iso8601)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class Participant(_Model):
    id: int
    name: str | None = None
    is_host: bool | None = None
    platform: str | None = None
    extra_data: Any = None
    email: str | None = None


class Timestamp(_Model):
    relative: RecordingTime
    absolute: IsoDateTime = None


class _Part(_Model):
    id: Annotated[str, Field(min_length=1)]
    participant: Participant
    start_timestamp: Timestamp
    duration: Seconds
    download_url: HttpUrl = Field(repr=False)

    @property
    def start(self) -> float:
        return self.start_timestamp.relative


class AudioPart(_Part):
    pass


class VideoPart(_Part):
    type: Literal["webcam", "screenshare"]


class ChatData(_Model):
    text: str
    to: Literal["everyone", "only_bot"]


class ParticipantEvent(_Model):
    id: str
    action: Literal["join", "leave", "update", "speech_on", "speech_off", "webcam_on",
                    "webcam_off", "screenshare_on", "screenshare_off", "chat_message"]
    participant: Participant
    timestamp: Timestamp
    data: ChatData | None = None


class SpeakerSegment(_Model):
    participant: Participant
    start_timestamp: Timestamp
    end_timestamp: Timestamp


class Word(_Model):
    text: str
    start_timestamp: Timestamp
    end_timestamp: Timestamp


class TranscriptEntry(_Model):
    participant: Participant
    words: list[Word]


class SourceAudio(_Model):
    type: Literal["mixed", "separate"]
    offset: Seconds
    participant: Participant | None = None


class ProviderPart(_Model):
    id: str
    created_at: IsoDateTime
    source_audio: SourceAudio
    type: Literal["webhook", "http_response", "websocket_message"]
    data: dict[str, Any]


class ProviderData(_Model):
    parts: list[ProviderPart]


_T = TypeVar("_T")

_MESSAGES = {
    "missing": "required",
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le} (a week)",
    "greater_than": "must be > {gt}",
    "finite_number": "must be a finite number",
    "literal_error": "must be one of {expected}",
    "string_too_short": "must not be empty",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "none_required": "must be null",
}


def _place(loc: tuple[int | str, ...]) -> str:
    place = ""
    for key in loc:
        place += f"[{key}]" if isinstance(key, int) else (f".{key}" if place else str(key))
    return place


def _problem(error: Any) -> str:
    kind = error["type"]
    if kind == "value_error":
        return str(error["ctx"]["error"])
    template = _MESSAGES.get(kind)
    if template is None:
        return str(error["msg"]).lower()
    context = {key: f"{value:g}" if isinstance(value, float) else value
               for key, value in error.get("ctx", {}).items()}
    return template.format(**context)


def describe_source(source: str | Path) -> str:
    """A document's source as messages show it: the path as given, a URL without its query."""
    text = str(source)
    return redact_url(text) if is_url(text) else text


def decode_document(data: bytes, source: str) -> Any:
    """Decode a document's JSON; raise `ManifestError` naming `source` and the place."""
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ManifestError(source, "", "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(source, f"line {exc.lineno} column {exc.colno}",
                            f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise ManifestError(source, "", "nested too deeply to be a manifest") from None
    except ValueError as exc:
        raise ManifestError(source, "", str(exc)) from None


def validate_document(raw: Any, adapter: TypeAdapter[_T], source: str) -> _T:
    """Validate decoded JSON; raise `InvalidInputsError` with one `ManifestError` per problem."""
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        raise InvalidInputsError([
            ManifestError(source, _place(tuple(error["loc"])) or "top level", _problem(error))
            for error in exc.errors(include_url=False, include_input=False)]) from None


def parse_document(data: bytes, adapter: TypeAdapter[_T], source: str) -> _T:
    """Decode JSON and validate it.

    Raises `ManifestError` when it is not JSON, `InvalidInputsError` listing
    every place that does not match the schema.
    """
    return validate_document(decode_document(data, source), adapter, source)


def _reject_constant(name: str) -> float:
    # json.loads accepts NaN and Infinity; the schema's numbers are finite.
    raise ValueError(f"{name} is not a finite number")


AUDIO_PARTS: TypeAdapter[list[AudioPart]] = TypeAdapter(list[AudioPart])
VIDEO_PARTS: TypeAdapter[list[VideoPart]] = TypeAdapter(list[VideoPart])
PARTICIPANTS: TypeAdapter[list[Participant]] = TypeAdapter(list[Participant])
PARTICIPANT_EVENTS: TypeAdapter[list[ParticipantEvent]] = TypeAdapter(list[ParticipantEvent])
SPEAKER_TIMELINE: TypeAdapter[list[SpeakerSegment]] = TypeAdapter(list[SpeakerSegment])
TRANSCRIPT: TypeAdapter[list[TranscriptEntry]] = TypeAdapter(list[TranscriptEntry])
PROVIDER_DATA: TypeAdapter[ProviderData] = TypeAdapter(ProviderData)


def _duplicate_ids(parts: list[_PartT], source: str) -> list[ManifestError]:
    first_index: dict[str, int] = {}
    problems = []
    for index, part in enumerate(parts):
        if part.id in first_index:
            problems.append(ManifestError(source, f"[{index}].id",
                                          f"duplicate of [{first_index[part.id]}].id"))
        first_index.setdefault(part.id, index)
    return problems


def _wrong_kind(name: str, raw: Any, source: str) -> ManifestError | None:
    """A video parts manifest given as audio parts, or the other way round.

    Unknown keys are ignored, so audio parts would accept a video manifest
    silently; and a video manifest's `type: required` on every part would hide
    the one mistake behind it.
    """
    if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
        return None
    typed = [item.get("type") in ("webcam", "screenshare") for item in raw]
    if name == "audio_parts" and any(typed):
        return ManifestError(source, f"[{typed.index(True)}].type", "parts with a `type` are "
                             "video parts: give this document as --video-parts")
    if name == "video_parts" and not any("type" in item for item in raw):
        return ManifestError(source, "top level", "no part has a `type` (webcam or "
                             "screenshare): audio parts? give this document as --audio-parts")
    return None


_PartT = TypeVar("_PartT", bound=_Part)

FetchDocument = Callable[[str], Awaitable[bytes]]
MAX_LOCAL_DOCUMENT = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Sources:
    """Where each document comes from: a local path or an http(s) URL; None when not given."""

    video_parts: str | None = None
    audio_parts: str | None = None
    participants: str | None = None
    participant_events: str | None = None
    speaker_timeline: str | None = None
    transcript: str | None = None

    def __post_init__(self) -> None:
        if self.video_parts is None and self.audio_parts is None:
            raise ValueError("give video parts, audio parts or both")

    def given(self) -> dict[str, str]:
        """The documents given, by option name (`video_parts`, ...)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__
                if getattr(self, name) is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class Documents:
    """Every document of a recording, validated."""

    video_parts: tuple[VideoPart, ...] = ()
    audio_parts: tuple[AudioPart, ...] = ()
    participants: tuple[Participant, ...] = ()
    participant_events: tuple[ParticipantEvent, ...] = ()
    speaker_timeline: tuple[SpeakerSegment, ...] = ()
    transcript: tuple[TranscriptEntry, ...] = ()


_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "video_parts": VIDEO_PARTS,
    "audio_parts": AUDIO_PARTS,
    "participants": PARTICIPANTS,
    "participant_events": PARTICIPANT_EVENTS,
    "speaker_timeline": SPEAKER_TIMELINE,
    "transcript": TRANSCRIPT,
}


def is_url(source: str) -> bool:
    return source[:8].lower().startswith(("http://", "https://"))


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


async def read_source(source: str, fetch: FetchDocument) -> bytes:
    """The bytes of a document; a failure to read it is a `ManifestError`."""
    name = describe_source(source)
    scheme = _SCHEME.match(source)
    if scheme and not is_url(source):
        raise ManifestError(redact_url(source), "", f"unsupported URL scheme {scheme[1]}://: "
                            "give a local path or an http(s) URL")
    if is_url(source):
        try:
            return await fetch(source)
        except AssemblerError as exc:  # its message starts "document <url>: "
            reason = str(exc).removeprefix(f"document {name}: ")
            raise ManifestError(name, "", f"cannot fetch: {reason}") from None
    try:
        path = Path(source)
        if path.stat().st_size > MAX_LOCAL_DOCUMENT:
            raise ManifestError(name, "", "larger than 256 MiB; not a manifest")
        return path.read_bytes()
    except OSError as exc:
        raise ManifestError(name, "", f"cannot read: {exc.strerror or exc}") from None


async def load_document(name: str, source: str, fetch: FetchDocument) -> tuple[Any, ...]:
    """Read and validate one document; `name` is its option name, e.g. `audio_parts`.

    Raises `InvalidInputsError` listing every problem of the document.
    """
    shown = describe_source(source)
    try:
        raw = decode_document(await read_source(source, fetch), shown)
    except ManifestError as exc:
        raise InvalidInputsError([exc]) from None
    if name in ("video_parts", "audio_parts") and (wrong := _wrong_kind(name, raw, shown)):
        raise InvalidInputsError([wrong])
    items = validate_document(raw, _ADAPTERS[name], shown)
    if name in ("video_parts", "audio_parts") and (duplicates := _duplicate_ids(items, shown)):
        raise InvalidInputsError(duplicates)
    return tuple(items)


async def load_documents(sources: Sources, fetch: FetchDocument) -> Documents:
    """Load every given document; raise `InvalidInputsError` listing every problem found."""
    loaded: dict[str, tuple[Any, ...]] = {}
    problems: list[ManifestError] = []
    for name, source in sources.given().items():
        try:
            loaded[name] = await load_document(name, source, fetch)
        except InvalidInputsError as exc:
            problems.extend(exc.problems)
    if not problems and "audio_parts" in loaded and "video_parts" in loaded:
        problems.extend(_ids_in_both(loaded, sources))
    if not problems:
        problems.extend(_no_parts(loaded, sources))
    if problems:
        raise InvalidInputsError(problems)
    return Documents(**loaded)


def _no_parts(loaded: dict[str, tuple[Any, ...]], sources: Sources) -> list[ManifestError]:
    """Every parts manifest given is an empty list: there is nothing to assemble."""
    given = {name: loaded[name] for name in ("video_parts", "audio_parts") if name in loaded}
    if any(given.values()):
        return []
    return [ManifestError(describe_source(getattr(sources, name)), "top level",
                          "no parts (an empty list): nothing to assemble") for name in given]


def _ids_in_both(loaded: dict[str, tuple[Any, ...]], sources: Sources) -> list[ManifestError]:
    """An id both an audio and a video part: parts are stored and reported by id alone."""
    audio = {part.id: index for index, part in enumerate(loaded["audio_parts"])}
    video_source = describe_source(sources.video_parts or "")
    audio_source = describe_source(sources.audio_parts or "")
    return [ManifestError(video_source, f"[{index}].id",
                          f"also the id of an audio part ({audio_source} [{audio[part.id]}])")
            for index, part in enumerate(loaded["video_parts"]) if part.id in audio]
