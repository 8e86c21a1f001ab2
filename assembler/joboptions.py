"""Options one line of a jobs file may set for its recording, over the batch's own.

Keys are the command line's long option names with `_`, values their JSON
form: `{"id": "rec-7", "audio_parts": "a.json", "duration": 600,
"audio_format": "wav", "captions": ["vtt"], "mix": true}`. A comma list may
also be one string (`"kinds": "audio,webcam"`), a frame rate a ratio string
(`"fps": "30000/1001"`), and `participant` one id or a list of ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from .pipeline import RunOptions
from .plan import (
    AUDIO_FORMATS,
    CAPTION_FORMATS,
    KINDS,
    TIMELINE_FORMATS,
    VIDEO_STRATEGIES,
    X264_PRESETS,
)

__all__ = ["OPTION_KEYS", "OptionError", "with_options"]


class OptionError(ValueError):
    """A jobs line's option that is not valid: `key` names it, the message says why."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionError(key, f"{key} must be a number, not {json_type(value)}")
    return value


def _integer(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(key, f"{key} must be a whole number, not {json_type(value)}")
    return value


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise OptionError(key, f"{key} must be true or false, not {json_type(value)}")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str, object], str]:
    def parse(key: str, value: object) -> str:
        if value not in choices:
            raise OptionError(key, f"{key}: {value!r} is not one of {', '.join(choices)}")
        return str(value)
    return parse


def _choices(choices: tuple[str, ...]) -> Callable[[str, object], tuple[str, ...]]:
    """A list of `choices`, or one comma-separated string of them; each kept once."""
    def parse(key: str, value: object) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise OptionError(key, f"{key} must be a list of {', '.join(choices)}")
        chosen = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
        unknown = [item for item in chosen if item not in choices]
        if unknown:
            raise OptionError(key, f"{key}: {unknown[0]!r} is not one of {', '.join(choices)}")
        return chosen
    return parse


def _frame_rate(key: str, value: object) -> Fraction:
    try:
        return Fraction(value if isinstance(value, str) else _number(key, value))
    except (ValueError, ZeroDivisionError):
        raise OptionError(key, f"{key} must be a number or a ratio like \"30000/1001\"") from None


def _ids(key: str, value: object) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(_integer(key, item) for item in items)


def json_type(value: object) -> str:
    return {bool: "true/false", str: "a string", list: "a list", dict: "an object",
            type(None): "null"}.get(type(value), type(value).__name__)


# key -> (where it goes in RunOptions: "field" or "group.field", how its value is read)
OPTION_KEYS: Mapping[str, tuple[str, Callable[[str, object], Any]]] = {
    "duration": ("duration", _number),
    "fps": ("fps", _frame_rate),
    "participant": ("participants", _ids),
    "kinds": ("kinds", _choices(KINDS)),
    "keep_parts": ("keep_parts", _flag),
    "audio_format": ("render.audio_format", _choice(AUDIO_FORMATS)),
    "video_strategy": ("render.video_strategy", _choice(VIDEO_STRATEGIES)),
    "crf": ("render.crf", _integer),
    "preset": ("render.x264_preset", _choice(X264_PRESETS)),
    "max_height": ("render.max_height", _integer),
    "captions": ("deliverables.captions", _choices(CAPTION_FORMATS)),
    "timeline": ("deliverables.timeline", _choices(TIMELINE_FORMATS)),
    "mix": ("deliverables.mix", _flag),
    "loudness": ("deliverables.loudness", _number),
    "av": ("deliverables.av", _flag),
    "archive": ("deliverables.archive", _flag),
}


def with_options(options: RunOptions, given: Mapping[str, object]) -> RunOptions:
    """`options` with the jobs line's `given` options (keys of `OPTION_KEYS`) set over them.

    Raises `OptionError` naming the first key whose value is not valid.
    """
    for key, value in given.items():
        target, read = OPTION_KEYS[key]
        parsed = read(key, value)
        group, _, name = target.rpartition(".")
        try:
            if group:
                inner = dataclasses.replace(getattr(options, group), **{name: parsed})
                options = dataclasses.replace(options, **{group: inner})
            else:
                options = dataclasses.replace(options, **{name: parsed})
        except ValueError as exc:  # the settings' own checks: fps > 0, crf 0-51...
            raise OptionError(key, str(exc)) from None
    return options
