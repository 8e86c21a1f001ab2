#!/usr/bin/env python3
"""Run `assembler run` on sample_data/ with its parts served over loopback HTTP.

    python scripts/serve_sample.py [OUT]          (default: ./out/sample)

Serves sample_data/parts on 127.0.0.1 at an ephemeral port, rewrites the
manifests' download URLs to that port (copies in a temporary directory), runs
the `assembler` installed beside this interpreter, and exits with its status.
`scripts/demo` sets up the virtualenv and calls this.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DOCUMENTS = {
    "--video-parts": "video_parts.json",
    "--audio-parts": "audio_parts.json",
    "--participants": "participants.json",
    "--participant-events": "participant_events.json",
    "--speaker-timeline": "speaker_timeline.json",
    "--transcript": "transcript.json",
}


def rewrite_manifests(target: Path, netloc: str) -> list[str]:
    """Copy every document into `target` with URLs moved to `netloc`; return the CLI options."""
    options = []
    for option, name in DOCUMENTS.items():
        document = json.loads((SAMPLE / name).read_text(encoding="utf-8"))
        if name.endswith("_parts.json"):
            for part in document:
                part["download_url"] = urlunsplit(
                    urlsplit(part["download_url"])._replace(netloc=netloc))
        (target / name).write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        options += [option, str(target / name)]
    return options


async def run(out: Path) -> int:
    """Serve the parts, run assembler against them, stop serving; return its exit status."""
    app = web.Application()
    app.router.add_static("/parts", SAMPLE / "parts")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        print(f"serving {SAMPLE / 'parts'} on http://127.0.0.1:{port}/parts/", flush=True)
        with tempfile.TemporaryDirectory(prefix="assembler-demo-") as tmp:
            options = rewrite_manifests(Path(tmp), f"127.0.0.1:{port}")
            assembler = Path(sys.executable).parent / "assembler"
            process = await asyncio.create_subprocess_exec(
                str(assembler), "run", "--out", str(out), *options)
            status = await process.wait()
    finally:
        await runner.cleanup()
    # A signal-killed child reports -N; a shell would say 128+N.
    return status if status >= 0 else 128 - status


def main(argv: list[str]) -> int:
    """Entry point: `[OUT]`."""
    return asyncio.run(run(Path(argv[0]) if argv else Path("out/sample")))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
