"""Read what a file says about when it was recorded, from the file itself.

Broadcast WAV: the RIFF (or RF64) chunks are walked and the `bext` chunk's
fields unpacked as EBU Tech 3285 lays them out. MP4: the start timecode as
`ffmpeg -i` shows it, and the frame number the `tmcd` track's one sample
holds, copied out raw.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assembler.ffmpeg_process import file_arg, run_ffmpeg
from tests.support.media import ffmpeg

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Bext", "mp4_timecode", "read_bext", "riff_chunks"]


@dataclass(frozen=True, slots=True)
class Bext:
    """The `bext` fields a DAW reads; `time_reference` in samples since midnight."""

    description: str
    originator: str
    originator_reference: str
    origination_date: str
    origination_time: str
    time_reference: int
    version: int


def riff_chunks(path: Path) -> tuple[str, list[tuple[str, int, int]]]:
    """The file's form (`RIFF` or `RF64`) and its chunks as (id, offset of body, size)."""
    data = path.read_bytes()
    form, kind = data[:4].decode("ascii"), data[8:12]
    if form not in ("RIFF", "RF64") or kind != b"WAVE":
        raise ValueError(f"{path.name} is not a WAVE file")
    chunks = []
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4].decode("ascii"), struct.unpack_from(
            "<I", data, offset + 4)[0]
        chunks.append((chunk, offset + 8, size))
        offset += 8 + size + (size & 1)
    return form, chunks


def read_bext(path: Path) -> Bext:
    """The `bext` chunk of a WAV file; raises `ValueError` when there is none."""
    _, chunks = riff_chunks(path)
    found = [(offset, size) for chunk, offset, size in chunks if chunk == "bext"]
    if not found:
        raise ValueError(f"{path.name} has no bext chunk")
    offset, size = found[0]
    with path.open("rb") as file:
        file.seek(offset)
        body = file.read(size)

    def text(start: int, length: int) -> str:
        return body[start:start + length].split(b"\0", 1)[0].decode("utf-8")

    low, high = struct.unpack_from("<II", body, 338)
    return Bext(description=text(0, 256), originator=text(256, 32),
                originator_reference=text(288, 32), origination_date=text(320, 10),
                origination_time=text(330, 8), time_reference=low + (high << 32),
                version=struct.unpack_from("<H", body, 346)[0])


_TIMECODE = re.compile(r"^\s*timecode\s*:\s*(\S+)", re.M)


def mp4_timecode(path: Path) -> tuple[str, int]:
    """The start timecode `ffmpeg -i` prints, and the frame number in the `tmcd` sample."""
    shown = run_ffmpeg(["-i", file_arg(path)], check=False)
    labels = set(_TIMECODE.findall(shown))
    if len(labels) != 1:
        raise ValueError(f"{path.name}: timecodes shown: {sorted(labels)}")
    sample = ffmpeg(["-i", file_arg(path), "-map", "0:d:0", "-c", "copy", "-f", "data", "-"],
                    stdout=True)
    return labels.pop(), struct.unpack(">I", sample[:4])[0]
