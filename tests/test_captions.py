"""Captions: cue rules as data, files read back with webvtt-py and srt, and the CLI end to end."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from datetime import timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pytest
import srt
import webvtt

from assembler.deliverables.captions import (
    MAX_CHARS,
    MAX_CUE_MS,
    PAUSE_MS,
    Cue,
    SpokenWord,
    build_cues,
    format_srt,
    format_vtt,
    transcript_words,
)
from assembler.manifest import Documents, TranscriptEntry
from tests.support.recording import RECORDING_START, RecordingBuilder
from tests.support.server import serve_directory

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

NAMES = {1: "Ada Lovelace", 2: "Bob", 3: "Participant 3"}
Said = tuple[str, float, float]  # a word: text, start and end in seconds


def _entry(participant: int, said: Sequence[Said], name: str | None = None) -> TranscriptEntry:
    words = [{"text": text, "start_timestamp": {"relative": start, "absolute": None},
              "end_timestamp": {"relative": end, "absolute": None}} for text, start, end in said]
    return TranscriptEntry.model_validate(
        {"participant": {"id": participant, "name": name}, "words": words})


def _spoken(participant: int, text: str, start: float, step: float = 0.3) -> list[SpokenWord]:
    """Words of `text` one after another, each `step` s long, from `start` s."""
    return [SpokenWord(participant, word, round((start + i * step) * 1000),
                       round((start + (i + 1) * step) * 1000))
            for i, word in enumerate(text.split())]


def _texts(cues: Sequence[Cue]) -> list[str]:
    return [" / ".join(cue.lines) for cue in cues]


def test_a_cue_ends_at_a_sentence_end_and_before_a_long_pause() -> None:
    words = [*_spoken(1, "Hello there. How are", 0.0), *_spoken(1, "you today?", 2.5),
             *_spoken(1, "Fine", 4.0)]
    cues = build_cues(words, NAMES, prefix=False)
    assert _texts(cues) == ["Hello there.", "How are", "you today?", "Fine"]
    assert [(cue.start, cue.end) for cue in cues] == [
        (0, 600), (600, 1200), (2500, 3100), (4000, 4300)]


def test_a_pause_of_one_second_or_less_does_not_end_a_cue() -> None:
    words = [SpokenWord(1, "well", 0, 400), SpokenWord(1, "then", 1400, 1700)]
    assert _texts(build_cues(words, NAMES, prefix=False)) == ["well then"]


def test_two_lines_are_split_where_their_lengths_are_closest() -> None:
    text = "the quarterly numbers landed well above what we planned for this time"
    (cue,) = build_cues(_spoken(2, text, 0.0, 0.2), NAMES, prefix=False)
    assert cue.lines == ("the quarterly numbers landed well", "above what we planned for this time")
    assert all(len(line) <= MAX_CHARS for line in cue.lines)


def test_srt_name_counts_toward_the_first_line() -> None:
    text = "look at where the numbers landed"  # 32 characters: one line without the name
    assert build_cues(_spoken(1, text, 0.0), NAMES, prefix=False)[0].lines == (text,)
    (cue,) = build_cues(_spoken(1, text, 0.0), NAMES, prefix=True)
    assert cue.lines == ("look at", "where the numbers landed")  # 21 and 24 characters shown
    assert format_srt([cue]).splitlines()[2:4] == ["Ada Lovelace: look at",
                                                   "where the numbers landed"]


def test_a_cue_never_holds_two_speakers_even_when_they_interleave() -> None:
    words = sorted([*_spoken(1, "one two three four", 0.0, 0.5),
                    *_spoken(2, "uno dos tres", 0.25, 0.5)], key=lambda word: word.start)
    cues = build_cues(words, NAMES, prefix=False)
    assert [(cue.speaker, _texts([cue])[0]) for cue in cues] == [
        ("Ada Lovelace", "one two three four"), ("Bob", "uno dos tres")]


def test_a_cue_lasts_at_most_seven_seconds() -> None:
    words = _spoken(1, " ".join(["ok"] * 40), 0.0, 0.5)  # 20 s of short words, no pause
    cues = build_cues(words, NAMES, prefix=False)
    assert all(cue.end - cue.start <= MAX_CUE_MS for cue in cues)
    assert [cue.start for cue in cues] == [0, 7000, 14000]
    assert sum(len(_texts([cue])[0].split()) for cue in cues) == 40


def test_a_word_longer_than_seven_seconds_gets_a_seven_second_cue() -> None:
    (cue,) = build_cues([SpokenWord(1, "hmmmm", 1000, 9500)], NAMES, prefix=False)
    assert (cue.start, cue.end) == (1000, 8000)


def test_vtt_names_the_voice_and_escapes_what_webvtt_reserves() -> None:
    cue = Cue(participant=1, speaker="Tom & <Jerry>", lines=("a<b & c>d",), start=1,
              end=61_234_567)
    text = format_vtt([cue])
    assert "<v Tom &amp; &lt;Jerry&gt;>a&lt;b &amp; c&gt;d" in text
    (caption,) = webvtt.from_string(text, strict=True).captions
    assert caption.voice == "Tom &amp; &lt;Jerry&gt;"
    assert (caption.start, caption.end) == ("00:00:00.001", "17:00:34.567")


def test_srt_shows_what_it_cannot_escape_as_look_alikes() -> None:
    cue = Cue(participant=1, speaker="<b>Tom</b>", lines=("<i>onto</i> lines --> end.",),
              start=1000, end=2000)
    (caption,) = srt.parse(format_srt([cue]))
    assert caption.content == "‹b›Tom‹/b›: ‹i›onto‹/i› lines --› end."
    assert (caption.start.total_seconds(), caption.end.total_seconds()) == (1.0, 2.0)


def test_messy_transcripts_keep_every_usable_word_and_say_what_was_dropped() -> None:
    long_word = "x" * 50
    documents = Documents(transcript=(
        _entry(1, [("late", 5.0, 5.5), ("early", 1.0, 1.5), ("  ", 1.6, 1.7),
                   ("overlap", 1.2, 1.8), (long_word, 2.0, 2.4), ("past", 9.5, 9.9),
                   ("spill", 8.8, 9.2), ("before", -2.0, -0.5), ("edge", -0.3, 0.2)]),
        _entry(2, []),
    ))
    words, warnings = transcript_words(documents, Fraction(9))
    assert [(word.text, word.start, word.end) for word in words] == [
        ("edge", 0, 200), ("early", 1000, 1500), ("overlap", 1200, 1800),
        (long_word, 2000, 2400), ("late", 5000, 5500), ("spill", 8800, 9000)]
    assert warnings == [
        "transcript: 1 empty word(s) left out",
        "transcript: 1 word(s) ending before the recording start left out",
        "transcript: 1 word(s) starting after the timeline end (9 s) left out",
        "transcript: 1 word(s) cut at the timeline end (9 s)",
        f"transcript: 1 word(s) longer than {MAX_CHARS} characters split across lines",
        "transcript: 4 word(s) out of time order in the transcript, put in order",
        "transcript: 1 word(s) starting before the same speaker's word before ended "
        "(their cues may show at once)",
    ]
    cues = build_cues(words, NAMES, prefix=True)  # "Ada Lovelace: " leaves 28 on line 1
    assert [cue.lines for cue in cues][:3] == [("edge early overlap", "x" * 28),
                                               ("x" * 22,), ("late",)]
    # The long word's 0.4 s is shared by its pieces by characters: 28 of 50, then 22.
    assert [(cue.start, cue.end) for cue in cues][:2] == [(0, 2224), (2224, 2400)]
    assert all(len(cue.lines[0]) <= 28 and len(cue.lines[-1]) <= MAX_CHARS for cue in cues)


def test_a_cue_ends_at_its_last_words_end_even_when_an_earlier_word_runs_on() -> None:
    documents = Documents(transcript=(_entry(1, [("look", 1.0, 1.2), ("over", 1.5, 2.5),
                                                 ("lapping.", 1.6, 1.9)]),))
    words, warnings = transcript_words(documents, Fraction(9))
    (cue,) = build_cues(words, NAMES, prefix=False)
    assert (cue.start, cue.end) == (1000, 1900)
    assert warnings == ["transcript: 1 word(s) starting before the same speaker's word before "
                        "ended (their cues may show at once)"]


def test_no_cue_lasts_0_ms_even_from_words_that_do() -> None:
    # A zero-length word, and a word split into more pieces than it lasts milliseconds.
    documents = Documents(transcript=(_entry(1, [("y" * 200, 1.0, 1.002)]),
                                      _entry(2, [("z" * 60, 2.0, 2.0)])))
    words, _ = transcript_words(documents, Fraction(9))
    cues = build_cues(words, NAMES, prefix=False)
    assert "".join("".join(cue.lines) for cue in cues) == "y" * 200 + "z" * 60
    assert all(cue.end > cue.start for cue in cues), cues


def test_a_word_across_the_recording_start_is_clipped_at_0_without_a_warning() -> None:
    documents = Documents(transcript=(_entry(1, [("So", -0.3, 0.2), ("then", 0.3, 0.5)]),))
    words, warnings = transcript_words(documents, Fraction(9))
    assert [(word.text, word.start, word.end) for word in words] == [
        ("So", 0, 200), ("then", 300, 500)]
    assert warnings == []


def _random_transcript(seed: int) -> list[TranscriptEntry]:
    """Three speakers talking over each other, with sentences, pauses and odd word lengths."""
    chance = random.Random(seed)
    entries = []
    for participant in (1, 2, 3):
        said: list[Said] = []
        at = chance.uniform(0, 3)
        for _ in range(chance.randint(0, 120)):
            length = chance.choice([1, 2, 3, 5, 8, 12, 20, 45])
            text = "".join(chance.choice("abcdefghij") for _ in range(length))
            text += chance.choice(["", "", "", ",", ".", "?", "!"])
            duration = chance.uniform(0.05, 1.2) if chance.random() > 0.01 else 8.0
            said.append((text, round(at, 3), round(at + duration, 3)))
            at += duration + chance.choice([0.0, 0.05, 0.2, 0.9, 1.0, 1.01, 2.5])
        entries.append(_entry(participant, said, None if participant == 3 else "x"))
    return entries


def _tokens(words: Sequence[SpokenWord], width: int) -> list[SpokenWord]:
    """Words as a reader sees them in cues: a word wider than a line in line-wide pieces,
    which share its time by characters."""
    tokens: list[SpokenWord] = []
    for word in words:
        span, total = word.end - word.start, len(word.text)
        if total <= width:
            tokens.append(word)
            continue
        tokens.extend(SpokenWord(word.participant, word.text[index:index + width],
                                 word.start + span * index // total,
                                 word.start + span * min(index + width, total) // total)
                      for index in range(0, total, width))
    return tokens


def _check_cues(starts: list[int], ends: list[int], speakers: list[str], lines: list[list[str]],
                words: Sequence[SpokenWord], prefixed: bool) -> None:
    """Hold cues read back from a file to every rule, against the words they came from."""
    expected = {name: _tokens([word for word in words if NAMES[word.participant] == name],
                              MAX_CHARS - len(f"{name}: ") if prefixed else MAX_CHARS)
                for name in NAMES.values()}
    taken = dict.fromkeys(NAMES.values(), 0)
    shown_until = dict.fromkeys(NAMES.values(), 0)
    for start, end, speaker, text in zip(starts, ends, speakers, lines, strict=True):
        assert start >= shown_until[speaker]  # one speaker's cues never show at once
        shown_until[speaker] = end
        assert 1 <= len(text) <= 2
        assert all(len(line) <= MAX_CHARS for line in text)
        assert end - start <= MAX_CUE_MS
        tokens = " ".join(text).split()
        cue_words = expected[speaker][taken[speaker]:taken[speaker] + len(tokens)]
        taken[speaker] += len(tokens)
        assert [word.text for word in cue_words] == tokens  # in order, none lost or doubled
        assert start == cue_words[0].start
        assert end == max(min(cue_words[-1].end, start + MAX_CUE_MS), start + 1)
        for before, after in itertools.pairwise(cue_words):
            assert after.start - before.end <= PAUSE_MS
            assert before.text[-1] not in ".?!"
    assert taken == {name: len(spoken) for name, spoken in expected.items()}


@pytest.mark.parametrize("seed", range(12))
def test_random_transcripts_read_back_hold_every_rule(seed: int) -> None:
    words, _ = transcript_words(Documents(transcript=tuple(_random_transcript(seed))),
                                Fraction(10_000))
    vtt = webvtt.from_string(format_vtt(build_cues(words, NAMES, prefix=False)),
                             strict=True).captions
    _check_cues([c.start_time.in_milliseconds() for c in vtt],
                [c.end_time.in_milliseconds() for c in vtt], [c.voice or "" for c in vtt],
                [c.text.split("\n") for c in vtt], words, prefixed=False)
    subtitles = list(srt.parse(format_srt(build_cues(words, NAMES, prefix=True))))
    assert [s.index for s in subtitles] == list(range(1, len(subtitles) + 1))
    speakers = [s.content.split(": ", 1)[0] for s in subtitles]
    assert all(len(line) <= MAX_CHARS for s in subtitles for line in s.content.split("\n"))
    _check_cues([s.start // _MS for s in subtitles], [s.end // _MS for s in subtitles],
                speakers, [s.content.split(": ", 1)[1].split("\n") for s in subtitles], words,
                prefixed=True)


_MS = srt.timedelta(milliseconds=1)


# End to end: `assembler run` on a recording served on loopback, its transcript replaced.

def _stamp_json(relative: float, absolute: bool) -> dict[str, Any]:
    moment = (RECORDING_START + timedelta(seconds=relative)).isoformat() if absolute else None
    return {"relative": relative, "absolute": moment}


def _transcript_json(participant: dict[str, Any], said: Sequence[Said], absolute: bool
                     ) -> dict[str, Any]:
    return {"participant": participant,
            "words": [{"text": text, "start_timestamp": _stamp_json(start, absolute),
                       "end_timestamp": _stamp_json(end, absolute)}
                      for text, start, end in said]}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assembler", "run", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_writes_everyones_and_each_persons_captions(tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    build.audio_part(1, "Ada Lovelace", 0.0, 4.0, ext=".wav")
    build.audio_part(2, "", 1.0, 3.0, ext=".wav")
    out = tmp_path / "out"
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        ada, nameless = (build.participants[pid].as_json() for pid in (1, 2))
        manifests.transcript.write_text(json.dumps([
            _transcript_json(ada, [("Um", -0.6, -0.1), ("Hello", 0.1, 0.4),
                                   ("everyone.", 0.45, 0.9), ("Shall", 2.5, 2.7),
                                   ("we", 2.75, 2.9), ("", 3.0, 3.1), ("begin?", 3.0, 3.6),
                                   ("late", 4.5, 4.8)], absolute=True),
            _transcript_json(nameless, [("Yes", 1.2, 1.5), ("please", 1.55, 2.001)],
                             absolute=False),  # asynchronous transcription: no absolute
        ]))
        result = run_cli("--out", str(out), *manifests.cli_args(), "--captions", "vtt,srt",
                         "--quiet")
    assert result.returncode == 0, result.stderr
    everyone = webvtt.read(str(out / "captions.vtt")).captions
    assert [(c.start, c.end, c.voice, c.text) for c in everyone] == [
        ("00:00:00.100", "00:00:00.900", "Ada Lovelace", "Hello everyone."),
        ("00:00:01.200", "00:00:02.001", "Participant 2", "Yes please"),
        ("00:00:02.500", "00:00:03.600", "Ada Lovelace", "Shall we begin?")]
    ada_srt = list(srt.parse((out / "participants/1-ada-lovelace/captions.srt").read_text()))
    assert [s.content for s in ada_srt] == ["Ada Lovelace: Hello everyone.",
                                            "Ada Lovelace: Shall we begin?"]
    theirs = webvtt.read(str(out / "participants/2/captions.vtt")).captions
    assert [c.text for c in theirs] == ["Yes please"]
    report = json.loads((out / "report.json").read_text())
    outputs = {entry["path"]: entry for entry in report["outputs"]}
    assert set(outputs) == {"captions.vtt", "captions.srt", "participants/2/captions.vtt",
                            "participants/2/captions.srt",
                            "participants/1-ada-lovelace/captions.vtt",
                            "participants/1-ada-lovelace/captions.srt"}
    assert outputs["participants/2/captions.srt"]["participant"] == 2
    assert all("sha256" in entry for entry in outputs.values())
    messages = [w["message"] for w in report["warnings"] if w.get("output") == "captions.vtt"]
    assert messages == ["transcript: 1 empty word(s) left out",
                        "transcript: 1 word(s) ending before the recording start left out",
                        "transcript: 1 word(s) starting after the timeline end (4 s) left out"]


def test_cli_refuses_captions_without_a_transcript(tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    build.audio_part(1, "Ada", 0.0, 0.5, ext=".wav")
    manifests = build.write("http://127.0.0.1:9")  # nothing is fetched: refused before that
    result = run_cli("--out", str(tmp_path / "out"), "--audio-parts", str(manifests.audio_parts),
                     "--captions", "srt")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --captions needs --transcript"]
    assert not (tmp_path / "out").exists()
