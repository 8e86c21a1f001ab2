#!/usr/bin/env python3
"""Regenerate sample_data/: a 30 s, three-person recording with real-world mess in it.

    python scripts/make_sample_data.py [DIR]      (default: sample_data/ in the repo)

Deterministic for a given ffmpeg build. The mess, on purpose: Zoë drops out at
11.9 s and rejoins at 17.3 s (two audio and two webcam parts with a gap); her
rejoin webcam has another resolution and her first webcam runs 0.5 s short of
its slot; Marcus's audio is 44.1 kHz stereo MP3 running 0.4 s past its slot and
his webcam is VP8 WebM; the dial-in caller has no name and 16 kHz mono WAV.
URLs point at http://127.0.0.1:8787 (scripts/demo rewrites host and port).

Every video part shows the recording's time, burned in from its own start
(HH:MM:SS.mmm): in the tracks, every participant's clock reads the same at the
same moment when they are in sync. Needs an ffmpeg with drawtext (the
imageio-ffmpeg wheel's has it) and a font fontconfig can find.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.recording import Manifests, RecordingBuilder  # noqa: E402

BASE_URL = "http://127.0.0.1:8787"
# Small enough to commit: low resolution and frame rate, low audio bitrates.
SIZE = (320, 180)
FPS = 15
VIDEO_BITRATE = "24k"  # the burned-in clock changes every frame: cap what it costs


def build(root: Path) -> Manifests:
    """Write the sample recording's parts and manifests under `root`."""
    shutil.rmtree(root / "parts", ignore_errors=True)
    rec = RecordingBuilder(root)
    zoe = rec.participant(100, "Zoë Ünicode", is_host=True, email="zoe@example.com",
                          extra_data={"zoom": {"user_guid": "7B0D4E3A-51C2-4F7B-9E0A-2C6D1F8B3A90",
                                               "guest": False}}).id
    marcus = rec.participant(200, "Marcus Webb", is_host=False,
                             extra_data={"zoom": {"guest": True}}).id
    caller = rec.participant(300, None, is_host=False, platform=None).id

    rec.audio_part(zoe, None, 0.0, 11.874, freq=330.0, bitrate="24k")
    rec.video_part(zoe, None, 0.0, 11.874, media_seconds=11.374, colour=(200, 60, 60),
                   size=SIZE, fps=FPS, clock=True, bitrate=VIDEO_BITRATE)
    rec.audio_part(zoe, None, 17.263, 12.737, freq=330.0, bitrate="24k")
    rec.video_part(zoe, None, 17.263, 12.737, colour=(220, 140, 40), size=(256, 144), fps=FPS,
                   clock=True, bitrate=VIDEO_BITRATE)

    rec.audio_part(marcus, None, 1.216, 15.5, media_seconds=15.9, freq=550.0, rate=44100,
                   channels=2, ext=".mp3", bitrate="32k")
    rec.video_part(marcus, None, 1.216, 28.784, colour=(60, 170, 80), size=SIZE, ext=".webm",
                   fps=FPS, clock=True, bitrate=VIDEO_BITRATE)
    rec.video_part(marcus, None, 8.05, 13.9, kind="screenshare", colour=(50, 80, 200),
                   size=SIZE, fps=FPS, clock=True, bitrate=VIDEO_BITRATE)
    rec.chat(marcus, 8.4, "Sharing my screen now, can everyone see it?")

    rec.audio_part(caller, None, 21.5, 2.5, freq=770.0, rate=16000, ext=".wav")
    return rec.write(BASE_URL)


def main(argv: list[str]) -> int:
    """Build into argv[0] or sample_data/ and print a one-line summary."""
    root = Path(argv[0]) if argv else REPO / "sample_data"
    root.mkdir(parents=True, exist_ok=True)
    manifests = build(root)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"{root}: {len(manifests.expected)} parts, {manifests.duration:.3f} s, "
          f"{size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
