"""How the package holds together: options fingerprint, exit statuses, imports, the ffmpeg cap."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from assembler import errors
from assembler.deliverables import DeliverableOptions, registry
from assembler.ffmpeg_process import FfmpegSlots
from assembler.manifest import Sources
from assembler.pipeline import NOT_IN_FINGERPRINT, RunOptions, inputs_fingerprint


def _leaf_settings(cls: type, prefix: str = "") -> set[str]:
    names = set()
    for item in dataclasses.fields(cls):
        default = item.default_factory() if callable(item.default_factory) else item.default
        if dataclasses.is_dataclass(default) and f"{prefix}{item.name}" not in NOT_IN_FINGERPRINT:
            names |= _leaf_settings(type(default), f"{prefix}{item.name}.")
        else:
            names.add(f"{prefix}{item.name}")
    return names


def test_every_setting_is_in_the_fingerprint_or_named_as_excluded() -> None:
    settings = _leaf_settings(RunOptions)
    fingerprinted = set(RunOptions().fingerprint_fields())
    assert fingerprinted | NOT_IN_FINGERPRINT == settings | NOT_IN_FINGERPRINT
    assert not fingerprinted & NOT_IN_FINGERPRINT
    # Every excluded name is a real setting, not a stale one.
    assert settings | {"download"} >= NOT_IN_FINGERPRINT
    assert {"render.audio_format", "fps", "duration", "deliverables.captions",
            "deliverables.loudness"} <= fingerprinted


@pytest.mark.parametrize("options", [
    RunOptions(fps=Fraction(25)),
    RunOptions(deliverables=DeliverableOptions(mix=True)),
    RunOptions(deliverables=DeliverableOptions(captions=("vtt",))),
    RunOptions(duration=3.0),
], ids=["fps", "mix", "captions", "duration"])
def test_output_settings_change_the_fingerprint(options: RunOptions) -> None:
    sources = Sources(audio_parts="https://api.example/a.json")
    assert inputs_fingerprint(sources, options) != inputs_fingerprint(sources, RunOptions())


def test_run_settings_leave_the_fingerprint_alone() -> None:
    sources = Sources(audio_parts="https://api.example/a.json")
    assert inputs_fingerprint(sources, RunOptions(jobs=7)) == inputs_fingerprint(
        sources, RunOptions(jobs=1))


@pytest.mark.parametrize(("error", "status"), [
    (errors.UsageError("x"), 2),
    (errors.JobsFileError("x"), 2),
    (errors.OutputDirError("x"), 2),
    (errors.InvalidInputsError([]), 2),
    (errors.LinkExpiredError("p", 403, "x"), 3),
    (errors.StorageError("", "x"), 3),
    (errors.FFmpegNotFoundError("x"), 1),
    (errors.CopyNotPossibleError("x"), 1),
    (errors.DeliverableError("x"), 1),
    (errors.AssemblerError("x"), 1),
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_each_error_carries_its_exit_status(error: errors.AssemblerError, status: int) -> None:
    assert error.exit_status == status


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return set(done.stdout.split())


def test_the_library_imports_no_console_or_argument_parsing() -> None:
    loaded = _imported_after("import assembler")
    assert not {"rich", "argparse", "assembler.cli"} & loaded


def test_the_library_prints_no_log_line_the_application_did_not_ask_for() -> None:
    code = "import assembler, logging; logging.getLogger('assembler.pipeline').error('boom')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stderr == ""


def test_a_run_loads_the_deliverables_only_to_make_them() -> None:
    loaded = _imported_after("import assembler.pipeline")
    assert "assembler.deliverables" in loaded
    assert not {"opentimelineio", "assembler.deliverables.timeline"} & loaded


@pytest.mark.parametrize("options", [
    DeliverableOptions(captions=("vtt",)), DeliverableOptions(timeline=("otio",)),
    DeliverableOptions(mix=True), DeliverableOptions(av=True), DeliverableOptions(archive=True)],
    ids=["captions", "timeline", "mix", "av", "archive"])
def test_options_asking_for_a_deliverable_are_asked(options: DeliverableOptions) -> None:
    assert not DeliverableOptions().asked
    assert options.asked
    assert [deliverable.wanted(options) for deliverable in registry()].count(True) == 1


def test_a_run_loads_its_http_client_only_to_fetch(tmp_path: Path) -> None:
    assert "aiohttp" not in _imported_after("import assembler.pipeline")
    (tmp_path / "a.wav").write_bytes(b"RIFF")  # whole already: not asked for again
    fetch = ("import asyncio, pathlib; from assembler.download import PartDownload, "
             "download_parts; found = asyncio.run(download_parts([PartDownload(part_id='a', "
             f"url='http://127.0.0.1:9/a', filename='a.wav')], pathlib.Path({str(tmp_path)!r})))"
             "; assert list(found.files) == ['a'] and not found.failures")
    assert "aiohttp" not in _imported_after(fetch)


def test_batch_does_not_import_the_cli() -> None:
    assert "assembler.cli" not in _imported_after("import assembler.batch")


def test_ffmpeg_slots_never_run_more_jobs_than_their_limit() -> None:
    slots = FfmpegSlots(2)
    lock = threading.Lock()
    running = peak = 0
    release = threading.Event()

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(timeout=30)
        with lock:
            running -= 1

    async def main() -> None:
        jobs = [asyncio.ensure_future(slots.call(job)) for _ in range(5)]
        while True:  # wait until two jobs hold the slots
            with lock:
                if running == 2:
                    break
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*jobs)

    asyncio.run(main())
    assert peak == 2


def test_closed_slots_start_nothing() -> None:
    slots = FfmpegSlots(1)
    slots.close()
    ran: list[int] = []
    with pytest.raises(asyncio.CancelledError):
        slots.run(ran.append, 1)
    assert ran == []
