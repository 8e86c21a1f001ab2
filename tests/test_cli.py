"""The command line as a person meets it: help, messages, exit statuses, pipes and signals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from tests.support.recording import Manifests, RecordingBuilder
from tests.support.server import MediaServer, serve_directory

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


def assembler(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assembler", *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[MediaServer, Manifests]]:
    build = RecordingBuilder(tmp_path_factory.mktemp("www"))
    for start in (0.0, 1.0):
        build.audio_part(1, "Ada", start, 0.5, ext=".wav", rate=8000)
    build.video_part(1, "Ada", 0.0, 1.0, size=(32, 24), fps=5)
    with serve_directory(build.root) as server:
        yield server, build.write(server.base_url)


# --- help -------------------------------------------------------------------------------


def test_help_describes_the_tool_with_examples_and_exit_codes() -> None:
    done = assembler("--help")
    assert done.returncode == 0
    text = done.stdout
    assert "aligned tracks" in text
    assert "The command line:" not in text
    examples = text.split("examples:")[1].split("exit status:")[0]
    assert examples.count("assembler ") == 2
    for status in ("0 ", "1 ", "2 ", "3 ", "130 "):
        assert f"\n  {status}" in text.split("exit status:")[1]


def test_bare_assembler_prints_usage_and_exits_2() -> None:
    done = assembler()
    assert done.returncode == 2
    assert done.stderr.startswith("usage: assembler")
    assert "run" in done.stderr
    assert "batch" in done.stderr
    assert "Traceback" not in done.stderr


def test_version() -> None:
    done = assembler("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("assembler ")
    assert any(char.isdigit() for char in done.stdout)


def option_help(command: str, option: str) -> str:
    """The help entry of `option` (its line and continuation lines), unwrapped."""
    lines = assembler(command, "--help").stdout.split("\n\n", 1)[1].splitlines()  # no usage
    start = next(index for index, line in enumerate(lines)
                 if line.lstrip().startswith(f"{option} ") or line.strip() == option)
    entry = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("   ") or line.lstrip().startswith("-"):
            break
        entry.append(line)
    return " ".join(" ".join(entry).split())


@pytest.mark.parametrize("option", ["--audio-format", "--video-strategy", "--concurrency",
                                    "--retries", "--fps", "--loudness", "--read-timeout",
                                    "--duration", "--jobs"])
def test_every_option_help_names_its_default(option: str) -> None:
    assert "default" in option_help("run", option)


def test_help_names_choices_the_jobs_file_and_out() -> None:
    assert option_help("run", "--audio-format").endswith(
        "one of: flac, wav, opus, m4a, mp3 (default: flac)")
    assert "copy:" in option_help("run", "--video-strategy")
    assert option_help("run", "--out").startswith("--out DIR output directory")
    assert option_help("batch", "JOBS.jsonl").startswith(
        'JOBS.jsonl one recording per line, e.g. {"id": "rec-42"')
    assert option_help("batch", "--out").startswith("--out ROOT root directory")


@pytest.mark.parametrize(("args", "message"), [
    (["--duration", "abc"], "error: argument --duration: 'abc' is not a number"),
    (["--duration", "-1"], "error: argument --duration: must be a finite number > 0"),
    (["--duration", "1e12"],  # milliseconds typed for seconds: hours of black, not a run
     "error: argument --duration: must be at most 604800 seconds (a week), not '1e12'"),
    (["--concurrency", "x"], "error: argument --concurrency: 'x' is not a whole number"),
    (["--fps", "1/0"], "error: argument --fps: '1/0' is not a number or a ratio"),
    (["--audio-format", "ogg"], "error: argument --audio-format: invalid choice: 'ogg'"),
], ids=["duration-word", "duration-negative", "duration-beyond-a-week", "concurrency-word",
        "fps-zero-denominator", "format"])
def test_bad_option_values_name_what_was_expected(tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    done = assembler("run", "--out", str(tmp_path), "--audio-parts", "a.json", *args)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(message), line
    assert "_positive" not in line
    assert "invalid" not in line.replace("invalid choice", "")


# --- bad input: one line each, exit 2, nothing downloaded ----------------------------------


def test_paths_are_shown_as_given(tmp_path: Path) -> None:
    done = assembler("run", "--out", "out", "--audio-parts", "a/b/missing.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "error: a/b/missing.json: cannot read: No such file or directory\n"


def test_unsupported_url_scheme(tmp_path: Path) -> None:
    done = assembler("run", "--out", str(tmp_path / "out"), "--audio-parts",
                     "ftp://host/audio_parts.json?token=secret")
    assert done.returncode == 2
    assert done.stderr == ("error: ftp://host/audio_parts.json?…: unsupported URL scheme "
                           "ftp://: give a local path or an http(s) URL\n")


@pytest.mark.parametrize("where", ["404", "refused"])
def test_a_manifest_url_that_fails_is_shown_once(recording: tuple[MediaServer, Manifests],
                                                 tmp_path: Path, where: str) -> None:
    server, _ = recording
    url = (server.url("nope.json", "sig=hush") if where == "404"
           else "http://127.0.0.1:1/audio_parts.json?sig=hush")
    done = assembler("run", "--out", str(tmp_path), "--audio-parts", url, "--retries", "0")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    shown = url.split("?")[0] + "?…"
    assert line.startswith(f"error: {shown}: cannot fetch: ")
    assert line.count(url.split("?")[0]) == 1
    assert "hush" not in line


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_every_manifest_problem_is_listed_up_to_a_cap(
        recording: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    server, manifests = recording
    parts = json.loads(manifests.audio_parts.read_text())
    broken = [{**part, "duration": -1} for part in parts * 15]  # 30 parts, 30 problems...
    for index, part in enumerate(broken):
        part["id"] = f"p{index}"
    broken[0]["download_url"] = "nope"  # ... and one more on the first part
    path = _write(tmp_path / "audio_parts.json", broken)
    before = sum(server.requests.values())
    done = assembler("run", "--out", str(tmp_path / "out"), "--audio-parts", str(path))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[:3] == [f"error: {path}: [0].duration: must be >= 0",
                         f"error: {path}: [0].download_url: must be an http(s) URL",
                         f"error: {path}: [1].duration: must be >= 0"]
    assert len(lines) == 21
    assert lines[-1] == "error: and 11 more problems"
    assert sum(server.requests.values()) == before


def test_every_duplicate_id_is_listed(recording: tuple[MediaServer, Manifests],
                                      tmp_path: Path) -> None:
    _, manifests = recording
    parts = json.loads(manifests.audio_parts.read_text())
    path = _write(tmp_path / "audio_parts.json", parts * 3)
    done = assembler("run", "--out", str(tmp_path / "out"), "--audio-parts", str(path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {path}: [2].id: duplicate of [0].id",
        f"error: {path}: [3].id: duplicate of [1].id",
        f"error: {path}: [4].id: duplicate of [0].id",
        f"error: {path}: [5].id: duplicate of [1].id",
    ]


def test_an_empty_parts_manifest_is_bad_input(tmp_path: Path) -> None:
    path = _write(tmp_path / "audio_parts.json", [])
    done = assembler("run", "--out", str(tmp_path / "out"), "--audio-parts", str(path))
    assert done.returncode == 2
    assert done.stderr == (f"error: {path}: top level: no parts (an empty list): nothing to "
                           "assemble\n")
    assert not (tmp_path / "out").exists()


def test_manifests_given_to_the_wrong_option(recording: tuple[MediaServer, Manifests],
                                             tmp_path: Path) -> None:
    server, manifests = recording
    before = sum(server.requests.values())
    done = assembler("run", "--out", str(tmp_path / "out"),
                     "--audio-parts", str(manifests.video_parts),
                     "--video-parts", str(manifests.audio_parts))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {manifests.audio_parts}: top level: no part has a `type` (webcam or "
        "screenshare): audio parts? give this document as --audio-parts",
        f"error: {manifests.video_parts}: [0].type: parts with a `type` are video parts: "
        "give this document as --video-parts",
    ]
    assert sum(server.requests.values()) == before


@pytest.mark.parametrize("command", ["run", "batch"])
@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_out_that_is_a_file_is_bad_input_before_any_download(
        recording: tuple[MediaServer, Manifests], tmp_path: Path, where: str,
        command: str) -> None:
    server, manifests = recording
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory")
    out = blocker if where == "file" else blocker / "out"
    before = sum(server.requests.values())
    if command == "run":
        done = assembler("run", "--out", str(out), *manifests.cli_args())
    else:
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_text(json.dumps({"id": "r1", "audio_parts": str(manifests.audio_parts)}))
        done = assembler("batch", str(jobs), "--out", str(out))
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: output directory {out}: ")
    assert sum(server.requests.values()) == before
    assert blocker.read_text() == "not a directory"


# --- pipes ------------------------------------------------------------------------------


def test_dry_run_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    for index in range(400):  # a plan far longer than a pipe's buffer
        build.audio_part(1 + index % 4, "Ada", index * 1.0, 0.5, ext=".wav", rate=8000)
    manifests = build.write("http://127.0.0.1:9")
    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    done = subprocess.run([sys.executable, "-m", "assembler", "run", "--out",
                           str(tmp_path / "out"), "--audio-parts", str(manifests.audio_parts),
                           "--dry-run"], stdout=reader.stdin, stderr=subprocess.PIPE,
                          text=True, timeout=120, check=False)
    reader.stdin.close()
    reader.wait(timeout=30)
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as a shell tool killed by the pipe


# --- a run as it is seen: summary, logs, progress, report ----------------------------------


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MediaServer, Manifests]]:
    """Ada's audio is three parts, the second answers 404; Bob's webcam needs no copy help."""
    build = RecordingBuilder(tmp_path_factory.mktemp("www"))
    build.audio_part(1, "Ada", 0.0, 1.0, ext=".wav", rate=8000)
    lost = build.audio_part(1, "Ada", 1.5, 1.0, ext=".wav", rate=8000)
    build.audio_part(1, "Ada", 3.0, 1.0, ext=".wav", rate=8000)
    build.video_part(2, "Bob", 0.0, 2.0, size=(32, 24), fps=5)
    with serve_directory(build.root) as server:
        server.fail(f"parts/{lost.file}", 404)
        yield server, build.write(server.base_url)


def test_json_logs_name_part_and_track_and_end_with_run_finished(
        lossy: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = lossy
    lost = json.loads(manifests.audio_parts.read_text())[1]["id"]
    done = assembler("run", "--out", str(tmp_path), *manifests.cli_args(), "--json-logs",
                     "--retries", "0")
    assert done.returncode == 3
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert [(line.get("part"), line.get("track")) for line in errors] == [
        (lost, None), (lost, "participants/1-ada/audio.flac")]
    assert all(line["message"].count(lost) == 1 for line in errors)
    wrote = [line for line in lines if line.get("event") == "wrote track"]
    assert [(line["track"], line["strategy"], line["duration"]) for line in wrote] == [
        ("participants/2-bob/webcam.mp4", "copy", 4.0)]
    assert lines[-1]["event"] == "run finished"
    assert lines[-1]["exit"] == 3
    assert lines[-1]["report"] == str(tmp_path / "report.json")


def test_summary_has_one_line_per_failed_track(tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    for index, size in enumerate([(32, 24), (64, 48), (48, 32), (32, 24)]):
        build.video_part(1, "Ada", index * 1.0, 1.0, size=size, fps=5)
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        done = assembler("run", "--out", str(tmp_path / "out"), *manifests.cli_args(),
                         "--video-strategy", "copy")
    assert done.returncode == 1
    failed = [line for line in done.stdout.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1
    assert failed[0].startswith("failed participants/1-ada/webcam.mp4: cannot copy")
    assert len(json.loads((tmp_path / "out/report.json").read_text())["failures"]) == 4
    assert [line for line in done.stderr.splitlines() if "webcam.mp4" in line] == [
        f"error: {failed[0].removeprefix('failed ').replace(': ', ' not written: ', 1)}"]


def test_logs_off_a_terminal_are_whole_lines(lossy: tuple[MediaServer, Manifests],
                                             tmp_path: Path) -> None:
    _, manifests = lossy
    done = assembler("run", "--out", str(tmp_path), "--audio-parts",
                     str(manifests.audio_parts), "-v", "--retries", "0")
    commands = [line for line in done.stderr.splitlines() if line.startswith("debug: running ")]
    assert commands
    assert all(line.rstrip().endswith(".flac") or "file:" in line for line in commands)
    assert any(len(line) > 200 for line in commands)  # one line, however long
    assert "error: part " in done.stderr


def test_a_rerun_with_every_part_on_disk_says_so(recording: tuple[MediaServer, Manifests],
                                                 tmp_path: Path) -> None:
    server, manifests = recording
    first = assembler("run", "--out", str(tmp_path), *manifests.cli_args())
    assert first.returncode == 0, first.stderr
    assert "info: downloaded 3 parts" in first.stderr
    before = sum(server.requests.values())
    # --force: a plain rerun of a complete run skips everything, parts included.
    again = assembler("run", "--out", str(tmp_path), *manifests.cli_args(), "--force")
    assert again.returncode == 0, again.stderr
    assert "info: all 3 parts on disk" in again.stderr.splitlines()
    assert sum(server.requests.values()) == before


def test_report_lists_every_blank_span_and_no_false_warning(tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    build.audio_part(1, "Ada", 0.0, 2.0, media_seconds=1.0, ext=".wav")  # padded 1 s
    cut = build.audio_part(1, "Ada", 3.0, 2.0, ext=".wav")  # --duration cuts it at 4 s
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        done = assembler("run", "--out", str(tmp_path / "out"), "--audio-parts",
                         str(manifests.audio_parts), "--duration", "4")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out/report.json").read_text())
    (track,) = report["participants"][0]["tracks"]
    assert track["gaps"] == [[2.0, 3.0]]
    assert track["blank"] == [[1.0, 3.0]]
    about_cut = [warning["message"] for warning in report["warnings"]
                 if warning.get("part") == cut.part_id]
    assert about_cut == ["cut at the timeline end, 4 s"]


def test_dry_run_says_where_render_decides_the_frame_rate(
        recording: tuple[MediaServer, Manifests], tmp_path: Path) -> None:
    _, manifests = recording
    done = assembler("run", "--out", str(tmp_path), *manifests.cli_args(), "--dry-run")
    assert done.returncode == 0, done.stderr
    tracks = {track["kind"]: track for person in json.loads(done.stdout)["participants"]
              for track in person["tracks"]}
    assert tracks["audio"]["rate"] == "48000"
    assert tracks["webcam"]["rate"].startswith("decided at render: the parts' own rate")
    assert tracks["webcam"]["frames_at"] == "30"
    encoded = assembler("run", "--out", str(tmp_path), *manifests.cli_args(), "--dry-run",
                        "--video-strategy", "encode", "--fps", "25")
    webcam = json.loads(encoded.stdout)["participants"][0]["tracks"][1]
    assert webcam["rate"] == "25"


def test_batch_json_lines_carry_the_recording_id(lossy: tuple[MediaServer, Manifests],
                                                  tmp_path: Path) -> None:
    _, manifests = lossy
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": name, "audio_parts": str(manifests.audio_parts)})
                            + "\n" for name in ("r1", "r2")) + '{"id": "r3",,}\n')
    done = assembler("batch", str(jobs), "--out", str(tmp_path / "out"), "--json-logs",
                     "--jobs", "2", "--retries", "0")
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert Counter(line["id"] for line in errors) == {"r1": 2, "r2": 2}  # the part, the track
    bad = [line["message"] for line in lines if line.get("status") == "invalid"]
    assert bad == ["invalid: line 3 column 13: not JSON (Expecting property name enclosed "
                   "in double quotes)"]
    assert lines[-1]["event"] == "batch finished"
    assert lines[-1]["exit"] == 1
    assert lines[-1]["ledger"] == str(tmp_path / "out/batch.json")


# --- the live display, read off an emulated terminal -------------------------------------


def _run_in_terminal(args: list[str], columns: int, until: Callable[[str], bool],
                     then: Callable[[subprocess.Popen[bytes]], None]
                     ) -> tuple[int, list[str], list[str]]:
    """Run the CLI on a pseudo-terminal `columns` wide; once the screen shows `until`,
    call `then` with the process. Returns the exit status, a screen seen while running,
    and the last screen."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    import pyte

    screen = pyte.Screen(columns, 40)
    stream = pyte.ByteStream(screen)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    process = subprocess.Popen([sys.executable, "-m", "assembler", *args], stdin=follower,
                               stdout=follower, stderr=follower,
                               env={**env, "TERM": "xterm-256color", "PYTHONPATH": os.getcwd()})
    os.close(follower)
    seen: list[str] = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            assert ready, "the CLI went silent for a minute"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the follower closed: the process has ended
                break
            if not chunk:
                break
            stream.feed(chunk)
            if not seen and until("\n".join(screen.display)):
                seen = list(screen.display)
                then(process)
    finally:
        status = process.wait(timeout=120)
        os.close(leader)
    return status, seen, [line.rstrip() for line in screen.display if line.strip()]


@pytest.mark.parametrize("columns", [70, 120])
def test_progress_rows_name_participant_kind_and_part_and_leave_a_clean_screen(
        tmp_path: Path, columns: int) -> None:
    build = RecordingBuilder(tmp_path / "www")
    for index in range(3):
        build.audio_part(1, "Ada Lovelace-Byron", index * 1.0, 0.5, ext=".wav", rate=8000)
    late = build.audio_part(2, "Bob", 0.0, 0.5, ext=".wav", rate=8000)
    with serve_directory(build.root) as server:
        release = server.hold(f"parts/{late.file}")
        manifests = build.write(server.base_url)
        status, seen, last = _run_in_terminal(
            ["run", "--out", str(tmp_path / "out"), "--audio-parts", str(manifests.audio_parts)],
            columns, until=lambda text: "parts 3/4" in text, then=lambda _: release())
    assert status == 0
    overall = next(line for line in seen if line.startswith("parts 3/4"))
    assert len(overall.rstrip()) <= columns - 2  # room for the terminal's own ^C echo
    assert "B/" in overall  # bytes so far of the sizes known
    assert f"report {tmp_path / 'out/report.json'}" in "".join(last)  # long paths wrap
    assert not [line for line in last if "━" in line]  # the display is gone, rows and all
    assert "info: " not in "\n".join(last)  # rich log lines on a terminal, not plain ones


def test_ctrl_c_mid_render_leaves_a_clean_screen(tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    build.video_part(1, "Ada", 0.0, 1.0, size=(64, 48), fps=10)
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        status, seen, last = _run_in_terminal(
            ["run", "--out", str(tmp_path / "out"), "--video-parts", str(manifests.video_parts),
             "--duration", "900", "--fps", "60", "--video-strategy", "encode"], 70,
            until=lambda text: "% " in text, then=lambda process: process.send_signal(2))
    assert status == 130
    row = next(line for line in seen if line.startswith("  1-ada webcam"))
    assert re.search(r" \d+:\d\d +\d+%", row)  # time spent, then the share done
    assert not [line for line in last if "━" in line]
    assert last[-1] == "error: interrupted; complete parts and tracks are kept"


def test_download_rows_are_named_participant_kind_and_number(tmp_path: Path) -> None:
    import asyncio

    from assembler._console import part_labels
    from assembler.manifest import Sources
    from assembler.pipeline import RunOptions, plan_recording

    build = RecordingBuilder(tmp_path / "www")
    ada = [build.audio_part(1, "Ada Lovelace-Byron", start, 0.5, ext=".wav", rate=8000)
           for start in (2.0, 0.0)]
    cam = build.video_part(2, None, 0.0, 1.0, size=(32, 24), fps=5)
    manifests = build.write("http://127.0.0.1:9")
    _, plan = asyncio.run(plan_recording(Sources(audio_parts=str(manifests.audio_parts),
                                                 video_parts=str(manifests.video_parts)),
                                         RunOptions()))
    assert part_labels(plan) == {ada[1].part_id: "Ada Lovelace-… audio 1/2",
                                 ada[0].part_id: "Ada Lovelace-… audio 2/2",
                                 cam.part_id: "#2 webcam 1/1"}


def test_quiet_keeps_only_warnings_and_errors(lossy: tuple[MediaServer, Manifests],
                                              tmp_path: Path) -> None:
    _, manifests = lossy
    done = assembler("run", "--out", str(tmp_path), *manifests.cli_args(), "--quiet",
                     "--retries", "0")
    assert done.returncode == 3
    assert done.stdout == ""
    assert {line.split(":")[0] for line in done.stderr.splitlines()} == {"error"}


def test_a_run_with_nothing_to_make_is_bad_input(tmp_path: Path) -> None:
    """Slots of 0 s, or --kinds leaving every part out: exit 2, not an empty 'complete' run."""
    parts = tmp_path / "video_parts.json"
    parts.write_text(json.dumps([{
        "id": "x", "participant": {"id": 1, "name": "A"}, "type": "webcam", "duration": 0,
        "start_timestamp": {"relative": 0.0, "absolute": None},
        "download_url": "http://127.0.0.1:9/x.mp4"}]))
    for extra in ([], ["--kinds", "audio"]):
        done = assembler("run", "--out", str(tmp_path / "out"), "--video-parts", str(parts),
                         *extra)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("error: nothing to assemble: no track has a part in the timeline")
    assert not (tmp_path / "out" / "report.json").exists()
