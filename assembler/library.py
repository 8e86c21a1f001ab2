"""`assemble`: one recording from a script, without asyncio."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from .joboptions import OPTION_KEYS, with_options
from .manifest import Sources
from .pipeline import RunOptions, run_recording

if TYPE_CHECKING:
    import os

    from .pipeline import RunEvents, RunOutcome

__all__ = ["assemble"]


def assemble(out_dir: str | os.PathLike[str], *,
             video_parts: str | os.PathLike[str] | None = None,
             audio_parts: str | os.PathLike[str] | None = None,
             participants: str | os.PathLike[str] | None = None,
             participant_events: str | os.PathLike[str] | None = None,
             speaker_timeline: str | os.PathLike[str] | None = None,
             transcript: str | os.PathLike[str] | None = None,
             options: RunOptions | None = None, events: RunEvents | None = None,
             **settings: object) -> RunOutcome:
    """Make one recording's tracks (and deliverables) under `out_dir`, as `assembler run` does.

    Each document is a local path or an http(s) URL; give `video_parts`,
    `audio_parts` or both. `settings` are the command line's long options with
    `_` (as in a jobs line): `duration` (seconds), `fps`, `audio_format`,
    `video_strategy`, `crf`, `preset`, `max_height` (pixels), `participant`
    (ids), `kinds`, `keep_parts`, `captions`, `timeline`, `mix`, `loudness`,
    `av`, `archive`; they are set over `options` (default `RunOptions()`).

    Returns the `RunOutcome`: `report` is what `report.json` says (paths in it
    are relative to `out_dir`), `exit_status` what `assembler run` would exit
    with. Raises `ValueError` for an unknown or invalid setting,
    `InvalidInputsError` for invalid documents (before any download),
    `UsageError` for options the documents cannot serve and `StorageError`
    when `out_dir` cannot be written; a lost part or a failed track is in the
    outcome instead. Blocks until done; from async code await
    `run_recording` instead (this raises `RuntimeError` inside a running loop).
    """
    unknown = sorted(set(settings) - set(OPTION_KEYS))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}; known: {', '.join(OPTION_KEYS)}")
    given = {"video_parts": video_parts, "audio_parts": audio_parts,
             "participants": participants, "participant_events": participant_events,
             "speaker_timeline": speaker_timeline, "transcript": transcript}
    sources = Sources(**{name: str(source) for name, source in given.items()
                         if source is not None})
    run_options = with_options(options or RunOptions(), settings)
    return asyncio.run(run_recording(sources, Path(out_dir), run_options, events=events))
