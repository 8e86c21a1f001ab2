"""The error tree: drawn in errors.py's docstring, and drawn truthfully."""

from __future__ import annotations

import re

import pytest

from assembler import errors


def test_the_docstring_tree_matches_the_classes() -> None:
    assert errors.__doc__ is not None
    tree = errors.__doc__.split("\n\n")[1].splitlines()
    drawn: list[tuple[int, str]] = []  # (column, class name) per line of the tree
    for line in tree:
        name = re.search(r"\w+Error", line)
        assert name is not None, line
        drawn.append((name.start(), name.group()))
    assert {name for _, name in drawn} == {n for n in errors.__all__ if n.endswith("Error")}
    # Each class is a subclass of the nearest class drawn to its left above it.
    for index, (column, child) in enumerate(drawn[1:], 1):
        parent = next(above for col, above in reversed(drawn[:index]) if col < column)
        assert issubclass(getattr(errors, child), getattr(errors, parent)), (child, parent)


@pytest.mark.parametrize(("url", "shown"), [
    ("https://bucket.s3.amazonaws.com/a/b.mp4?X-Amz-Signature=abc&X-Amz-Expires=60",
     "https://bucket.s3.amazonaws.com/a/b.mp4?…"),
    ("https://user:pass@host:8443/p.webm#frag", "https://host:8443/p.webm"),
    ("http://127.0.0.1/plain.wav", "http://127.0.0.1/plain.wav"),
    ("https://[::1]:8080/v.mp4?sig=1", "https://[::1]:8080/v.mp4?…"),
    ("https://host:99999/v.mp4?sig=1", "<unparseable url>"),
], ids=["signed", "credentials", "plain", "ipv6", "bad-port"])
def test_redact_url_keeps_no_secret(url: str, shown: str) -> None:
    assert errors.redact_url(url) == shown
