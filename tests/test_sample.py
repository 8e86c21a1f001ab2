"""The committed sample recording: every video part shows the recording's time, burned in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.media import decode_frames

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
VIDEO_PARTS = json.loads((SAMPLE / "video_parts.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("part", VIDEO_PARTS, ids=lambda part: part["type"])
def test_each_sample_video_part_shows_a_running_clock(part: dict[str, object]) -> None:
    name = str(part["download_url"]).rsplit("/", 1)[1].split("?")[0]
    frames = decode_frames(SAMPLE / "parts" / name, size=(64, 36)).astype(int)
    assert len(frames) > 15
    # The clock sits in the middle: white digits on a dark box, the part's colour around it.
    middle, corner = frames[:, 14:22, 8:56], frames[:, :4, :4]
    assert (middle.max(axis=(1, 2, 3)) > 160).all()  # digits in every frame
    assert (middle.min(axis=(1, 2, 3)) < 100).all()  # on their box
    assert np.abs(corner - corner[0]).max() < 24  # the background stays put
    # The digits change as time goes: no two frames a second apart show the same.
    step = 15  # the sample's frame rate
    assert all(np.abs(middle[index] - middle[index + step]).max() > 40
               for index in range(0, len(frames) - step, step))
