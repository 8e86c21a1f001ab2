"""Every test, and every process a test starts, runs the same ffmpeg.

The one `assembler.media` picks is named in `$ASSEMBLER_FFMPEG` for the whole
session, so an older ffmpeg on PATH is passed over once, here, and not again
(with its warning) in each CLI run a test makes and reads the output of.
Tests of the choice itself set their own environment.
"""

from __future__ import annotations

import os

from assembler.media import FFMPEG_ENV, ffmpeg_binary

os.environ.setdefault(FFMPEG_ENV, ffmpeg_binary())
