"""`assembler verify`: fixity of a run's files, read back from a real run made with the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from assembler.errors import ReportError
from assembler.verify import is_batch, verify_batch, verify_recording
from tests.support.media import ffmpeg
from tests.support.recording import RecordingBuilder
from tests.support.server import serve_directory

if TYPE_CHECKING:
    from pathlib import Path

WEBCAM = "participants/1-ada/webcam.mp4"
AUDIO = "participants/1-ada/audio.flac"


def assembler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assembler", *args], capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh run with an archive: two tracks, recording.mkv, report.json."""
    root = tmp_path_factory.mktemp("verify")
    build = RecordingBuilder(root / "www")
    build.audio_part(1, "Ada", 0.0, 2.0, freq=440.0, ext=".wav")
    build.video_part(1, "Ada", 0.0, 2.0, colour="green", gop=10)
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        done = assembler("run", "--out", str(root / "out"), "--archive", "--quiet", "--jobs", "1",
                         "--audio-parts", str(manifests.audio_parts),
                         "--video-parts", str(manifests.video_parts))
    assert done.returncode == 0, done.stderr
    return root / "out"


@pytest.fixture
def copy(made: Path, tmp_path: Path) -> Path:
    """A copy of the fresh run to spoil; the parts are left out (verify never reads them)."""
    return shutil.copytree(made, tmp_path / "rec", ignore=shutil.ignore_patterns("parts"))


def _report(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return data


def _rewrite_report(directory: Path, report: dict[str, Any]) -> None:
    (directory / "report.json").write_text(json.dumps(report))


def _flip_byte(path: Path, at: int) -> None:
    with path.open("r+b") as media:
        media.seek(at)
        byte = media.read(1)
        media.seek(at)
        media.write(bytes([byte[0] ^ 0x01]))


def test_a_fresh_run_verifies_with_and_without_decoding(made: Path) -> None:
    listed = [entry["path"] for person in _report(made)["participants"]
              for entry in person["tracks"]] + [o["path"] for o in _report(made)["outputs"]]
    assert sorted(listed) == [AUDIO, WEBCAM, "recording.mkv"]
    done = assembler("verify", str(made))
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    # Not a terminal: no progress display, only the summary.
    assert done.stderr.splitlines() == [f"3 files checked in {made}: all match"]
    decoded = verify_recording(made, decode=True)
    assert (decoded.checked, decoded.differences) == (3, ())


def test_a_report_of_one_file_says_file(copy: Path) -> None:
    report = _report(copy)
    for person in report["participants"]:
        person["tracks"] = [entry for entry in person["tracks"] if entry["path"] == AUDIO]
    report["outputs"] = []
    _rewrite_report(copy, report)
    done = assembler("verify", str(copy))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"1 file checked in {copy}: all match"]


class Heard:
    """Records what `verify` tells its progress display."""

    def __init__(self) -> None:
        self.planned = self.hashed = 0
        self.chunks = 0

    def bytes_planned(self, nbytes: int) -> None:
        self.planned += nbytes

    def bytes_hashed(self, nbytes: int) -> None:
        self.hashed += nbytes
        self.chunks += 1


def test_progress_hears_every_byte_hashed(made: Path) -> None:
    heard = Heard()
    verify_recording(made, progress=heard)
    sizes = sum((made / path).stat().st_size for path in (AUDIO, WEBCAM, "recording.mkv"))
    assert heard.planned == heard.hashed == sizes
    assert heard.chunks >= 3


def test_one_flipped_byte_is_one_line_naming_the_file(copy: Path) -> None:
    _flip_byte(copy / WEBCAM, (copy / WEBCAM).stat().st_size // 2)
    done = assembler("verify", str(copy))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"changed {copy / WEBCAM}: sha256 differs from the report's"]


def test_a_deleted_output_is_named(copy: Path) -> None:
    (copy / "recording.mkv").unlink()
    (copy / AUDIO).unlink()
    done = assembler("verify", str(copy), "--quiet")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [f"missing {copy / AUDIO}: not found",
                                        f"missing {copy / 'recording.mkv'}: not found"]
    assert done.stderr == ""


def _snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    return {str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns,
                                               hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_verifying_changes_nothing(copy: Path) -> None:
    _flip_byte(copy / AUDIO, 4000)
    before = _snapshot(copy)
    assert not verify_recording(copy, decode=True).ok
    assert _snapshot(copy) == before


def test_decode_finds_a_file_whose_checksum_was_taken_broken(copy: Path) -> None:
    """A track cut short before its checksum was taken: its sha256 matches, its length not."""
    webcam = copy / WEBCAM
    with webcam.open("r+b") as media:
        media.truncate(webcam.stat().st_size * 2 // 3)
    report = _report(copy)
    report["participants"][0]["tracks"][1]["sha256"] = hashlib.sha256(
        webcam.read_bytes()).hexdigest()
    _rewrite_report(copy, report)
    assert verify_recording(copy).ok
    [found] = verify_recording(copy, decode=True).differences
    assert found.path == WEBCAM
    assert found.problem in ("undecodable", "length")


def test_a_short_audio_track_is_a_length_difference(copy: Path) -> None:
    audio = copy / AUDIO
    # Whole FLAC frames cut from the end: what is left decodes cleanly, only shorter.
    ffmpeg(["-i", str(audio), "-t", "1.5", "-c", "copy", "-f", "flac", str(copy / "short.flac")])
    os.replace(copy / "short.flac", audio)
    report = _report(copy)
    report["participants"][0]["tracks"][0]["sha256"] = hashlib.sha256(
        audio.read_bytes()).hexdigest()
    _rewrite_report(copy, report)
    [found] = verify_recording(copy, decode=True).differences
    assert (found.path, found.problem) == (AUDIO, "length")
    assert "decodes to 1.5" in found.detail


def test_a_failed_deliverable_is_not_a_difference(copy: Path) -> None:
    report = _report(copy)
    report["outputs"].append({"kind": "mix", "format": "flac", "path": "mix.flac",
                              "error": "the encoder gave up"})
    _rewrite_report(copy, report)
    check = verify_recording(copy)
    assert check.ok
    assert check.not_made == ("mix.flac",)


def test_a_report_of_an_earlier_version_is_verified(copy: Path) -> None:
    """Only the contract's keys: no outputs, no rate or units, no completeness."""
    report = _report(copy)
    contract = {"version": 1, "timeline": report["timeline"], "failures": [],
                "participants": [{**person, "tracks": [
                    {key: track[key] for key in ("kind", "path", "duration", "strategy", "parts",
                                                 "gaps", "sha256")}
                    for track in person["tracks"]]} for person in report["participants"]]}
    _rewrite_report(copy, contract)
    assert verify_recording(copy, decode=True).ok
    _flip_byte(copy / AUDIO, 100)
    [found] = verify_recording(copy).differences
    assert (found.path, found.problem) == (AUDIO, "changed")


def test_a_path_leaving_the_directory_is_a_difference_and_never_read(copy: Path) -> None:
    (copy.parent / "secret").write_bytes(b"not yours")
    report = _report(copy)
    report["outputs"].append({"kind": "mix", "format": "flac", "path": "../secret",
                              "sha256": hashlib.sha256(b"not yours").hexdigest()})
    _rewrite_report(copy, report)
    [found] = verify_recording(copy).differences
    assert (found.path, found.problem) == ("../secret", "outside")


def test_no_report_exits_2_with_one_line(tmp_path: Path) -> None:
    done = assembler("verify", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {tmp_path / 'report.json'}: not found"]


@pytest.mark.parametrize(("content", "reason"), [
    ("{not json", "Expecting property name"), ('{"participants": 3}', "participants: "),
    ("[]", "top level: "), ('{"participants": [{"tracks": [{"sha256": "00"}]}]}',
                            "participants.0.tracks.0.path: Field required")],
    ids=["not-json", "wrong-shape", "not-an-object", "track-without-path"])
def test_an_unreadable_report_is_a_report_error(tmp_path: Path, content: str,
                                                reason: str) -> None:
    (tmp_path / "report.json").write_text(content)
    with pytest.raises(ReportError, match=r"not a readable report\.json") as raised:
        verify_recording(tmp_path)
    assert reason in str(raised.value)
    assert raised.value.exit_status == 2


def test_a_batch_root_gets_one_line_per_recording(made: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name in ("rec-a", "rec-b", "rec-lost"):
        shutil.copytree(made, root / name, ignore=shutil.ignore_patterns("parts"))
    (root / "rec-lost" / "report.json").unlink()
    rows: list[dict[str, Any]] = [
        {"id": "rec-a", "status": "ok", "exit": 0}, {"id": "rec-b", "status": "ok", "exit": 0},
            {"id": "rec-lost", "status": "skipped", "exit": 0},
            {"id": "rec-failed", "status": "failed", "exit": 3, "error": "404"},
            {"id": None, "line": 5, "status": "invalid", "exit": 2}]
    (root / "batch.json").write_text(json.dumps({"version": 1, "recordings": rows}))
    _flip_byte(root / "rec-b" / WEBCAM, 3000)
    done = assembler("verify", str(root))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0] == "rec-a: ok, 3 files match"
    assert lines[1] == f"rec-b: differs, 1 of 3 files: {WEBCAM} changed"
    assert lines[2].startswith("rec-lost: differs: ")
    assert lines[3].startswith("rec-failed: not made (failed in batch.json): ")
    shutil.rmtree(root / "rec-lost")
    rows = [row for row in rows if row["id"] != "rec-lost"]
    (root / "batch.json").write_text(json.dumps({"version": 1, "recordings": rows}))
    _flip_byte(root / "rec-b" / WEBCAM, 3000)  # flipped back: as written
    assert is_batch(root)
    checked = verify_batch(root)
    assert checked.ok
    assert [entry.id for entry in checked.recordings] == ["rec-a", "rec-b", "rec-failed"]


def test_invalid_jobs_lines_are_not_made_not_differences(made: Path, tmp_path: Path) -> None:
    """A bad line (an unsafe id, a duplicate of a made recording) made nothing to check."""
    root = tmp_path / "root"
    shutil.copytree(made, root / "good", ignore=shutil.ignore_patterns("parts"))
    rows: list[dict[str, Any]] = [
        {"id": "good", "status": "ok", "exit": 0},
        {"id": "../escape", "status": "invalid", "exit": 2, "error": "line 2: unsafe id"},
        {"id": "good", "status": "invalid", "exit": 2, "error": "line 3: duplicate id"}]
    (root / "batch.json").write_text(json.dumps({"version": 1, "recordings": rows}))
    done = assembler("verify", str(root))
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines() == [
        "good: ok, 3 files match",
        "../escape: not made (invalid in batch.json): line 2: unsafe id"]


def test_a_batch_root_whose_ledger_lists_nothing_is_not_passed(made: Path,
                                                               tmp_path: Path) -> None:
    # A ledger emptied by a batch that never ran would otherwise verify clean, untouched.
    shutil.copytree(made, tmp_path / "rec-1", ignore=shutil.ignore_patterns("parts"))
    (tmp_path / "batch.json").write_text(json.dumps({"version": 1, "recordings": []}))
    done = assembler("verify", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().endswith("batch.json: lists no recording to verify")
    assert done.stdout == ""


def test_a_failed_run_whose_files_match_says_it_failed(made: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(made, root / "partial", ignore=shutil.ignore_patterns("parts"))
    rows = [{"id": "partial", "status": "failed", "exit": 3, "error": "part a: 404"}]
    (root / "batch.json").write_text(json.dumps({"version": 1, "recordings": rows}))
    done = assembler("verify", str(root))
    assert done.returncode == 0, done.stdout  # fixity: what it wrote is as written
    assert done.stdout.splitlines() == [
        "partial: run failed (exit 3 in batch.json); 3 files it wrote, all match"]
