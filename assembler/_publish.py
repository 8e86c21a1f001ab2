"""Files appear whole or not at all: written under a hidden temporary name, then renamed.

Tracks and deliverables share this: a reader (a DAW, a rerun, `verify`) never
takes a half-written file for a finished one, and a killed run's leftovers
are cleared by the next run that writes the same file.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["clear_leftovers", "publishing", "temporary_name"]


def temporary_name(path: Path) -> Path:
    """A new hidden name for `path` while it is made, never taken for a finished file.

    New for every write: an ffmpeg orphaned by a killed run may still be writing
    its own; sharing one name, the rerun would publish a mix of both.
    """
    # A name, not mkstemp's file: ffmpeg creates it, with the user's umask, not 0600.
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.rendering")


def clear_leftovers(path: Path) -> None:
    """Remove what a killed run left for `path`: its temporary files and scratch dirs.

    All of them are named `.<file name>.*` (see `temporary_name`); a writer still
    at one (an orphaned ffmpeg) keeps its unlinked file and harms nothing.
    """
    for leftover in path.parent.glob(f".{path.name}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextmanager
def publishing(path: Path) -> Iterator[Path]:
    """Yield a temporary name to write `path` under; renamed to `path` when the block succeeds.

    When the block raises, the temporary file is removed and so is any older
    `path`: a file that could not be made again is not left to pass for new.
    Raises `OSError` when the directory cannot be made or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(path)
    temporary = temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        temporary.unlink(missing_ok=True)
