"""Names on disk: participant slugs and part file names, never a path outside the output."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["PART_SUFFIX", "display_name", "part_filenames", "participant_dir", "safe_id",
           "slugify"]

SLUG_MAX = 40
SAFE_ID_MAX = 100
# In-progress downloads end with this, so they never carry the part's media extension.
PART_SUFFIX = ".part"

# Letters NFKD does not decompose into ASCII plus accents.
_TRANSLITERATE = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l",
     "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "ı": "i"}
)
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,8})$")


def _ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def slugify(name: str | None) -> str:
    """`Zoë Ünicode/🎥` -> `zoe-unicode`; empty string when nothing usable is left."""
    if not name:
        return ""
    slug = re.sub(r"[^a-z0-9]+", "-", _ascii_fold(name).lower()).strip("-")
    return slug[:SLUG_MAX].rstrip("-")


def display_name(participant_id: int, name: str | None) -> str:
    """A participant's name as outputs show it (captions, markers, `bext`, stream titles).

    Whitespace runs (newlines included) become one space; a name that leaves
    nothing is `Participant <id>`.
    """
    return " ".join((name or "").split()) or f"Participant {participant_id}"


def participant_dir(participant_id: int, name: str | None) -> str:
    """Relative directory of a participant's tracks: `participants/<id>-<slug>`."""
    slug = slugify(name)
    return f"participants/{participant_id}-{slug}" if slug else f"participants/{participant_id}"


def safe_id(part_id: str) -> str:
    """A part id made safe for a file name, case kept: ASCII letters, digits, `-` and `_`."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", _ascii_fold(part_id)).strip("-")
    return safe[:SAFE_ID_MAX] or "part"


def _url_extension(url: str) -> str:
    match = _EXTENSION.search(urlsplit(url).path)
    return f".{match.group(1)}" if match else ""


def part_filenames(parts: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Map each `(part id, url)` to its file name under `parts/`, every name distinct.

    A part keeps its safe id as the name unless another part's safe id is the
    same (`a/b`, `a-b`; compared without case, for case-insensitive disks):
    then each of them gets a hash of its id appended, lengthened until no name
    is taken, so no part overwrites another.
    """
    pairs = list(dict.fromkeys(parts))
    stems = {part_id: safe_id(part_id) for part_id, _ in pairs}
    shared = Counter(stem.lower() for stem in stems.values())
    taken = {stem.lower() for stem in stems.values() if shared[stem.lower()] == 1}
    names = {}
    for part_id, url in pairs:
        stem = stems[part_id]
        if shared[stem.lower()] > 1:
            digest = hashlib.sha256(part_id.encode()).hexdigest()
            stem = next(candidate for length in range(8, len(digest) + 1, 4)
                        if (candidate := f"{stem}-{digest[:length]}").lower() not in taken)
            taken.add(stem.lower())
        names[part_id] = stem + _url_extension(url)
    return names
