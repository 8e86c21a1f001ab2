"""The README's library examples run as written, against the sample recording on loopback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.media import media_info
from tests.support.server import serve_directory

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"


def library_examples() -> list[str]:
    """The Python code blocks of the README's Library section, in order."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Library\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory holding the sample's documents, their parts served on loopback."""
    work = tmp_path_factory.mktemp("work")
    with serve_directory(SAMPLE) as server:
        netloc = urlsplit(server.base_url).netloc
        for source in SAMPLE.glob("*.json"):
            document = json.loads(source.read_text(encoding="utf-8"))
            if source.name.endswith("_parts.json"):
                for part in document:
                    part["download_url"] = urlunsplit(
                        urlsplit(part["download_url"])._replace(netloc=netloc))
            (work / source.name).write_text(json.dumps(document), encoding="utf-8")
        yield work


def run_example(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_readme_has_both_library_examples() -> None:
    examples = library_examples()
    assert len(examples) == 2
    assert "assemble(" in examples[0]
    assert "make_plan(" in examples[1]


def test_the_assemble_example_makes_the_sample_recording(workdir: Path) -> None:
    done = run_example(library_examples()[0], workdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "exit status 0"
    report = json.loads((workdir / "out/meeting/report.json").read_text(encoding="utf-8"))
    assert report["complete"] is True
    tracks = [track for person in report["participants"] for track in person["tracks"]]
    assert {track["kind"] for track in tracks} == {"audio", "webcam"}  # kinds="audio,webcam"
    for track in tracks:
        assert f"{track['path']}" in done.stdout
        info = media_info(workdir / "out/meeting" / track["path"])
        if track["kind"] == "audio":
            assert track["path"].endswith(".wav")
            assert info.samples == round(report["timeline"]["duration"] * 48000)
        else:
            assert info.frames == track["units"]


def test_the_stage_example_plans_without_a_download(workdir: Path) -> None:
    done = run_example(library_examples()[1], workdir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # duration=10: the dial-in caller speaks only after 21 s, Zoë's rejoin is at 17 s.
    assert len(lines) == 2
    assert all(re.match(r"participants/\S+/audio\.flac 480000 samples; 1 parts, files \[",
                        line) for line in lines), lines
