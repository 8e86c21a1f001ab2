from __future__ import annotations

import pytest

from assembler.naming import display_name, part_filenames, participant_dir, slugify


@pytest.mark.parametrize(("name", "slug"), [
    ("Zoë Ünicode/🎥", "zoe-unicode"),
    ("Ada Lovelace", "ada-lovelace"),
    ("  --Straße  Øre--  ", "strasse-ore"),
    ("🎥🎥", ""),
    ("", ""),
    (None, ""),
    ("../../etc/passwd", "etc-passwd"),
    ("x" * 60, "x" * 40),
    ("a" * 39 + " b", "a" * 39),
], ids=["accents-emoji", "plain", "transliterated", "only-symbols", "empty", "null",
        "traversal", "long", "no-trailing-dash"])
def test_slugify(name: str | None, slug: str) -> None:
    assert slugify(name) == slug


def test_participant_dir_without_slug_is_the_bare_id() -> None:
    assert participant_dir(5, "🎥") == "participants/5"
    assert participant_dir(5, "Zoë") == "participants/5-zoe"


def test_part_filenames_keep_case_and_url_extension_and_never_escape() -> None:
    names = part_filenames([
        ("AbC-123", "https://h/x/AbC.mp4?sig=1"),
        ("../../evil", "https://h/evil.webm"),
        ("noext", "https://h/download?id=3"),
    ])
    assert names == {"AbC-123": "AbC-123.mp4", "../../evil": "evil.webm", "noext": "noext"}


def test_part_ids_that_make_the_same_name_do_not_collide() -> None:
    names = part_filenames([("a/b", "https://h/1.m4a"), ("a-b", "https://h/2.m4a"),
                            ("A-B", "https://h/3.m4a")])
    assert len(set(names.values())) == 3
    assert all(name.endswith(".m4a") for name in names.values())


def test_a_part_id_like_another_parts_hashed_name_does_not_collide() -> None:
    first = part_filenames([("a/b", "https://h/1.m4a"), ("a-b", "https://h/2.m4a")])
    hashed = first["a/b"].removesuffix(".m4a")
    names = part_filenames([("a/b", "https://h/1.m4a"), ("a-b", "https://h/2.m4a"),
                            (hashed, "https://h/3.m4a")])
    assert len({name.lower() for name in names.values()}) == 3
    assert names[hashed] == f"{hashed}.m4a"


@pytest.mark.parametrize(("name", "shown"), [
    ("Ada Lovelace", "Ada Lovelace"), ("  Ada\n Lovelace ", "Ada Lovelace"),
    (None, "Participant 7"), ("", "Participant 7"), (" \t\n", "Participant 7"),
], ids=["plain", "whitespace-folded", "null", "empty", "blank"])
def test_a_name_as_every_output_shows_it(name: str | None, shown: str) -> None:
    assert display_name(7, name) == shown
