"""An MP4's index (moov), read and patched in place: no media is read or moved.

Boxes are found by type down a path (ISO/IEC 14496-12 4.2); a track is picked by
its handler (`is:vide`, `is:tmcd`). Used on the MP4 files ffmpeg writes, whose
index stream copy and `--av` need to correct or check.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from .errors import CopyNotPossibleError

__all__ = ["align_timecode", "has_timecode", "media_seconds", "read_avcc", "replace_avcc",
           "shown_seconds"]


def media_seconds(path: Path) -> Fraction | None:
    """How long the first video track of the MP4 at `path` lasts, by its `mdhd`; None if
    not found.

    Reads the boxes' headers only, seeking past `mdat`: an MP4 of hours costs
    a few reads (ISO/IEC 14496-12 4.2, 8.4.2).
    """
    with path.open("rb") as source:
        found = _boxes(source, 0, path.stat().st_size, [*_VIDEO_TRACK, b"mdia", b"mdhd"])
        if found is None:
            return None
        source.seek(found[-1].body)
        header = source.read(32)
    wide = header[0] == 1
    scale, length = (struct.unpack_from(">IQ", header, 20) if wide
                     else struct.unpack_from(">II", header, 12))
    return Fraction(length, scale) if scale else None


def has_timecode(path: Path) -> bool:
    """Whether the MP4 at `path` has a timecode (`tmcd`) track (QuickTime File Format)."""
    with path.open("rb") as source:
        return _boxes(source, 0, path.stat().st_size, _TIMECODE_TRACK) is not None


def shown_seconds(path: Path) -> Fraction | None:
    """How long the first video track of the MP4 at `path` is shown: its edit list's span
    (what players present; ISO/IEC 14496-12 8.6.6), else its `mdhd`; None if not found."""
    with path.open("rb") as source:
        size = path.stat().st_size
        movie = _boxes(source, 0, size, [b"moov", b"mvhd"])
        elst = _boxes(source, 0, size, [*_VIDEO_TRACK, b"edts", b"elst"])
        if movie is None or elst is None:
            return media_seconds(path)
        header = _body(source, movie[-1])
        scale = struct.unpack_from(">I", header, 20 if header[0] == 1 else 12)[0]
        span = _edit_span(source, elst[-1])
    return Fraction(span, scale) if scale else None


def replace_avcc(path: Path, record: bytes) -> None:
    """Make `record` the avcC record of the MP4 at `path`, in its index's reserved room.

    The index (moov) is in front, reserved by `moov_bytes`, and a `free` box fills
    the rest of the reservation: the avcC box and the boxes around it grow into
    that room and no media moves, so no chunk offset changes (ISO/IEC 14496-12
    8.1.2, 14496-15 5.4.2). Raises `CopyNotPossibleError` when the file is not so.
    """
    with path.open("r+b") as file:
        chain = _boxes(file, 0, path.stat().st_size, [*_VIDEO_TRACK, *_AVCC])
        moov = chain[0] if chain else None
        if moov is None or any(box.body - box.position != 8 for box in chain or ()):
            raise CopyNotPossibleError("the copy's index has no avcC record where expected")
        assert chain is not None
        file.seek(moov.position)
        index = bytearray(file.read(moov.size + 8))
        room, kind = (struct.unpack_from(">I4s", index, moov.size)
                      if len(index) == moov.size + 8 else (0, b""))  # the index ends the file
        avcc = chain[-1]
        growth = len(record) + 8 - avcc.size
        left = room - growth  # a free box is at least its 8-byte header, or gone
        if kind != b"free" or not (left == 0 or left >= 8):
            raise CopyNotPossibleError("the copy's index has no room for its parameter sets")
        for box in chain[:-1]:
            offset = box.position - moov.position
            struct.pack_into(">I", index, offset, box.size + growth)
        offset = avcc.position - moov.position
        index[offset:offset + avcc.size] = struct.pack(">I4s", len(record) + 8, b"avcC") + record
        del index[moov.size + growth:]
        if left:
            index += struct.pack(">I4s", left, b"free")
        file.seek(moov.position)
        file.write(index)


def align_timecode(path: Path) -> None:
    """Make the timecode track of the MP4 at `path` present as long as its video.

    ffmpeg's MP4 muxer sizes the timecode track's edit from the video's media,
    which with a B-frame delay can run a frame past the video's own edit (the
    track's length); a player takes the longest track for the file's duration.
    The edit's one entry is rewritten in place (ISO/IEC 14496-12 8.6.6).
    """
    with path.open("r+b") as file:
        size = path.stat().st_size
        video = _boxes(file, 0, size, [*_VIDEO_TRACK, b"edts", b"elst"])
        timecode = _boxes(file, 0, size, [*_TIMECODE_TRACK, b"edts", b"elst"])
        if video is None or timecode is None:
            return
        shown = _edit_span(file, video[-1])
        edits = _edits(file, timecode[-1])
        if len(edits) != 1 or edits[0][0] == shown:
            return
        wide = _body(file, timecode[-1])[0] == 1  # version 1: 64-bit durations
        file.seek(timecode[-1].body + 8)
        file.write(struct.pack(">Q" if wide else ">I", shown))


def _edits(source: BinaryIO, elst: _Box) -> list[tuple[int, int]]:
    """(segment duration, media time) of each entry of an `elst` box."""
    body = _body(source, elst)
    wide = body[0] == 1
    count = struct.unpack_from(">I", body, 4)[0]
    step = 20 if wide else 12
    return [struct.unpack_from(">Qq" if wide else ">Ii", body, 8 + index * step)
            for index in range(count)]


def _edit_span(source: BinaryIO, elst: _Box) -> int:
    """The time an `elst` box presents, in the movie's time scale: its entries' durations."""
    return sum(duration for duration, _ in _edits(source, elst))


def read_avcc(path: Path) -> bytes:
    """The avcC record of the first video track of the MP4 at `path` (b"" if it has none)."""
    with path.open("rb") as source:
        found = _boxes(source, 0, path.stat().st_size, [*_VIDEO_TRACK, *_AVCC])
        return b"" if found is None else _body(source, found[-1])


@dataclass(frozen=True, slots=True)
class _Box:
    position: int  # of its header, in the file
    size: int  # header included
    body: int  # where its body begins


def _body(source: BinaryIO, box: _Box) -> bytes:
    source.seek(box.body)
    return source.read(box.position + box.size - box.body)


_VIDEO_TRACK = [b"moov", b"trak", b"is:vide"]
_TIMECODE_TRACK = [b"moov", b"trak", b"is:tmcd"]
_AVCC = [b"mdia", b"minf", b"stbl", b"stsd", b"avc1", b"avcC"]
# Bytes between a box's header and its first child: the sample description's version
# and count, the visual sample entry's fields (ISO/IEC 14496-12 8.5.2, 12.1.3).
_FIELDS = {b"stsd": 8, b"avc1": 78}


def _boxes(source: BinaryIO, start: int, end: int, path: Sequence[bytes]) -> list[_Box] | None:
    """The boxes down `path` (types, outermost first) from the first branch holding it all.

    `is:` and a handler type (`is:vide`, `is:tmcd`) is no step down: it keeps to the
    track whose `mdia/hdlr` names that handler.
    """
    if path and path[0].startswith(b"is:"):
        found = _boxes(source, start, end, [b"mdia", b"hdlr"])
        if found is None:
            return None
        source.seek(found[-1].body + 8)  # past version, flags and pre_defined
        return _boxes(source, start, end, path[1:]) if source.read(4) == path[0][3:] else None
    position = start
    while path and position + 8 <= end:
        source.seek(position)
        size, kind = struct.unpack(">I4s", source.read(8))
        body = position + 8
        if size == 1:
            size = struct.unpack(">Q", source.read(8))[0]
            body += 8
        elif size == 0:
            size = end - position
        if size < body - position:
            return None  # not an MP4 box: do not loop
        if kind == path[0]:
            box = _Box(position, size, body)
            inner = _boxes(source, body + _FIELDS.get(kind, 0), position + size, path[1:])
            if inner is not None:
                return [box, *inner]
        position += size
    return [] if not path else None
