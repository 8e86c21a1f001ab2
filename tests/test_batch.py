"""`assembler batch` end to end: recordings served on loopback, on this machine and on Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from assembler import cli
from assembler.batch import Job, read_jobs
from tests.support.media import media_info
from tests.support.recording import Manifests, RecordingBuilder
from tests.support.server import MediaServer, serve_directory

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RATE = 48000
FPS = 30
GOOD = ("rec-a", "rec-b", "rec-c", "rec-d")


def run_batch(jobs: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assembler", "batch", str(jobs),
                           "--out", str(out), "--retries", "0", *extra],
                          capture_output=True, text=True, timeout=600, check=False)


def rows(out: Path) -> dict[str | None, dict[str, Any]]:
    data = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert data["version"] == 1
    return {row["id"]: row for row in data["recordings"]}


def build(root: Path, base_url: str, shift: float) -> Manifests:
    """Two speakers with a gap each and a webcam, small and short; `shift` varies them."""
    recording = RecordingBuilder(root)
    recording.audio_part(1, "Ada", 0.0, 1.0, freq=440, bitrate="32k")
    recording.audio_part(1, "Ada", 2.0 + shift, 1.0, freq=660, bitrate="32k")
    recording.audio_part(2, "Bob", 0.5, 1.5, freq=880, bitrate="32k")
    recording.video_part(1, "Ada", 0.5, 1.5, colour="red", size=(64, 48))
    return recording.write(base_url)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[MediaServer, dict[str, Manifests]]]:
    """Six recordings under one server: four good, one broken manifest, one dead link."""
    www = tmp_path_factory.mktemp("www")
    with serve_directory(www) as server:
        names = (*GOOD, "broken", "dead")
        made = {name: build(www / name, f"{server.base_url}/{name}", 0.5 * index)
                for index, name in enumerate(names)}
        broken = json.loads(made["broken"].audio_parts.read_text(encoding="utf-8"))
        broken[0]["duration"] = -1.0
        made["broken"].audio_parts.write_text(json.dumps(broken), encoding="utf-8")
        server.fail(f"/dead/parts/{made['dead'].expected[0].file}", 404)
        yield server, made


def job_line(server: MediaServer, name: str, made: Manifests) -> str:
    # Parts manifests by URL (so a skip can be seen fetching nothing), the timeline by a path
    # relative to the jobs file.
    return json.dumps({"id": name, "audio_parts": server.url(f"{name}/audio_parts.json"),
                       "video_parts": server.url(f"{name}/video_parts.json"),
                       "speaker_timeline": f"{name}/speaker_timeline.json"}) + "\n"


def write_jobs(path: Path, server: MediaServer, made: dict[str, Manifests],
               names: tuple[str, ...], *, extra: str = "") -> Path:
    path.write_text("".join(job_line(server, name, made[name]) for name in names) + extra,
                    encoding="utf-8")
    return path


def assert_tracks(out: Path, made: Manifests) -> None:
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["complete"] is True
    paths = {track["path"] for person in report["participants"] for track in person["tracks"]}
    assert paths == {"participants/1-ada/audio.flac", "participants/1-ada/webcam.mp4",
                     "participants/2-bob/audio.flac"}
    for path in paths:
        info = media_info(out / path)
        if path.endswith(".flac"):
            assert info.samples == round(made.duration * RATE), path
        else:
            assert info.frames == round(made.duration * FPS), path


def test_batch_isolates_failures_and_skips_finished_recordings_on_rerun(
        served: tuple[MediaServer, dict[str, Manifests]], tmp_path: Path) -> None:
    server, made = served
    www = made["rec-a"].root.parent
    jobs = write_jobs(www / "jobs-local.jsonl", server, made, ("rec-a", "rec-b", "broken", "dead"),
                      extra='{"id": "../escape", "audio_parts": "x.json"}\n')
    out = tmp_path / "out"

    first = run_batch(jobs, out, "--quiet")

    assert first.returncode == 1, first.stderr
    found = rows(out)
    assert {key: (row["status"], row["exit"]) for key, row in found.items()} == {
        "rec-a": ("ok", 0), "rec-b": ("ok", 0), "broken": ("invalid", 2),
        "dead": ("failed", 3), "../escape": ("invalid", 2)}
    assert "duration: must be >= 0" in found["broken"]["error"]
    assert "404" in found["dead"]["error"]
    assert found["../escape"]["error"].startswith("line 5: id '../escape'")
    assert all(row["worker"] is None for row in found.values())
    assert not (out.parent / "escape").exists()
    for name in ("rec-a", "rec-b"):
        assert_tracks(out / name, made[name])

    before = Counter(server.requests)
    second = run_batch(jobs, out, "--quiet")

    assert second.returncode == 1, second.stderr
    again = rows(out)
    assert [again[name]["status"] for name in ("rec-a", "rec-b", "broken", "dead")] == [
        "skipped", "skipped", "invalid", "failed"]
    new = {path: count - before[path] for path, count in server.requests.items()
           if count != before[path]}
    assert new, "the unfinished recordings are tried again"
    assert not [path for path in new if path.startswith(("/rec-a/", "/rec-b/"))]

    # A batch that never starts (nothing listens at the scheduler's address) keeps the
    # record of the last one; a jobs file without some lines drops their rows.
    ledger = (out / "batch.json").read_bytes()
    unreachable = subprocess.run(
        [sys.executable, "-m", "assembler", "batch", str(jobs), "--out", str(out), "--quiet",
         "--scheduler", "tcp://127.0.0.1:1"], capture_output=True, text=True, timeout=600,
        check=False, env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert unreachable.returncode == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in unreachable.stderr
    assert (out / "batch.json").read_bytes() == ledger
    fewer = write_jobs(www / "jobs-fewer.jsonl", server, made, ("rec-a",))
    assert run_batch(fewer, out, "--quiet").returncode == 0
    assert {key: row["status"] for key, row in rows(out).items()} == {"rec-a": "skipped"}


def batch_over_a_ledger(served: tuple[MediaServer, dict[str, Manifests]], name: str,
                        out: Path, recordings: list[dict[str, Any]]
                        ) -> tuple[MediaServer, Manifests, Path]:
    """A jobs file of recording `name` alone, and `out/batch.json` as an earlier batch left
    it with `recordings`; returns the server, the recording and the jobs file."""
    server, made = served
    jobs = write_jobs(made[name].root.parent / f"jobs-{name}.jsonl", server, made, (name,))
    out.mkdir()
    (out / "batch.json").write_text(json.dumps({"version": 1, "recordings": recordings}))
    return server, made[name], jobs


def test_earlier_rows_give_way_to_this_runs_and_odd_ones_are_dropped(
        served: tuple[MediaServer, dict[str, Manifests]], tmp_path: Path) -> None:
    # rec-c was invalid before (its manifest since fixed): its new row replaces that one,
    # whatever status and line each has. A row not shaped like one, or of a recording the
    # jobs file no longer has, is dropped; neither stops the batch.
    out = tmp_path / "out"
    _, _, jobs = batch_over_a_ledger(served, "rec-c", out, [
        {"id": "gone", "line": 1, "status": "ok", "exit": 0, "seconds": 1.0, "worker": None},
        {"id": "rec-c", "line": 2, "status": "invalid", "exit": 2, "seconds": 0.0,
         "worker": None, "error": "line 2: duration: must be >= 0"},
        {"line": 3, "status": "ok"}, {"id": ["x"], "line": 4, "status": "ok"}])
    done = run_batch(jobs, out, "--quiet")
    assert done.returncode == 0, done.stderr
    assert {key: (row["status"], row["line"]) for key, row in rows(out).items()} == {
        "rec-c": ("ok", 1)}
    assert done.stderr.splitlines() == [
        f"warning: {out / 'batch.json'}: 2 row(s) not shaped like a recording's are left out"]


def test_a_batch_stopped_mid_recording_says_it_did_not_finish(
        served: tuple[MediaServer, dict[str, Manifests]], tmp_path: Path) -> None:
    # rec-d's earlier row says ok; this run has started making it again (its parts are
    # on their way), so that no longer holds: its row goes, and stopped there, it is failed.
    out = tmp_path / "out"
    server, made, jobs = batch_over_a_ledger(served, "rec-d", out, [
        {"id": "rec-d", "line": 1, "status": "ok", "exit": 0, "seconds": 1.0, "worker": None}])
    held = f"/rec-d/parts/{made.expected[0].file}"
    release = server.hold(held)
    try:
        process = subprocess.Popen([sys.executable, "-m", "assembler", "batch", str(jobs),
                                    "--out", str(out), "--quiet"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            for _ in range(12000):  # a guard against a hang, not a timing: 120 s
                if server.requests[held] or process.poll() is not None:
                    break
                time.sleep(0.01)
            assert server.requests[held], "the held part was never asked for"
            assert rows(out) == {}
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    finally:
        release()
    assert process.returncode == 130, stderr
    row = rows(out)["rec-d"]
    assert (row["status"], row["exit"], row["error"]) == (
        "failed", 130, "stopped before it finished")


@pytest.mark.parametrize("content", [None, b'{"id": "caf\xe9"}\n'], ids=["missing", "latin-1"])
def test_unreadable_jobs_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      content: bytes | None) -> None:
    jobs = tmp_path / "jobs.jsonl"
    if content is not None:
        jobs.write_bytes(content)

    status = cli.main(["batch", str(jobs), "--out", str(tmp_path / "out"), "--quiet"])

    assert status == 2
    assert "jobs" in capsys.readouterr().err
    assert not (tmp_path / "out" / "batch.json").exists()


BAD_LINES = [
    ("not json", "column 1: not JSON (Expecting value)"),
    ('["rec-1"]', "not a JSON object"),
    ('{"audio_parts": "a.json"}', 'no "id" string'),
    ('{"id": 7, "audio_parts": "a.json"}', 'no "id" string'),
    ('{"id": "ok-1", "audio_parts": "a.json"}', ""),
    ('{"id": "ok-1", "audio_parts": "b.json"}', "duplicate id (first on line 6)"),
    *((f'{{"id": "{unsafe}", "audio_parts": "a.json"}}', "not a safe directory name")
      for unsafe in ("../x", "a/b", "", ".", "-rf", "batch.json")),
    ('{"id": "no-parts", "speaker_timeline": "t.json"}', "give video parts, audio parts"),
    ('{"id": "typo", "audio_part": "a.json"}', "column 16: unknown key 'audio_part'"),
    ('{"id": "fmt", "audio_parts": "a.json", "audio_format": "ogg"}',
     "column 40: audio_format: 'ogg' is not one of flac, wav, opus, m4a, mp3"),
    ('{"id": "crf", "audio_parts": "a.json", "crf": 99}',
     "column 40: crf must be between 0 and 51"),
    ('{"id": "dur", "audio_parts": "a.json", "duration": "10"}',
     "column 40: duration must be a number, not a string"),
    ('{"id": "long", "audio_parts": "a.json", "duration": 1e12}',
     "column 41: duration must be > 0 and <= 604800 seconds (a week)"),
    ('{"id": "mix", "audio_parts": "a.json", "mix": 1}',
     "column 40: mix must be true or false, not int"),
    ('{"id": "opt-ok", "audio_parts": "a.json", "fps": "30000/1001", "kinds": "audio",'
     ' "captions": ["vtt"], "participant": [3, 4], "max_height": 720}', ""),
    ('{"id": "null-src", "audio_parts": null}', "audio_parts must be a local path"),
]


def test_each_bad_line_is_an_invalid_row_named_by_its_number(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    # A blank line still counts, as an editor shows line numbers.
    jobs.write_text("\n" + "\n".join(line for line, _ in BAD_LINES) + "\n", encoding="utf-8")

    entries = list(read_jobs(jobs))

    assert len(entries) == len(BAD_LINES)
    for number, (entry, (_, problem)) in enumerate(zip(entries, BAD_LINES, strict=True), 2):
        if not problem:
            assert isinstance(entry, Job)
            assert entry.sources.audio_parts == str(tmp_path / "a.json")
            continue
        assert not isinstance(entry, Job)
        assert (entry["status"], entry["exit"]) == ("invalid", 2)
        assert entry["error"].startswith(f"line {number}: " if "column" not in problem
                                         else f"line {number} "), entry
        assert entry["error"].count(f"line {number}") == 1
        assert problem in entry["error"]


def test_batch_on_a_dask_cluster_spreads_recordings_over_workers(
        served: tuple[MediaServer, dict[str, Manifests]], tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    server, made = served
    jobs = write_jobs(tmp_path / "jobs.jsonl", server, made, GOOD)
    # The speaker timelines are paths relative to the jobs file.
    for name in GOOD:
        (tmp_path / name).symlink_to(made[name].root)
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=":0") as cluster:
        workers = set(cluster.scheduler_info["workers"])

        done = run_batch(jobs, out, "--quiet", "--scheduler", cluster.scheduler_address)

    assert done.returncode == 0, done.stderr
    found = rows(out)
    assert [found[name]["status"] for name in GOOD] == ["ok"] * len(GOOD)
    used = {found[name]["worker"] for name in GOOD}
    assert used == workers
    for name in GOOD:
        assert_tracks(out / name, made[name])


def test_dry_run_prints_each_plan_and_fetches_no_part(
        served: tuple[MediaServer, dict[str, Manifests]], tmp_path: Path) -> None:
    server, made = served
    jobs = write_jobs(server.root / "dry-run.jsonl", server, made, (GOOD[0], "broken"),
                      extra='{"id": "../escape", "audio_parts": "x.json"}\n')
    parts_before = sum(count for path, count in server.requests.items() if "/parts/" in path)
    done = run_batch(jobs, tmp_path / "out", "--dry-run")
    assert done.returncode == 1, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(entry["id"], entry["line"], "plan" in entry) for entry in entries] == [
        (GOOD[0], 1, True), ("broken", 2, False), ("../escape", 3, False)], entries
    assert entries[0]["plan"]["duration"] == made[GOOD[0]].duration
    assert "[0].duration: must be >= 0" in entries[1]["error"]
    assert entries[2]["error"].startswith("line 3: ")
    assert sum(count for path, count in server.requests.items() if "/parts/" in path) == (
        parts_before)
    assert not (tmp_path / "out").exists()


def test_a_changed_local_manifest_makes_the_recording_again(tmp_path: Path) -> None:
    from assembler.manifest import Sources
    from assembler.pipeline import RunOptions, inputs_fingerprint

    audio = tmp_path / "audio_parts.json"
    audio.write_text("[]")
    sources = Sources(audio_parts=str(audio),
                      video_parts="https://api.example/v.json?X-Amz-Signature=one")
    before = inputs_fingerprint(sources, RunOptions())
    renewed = Sources(audio_parts=str(audio),
                      video_parts="https://api.example/v.json?X-Amz-Signature=two")
    assert inputs_fingerprint(renewed, RunOptions()) == before  # a fresh signature is the same
    audio.write_text('[{"id": "added"}]')
    assert inputs_fingerprint(sources, RunOptions()) != before


def test_a_jobs_line_sets_its_own_options_over_the_batchs(
        served: tuple[MediaServer, dict[str, Manifests]], tmp_path: Path) -> None:
    server, made = served
    first, second = GOOD[:2]
    own = {"audio_format": "wav", "duration": 1.0, "kinds": "audio"}
    jobs = server.root / "own-options.jsonl"
    jobs.write_text(job_line(server, first, made[first])
                    + json.dumps({**json.loads(job_line(server, second, made[second])), **own})
                    + "\n", encoding="utf-8")
    out = tmp_path / "out"
    done = run_batch(jobs, out)
    assert done.returncode == 0, done.stderr
    assert_tracks(out / first, made[first])  # the batch's options: FLAC, every kind
    report = json.loads((out / second / "report.json").read_text(encoding="utf-8"))
    paths = {track["path"] for person in report["participants"] for track in person["tracks"]}
    assert paths == {"participants/1-ada/audio.wav", "participants/2-bob/audio.wav"}
    for path in paths:
        assert media_info(out / second / path).samples == RATE
    again = run_batch(jobs, out)
    assert again.returncode == 0, again.stderr
    assert {row["status"] for row in rows(out).values()} == {"skipped"}


def test_quiet_still_names_each_recording_not_made(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "broken", "audio_parts": "a.json", "crf": 99}\n', encoding="utf-8")
    done = run_batch(jobs, tmp_path / "out", "--quiet")
    assert done.returncode == 1
    assert done.stdout == ""
    said = done.stderr.splitlines()
    assert len(said) == 1
    assert said[0].startswith("warning: broken invalid: line 1 ")
    assert "crf" in said[0]
