"""The package root exports the library API, and only names that exist."""

from __future__ import annotations

import assembler


def test_all_lists_exactly_the_public_names() -> None:
    for name in assembler.__all__:  # imported on first use: each must resolve
        getattr(assembler, name)
    public = {name for name in dir(assembler) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(assembler, name)).__name__ == "module"}
    assert set(assembler.__all__) == public - modules - {"annotations"}


def test_every_stage_is_reachable_from_the_root() -> None:
    for name in ("load_documents", "make_plan", "download_parts", "render_track",
                 "build_report", "run_recording", "run_batch"):
        assert name in assembler.__all__, name
