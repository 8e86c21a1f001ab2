"""Captions from the transcript's word timings: WebVTT and SRT, everyone's and each person's.

Cue building is pure (`transcript_words`, `build_cues`, `format_vtt`,
`format_srt`): words in, text out, no I/O. Times are integer milliseconds
from recording time 0. The rules (the contract's, plus common broadcast
practice for the pause and punctuation breaks):

- a cue holds one speaker's words only, in order, each word once;
- at most 2 lines of at most `MAX_CHARS` characters (SRT's
  `Name: ` prefix counts; WebVTT's `<v Name>` span is markup and does not);
- at most `MAX_CUE_MS` long; it runs from its first word's start to its last
  word's end (at least 1 ms);
- a cue ends after a word ending a sentence, before a pause longer than
  `PAUSE_MS`, or before a word that would break a limit; two lines are
  split where their lengths are closest.

A transcript is taken as it comes: empty words are dropped, words are sorted
by start, a word starting after the timeline end is dropped and one running
past it is cut there, times before 0 are clipped (a word ending at or before
0 is dropped), and a word longer than a line is split into line-long pieces
sharing the word's time by characters. Each such change is a warning, one line per kind.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from ..naming import display_name
from ..plan import seconds, to_units
from . import DeliverableContext, DeliverableOptions, Output

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from pathlib import Path

    from ..manifest import Documents
    from ..plan import Plan
    from ..report import OutputKind

__all__ = ["CAPTIONS", "Cue", "SpokenWord", "build_cues", "format_srt", "format_vtt",
           "speaker_name", "transcript_words"]

MAX_CHARS = 42
MAX_CUE_MS = 7000
PAUSE_MS = 1000
MS = Fraction(1000)
# A word ending in one of these (closing quotes and brackets aside) ends a sentence.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*$")


@dataclass(frozen=True, slots=True)
class SpokenWord:
    """One word of the transcript as captions use it: milliseconds from recording time 0."""

    participant: int
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Cue:
    """One caption: a speaker, its lines (without any name prefix) and its times in ms."""

    participant: int
    speaker: str
    lines: tuple[str, ...]
    start: int
    end: int


def speaker_name(plan: Plan, participant: int, given: str | None = None) -> str:
    """The name to show for `participant`: the plan's, else `given`, else `Participant <id>`.

    Whitespace runs (newlines included) become one space.
    """
    names = {person.id: person.name for person in plan.participants}
    name = next((name for name in (names.get(participant), given) if name and name.strip()), None)
    return display_name(participant, name)


def _ms(value: float) -> int:
    return to_units(seconds(value), MS)


def transcript_words(documents: Documents, duration: Fraction
                     ) -> tuple[list[SpokenWord], list[str]]:
    """Every usable word of the transcript, sorted by start, and warnings on what was changed.

    `duration` is the timeline length in seconds: words are kept within
    `[0, duration]` as the module docstring says.
    """
    end_ms = to_units(duration, MS)
    counts: Counter[str] = Counter()
    words: list[SpokenWord] = []
    for entry in documents.transcript:
        latest: int | None = None  # the latest start so far in this person's words
        for word in entry.words:
            text = " ".join(word.text.split())
            start, end = _ms(word.start_timestamp.relative), _ms(word.end_timestamp.relative)
            left_out = _left_out(text, start, end, end_ms)
            if left_out:
                counts[left_out] += 1
                continue
            counts["out of order"] += latest is not None and start < latest
            counts["cut"] += end > end_ms
            counts["too long"] += any(len(piece) > MAX_CHARS for piece in text.split())
            latest = start if latest is None else max(latest, start)
            words.append(SpokenWord(entry.participant.id, text, max(start, 0),
                                    min(max(end, start), end_ms)))
    words.sort(key=lambda word: word.start)
    counts["overlapping"] = _overlapping(words)
    return words, _word_warnings(counts, float(duration))


def _overlapping(words: Sequence[SpokenWord]) -> int:
    """How many of `words` (sorted by start) start before their speaker's earlier ones end."""
    ended: dict[int, int] = {}  # by participant: the latest end of their words so far
    count = 0
    for word in words:
        count += word.start < ended.get(word.participant, word.start)
        ended[word.participant] = max(word.end, ended.get(word.participant, word.end))
    return count


def _left_out(text: str, start: int, end: int, end_ms: int) -> str | None:
    """Why a word is left out (a key of `_word_warnings`), or None when it is kept."""
    if not text:
        return "empty"
    if end <= 0 and start < 0:
        return "before 0"
    if start >= end_ms:
        return "after the end"
    return None


def _word_warnings(counts: Counter[str], duration: float) -> list[str]:
    said = {
        "empty": "empty word(s) left out",
        "before 0": "word(s) ending before the recording start left out",
        "after the end": f"word(s) starting after the timeline end ({duration:g} s) left out",
        "cut": f"word(s) cut at the timeline end ({duration:g} s)",
        "too long": f"word(s) longer than {MAX_CHARS} characters split across lines",
        "out of order": "word(s) out of time order in the transcript, put in order",
        "overlapping": "word(s) starting before the same speaker's word before ended "
                       "(their cues may show at once)",
    }
    return [f"transcript: {counts[key]} {message}" for key, message in said.items()
            if counts[key]]


def build_cues(words: Sequence[SpokenWord], names: dict[int, str], *, prefix: bool
               ) -> list[Cue]:
    """Cues for `words` (sorted by start), by the module's rules, ordered by start.

    `names` maps participant ids to the shown name; with `prefix` (SRT) the
    first line also holds `Name: ` within the `MAX_CHARS` limit.
    """
    cues: list[Cue] = []
    by_speaker: dict[int, list[SpokenWord]] = {}
    for word in words:
        by_speaker.setdefault(word.participant, []).append(word)
    for participant, spoken in by_speaker.items():
        name = names.get(participant) or display_name(participant, None)
        first_width = MAX_CHARS - len(_srt_prefix(name)) if prefix else MAX_CHARS
        cues.extend(_speaker_cues(participant, name, _pieces(spoken, first_width), first_width))
    return sorted(cues, key=lambda cue: (cue.start, cue.end))


def _pieces(words: Sequence[SpokenWord], width: int) -> list[SpokenWord]:
    """Words as tokens of at most `width` characters: a longer token is cut into pieces (no
    line could hold it whole), and a word's time is shared by its pieces by characters,
    so pieces that land in two cues do not show at once."""
    pieces: list[SpokenWord] = []
    for word in words:
        cuts = [(offset + index, offset + min(index + width, len(token)))
                for offset, token in _tokens_at(word.text)
                for index in range(0, len(token), width)]
        if len(cuts) == 1:
            pieces.append(word)
            continue
        span, total = word.end - word.start, len(word.text)
        pieces.extend(SpokenWord(word.participant, word.text[first:last],
                                 word.start + span * first // total,
                                 word.start + span * last // total) for first, last in cuts)
    return pieces


def _tokens_at(text: str) -> Iterator[tuple[int, str]]:
    """The space-separated tokens of `text`, each with its offset in it."""
    for match in re.finditer(r"[^ ]+", text):
        yield match.start(), match.group()


def _speaker_cues(participant: int, name: str, words: Sequence[SpokenWord],
                  first_width: int) -> Iterable[Cue]:
    held: list[SpokenWord] = []
    for word in words:
        if held and not _fits(held, word, first_width):
            yield _cue(participant, name, held, first_width)
            held = []
        held.append(word)
        if _SENTENCE_END.search(word.text):
            yield _cue(participant, name, held, first_width)
            held = []
    if held:
        yield _cue(participant, name, held, first_width)


def _fits(held: Sequence[SpokenWord], word: SpokenWord, first_width: int) -> bool:
    """Whether `word` may join the cue of `held` (same speaker, in order)."""
    if word.start - max(w.end for w in held) > PAUSE_MS:
        return False
    if max(word.end, *(w.end for w in held)) - held[0].start > MAX_CUE_MS:
        return False
    return _layout([w.text for w in (*held, word)], first_width) is not None


def _cue(participant: int, name: str, words: Sequence[SpokenWord], first_width: int) -> Cue:
    lines = _layout([word.text for word in words], first_width)
    assert lines is not None  # a cue grows only while it fits, and every piece fits a line
    start = words[0].start
    # Its last word's end; one overlong word is cut; a word of 0 ms still shows for 1 ms
    # (WebVTT wants a cue to end after it starts).
    end = max(min(words[-1].end, start + MAX_CUE_MS), start + 1)
    return Cue(participant=participant, speaker=name, lines=lines, start=start, end=end)


def _layout(texts: Sequence[str], first_width: int) -> tuple[str, ...] | None:
    """The words as one line, or two lines as even as can be; None when they do not fit."""
    whole = " ".join(texts)
    if len(whole) <= min(first_width, MAX_CHARS):
        return (whole,)
    prefix = MAX_CHARS - first_width  # an SRT name is part of the first line as shown
    best: tuple[str, str] | None = None
    for cut in range(1, len(texts)):
        first, second = " ".join(texts[:cut]), " ".join(texts[cut:])
        if len(first) > first_width or len(second) > MAX_CHARS:
            continue
        if best is None or (abs(prefix + len(first) - len(second))
                            < abs(prefix + len(best[0]) - len(best[1]))):
            best = (first, second)
    return best


def _srt_prefix(name: str) -> str:
    """`Name: `, the name shortened when it would leave a first line under 12 characters."""
    room = MAX_CHARS - 12 - len(": ")
    return f"{name if len(name) <= room else name[:room - 1] + '…'}: "


def _clock(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_vtt(cues: Iterable[Cue]) -> str:
    """A WebVTT file: each cue's speaker in a voice span, `&`, `<`, `>` escaped."""
    blocks = ["WEBVTT\n"]
    for cue in cues:
        text = "\n".join(_vtt_escape(line) for line in cue.lines)
        blocks.append(f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}\n"
                      f"<v {_vtt_escape(cue.speaker)}>{text}\n")
    return "\n".join(blocks)


def _srt_text(text: str) -> str:
    # SRT has no escapes: players read `<i>` as markup, and a line with `-->` can be
    # read as a timing line. Look-alike angle quotes keep what was said readable.
    return text.replace("<", "\u2039").replace(">", "\u203a")


def format_srt(cues: Iterable[Cue]) -> str:
    """An SRT file: numbered cues, the speaker as a `Name: ` prefix on the first line.

    `<` and `>` are written as `‹` and `›`: SRT cannot escape them.
    """
    blocks = []
    for number, cue in enumerate(cues, start=1):
        text = _srt_text("\n".join((_srt_prefix(cue.speaker) + cue.lines[0], *cue.lines[1:])))
        blocks.append(f"{number}\n{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}\n"
                      f"{text}\n")
    return "\n".join(blocks)


_FORMATTERS = {"vtt": format_vtt, "srt": format_srt}


class Captions:
    """The captions deliverable: `DIR/captions.<fmt>` and one per participant who spoke."""

    kind: OutputKind = "captions"

    def wanted(self, options: DeliverableOptions) -> bool:
        return bool(options.captions)

    def outputs(self, context: DeliverableContext) -> list[Output]:
        spoken = {word.participant for word in
                  transcript_words(context.documents, context.plan.duration)[0]}
        outputs = []
        for fmt in context.options.captions:
            outputs.append(Output(kind="captions", format=fmt, path=f"captions.{fmt}"))
            outputs.extend(Output(kind="captions", format=fmt, participant=person.id,
                                  path=f"{person.dir}/captions.{fmt}")
                           for person in context.plan.participants if person.id in spoken)
        return outputs

    def write(self, context: DeliverableContext, output: Output, target: Path) -> list[str]:
        words, warnings = transcript_words(context.documents, context.plan.duration)
        given = {entry.participant.id: entry.participant.name
                 for entry in context.documents.transcript}
        names = {pid: speaker_name(context.plan, pid, given.get(pid)) for pid in given}
        if output.participant is not None:
            words = [word for word in words if word.participant == output.participant]
            warnings = []  # said once, on the whole-meeting file
        else:
            warnings += _unplaced(context.plan, words, names)
        cues = build_cues(words, names, prefix=output.format == "srt")
        target.write_text(_FORMATTERS[output.format](cues), encoding="utf-8")
        return warnings


def _unplaced(plan: Plan, words: Iterable[SpokenWord], names: dict[int, str]) -> list[str]:
    """Speakers with words but no track: they are in the whole-meeting captions only."""
    placed = {person.id for person in plan.participants}
    return [f"transcript: {names[pid]} ({pid}) has no track, so no captions file of their own"
            for pid in sorted({word.participant for word in words} - placed)]


CAPTIONS = Captions()
