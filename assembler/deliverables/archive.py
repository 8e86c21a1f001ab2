"""`--archive`: `DIR/recording.mkv`, the whole recording in one self-describing file.

Matroska, as archives keep it: every track of the run is one stream, copied
packet for packet (no decode, no re-encode), in a stable order (participant
id, then audio, webcam, screenshare), each titled `<name> <kind>`, language
`und`; only the first audio stream is marked default (players pick a video
stream without the flag; marking every webcam would make each a default).
Each participant's WebVTT captions, when `--captions` made them, follow as
one subtitle stream titled with the name. `report.json` as it stands before
the archive is attached (`application/json`), the recording's start is the
file's `creation_time`, and speaker changes are chapters.

Chapters are speaker changes, not participant joins: joins crowd the first
minute of a meeting and say nothing after it, while "where did Bob take
over" is what people skip around a recording for. Consecutive turns of one
speaker are one chapter, and turns shorter than `MIN_TURN` ("yes", "mm-hm")
do not start one, so an hour's meeting gets a list one can read.

Audio formats: FLAC, PCM (WAV) and Opus go in as they are, decoding to the
same samples as the track. MP3 does not: Matroska has no place for the
encoder delay and padding the LAME header carries, so copied MP3 would start
1105 samples (23 ms) late and run long. An MP3 track is therefore decoded and
stored as FLAC, which holds exactly the samples the MP3 decodes to. AAC (M4A)
goes in as it is where ffmpeg carries its priming into Matroska (ffmpeg 9);
Debian's ffmpeg 5.1 leaves the 1024 priming samples in front, so there it is
stored as FLAC too. Either conversion is a warning in the report.

Video streams keep the track's frame rate as Matroska's default frame
duration: stored timestamps are whole milliseconds, and without it ffmpeg
guesses a rate from the stream's average and decodes with duplicate
timestamps.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..ffmpeg_process import ffmpeg_version, file_arg, run_ffmpeg
from ..plan import seconds, to_units
from ..render import AUDIO_CODECS
from . import Output
from .captions import speaker_name

if TYPE_CHECKING:
    from datetime import datetime

    from ..manifest import Documents, SpeakerSegment
    from ..plan import Plan
    from ..report import OutputKind
    from . import DeliverableContext, DeliverableOptions

__all__ = ["ARCHIVE", "Archive", "ArchiveStream", "Chapter", "archive_argv", "archive_streams",
           "chapters_metadata", "speaker_chapters"]

ARCHIVE_PATH = "recording.mkv"
MIN_TURN = Fraction(2)  # seconds: a shorter speaker turn starts no chapter
_MS = Fraction(1000)
_REPORT_MIME = "application/json"
# The first ffmpeg seen to carry AAC's priming into Matroska (9.0 does; 5.1 does not and
# leaves 1024 samples in front; versions between are untested and treated as 5.1).
_AAC_PRIMING_KEPT = (9, 0)

StreamKind = Literal["audio", "webcam", "screenshare", "captions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveStream:
    """One stream of the archive: the file it comes from and how it is labelled."""

    source: Path
    kind: StreamKind
    title: str
    frame_rate: Fraction | None = None  # video: the track's rate, written as frame duration
    store_as: str | None = None  # an audio format to convert to, where copying cannot work


@dataclass(frozen=True, slots=True, kw_only=True)
class Chapter:
    """A chapter in milliseconds from the start of the recording."""

    start: int
    end: int
    title: str


def stored_as(audio_format: str) -> str | None:
    """The format an audio track of `audio_format` goes into the archive as; None: as it is."""
    if audio_format == "mp3" or (audio_format == "m4a" and ffmpeg_version() < _AAC_PRIMING_KEPT):
        return "flac"
    return None


def archive_streams(context: DeliverableContext) -> list[ArchiveStream]:
    """The archive's streams in order: tracks by participant and kind, then captions."""
    order = {"audio": 0, "webcam": 1, "screenshare": 2}
    tracks = sorted(context.tracks,
                    key=lambda item: (item.track.participant_id, order[item.track.kind]))
    streams = []
    for item in tracks:
        track = item.track
        extension = Path(track.path).suffix.lstrip(".")
        streams.append(ArchiveStream(
            source=context.out_dir / track.path, kind=track.kind,
            title=f"{speaker_name(context.plan, track.participant_id)} {track.kind}",
            frame_rate=track.rate if track.kind != "audio" else None,
            store_as=stored_as(extension) if track.kind == "audio" else None))
    captions = sorted((entry for entry in context.made
                       if entry["kind"] == "captions" and entry["format"] == "vtt"
                       and "participant" in entry and "error" not in entry),
                      key=lambda entry: entry.get("participant", 0))
    streams.extend(ArchiveStream(source=context.out_dir / entry["path"], kind="captions",
                                 title=speaker_name(context.plan, entry.get("participant", 0)))
                   for entry in captions)
    return streams


def speaker_chapters(documents: Documents, plan: Plan) -> list[Chapter]:
    """One chapter per change of speaker on the timeline; [] without a speaker timeline.

    Turns are clipped to the timeline; those shorter than `MIN_TURN` are left
    out, consecutive turns of one speaker merge. The first chapter starts at 0
    and each ends where the next starts, the last at the timeline's end.
    """
    end = to_units(plan.duration, _MS)
    turns = sorted(
        (to_units(seconds(turn.start_timestamp.relative), _MS), turn.participant.id,
         turn.participant.name)
        for turn in documents.speaker_timeline if _lasts(turn, plan.duration) >= MIN_TURN)
    starts: list[tuple[int, int, str | None]] = []
    for start, speaker, name in turns:
        if not starts or starts[-1][1] != speaker:
            starts.append((0 if not starts else start, speaker, name))
    bounds = [start for start, _, _ in starts[1:]] + [end]
    return [Chapter(start=start, end=stop, title=speaker_name(plan, speaker, name))
            for (start, speaker, name), stop in zip(starts, bounds, strict=False) if stop > start]


def _lasts(turn: SpeakerSegment, duration: Fraction) -> Fraction:
    """How long `turn` lasts within the timeline `[0, duration]`, in seconds."""
    start = seconds(turn.start_timestamp.relative)
    return min(seconds(turn.end_timestamp.relative), duration) - start


def _escape(value: str) -> str:
    """A value for an FFMETADATA file: `=`, `;`, `#`, `\\` and newlines escaped."""
    for special in ("\\", "=", ";", "#", "\n"):
        value = value.replace(special, "\\" + special)
    return value


def chapters_metadata(chapters: list[Chapter]) -> str:
    """`chapters` as an FFMETADATA file, the form ffmpeg reads chapters from."""
    lines = [";FFMETADATA1"]
    for chapter in chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={chapter.start}",
                  f"END={chapter.end}", f"title={_escape(chapter.title)}"]
    return "\n".join(lines) + "\n"


def _stream_options(index: int, stream: ArchiveStream, first_audio: bool) -> list[str]:
    options = [f"-metadata:s:{index}", f"title={stream.title}",
               f"-metadata:s:{index}", "language=und",
               f"-disposition:{index}", "default" if first_audio else "0"]
    if stream.store_as:
        codec = AUDIO_CODECS[stream.store_as][1]
        options += [f"-c:{index}", codec["acodec"], f"-sample_fmt:{index}", codec["sample_fmt"],
                    # The FLAC encoder is slow fed MP3's 1152-sample frames (FIELD-NOTES).
                    f"-filter:{index}", "asetnsamples=n=4608:p=0"]
    if stream.frame_rate:
        options += [f"-r:{index}", str(stream.frame_rate)]
    return options


def archive_argv(streams: list[ArchiveStream], *, report: Path, chapters: Path | None,
                 start: datetime | None, output: Path) -> list[str]:
    """ffmpeg arguments (no binary) writing the archive to `output` by stream copy.

    `report` is the JSON file to attach, `chapters` an FFMETADATA file (or None),
    `start` the recording's wall-clock start (UTC), written as `creation_time`.
    """
    argv = ["-y"]
    for stream in streams:
        argv += ["-i", file_arg(stream.source)]
    if chapters is not None:
        argv += ["-f", "ffmetadata", "-i", file_arg(chapters)]
    for index in range(len(streams)):
        argv += ["-map", f"{index}:0"]
    argv += ["-c", "copy", "-map_metadata:g", "-1", "-map_metadata:s", "-1",
             "-map_chapters", str(len(streams)) if chapters is not None else "-1"]
    first_audio = next((index for index, stream in enumerate(streams)
                        if stream.kind == "audio"), None)
    for index, stream in enumerate(streams):
        argv += _stream_options(index, stream, index == first_audio)
    attachment = len(streams)
    argv += ["-attach", file_arg(report), f"-metadata:s:{attachment}", f"mimetype={_REPORT_MIME}",
             f"-metadata:s:{attachment}", "filename=report.json"]
    if start is not None:
        argv += ["-metadata", f"creation_time={start.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"]
    # bitexact: no encoder version or random ids, so the same tracks make the same bytes.
    return [*argv, "-fflags", "+bitexact", "-f", "matroska", file_arg(output)]


class Archive:
    """The `archive` deliverable; see the module docstring."""

    kind: OutputKind = "archive"

    def wanted(self, options: DeliverableOptions) -> bool:
        return options.archive

    def outputs(self, context: DeliverableContext) -> list[Output]:
        if not context.tracks:  # nothing was rendered: the run has failed already
            return []
        return [Output(kind=self.kind, format="mkv", path=ARCHIVE_PATH)]

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        streams = archive_streams(context)
        chapters = speaker_chapters(context.documents, context.plan)
        with tempfile.TemporaryDirectory(prefix=f"{target.name}.", dir=target.parent) as name:
            scratch = Path(name)
            report = scratch / "report.json"
            report.write_text(json.dumps(context.report, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
            listing = scratch / "chapters.txt" if chapters else None
            if listing is not None:
                listing.write_text(chapters_metadata(chapters), encoding="utf-8")
            run_ffmpeg(archive_argv(streams, report=report, chapters=listing,
                                    start=context.plan.start, output=target))
        return [f"{stream.title}: {stream.source.suffix.lstrip('.').upper()} would not start "
                f"on time in Matroska; stored as {stream.store_as.upper()}"
                for stream in streams if stream.store_as]


ARCHIVE = Archive()
