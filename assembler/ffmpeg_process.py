"""The one place that starts ffmpeg: finding the binary, capping jobs, running argv.

What ffmpeg says of media (probing) is read in `media`; this module knows
only processes: which binary (the one `$ASSEMBLER_FFMPEG` names, whatever its
version; else an ffmpeg on PATH, else the imageio-ffmpeg wheel's, never one
older than `MIN_FFMPEG` when a newer one is there), how
many at once (`FfmpegSlots`), and how a run fails (`FFmpegError`, its reason
in one line).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from .errors import FFmpegError, FFmpegNotFoundError

__all__ = ["FFMPEG_ENV", "MIN_FFMPEG", "FfmpegSlots", "Progress", "failure_line",
           "ffmpeg_binary", "ffmpeg_output", "ffmpeg_version", "file_arg", "run_ffmpeg",
           "setts_sets_duration", "stop_all"]

# Runs are logged under the media stage's name, as they were when it ran them itself.
log = logging.getLogger("assembler.media")

FFMPEG_ENV = "ASSEMBLER_FFMPEG"
_VERSION_TIMEOUT = 30.0
_CLOSED_POLL = 0.2  # seconds between checks for `FfmpegSlots.close` while waiting

P = ParamSpec("P")
T = TypeVar("T")


class FfmpegSlots:
    """The `--jobs` cap: at most `limit` ffmpeg jobs at once, for everyone sharing this object.

    A job is one unit of ffmpeg work (probing a group of parts, rendering a
    track, making a deliverable); it holds one slot while it runs and starts
    its ffmpeg processes one at a time, so `limit` bounds the processes. One
    run makes its own; a local batch shares one across its recordings. Jobs run
    in worker threads (`call`); a job must not wait for a second slot.

    `close()` (Ctrl-C) makes every waiting and later job raise
    `asyncio.CancelledError` instead of starting.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the ffmpeg job limit must be >= 1")
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)
        self._closed = threading.Event()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold one slot for the `with` block; blocks the calling thread until one is free."""
        while not self._free.acquire(timeout=_CLOSED_POLL):
            if self._closed.is_set():
                raise asyncio.CancelledError
        try:
            if self._closed.is_set():
                raise asyncio.CancelledError
            yield
        finally:
            self._free.release()

    def run(self, job: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `job` in this thread while holding a slot."""
        with self.held():
            return job(*args, **kwargs)

    async def call(self, job: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `job` in a worker thread while holding a slot; the event loop stays free."""
        return await asyncio.to_thread(functools.partial(self.run, job, *args, **kwargs))

    @contextmanager
    def spare(self, wanted: int) -> Iterator[int]:
        """Up to `wanted` more slots that are free right now, held for the block; yields
        how many. Never waits: a job already holding a slot widens itself this way
        (many ffmpeg at once when the machine is idle) without risking a deadlock."""
        got = 0
        while got < wanted and self._free.acquire(blocking=False):
            got += 1
        try:
            yield got
        finally:
            for _ in range(got):
                self._free.release()

    def close(self) -> None:
        """Start no more jobs: waiting and later ones raise `asyncio.CancelledError`."""
        self._closed.set()


def file_arg(path: str | os.PathLike[str]) -> str:
    """A local path as an ffmpeg input/output: `file:` keeps `:` or a leading `-` literal."""
    return f"file:{os.fspath(path)}"


def ffmpeg_binary() -> str:
    """Path of the ffmpeg in use: `$ASSEMBLER_FFMPEG`, else PATH's, else imageio-ffmpeg's.

    An ffmpeg on PATH older than `MIN_FFMPEG` is passed over for the wheel's (a
    warning says so); one `$ASSEMBLER_FFMPEG` names is used whatever its version.
    Raises `FFmpegNotFoundError` when none of them runs.
    """
    return _found_ffmpeg()[0]


def ffmpeg_version() -> tuple[int, int]:
    """(major, minor) of the ffmpeg in use; a git build without a release number is newest."""
    return _version(_found_ffmpeg()[1])


# The oldest ffmpeg the test suite passes with, to the sample and the frame. Of those
# tried, only 9.0 passes it whole: 7.0.2 fails 27 tests and Debian 12's 5.1 fails 22
# (AAC and MP3 priming left in, packet-loss holes in Opus closed up, streams that start
# late in their container moved to 0, av.mp4 audio running long), which would misplace
# audio by tens of milliseconds. 8.x is untried.
MIN_FFMPEG = (9, 0)
_FINDING = threading.Lock()  # render and probe threads ask at once; one `-version` answers


def _version(version_line: str) -> tuple[int, int]:
    match = re.search(r"version n?(\d+)\.(\d+)", version_line)
    return (int(match[1]), int(match[2])) if match else (999, 0)


def _found_ffmpeg() -> tuple[str, str]:
    """The ffmpeg in use and the first line of its `-version`; looked for once."""
    with _FINDING:
        return _find_ffmpeg()


@functools.cache
def _find_ffmpeg() -> tuple[str, str]:
    chosen = os.environ.get(FFMPEG_ENV)
    if chosen and (line := _version_line(chosen)) is not None:
        if _version(line) < MIN_FFMPEG:
            _warn_old(chosen, line, "tracks may be misaligned")
        return chosen, line
    older: tuple[str, str] | None = None
    # The wheel's binary is looked up only when PATH has no usable one: imageio runs it once.
    for find in (functools.partial(shutil.which, "ffmpeg"), _wheel_ffmpeg):
        binary = find()
        line = _version_line(binary) if binary else None
        if binary is None or line is None:
            continue
        if _version(line) >= MIN_FFMPEG:
            if older:
                _warn_old(*older, f"using {binary} instead")
            return binary, line
        older = older or (binary, line)
    if older:
        _warn_old(*older, "tracks may be misaligned")
        return older
    raise FFmpegNotFoundError(
        "no working ffmpeg found: install ffmpeg on PATH, `pip install imageio-ffmpeg`, "
        f"or set {FFMPEG_ENV} to the binary"
    )


def _warn_old(binary: str, version_line: str, consequence: str) -> None:
    log.warning("%s is ffmpeg %d.%d, older than %d.%d: %s", binary, *_version(version_line),
                *MIN_FFMPEG, consequence)


def _wheel_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return None


@functools.cache
def setts_sets_duration() -> bool:
    """Whether this ffmpeg's `setts` bitstream filter can set packet durations."""
    help_text = ffmpeg_output(["-h", "bsf=setts"]).decode("utf-8", "replace")
    return re.search(r"^\s*-duration\b", help_text, re.M) is not None


def _version_line(binary: str) -> str | None:
    """The first line `binary -version` prints, or None when it is no working ffmpeg."""
    try:
        done = subprocess.run([binary, "-version"], capture_output=True,
                              timeout=_VERSION_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return (done.stdout.decode("utf-8", "replace").splitlines() or [""])[0]


Progress = Callable[[float], None]  # seconds of output written so far


def run_ffmpeg(args: list[str], *, check: bool = True, progress: Progress | None = None) -> str:
    """Run ffmpeg with `args` (no binary, no `-hide_banner`); return its stderr.

    On failure the last meaningful stderr line becomes the message; the whole
    stderr goes to the debug log and rides on the exception. `progress`, when
    given, hears the seconds of output written so far (ffmpeg's `-progress`
    `out_time_us`), in this thread, a few times a second.
    """
    return _run(args, check=check, progress=progress)[1]


def ffmpeg_output(args: list[str]) -> bytes:
    """Run ffmpeg with `args` writing to `-`; return what it wrote (errors as in `run_ffmpeg`)."""
    return _run(args, check=True)[0]


# Live ffmpeg processes, so an interrupted run can stop them instead of waiting.
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def stop_all() -> None:
    """Kill every ffmpeg this process started that is still running (on Ctrl-C)."""
    with _running_lock:
        for process in _running:
            process.kill()


def _ignores_ctrl_c() -> bool:
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def _follow_progress(process: subprocess.Popen[bytes], progress: Progress) -> bytes:
    """Feed `-progress pipe:1` lines to `progress` while another thread drains stderr."""
    assert process.stdout is not None
    assert process.stderr is not None
    stderr = process.stderr
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(stderr.read()), daemon=True)
    reader.start()
    for line in process.stdout:
        key, _, value = line.partition(b"=")
        if key == b"out_time_us" and value.strip().isdigit():
            progress(int(value) / 1_000_000)
    reader.join()
    process.wait()
    return b"".join(chunks)


def _run(args: list[str], *, check: bool, progress: Progress | None = None
         ) -> tuple[bytes, str]:
    argv = [ffmpeg_binary(), "-hide_banner", "-nostdin",
            *(["-progress", "pipe:1"] if progress else []), *args]
    log.debug("running %s", shlex.join(argv))
    # A process ignoring Ctrl-C (a script's background job) keeps ffmpeg out of its
    # process group: ffmpeg sets its own SIGINT handler, so a Ctrl-C meant for others would
    # stop it and fail the track. Otherwise ffmpeg shares the group, so a `kill` of it
    # (or of a stopped run's orphans) reaches ffmpeg too.
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=_ignores_ctrl_c()) as process:
        with _running_lock:
            _running.add(process)
        try:
            if progress is None:
                stdout, raw_stderr = process.communicate()
            else:
                stdout, raw_stderr = b"", _follow_progress(process, progress)
        finally:
            with _running_lock:
                _running.discard(process)
    stderr = raw_stderr.decode("utf-8", "replace")
    if check and process.returncode != 0:
        log.debug("ffmpeg stderr:\n%s", stderr)
        if process.returncode < 0 or "received signal" in stderr:
            # Ctrl-C reaches ffmpeg too; its last line would then be noise, not the cause.
            raise FFmpegError("ffmpeg was stopped by a signal", stderr)
        raise FFmpegError(f"ffmpeg failed: {failure_line(stderr)}", stderr)
    return stdout, stderr


# Lines that follow from a failure without saying what it was: ffmpeg's closing words,
# its threads winding down, an encoder that never opened.
_CONSEQUENCES = ("Conversion failed!", "Nothing was written into output file",
                 "Terminating thread with return code", "Task finished with error code",
                 "Could not open encoder before EOF", "Error sending frames to consumers",
                 "Error while opening encoder", "Error initializing output stream",
                 "Error while filtering", "Error while processing the decoded data",
                 "Error marking filters as finished", "Exiting normally")
_PROGRESS = re.compile(r"^(?:size=|frame=)|\btime=\S+ .*\bspeed=")
_ADDRESS = re.compile(r" @ 0x[0-9a-f]+\]")


def failure_line(stderr: str) -> str:
    """The last line of `stderr` that says why ffmpeg failed: no progress, no aftermath."""
    lines = [line.strip() for line in stderr.splitlines()]
    for line in reversed(lines):
        if line and not _PROGRESS.search(line) and not any(
                phrase in line for phrase in _CONSEQUENCES):
            return _ADDRESS.sub("]", line)
    return "no output"
