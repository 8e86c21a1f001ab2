"""A part on disk: its `.part` file, the sidecar that makes resuming safe, and the publish.

Private to `assembler.download`. A response body is held in memory (`Body`)
and reaches `<filename>.part` in batches; once any of it is there, the
sidecar `<filename>.part.json` keeps the validator (ETag, else Last-Modified)
and length of the response it came from, so a retry, or a later run after a
crash, resumes with `Range` + `If-Range`. A finished part is fdatasynced and
renamed into place (`Body.publish`). Every write is one blocking function run
whole in a worker thread: a cancelled await never leaves a file half-opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .naming import PART_SUFFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

__all__ = ["SPILL_AFTER", "Body", "PartFile", "sync_dir"]

_SIDECAR_SUFFIX = ".json"
# A body is held in memory up to this many bytes, spilled to `.part` past it: a part no
# larger, arriving within `SPILL_AFTER`, costs one write, one fdatasync and one rename, and
# no sidecar. Memory stays under workers x 2 x (this + a chunk) plus the read buffers: one
# body held while the worker's previous one is published.
_SPILL_BYTES = 2 << 20
# Seconds held bytes may wait before they are spilled, whether the body flows or stalls:
# a kill -9 on a slow link loses at most about this much of the transfer, and the rerun
# resumes from what is on disk.
SPILL_AFTER = 0.5
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range, do not wait


@dataclass(slots=True)
class PartFile:
    """A part's final path, its `.part` file and the sidecar that makes resuming safe."""

    final: Path
    partial: Path
    sidecar: Path
    validator: str | None = None
    total: int | None = None
    # The sidecar on disk describes `.part`'s bytes. False from the moment a response
    # restarts the part (its validator is in memory, the old bytes still on disk) until
    # `start_over` has emptied `.part` and written the new sidecar.
    described: bool = False

    @classmethod
    def load(cls, parts_dir: Path, filename: str) -> PartFile:
        partial = parts_dir / (filename + PART_SUFFIX)
        part = cls(parts_dir / filename, partial, partial.with_name(partial.name + _SIDECAR_SUFFIX))
        with contextlib.suppress(OSError, ValueError, TypeError, LookupError):
            saved = json.loads(part.sidecar.read_text())
            validator, total = saved["validator"], saved["total"]
            if isinstance(validator, str | None) and isinstance(total, int | None):
                part.validator, part.total, part.described = validator, total, True
        return part

    def resume_offset(self) -> int:
        """Bytes already on disk that a Range request may continue; 0 when unsafe."""
        if not self.described or (self.validator is None and self.total is None):
            return 0  # nothing to check the server's copy against: start over
        try:
            return self.partial.stat().st_size
        except FileNotFoundError:
            return 0

    def request_headers(self, offset: int) -> dict[str, str]:
        if not offset:
            return {}
        headers = {"Range": f"bytes={offset}-"}
        if self.validator:
            headers["If-Range"] = self.validator
        return headers

    def discard(self) -> None:
        self.validator = self.total = None
        self.described = False
        self.partial.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def start_over(self) -> None:
        """Empty `.part`, then write the sidecar for the bytes about to follow (blocking).

        No fsync of the sidecar: losing it, or finding it torn (a strict prefix of
        a JSON object never parses), means restarting from zero, which is safe; an
        older sidecar that survives instead still carries the validator of the
        bytes it was written with, and If-Range makes the server send everything
        when its copy has changed since. What must never happen is this sidecar
        becoming durable while `.part` still holds another version's bytes, so when
        there were bytes, the truncation is made durable first (a rare path: a
        restart after a version change or a lost sidecar).
        """
        try:
            had_bytes = self.partial.stat().st_size > 0
        except FileNotFoundError:
            had_bytes = False
        with self.partial.open("wb") as out:
            if had_bytes:
                os.fdatasync(out.fileno())
        self.sidecar.write_text(json.dumps({"validator": self.validator, "total": self.total}))
        self.described = True

    def append(self, chunks: Sequence[bytes], *, fresh: bool) -> None:
        """Append `chunks` to `.part` (blocking); `fresh` starts it over first, sidecar and all."""
        if fresh:
            self.start_over()
        with self.partial.open("ab") as out:
            start = out.tell()
            out.writelines(chunks)  # chunks past the buffer's size go straight to the file
            out.flush()
            _start_writeback(out.fileno(), start, out.tell() - start)

    def publish(self, chunks: Sequence[bytes], *, fresh: bool) -> None:
        """Write the last `chunks`, fdatasync, rename into place (blocking).

        The one fsync a part cannot do without: its bytes are made durable before
        the rename, or a power cut could leave a renamed but empty or short final
        file, which every later run would take as complete. fdatasync is enough:
        it writes the size with the data, and the times are not worth a journal
        write. The rename's own durability is left to the caller's one fsync of
        the directory per batch (see `sync_dir`). With `fresh`, whatever an
        earlier run left is replaced, and no sidecar describes the new bytes: a
        kill before the rename leaves a `.part` that is fetched again.
        """
        if fresh:
            self.sidecar.unlink(missing_ok=True)
        with self.partial.open("wb" if fresh else "ab") as out:
            out.writelines(chunks)
            out.flush()
            os.fdatasync(out.fileno())
        os.replace(self.partial, self.final)
        self.sidecar.unlink(missing_ok=True)


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range from libc, or None where there is none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return function


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Send a spilled range on its way to the disk now, without waiting for it.

    The fdatasync before a large part's rename then finds little left to write:
    without this, a 1 GiB part's bytes sat in the page cache (far under the
    kernel's own writeback threshold on a machine with RAM to spare) and that
    one fdatasync wrote all of them, 1.7-1.9 s here, after the last byte had
    arrived; with it, 0.4-1.2 s on the same busy disk. Best effort: a failure only
    leaves the work to that fdatasync.
    """
    function = _sync_file_range()
    if function is not None and length > 0:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def sync_dir(path: Path) -> None:
    """fsync a directory: makes the renames into it durable (blocking).

    Once per `download_parts` call rather than once per part: a rename that a
    power cut undoes leaves the fsynced `.part` behind, so the part is fetched
    or finished again, never taken half-written; what the batch fsync adds is
    that every part reported done stays done once the call has returned.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class Body:
    """A response body on its way into `.part`: held in memory, spilled to disk in batches.

    A small body that arrives quickly is written once, then fsynced and renamed
    (`publish`), and needs no sidecar at all, since nothing of it is on disk
    before it is complete. Held bytes reach `.part` (after its sidecar) once
    `_SPILL_BYTES` are held, `SPILL_AFTER` seconds after the first of them
    arrived (`due`, on the event loop's clock), or when the transfer fails: a
    kill -9 loses at most what is held, which a rerun fetches again, and a slow,
    stalled or broken transfer keeps nearly everything it got.
    """

    part: PartFile
    fresh: bool  # `.part` is still to be emptied and described by a new sidecar
    chunks: list[bytes] = field(default_factory=list)
    held: int = 0
    due: float = 0.0  # loop time by which the held bytes are to be on disk

    def add(self, chunk: bytes, now: float) -> bool:
        """Hold `chunk` (arrived at loop time `now`); True when it is time to spill."""
        if not self.chunks:
            self.due = now + SPILL_AFTER
        self.chunks.append(chunk)
        self.held += len(chunk)
        return self.held > _SPILL_BYTES or now >= self.due

    def _take(self) -> tuple[list[bytes], bool]:
        chunks, fresh = self.chunks, self.fresh
        self.chunks, self.held, self.fresh = [], 0, False
        return chunks, fresh

    async def spill(self) -> None:
        """Append what is held to `.part` in a worker thread.

        The chunks are handed over before the await: when it is cancelled, the
        thread still writes them and closes the file, and `spill_now` finds
        nothing left to write.
        """
        chunks, fresh = self._take()
        await asyncio.to_thread(self.part.append, chunks, fresh=fresh)

    def spill_now(self) -> None:
        """Keep what is held after a failure, blocking the loop briefly (at most `_SPILL_BYTES`).

        Blocking rather than a thread: it also runs on cancellation, when no
        await can be trusted to finish.
        """
        if self.chunks:
            chunks, fresh = self._take()
            with contextlib.suppress(OSError):  # the failure that brought us here says more
                self.part.append(chunks, fresh=fresh)

    async def publish(self) -> None:
        """Write what is held, fsync, rename into place, in one worker thread."""
        chunks, fresh = self._take()
        await asyncio.to_thread(self.part.publish, chunks, fresh=fresh)
