"""Every test, and every process a test starts, runs the same ffmpeg, and hears Ctrl-C.

The one `assembler.media` picks is named in `$ASSEMBLER_FFMPEG` for the whole
session, so an older ffmpeg on PATH is passed over once, here, and not again
(with its warning) in each CLI run a test makes and reads the output of.
Tests of the choice itself set their own environment.

A suite started in the background (`pytest &` in a script) inherits SIGINT
ignored, and so would every CLI it starts: the Ctrl-C tests would see a run
finish instead. A handler here gives them the default back (exec resets a
handled signal to its default; an ignored one stays ignored).
"""

from __future__ import annotations

import os
import signal

from assembler.ffmpeg_process import FFMPEG_ENV, ffmpeg_binary

os.environ.setdefault(FFMPEG_ENV, ffmpeg_binary())
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
