"""Parts are probed as they land: a track renders, and a bad part is set aside, while
another part is still downloading (held by the server until the test releases it)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from assembler.download import NoProgress
from assembler.manifest import Sources
from assembler.pipeline import RunOptions, download_recording, run_recording
from tests.support.media import decode_audio
from tests.support.recording import RecordingBuilder
from tests.support.server import serve_directory

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from assembler.errors import AssemblerError, DownloadError
    from assembler.plan import Plan, TrackPlan
    from assembler.render import RenderedTrack


class Log(NoProgress):
    """Every part landed and every track finished, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def part_finished(self, part_id: str, path: Path, skipped: bool) -> None:
        self.seen.append(("part", part_id))

    def part_failed(self, part_id: str, error: DownloadError) -> None:
        self.seen.append(("lost", part_id))

    def parts_planned(self, plan: Plan, part_ids: Sequence[str]) -> None:
        pass

    def track_started(self, track: TrackPlan) -> None:
        pass

    def track_advanced(self, track: TrackPlan, seconds: float) -> None:
        pass

    def track_finished(self, track: TrackPlan, result: RenderedTrack | AssemblerError) -> None:
        self.seen.append(("track", track.path))


async def _until(condition: Callable[[], bool], running: asyncio.Task[object], what: str) -> None:
    """Wait for `condition` while `running` goes on; a run that ends first never will."""
    for _ in range(12000):  # a guard against a hang, not a timing: 120 s
        if condition():
            return
        assert not running.done(), f"the run ended before {what}"
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting: {what}")


async def test_a_track_renders_while_another_participants_part_downloads(tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    early = build.audio_part(1, "Ada", 0.0, 1.0, freq=440, ext=".wav")
    late = build.audio_part(2, "Zoe", 0.0, 1.0, freq=660, ext=".wav")
    log = Log()
    with serve_directory(build.root) as server:
        release = server.hold(f"parts/{late.file}")
        manifests = build.write(server.base_url)
        run = asyncio.create_task(run_recording(
            Sources(audio_parts=str(manifests.audio_parts)), tmp_path / "out", RunOptions(),
            events=log))
        await _until(lambda: any(kind == "track" for kind, _ in log.seen), run,
                     "the first track")
        assert ("part", late.part_id) not in log.seen
        release()
        outcome = await run
    assert outcome.exit_status == 0
    tracks = [path for kind, path in log.seen if kind == "track"]
    assert len(tracks) == 2
    assert log.seen.index(("part", early.part_id)) < log.seen.index(("track", tracks[0])) \
        < log.seen.index(("part", late.part_id)) < log.seen.index(("track", tracks[1]))
    samples = decode_audio(tmp_path / "out" / tracks[0])
    assert len(samples) == 48000


async def test_download_only_sets_a_bad_part_aside_while_another_downloads(
        tmp_path: Path) -> None:
    build = RecordingBuilder(tmp_path / "www")
    bad = build.audio_part(1, "Ada", 0.0, 1.0, ext=".m4a")
    (build.parts_dir / bad.file).write_bytes(b"\x00\x01not media at all" * 1000)
    late = build.audio_part(2, "Zoe", 0.0, 1.0, ext=".m4a")
    parts = tmp_path / "out" / "parts"
    with serve_directory(build.root) as server:
        release = server.hold(f"parts/{late.file}")
        manifests = build.write(server.base_url)
        run = asyncio.create_task(download_recording(
            Sources(audio_parts=str(manifests.audio_parts)), tmp_path / "out", RunOptions()))
        await _until(lambda: (parts / f"{bad.file}.unreadable").exists(), run,
                     "the bad part set aside")
        assert not (parts / late.file).exists()
        release()
        outcome = await run
    assert set(outcome.failures) == {bad.part_id}
    assert outcome.files[late.part_id] == parts / late.file
    assert outcome.exit_status == 3
