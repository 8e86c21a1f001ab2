"""Make marked media with ffmpeg and measure media by decoding it.

Tests never trust what a file claims about itself: lengths are counted from
decoded samples and frames, placement is found from where a tone or a colour
actually is. Audio parts carry a sine (the frequency is the marker), video
parts a solid colour (the colour is the marker).
"""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from assembler.ffmpeg_process import ffmpeg_binary, file_arg

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "COLOURS",
    "MediaSummary",
    "active_spans",
    "audio_channels",
    "colour_spans",
    "decode_audio",
    "decode_errors",
    "decode_frames",
    "dominant_frequency",
    "ffmpeg",
    "ffmpeg_stderr",
    "frame_colours",
    "frame_times",
    "is_black",
    "is_silent",
    "make_colour_video",
    "make_tone",
    "media_info",
    "mp4_durations",
    "rgb",
    "top_level_boxes",
]

RGB = tuple[int, int, int]
Colour = RGB | str

COLOURS: dict[str, RGB] = {
    "black": (0, 0, 0), "white": (255, 255, 255), "red": (255, 0, 0), "green": (0, 255, 0),
    "blue": (0, 0, 255), "yellow": (255, 255, 0), "cyan": (0, 255, 255),
    "magenta": (255, 0, 255), "orange": (255, 128, 0), "purple": (128, 0, 255),
    "grey": (128, 128, 128),
}

# Audio encoder and extra arguments per container extension.
_AUDIO_CODECS: dict[str, list[str]] = {
    ".wav": ["-c:a", "pcm_s16le"],
    ".m4a": ["-c:a", "aac"],
    ".mp4": ["-c:a", "aac"],
    ".mp3": ["-c:a", "libmp3lame"],
    ".webm": ["-c:a", "libopus"],
    ".flac": ["-c:a", "flac"],
    ".ogg": ["-c:a", "libopus"],
    ".opus": ["-c:a", "libopus"],
}
_OPUS_RATES = (48000, 24000, 16000, 12000, 8000)
_VIDEO_CODECS: dict[str, list[str]] = {
    "h264": ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"],
    # realtime deadline: libvpx's default "good" is ~20x slower for no gain on flat colour.
    "vp8": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k",
            "-pix_fmt", "yuv420p"],
    "vp9": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k",
            "-pix_fmt", "yuv420p"],
}
_CONTAINER_CODECS = {".mp4": {"h264"}, ".webm": {"vp8", "vp9"}}
# No encoder version strings or dates in the output: same inputs, same bytes.
_BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
             "-map_metadata", "-1"]


def _run(args: Sequence[str], *, loglevel: str = "error") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", loglevel,
                           *args], capture_output=True, check=False)


def ffmpeg(args: Sequence[str], *, stdout: bool = False) -> bytes:
    """Run ffmpeg with `args`; return stdout (when asked) or raise with its stderr."""
    done = _run(args)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed:\n"
                           f"{done.stderr.decode('utf-8', 'replace')}")
    return done.stdout if stdout else b""


def ffmpeg_stderr(args: Sequence[str]) -> str:
    """What ffmpeg says (at info level) running `args`, whether or not it succeeds."""
    return _run(args, loglevel="info").stderr.decode("utf-8", "replace")


def rgb(colour: Colour) -> RGB:
    """A colour name from `COLOURS` or an RGB tuple, as an RGB tuple."""
    return COLOURS[colour] if isinstance(colour, str) else colour


def _tone_source(seconds: float, freq: float, rate: int, channels: int,
                 amplitude: float) -> str:
    wave = f"{amplitude}*sin(2*PI*{freq}*t)"
    # aevalsrc's own duration rounds up to whole 1024-sample frames; atrim is exact.
    samples = round(seconds * rate)
    return f"aevalsrc={'|'.join([wave] * channels)}:s={rate},atrim=end_sample={samples}"


def make_tone(path: Path, *, seconds: float, freq: float = 440.0, rate: int = 48000,
              channels: int = 1, amplitude: float = 0.5, bitrate: str | None = None) -> Path:
    """Write a sine of `seconds` to `path`; the extension picks container and codec.

    `.wav` pcm_s16le, `.m4a`/`.mp4` AAC, `.mp3` MP3, `.flac` FLAC, `.webm`/`.ogg`/
    `.opus` Opus (48/24/16/12/8 kHz only). `bitrate` (e.g. "32k") keeps files small.
    """
    ext = path.suffix.lower()
    if ext not in _AUDIO_CODECS:
        raise ValueError(f"no audio codec for {ext!r}; use one of {sorted(_AUDIO_CODECS)}")
    if _AUDIO_CODECS[ext][1] == "libopus" and rate not in _OPUS_RATES:
        raise ValueError(f"Opus cannot encode {rate} Hz; use one of {_OPUS_RATES}")
    ffmpeg(["-y", "-f", "lavfi", "-i", _tone_source(seconds, freq, rate, channels, amplitude),
            *_AUDIO_CODECS[ext], *(["-b:a", bitrate] if bitrate else []), *_BITEXACT,
            file_arg(path)])
    return path


def _video_codec(path: Path, codec: str | None) -> str:
    ext = path.suffix.lower()
    allowed = _CONTAINER_CODECS.get(ext)
    if allowed is None:
        raise ValueError(f"no video container for {ext!r}; use .mp4 or .webm")
    chosen = codec or ("h264" if ext == ".mp4" else "vp8")
    if chosen not in allowed:
        raise ValueError(f"{chosen} does not belong in {ext}; use one of {sorted(allowed)}")
    return chosen


def _vfr_select(frames: int) -> str:
    # Keep the first and last frame (so the duration stays) and drop an irregular
    # ~30% of the rest: the gaps between kept frames vary, so the rate really varies.
    return f"select='eq(n\\,0)+eq(n\\,{frames - 1})+lt(mod(n*n+3*n\\,13)\\,9)'"


def make_colour_video(path: Path, *, seconds: float, colour: Colour, fps: int = 30,
                      size: tuple[int, int] = (320, 240), codec: str | None = None,
                      gop: int | None = None, vfr: bool = False,
                      with_tone: float | None = None, clock: float | None = None,
                      bitrate: str | None = None) -> Path:
    """Write `seconds` of a solid `colour` to `path` (.mp4: h264; .webm: vp8 or vp9).

    `gop` sets the keyframe interval; `vfr` drops frames irregularly and keeps
    the gaps (a genuinely variable frame rate); `with_tone` adds a sine of that
    frequency as an audio track (AAC in MP4, Opus in WebM). `clock` burns in
    each frame's time plus `clock` seconds (HH:MM:SS.mmm): the part's start on
    the timeline makes it the recording's time (needs ffmpeg's drawtext).
    `bitrate` caps the video bitrate (e.g. "40k").
    """
    chosen = _video_codec(path, codec)
    frames = round(seconds * fps)
    red, green, blue = rgb(colour)
    chain = f"color=c=0x{red:02x}{green:02x}{blue:02x}:s={size[0]}x{size[1]}:r={fps}"
    chain += f",trim=end_frame={frames}" + (f",{_vfr_select(frames)}" if vfr else "")
    if clock is not None:
        chain += (f",drawtext=text='%{{pts\\:hms\\:{clock}}}':fontsize={size[1] // 6}"
                  ":fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=4"
                  ":x=(w-text_w)/2:y=(h-text_h)/2")
    args = ["-y", "-f", "lavfi", "-i", chain]
    if with_tone is not None:
        audio_codec = ["-c:a", "aac"] if path.suffix.lower() == ".mp4" else ["-c:a", "libopus"]
        args += ["-f", "lavfi", "-i", _tone_source(seconds, with_tone, 48000, 1, 0.5),
                 *audio_codec]
    args += _VIDEO_CODECS[chosen] + (["-g", str(gop)] if gop else [])
    args += ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate] if bitrate else []
    # mp4 would otherwise duplicate frames back to a constant rate.
    args += ["-fps_mode", "vfr" if vfr else "cfr", *_BITEXACT, file_arg(path)]
    ffmpeg(args)
    return path


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Samples and rate of a float32 WAV ffmpeg wrote to a pipe (chunk sizes unknown)."""
    offset = 12
    channels = rate = 0
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"fmt ":
            channels, rate = struct.unpack_from("<HI", data, offset + 10)
        elif chunk == b"data":
            body = data[offset + 8:]
            samples = np.frombuffer(body[:len(body) // (4 * channels) * 4 * channels],
                                    dtype="<f4")
            return samples.reshape(-1, channels).astype(np.float32), rate
        offset += 8 + size + (size & 1)
    raise ValueError("no data chunk in ffmpeg's WAV output")


def _decode_wav(path: Path, rate: int | None, seconds: float | None = None,
                stream: str = "0:a:0") -> tuple[np.ndarray, int]:
    # WAV rather than raw f32le: its header carries the channel count and rate.
    args = ["-i", file_arg(path), "-map", stream, "-vn", "-c:a", "pcm_f32le",
            *(["-ar", str(rate)] if rate else []), *(["-t", str(seconds)] if seconds else []),
            *_BITEXACT, "-f", "wav", "-"]
    return _parse_wav(ffmpeg(args, stdout=True))


def decode_audio(path: Path, rate: int | None = 48000, *, stream: str = "0:a:0") -> np.ndarray:
    """An audio stream (default the first) as float32 samples, shape (samples, channels).

    Resampled to `rate`; `rate=None` keeps the file's own rate.
    """
    return _decode_wav(path, rate, stream=stream)[0]


def audio_channels(path: Path) -> int:
    """Channel count of the first audio stream, read from a short decode."""
    return int(_decode_wav(path, None, seconds=0.05)[0].shape[1])


def active_spans(samples: np.ndarray, rate: int, *, threshold: float = 0.01,
                 min_gap: float = 0.005) -> list[tuple[float, float]]:
    """Spans `(start, end)` in seconds where any channel exceeds `threshold`.

    Quiet stretches shorter than `min_gap` (a sine's zero crossings, codec
    ripples) do not split a span; `end` is the first quiet sample's time.
    """
    loud = np.abs(samples.reshape(len(samples), -1)).max(axis=1) > threshold
    edges = np.flatnonzero(np.diff(np.concatenate(([0], loud.astype(np.int8), [0]))))
    spans: list[list[int]] = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if spans and start - spans[-1][1] < min_gap * rate:
            spans[-1][1] = int(end)
        else:
            spans.append([int(start), int(end)])
    return [(start / rate, end / rate) for start, end in spans]


def is_silent(samples: np.ndarray) -> bool:
    """True when every sample is exactly zero (digital silence, not merely quiet)."""
    return not np.any(samples)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in Hz (channels mixed), interpolated between FFT bins."""
    mono = samples.reshape(len(samples), -1).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    peak = int(np.argmax(spectrum[1:])) + 1
    if 0 < peak < len(spectrum) - 1:
        # Parabolic fit through the log magnitudes of the peak and its neighbours.
        left, centre, right = np.log(spectrum[peak - 1:peak + 2] + 1e-12)
        peak_offset = 0.5 * (left - right) / (left - 2 * centre + right)
    else:
        peak_offset = 0.0
    return float((peak + peak_offset) * rate / len(mono))


def decode_frames(path: Path, *, size: tuple[int, int] = (16, 12),
                  fps: float | None = None) -> np.ndarray:
    """Video frames scaled to `size`, shape (n, height, width, 3), uint8 RGB.

    Without `fps` every decoded frame appears once (a variable-rate file is not
    padded); with `fps` the frames are resampled to that constant rate.
    """
    width, height = size
    # Area scaling averages each block, so a frame's mean colour survives.
    chain = f"scale={width}:{height}:flags=area" + (f",fps={fps}" if fps else "")
    raw = ffmpeg(["-i", file_arg(path), "-map", "0:v:0", "-vf", chain,
                  "-fps_mode", "cfr" if fps else "passthrough",
                  "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=True)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)


def frame_colours(path: Path) -> list[tuple[float, float, float]]:
    """Mean RGB of every decoded frame."""
    return _mean_colours(decode_frames(path))


def _mean_colours(frames_or_colours: np.ndarray | Sequence[Sequence[float]],
                  ) -> list[tuple[float, float, float]]:
    array = np.asarray(frames_or_colours, dtype=np.float64)
    means = array.reshape(len(array), -1, 3).mean(axis=1) if array.ndim == 4 else array
    return [(float(r), float(g), float(b)) for r, g, b in means]


def _close(mean: Sequence[float], colour: RGB, tol: float) -> bool:
    return max(abs(a - b) for a, b in zip(mean, colour, strict=True)) <= tol


def colour_spans(frames_or_colours: np.ndarray | Sequence[Sequence[float]], colour: Colour,
                 *, tol: float = 40.0) -> list[tuple[int, int]]:
    """Frame index spans `[start, end)` whose mean colour is within `tol` of `colour`.

    Accepts decoded frames (n, h, w, 3) or mean colours (n, 3); `tol` is the
    largest difference allowed in any of R, G, B (0-255).
    """
    target = rgb(colour)
    spans: list[tuple[int, int]] = []
    for index, mean in enumerate(_mean_colours(frames_or_colours)):
        if not _close(mean, target, tol):
            continue
        if spans and spans[-1][1] == index:
            spans[-1] = (spans[-1][0], index + 1)
        else:
            spans.append((index, index + 1))
    return spans


def is_black(frame_or_colour: np.ndarray | Sequence[float], *, tol: float = 16.0) -> bool:
    """True when one frame (h, w, 3) or one mean colour (3,) is black within `tol`."""
    array = np.asarray(frame_or_colour, dtype=np.float64)
    return _close(array.reshape(-1, 3).mean(axis=0), COLOURS["black"], tol)


def decode_errors(path: Path, streams: Sequence[str] = ()) -> str:
    """What ffmpeg reports while decoding the whole file; empty means it decoded clean.

    `streams` are `-map` specifiers (`"0:v"`, `"0:a"`: every video and audio stream);
    without them ffmpeg picks one stream of each kind.
    """
    maps = [arg for stream in streams for arg in ("-map", stream)]
    return _run(["-i", file_arg(path), *maps, "-f", "null", "-"]).stderr.decode(
        "utf-8", "replace").strip()


_FRAMECRC_LINE = re.compile(r"^(\d+),\s*(-?\d+),\s*(-?\d+),\s*(\d+),", re.M)
_TIME_BASE = re.compile(r"^#tb (\d+): (\d+)/(\d+)", re.M)


def frame_times(path: Path) -> list[float]:
    """Presentation time in seconds of every decoded video frame, as decoded."""
    text = ffmpeg(["-i", file_arg(path), "-map", "0:v:0", "-fps_mode", "passthrough",
                   "-f", "framecrc", "-"], stdout=True).decode()
    bases = {int(m[1]): int(m[2]) / int(m[3]) for m in _TIME_BASE.finditer(text)}
    return [int(m[3]) * bases[int(m[1])] for m in _FRAMECRC_LINE.finditer(text)]


@dataclass(frozen=True, slots=True)
class MediaSummary:
    """Lengths of a file measured by decoding it (not from its headers)."""

    duration: float
    frames: int
    samples: int
    sample_rate: int | None
    channels: int


_STREAM_KIND = re.compile(r"Stream #\S+: (Audio|Video):")


def _stream_kinds(path: Path) -> set[str]:
    stderr = _run(["-i", file_arg(path)], loglevel="info").stderr.decode("utf-8", "replace")
    return set(_STREAM_KIND.findall(stderr))


def media_info(path: Path) -> MediaSummary:
    """Decoded video frame count and audio sample count (at the file's own rate).

    `duration` is the longer of the audio (samples / rate) and the video (last
    frame's time plus one frame at the median frame interval).
    """
    kinds = _stream_kinds(path)
    times = frame_times(path) if "Video" in kinds else []
    samples, rate = _decode_wav(path, None) if "Audio" in kinds else (None, None)
    video_end = 0.0
    if times:
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        video_end = times[-1] + step
    audio_end = len(samples) / rate if samples is not None and rate else 0.0
    return MediaSummary(
        duration=max(video_end, audio_end),
        frames=len(times),
        samples=0 if samples is None else len(samples),
        sample_rate=rate,
        channels=0 if samples is None else samples.shape[1],
    )


@dataclass(frozen=True, slots=True)
class Mp4Durations:
    """Durations an MP4's headers state, in seconds: what a player reads before decoding.

    `edit` is the edit list's presented span (None without one); `last_sample`
    is the last sample's duration in the sample table (`stts`).
    """

    movie: float  # mvhd
    track: float  # tkhd of the first track
    media: float  # mdhd of the first track
    edit: float | None
    last_sample: float

    @property
    def shown(self) -> float:
        """The duration a player presents: the edit list's when there is one."""
        return self.edit if self.edit is not None else self.media


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, bytes]:
    """The first box of each type between `start` and `end`, by type, without its header."""
    found: dict[bytes, bytes] = {}
    offset, end = start, len(data) if end is None else end
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, offset + 8)[0], 16
        elif size == 0:
            size = end - offset
        found.setdefault(kind, data[offset + header:offset + size])
        offset += size
    return found


def top_level_boxes(path: Path) -> list[bytes]:
    """The types of an MP4's top-level boxes, in file order."""
    return list(_boxes(path.read_bytes()))


def _versioned(body: bytes, narrow: str, wide: str) -> tuple[int, ...]:
    """Fields after a full box's version and flags: `wide` layout for version 1."""
    layout = wide if body[0] == 1 else narrow
    return struct.unpack_from(">" + layout, body, 4)


def track_spans(path: Path) -> list[float]:
    """Seconds each track of the MP4 at `path` presents (its edit list's span, else its tkhd
    duration), in file order: a player takes the longest for the file's duration."""
    moov = _boxes(path.read_bytes())[b"moov"]
    _, _, movie_scale, _ = _versioned(_boxes(moov)[b"mvhd"], "IIII", "QQIQ")
    spans = []
    offset = 0
    while offset + 8 <= len(moov):
        size, kind = struct.unpack_from(">I4s", moov, offset)
        if kind == b"trak":
            trak = _boxes(moov, offset + 8, offset + size)
            edit = _edit_span(trak)
            spans.append((edit if edit is not None
                          else _versioned(trak[b"tkhd"], "IIIII", "QQIIQ")[4]) / movie_scale)
        offset += size
    return spans


def _edit_span(trak: dict[bytes, bytes]) -> int | None:
    """A track's edit list's presented span, in the movie's time scale; None without one."""
    if b"edts" not in trak:
        return None
    elst = _boxes(trak[b"edts"])[b"elst"]
    wide = elst[0] == 1
    count = struct.unpack_from(">I", elst, 4)[0]
    step = 20 if wide else 12
    return sum(int(struct.unpack_from(">Qq" if wide else ">Ii", elst, 8 + index * step)[0])
               for index in range(count))


def mp4_durations(path: Path) -> Mp4Durations:
    """Read mvhd, tkhd, elst, mdhd and stts of the first track of the MP4 at `path`."""
    moov = _boxes(_boxes(path.read_bytes())[b"moov"])
    _, _, movie_scale, movie_length = _versioned(moov[b"mvhd"], "IIII", "QQIQ")
    trak = _boxes(moov[b"trak"])
    track_length = _versioned(trak[b"tkhd"], "IIIII", "QQIIQ")[4]
    mdia = _boxes(trak[b"mdia"])
    _, _, media_scale, media_length = _versioned(mdia[b"mdhd"], "IIII", "QQIQ")
    span = _edit_span(trak)
    edit = None if span is None else span / movie_scale
    stbl = _boxes(_boxes(mdia[b"minf"])[b"stbl"])
    stts = stbl[b"stts"]
    runs = struct.unpack_from(">I", stts, 4)[0]
    last_delta = struct.unpack_from(">I", stts, 8 + (runs - 1) * 8 + 4)[0]
    return Mp4Durations(movie=movie_length / movie_scale, track=track_length / movie_scale,
                        media=media_length / media_scale, edit=edit,
                        last_sample=last_delta / media_scale)
