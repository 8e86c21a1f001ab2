"""Bad documents: exit 2, one line naming the file and the place, no media request."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from assembler.manifest import (
    PARTICIPANT_EVENTS,
    PROVIDER_DATA,
    SPEAKER_TIMELINE,
    TRANSCRIPT,
    parse_document,
)
from tests.support.recording import Manifests, RecordingBuilder
from tests.support.server import MediaServer, serve_directory

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRET = "X-Amz-Signature="


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[MediaServer, Manifests]]:
    build = RecordingBuilder(tmp_path_factory.mktemp("www"))
    for start in (0.0, 2.0, 4.0, 6.0):
        build.audio_part(1, "Ada", start, 1.0, ext=".wav", rate=8000)
    build.video_part(1, "Ada", 0.0, 1.0, size=(32, 24), fps=5)
    with serve_directory(build.root) as server:
        yield server, build.write(server.base_url)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assembler", "run", *args],
                          capture_output=True, text=True, timeout=120, check=False)


Breakage = Callable[[list[dict[str, Any]]], Any]


def _set(path: tuple[Any, ...], value: Any) -> Breakage:
    def breaks(parts: list[dict[str, Any]]) -> Any:
        target: Any = parts
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return parts
    return breaks


def _delete(index: int, key: str) -> Breakage:
    def breaks(parts: list[dict[str, Any]]) -> Any:
        del parts[index][key]
        return parts
    return breaks


def _duplicate_id(parts: list[dict[str, Any]]) -> Any:
    parts[3]["id"] = parts[1]["id"]
    return parts


CASES: list[tuple[str, Breakage, str]] = [
    ("wrong-type", _set((2, "duration"), "5"), "[2].duration: must be a number"),
    ("wrong-type-id", _set((1, "participant", "id"), 1.5),
     "[1].participant.id: must be an integer"),
    ("missing", _delete(1, "download_url"), "[1].download_url: required"),
    ("missing-start", _delete(0, "start_timestamp"), "[0].start_timestamp: required"),
    ("negative", _set((3, "duration"), -1), "[3].duration: must be >= 0"),
    ("absurd", _set((3, "duration"), 1e308), "[3].duration: must be <= 604800 (a week)"),
    ("file-url", _set((1, "download_url"), "file:///etc/passwd"),
     "[1].download_url: must be an http(s) URL"),
    ("ftp-url", _set((0, "download_url"), "ftp://host/x.m4a?X-Amz-Signature=zz"),
     "[0].download_url: must be an http(s) URL"),
    ("duplicate-id", _duplicate_id, "[3].id: duplicate of [1].id"),
    ("port-out-of-range", _set((2, "download_url"), "https://h:99999/p.wav?X-Amz-Signature=z"),
     "[2].download_url: must be an http(s) URL"),
    ("space-in-host", _set((0, "download_url"), "http://exa mple.com/p.wav"),
     "[0].download_url: must be an http(s) URL"),
    ("top-level-object", lambda parts: {"parts": parts}, "top level: must be a list"),
    ("bool-as-number", _set((0, "duration"), True), "[0].duration: must be a number"),
]


@pytest.mark.parametrize(("breakage", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_broken_audio_manifest_exits_2_naming_file_and_place(
        recording: tuple[MediaServer, Manifests], tmp_path: Path, breakage: Breakage,
        expected: str) -> None:
    server, manifests = recording
    parts = json.loads(manifests.audio_parts.read_text())
    broken = tmp_path / "audio_parts.json"
    broken.write_text(json.dumps(breakage(parts)))
    before = sum(server.requests.values())
    done = run_cli("--out", str(tmp_path / "out"), "--audio-parts", str(broken),
                   "--video-parts", str(manifests.video_parts))
    assert done.returncode == 2
    assert done.stderr == f"error: {broken}: {expected}\n"  # the path as given
    assert sum(server.requests.values()) == before
    assert not (tmp_path / "out" / "parts").exists()


@pytest.mark.parametrize(("text", "expected"), [
    ("[{", "audio_parts.json: line 1 column 3: not valid JSON"),
    ('[{"duration": NaN}]', "audio_parts.json: NaN is not a finite number"),
    ("", "audio_parts.json: line 1 column 1: not valid JSON"),
    ("[" * 100000, "audio_parts.json: nested too deeply to be a manifest"),
], ids=["truncated", "nan", "empty", "nested-too-deeply"])
def test_unparseable_manifest_exits_2(tmp_path: Path, text: str, expected: str) -> None:
    broken = tmp_path / "audio_parts.json"
    broken.write_text(text)
    done = run_cli("--out", str(tmp_path / "out"), "--audio-parts", str(broken))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {tmp_path}/{expected}")
    assert "Traceback" not in done.stderr


def test_unknown_video_type_and_every_bad_document_listed(
        recording: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = recording
    video = json.loads(manifests.video_parts.read_text())
    video[0]["type"] = "camera"
    (tmp_path / "video_parts.json").write_text(json.dumps(video))
    done = run_cli("--out", str(tmp_path / "out"),
                   "--video-parts", str(tmp_path / "video_parts.json"),
                   "--audio-parts", str(tmp_path / "missing.json"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {tmp_path}/video_parts.json: [0].type: must be one of 'webcam' or "
        "'screenshare'",
        f"error: {tmp_path}/missing.json: cannot read: No such file or directory",
    ]


def test_an_id_both_audio_and_video_part_is_bad_input(
        recording: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = recording
    audio = json.loads(manifests.audio_parts.read_text())
    video = json.loads(manifests.video_parts.read_text())
    video[0]["id"] = audio[2]["id"]
    (tmp_path / "video_parts.json").write_text(json.dumps(video))
    done = run_cli("--out", str(tmp_path / "out"), "--audio-parts", str(manifests.audio_parts),
                   "--video-parts", str(tmp_path / "video_parts.json"))
    assert done.returncode == 2
    assert done.stderr == (f"error: {tmp_path}/video_parts.json: [0].id: also the id of an "
                           f"audio part ({manifests.audio_parts} [2])\n")


def test_manifest_url_is_fetched_and_its_query_never_shown(
        recording: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    server, manifests = recording
    parts = json.loads(manifests.audio_parts.read_text())
    parts[0]["duration"] = -2
    (server.root / "bad.json").write_text(json.dumps(parts))
    url = server.url("bad.json", "X-Amz-Signature=topsecret")
    done = run_cli("--out", str(tmp_path / "out"), "--audio-parts", url, "--json-logs")
    assert done.returncode == 2
    (line,) = [entry for entry in map(json.loads, done.stderr.splitlines())
               if entry["level"] == "error"]
    assert line["message"] == (f"{server.base_url}/bad.json?…: [0].duration: must be >= 0")
    assert "topsecret" not in done.stderr


def test_manifest_url_that_answers_404_is_bad_input(
        recording: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    server, _ = recording
    done = run_cli("--out", str(tmp_path / "out"),
                   "--audio-parts", server.url("nope.json", "sig=hush"), "--retries", "0")
    assert done.returncode == 2
    assert "nope.json" in done.stderr
    assert "hush" not in done.stderr


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    assert run_cli("--out", str(tmp_path)).returncode == 2
    done = run_cli("--out", str(tmp_path), "--audio-parts", "x.json", "--concurrency", "0")
    assert done.returncode == 2
    assert done.stderr.startswith("error: argument --concurrency")


def test_unknown_keys_are_tolerated(recording: tuple[MediaServer, Manifests],
                                    tmp_path: Path) -> None:
    _, manifests = recording
    parts = json.loads(manifests.audio_parts.read_text())
    for part in parts:
        part["new_field_from_the_api"] = {"anything": [1, 2]}
        part["participant"]["pronouns"] = "she/her"
    (tmp_path / "audio_parts.json").write_text(json.dumps(parts))
    done = run_cli("--out", str(tmp_path / "out"), "--audio-parts",
                   str(tmp_path / "audio_parts.json"), "--dry-run")
    assert done.returncode == 0, done.stderr


STAMP = {"relative": 1.0, "absolute": "2025-07-17T00:00:01Z"}
PERSON = {"id": 1, "name": None}


@pytest.mark.parametrize(("adapter", "document", "expected"), [
    (PARTICIPANT_EVENTS, [{"id": "e", "action": "wave", "participant": PERSON,
                           "timestamp": STAMP, "data": None}],
     "[0].action: must be one of"),
    (PARTICIPANT_EVENTS, [{"id": "e", "action": "chat_message", "participant": PERSON,
                           "timestamp": STAMP, "data": {"text": "hi", "to": "everyone"}}], None),
    (SPEAKER_TIMELINE, [{"participant": PERSON, "start_timestamp": STAMP,
                         "end_timestamp": {"relative": float("inf")}}],
     "[0].end_timestamp.relative: must be a finite number"),
    (TRANSCRIPT, [{"participant": PERSON, "words": [
        {"text": "hi", "start_timestamp": {"relative": 1, "absolute": None},
         "end_timestamp": {"relative": 2, "absolute": None}}]}], None),
    (TRANSCRIPT, [{"participant": PERSON, "words": "hi"}], "[0].words: must be a list"),
    (PROVIDER_DATA, {"parts": [{"id": "p", "created_at": "2025-07-17T00:00:01Z",
                                "source_audio": {"type": "mixed", "offset": 0.5},
                                "type": "webhook", "data": {"payload": {}}}]}, None),
    (PROVIDER_DATA, [], "top level: must be an object"),
    # Before the recording start: the API documents these with negative relative times.
    (SPEAKER_TIMELINE, [{"participant": PERSON, "start_timestamp": {"relative": -1.2},
                         "end_timestamp": STAMP}], None),
    (PARTICIPANT_EVENTS, [{"id": "e", "action": "join", "participant": PERSON,
                           "timestamp": {"relative": -5.0, "absolute": None}}], None),
    (TRANSCRIPT, [{"participant": PERSON, "words": [
        {"text": "hi", "start_timestamp": {"relative": -0.4, "absolute": None},
         "end_timestamp": {"relative": -0.1, "absolute": None}}]}], None),
], ids=["event-action", "event-chat", "speaker-inf", "transcript-async", "transcript-words",
        "provider-ok", "provider-top", "speaker-before-start", "join-before-start",
        "word-before-start"])
def test_other_documents_are_validated(adapter: Any, document: Any,
                                       expected: str | None) -> None:
    from assembler.errors import InvalidInputsError

    data = json.dumps(document, allow_nan=True).replace("Infinity", "1e999").encode()
    if expected is None:
        parse_document(data, adapter, "doc.json")
        return
    with pytest.raises(InvalidInputsError) as raised:
        parse_document(data, adapter, "doc.json")
    assert str(raised.value.problems[0]).startswith(f"doc.json: {expected}")
