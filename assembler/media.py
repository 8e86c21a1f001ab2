"""What ffmpeg says of media: probing parts, and reading packets for stream copy.

ffprobe is not assumed (the imageio-ffmpeg wheel ships ffmpeg alone), so
probing reads the stream summary `ffmpeg -i` prints on stderr, and measures
media by copying its packets, undecoded, into framecrc text. Every ffmpeg
runs through `ffmpeg_process`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from .errors import FFmpegError, MediaError
from .ffmpeg_process import failure_line, ffmpeg_output, file_arg, run_ffmpeg

__all__ = ["PROBE_GROUP", "USUAL_PRIMING", "AudioStream", "MediaInfo", "PacketTrace",
           "VideoStream", "VideoSurvey", "probe", "probe_many", "read_packets", "scan_packets",
           "survey_video", "usual_priming"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioStream:
    codec: str
    sample_rate: int
    channels: int
    profile: str | None = None  # e.g. "LC" for AAC-LC
    index: int = 0  # the stream's index in its file
    # From the stream's packets (None: not scanned). `end`: seconds from the file's
    # start (which plays at the slot start) to the stream's last packet end.
    packets: int | None = None
    end: float | None = None
    # Encoder delay, in samples at `sample_rate`, that the decoder outputs because the
    # container does not state it (raw ADTS, MP3 without a LAME tag): 0 when stated.
    priming: int = 0

    @property
    def length(self) -> float | None:
        """Seconds of media the stream places from the file's start, priming left out."""
        return None if self.end is None else max(0.0, self.end - self.priming / self.sample_rate)


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoStream:
    codec: str
    profile: str | None
    pix_fmt: str | None
    width: int
    height: int
    sar: Fraction | None
    fps: Fraction | None
    time_base: Fraction | None
    index: int = 0  # the stream's index in its file
    rotation: int = 0  # degrees a player turns the picture (display matrix): 0, 90, 180, 270
    packets: int | None = None  # as in AudioStream
    end: float | None = None

    @property
    def length(self) -> float | None:
        return self.end

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown: square pixels, turned by the display matrix."""
        width = round(self.width * self.sar) if self.sar else self.width
        return (self.height, width) if self.rotation % 180 else (width, self.height)


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketTrace:
    """A video stream's packets in decode order, timestamps as stored (in `time_base`)."""

    time_base: Fraction
    extradata: str | None  # size and CRC of the codec extradata (for H.264 the avcC)
    dts: tuple[int, ...]
    pts: tuple[int, ...]
    duration: tuple[int, ...]
    keyframe: tuple[bool, ...]
    # Some packet is flagged corrupt: cut short, as a file ends that died mid-write.
    corrupt: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoSurvey:
    """What stream copy needs of a video stream, read without decoding it.

    Bytes are as the file stores them: for H.264 in MP4 or Matroska `extradata`
    is an avcC record and NAL units are length-prefixed; in a raw or MPEG-TS
    stream both are Annex B.
    """

    packets: PacketTrace  # timestamps as stored, as `read_packets` gives them
    extradata: bytes  # the codec's private data (b"" when it has none)
    first_packet: bytes
    # The stream's in-band H.264 SPS and PPS NAL units, nothing else: Annex B whatever the
    # file's framing (filter_units, which keeps them, writes its units so).
    in_band_sets: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaInfo:
    """What `ffmpeg -i` tells of a file: container, duration and start (seconds), first streams.

    `probe` raises `MediaError` for a file ffmpeg cannot open; `probe_many`
    returns that error in place of the file's `MediaInfo`.
    """

    format: str
    duration: float | None
    start: float
    audio: AudioStream | None
    video: VideoStream | None
    streams: int = 0  # every stream in the file, of any kind
    # A container whose header ends before any packet (a track that never flowed): ffmpeg
    # cannot open it, its streams are unknown, and it is media of length 0.
    header_only: bool = False
    survey: VideoSurvey | None = None  # of `video`, when asked for and read with the probe

    @property
    def holds_nothing(self) -> bool:
        """A readable container without a single stream or packet: media of length 0."""
        return self.header_only or self.streams == 0


_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3, "quad": 4,
                    "4.0": 4, "4.1": 5, "5.0": 5, "5.0(side)": 5, "5.1": 6, "5.1(side)": 6,
                    "6.1": 7, "7.1": 8}
_INPUT = re.compile(r"^Input #(\d+), ([^,]+(?:,[^,\s]+)*), from .*$", re.M)
_OUTPUTS = re.compile(r"^(?:Stream mapping:|Output #\d+)", re.M)  # inputs described before
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_START = re.compile(r"start: (-?\d+(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #\d+:(\d+)\S*: (\w+): (.*)$", re.M)
_CODEC = re.compile(r"^(\w+)(?: \(([^)]*)\))?")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_SAR = re.compile(r"SAR (\d+):(\d+)")
_FPS = re.compile(r"([\d.]+(?:k)?) (fps|tbn)")
_RATE = re.compile(r"(\d+) Hz")
_CHANNELS = re.compile(r"Hz, ([^,]+)")
_WAV_PROBE = ("-probesize", str(16 << 10))
# A picture standing for the file, not its video (ffmpeg's `V` stream specifier skips them).
_COVER = re.compile(r"\((?:attached pic|timed thumbnails)\)")
# "Display Matrix: rotation of 90.00 degrees" (ffmpeg 9), "displaymatrix: ..." (ffmpeg 5).
_ROTATION = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.I)


# Files one probing or scanning ffmpeg reads: its start and each input's opening cost
# more than reading a short part. Measured with ffmpeg 9 on two cores, CPU seconds to
# scan in groups of 1/4/8/16/32: 120 parts of 2 s (the storm) 3.7/1.3/0.84/0.60/0.48;
# 16 parts of 30 s (640x360 + AAC) 1.12/0.64/0.51/0.54/-.
PROBE_GROUP = 16


def probe(path: Path, *, survey: bool = False) -> MediaInfo:
    """Read container, duration and the first audio and video stream of `path`.

    `survey`: also read what stream copy needs of its video (`MediaInfo.survey`).
    """
    result = probe_many([path], survey=[path] if survey else ())[path]
    if isinstance(result, MediaError):
        raise result
    return result


def probe_many(paths: Sequence[Path], group: int = PROBE_GROUP, *,
               survey: Collection[Path] = ()) -> dict[Path, MediaInfo | MediaError]:
    """Probe many files, one ffmpeg per `group` of them.

    That ffmpeg describes each file (its `-i` report) and copies every packet of
    the file's first audio and first video stream (no decoding) into framecrc
    text, which measures the media itself: see `scan_packets`. For each file of
    `survey` it also keeps what stream copy needs of the video (`VideoSurvey`),
    so that a part to be copied is read once. It describes its inputs one by one
    and stops at the first it cannot open; that one gets its error and the rest
    are probed again. What the one run could not measure (a file with neither
    stream, a run that failed while copying) is scanned apart, unsurveyed.
    """
    results: dict[Path, MediaInfo | MediaError] = {}
    pending = list(paths)
    while pending:
        batch = pending[:group]
        described, stderr = _describe_and_scan(batch, survey)
        results.update(described)
        done = len(described)
        if done < len(batch):
            failed = batch[done]
            results[failed] = _unopened(failed, failure_line(stderr))
            done += 1
        pending = pending[done:]
    return results


def _describe_and_scan(batch: Sequence[Path], survey: Collection[Path]
                       ) -> tuple[dict[Path, MediaInfo], str]:
    """The files of `batch` ffmpeg described, each measured, and ffmpeg's stderr."""
    options = [_probe_options(path) for path in batch]
    with tempfile.TemporaryDirectory(prefix="assembler-probe-") as name:
        scratch = Path(name)
        crc = [scratch / f"{number}.crc" for number in range(len(batch))]
        args = [arg for path, probe_options in zip(batch, options, strict=True)
                for arg in (*probe_options, "-i", file_arg(path))]
        for number, (path, probe_options) in enumerate(zip(batch, options, strict=True)):
            if probe_options != _WAV_PROBE:  # a PCM WAV is measured from its header
                args += ["-map", f"{number}:a:0?", "-map", f"{number}:V:0?", "-c", "copy",
                         "-f", "framecrc", file_arg(crc[number])]
            if path in survey:
                args += _survey_outputs(f"{number}:V:0?", scratch, number)
        try:
            stderr, copied = run_ffmpeg(args), True
        except FFmpegError as error:  # a file it cannot open, or nothing to copy at all
            stderr, copied = error.stderr, False
        # (index, format, text) for each input described, before the outputs are
        inputs = _OUTPUTS.split(stderr, maxsplit=1)[0]
        sections = _INPUT.split(inputs)[1:]
        measured: dict[Path, MediaInfo] = {}
        unscanned: dict[Path, MediaInfo] = {}
        for number in range(len(sections) // 3):
            path = batch[number]
            info = _media_info(sections[3 * number + 1], sections[3 * number + 2])
            if copied and crc[number].exists():
                text = crc[number].read_text("ascii", "replace")
                info = _with_packets(info, text)
                if path in survey and info.video is not None:
                    info = replace(info, survey=_surveyed(info, text, scratch, number))
                measured[path] = info
            else:
                unscanned[path] = info
    return {**measured, **scan_packets(unscanned)}, stderr


# How the containers that write a header before any packet begin.
_SIGNATURES = (b"\x1a\x45\xdf\xa3", b"OggS", b"RIFF", b"fLaC", b"FLV")


def _unopened(path: Path, why: str) -> MediaInfo | MediaError:
    """A file ffmpeg could not open: a header with no packets after it, or not media.

    ffmpeg reaches the end of a header-only Matroska/WebM or Ogg file while still
    opening it ("End of file"); garbage fails as "Invalid data".
    """
    try:
        with path.open("rb") as media:
            head = media.read(4)
    except OSError:
        head = b""
    if why.endswith("End of file") and head.startswith(_SIGNATURES):
        return MediaInfo(format="unknown", duration=0.0, start=0.0, audio=None, video=None,
                         header_only=True)
    return MediaError(f"{path.name}: not readable media ({why})")


def _probe_options(path: Path) -> tuple[str, ...]:
    """Input options for probing `path`: a WAV file is probed from its first 16 KiB.

    ffmpeg reads up to 5 MB of a PCM WAV looking for compressed audio (S/PDIF,
    MP3) behind the PCM tag: about 35 ms of CPU a file, 10-30 times the probe of
    an MP4, WebM, M4A or MP3 part. Everything `MediaInfo` holds of a WAV is in
    its RIFF header, and rendering decodes it with ffmpeg's own defaults.
    """
    try:
        with path.open("rb") as source:
            head = source.read(12)
    except OSError:
        return ()  # ffmpeg will say what is wrong with it
    return _WAV_PROBE if head[:4] in (b"RIFF", b"RF64") and head[8:] == b"WAVE" else ()


def _media_info(container: str, text: str) -> MediaInfo:
    audio: AudioStream | None = None
    video: VideoStream | None = None
    streams = list(_STREAM.finditer(text))
    for number, stream in enumerate(streams):
        index, kind, description = stream.groups()
        if kind == "Audio" and audio is None:
            audio = replace(_audio_stream(description), index=int(index))
        elif kind == "Video" and video is None and not _COVER.search(description):
            # The lines under a stream's own (metadata, side data) run to the next stream.
            end = streams[number + 1].start() if number + 1 < len(streams) else len(text)
            rotation = _ROTATION.search(text, stream.end(), end)
            video = replace(_video_stream(description, int(index)),
                            rotation=round(float(rotation[1])) % 360 if rotation else 0)
    duration = _DURATION.search(text)
    start = _START.search(text)
    return MediaInfo(
        format=container,
        duration=(int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]))
        if duration else None,
        start=float(start[1]) if start else 0.0,
        audio=audio,
        video=video,
        streams=len(streams),
    )


def _audio_stream(description: str) -> AudioStream:
    codec = _CODEC.match(description)
    rate = _RATE.search(description)
    layout = _CHANNELS.search(description)
    channels = 2
    if layout:
        name = layout.group(1).strip()
        counted = re.match(r"(\d+) channels", name)
        channels = int(counted.group(1)) if counted else _LAYOUT_CHANNELS.get(name, 2)
    return AudioStream(codec=codec.group(1) if codec else "unknown",
                       profile=codec.group(2) if codec else None,
                       sample_rate=int(rate.group(1)) if rate else 48000,
                       channels=channels)


def _rate(text: str) -> Fraction:
    return Fraction(text[:-1]) * 1000 if text.endswith("k") else Fraction(text)


def _video_stream(description: str, index: int) -> VideoStream:
    codec = _CODEC.match(description)
    size = _SIZE.search(description)
    sar = _SAR.search(description)
    rates = {unit: _rate(value) for value, unit in _FPS.findall(description)}
    # pix_fmt opens the field after the codec, e.g. `yuv420p(tv, progressive)`.
    fields = re.split(r",(?![^(]*\))", description)
    pix_fmt = re.match(r"\s*(\w+)", fields[1]) if len(fields) > 1 else None
    if size is None:
        raise MediaError(f"video stream without a frame size: {description}")
    return VideoStream(
        codec=codec.group(1) if codec else "unknown",
        profile=codec.group(2) if codec else None,
        pix_fmt=pix_fmt.group(1) if pix_fmt else None,
        width=int(size.group(1)),
        height=int(size.group(2)),
        sar=Fraction(int(sar.group(1)), int(sar.group(2))) if sar and int(sar.group(2)) else None,
        fps=rates.get("fps"),
        time_base=1 / rates["tbn"] if rates.get("tbn") else None,
        index=index,
    )


# Encoder delay a decoder outputs unless the container states it (an MP4 edit list, a
# LAME tag, Matroska's CodecDelay: the demuxer then marks the first packet with skip
# samples), in samples at the codec's rate: AAC-LC primes 1024; MP3 has LAME's 576
# plus the decoder's 529. HE-AAC (its SBR delay differs by decoder) is not assumed.
USUAL_PRIMING = {"aac": 1024, "mp3": 1105}


def usual_priming(audio: AudioStream) -> int:
    """The codec's usual encoder delay in samples, for a container that does not state it."""
    if audio.codec == "aac" and audio.profile != "LC":
        return 0
    return USUAL_PRIMING.get(audio.codec, 0)
# framecrc side data: "S=1, Skip Samples, 10, 0x..." (ffmpeg 7+) or "S=1, 10, 0x..." (5.1,
# where skip samples are the only 10-byte side data an audio demuxer adds).
_SIDE_DATA = re.compile(r"(?:([A-Za-z][A-Za-z ]*),\s*)?(\d+),\s*0x[0-9a-f]+")


def scan_packets(infos: Mapping[Path, MediaInfo]) -> dict[Path, MediaInfo]:
    """`infos` with each audio and video stream's packets counted and its end measured.

    ffmpeg copies every packet of those streams (no decoding) into framecrc text.
    The end counts from the file's start, as ffmpeg places the file: a container's
    own duration may count from 0 or from a stream's first timestamp, and may be a
    guess from the bit rate (raw ADTS). A first audio packet without skip samples
    means the container does not state the codec's delay: `priming` then assumes
    `USUAL_PRIMING`. A file ffmpeg cannot copy keeps its streams unscanned.
    """
    pcm = {path: measured for path, info in infos.items()
           if (measured := _pcm_measured(info)) is not None}
    scanned = {**infos, **pcm}
    readable = [(path, info) for path, info in infos.items()
                if (info.audio or info.video) and path not in pcm]
    for first in range(0, len(readable), PROBE_GROUP):
        scanned.update(_scan_group(readable[first:first + PROBE_GROUP]))
    return scanned


def _pcm_measured(info: MediaInfo) -> MediaInfo | None:
    """A PCM WAV measured from its header alone, or None for any other file.

    Its samples are one contiguous run with no timestamps to miss, no priming, and
    a length ffmpeg already takes from the data size (or the file's, if cut short):
    a packet scan would read every byte to learn nothing (most of a small WAV part's
    probe). `packets` counts sample frames; ffmpeg states the duration to 10 ms, so
    a WAV under 5 ms counts as empty.
    """
    audio = info.audio
    if (info.format != "wav" or info.video is not None or audio is None
            or not audio.codec.startswith("pcm_") or info.duration is None):
        return None
    return replace(info, audio=replace(audio, packets=round(info.duration * audio.sample_rate),
                                       end=info.duration))


def _scan_group(files: Sequence[tuple[Path, MediaInfo]]) -> dict[Path, MediaInfo]:
    scanned = {}
    with tempfile.TemporaryDirectory(prefix="assembler-scan-") as scratch:
        args = [arg for path, _ in files
                for arg in (*_probe_options(path), "-i", file_arg(path))]
        for number, (_, info) in enumerate(files):
            args += [arg for stream in (info.audio, info.video) if stream
                     for arg in ("-map", f"{number}:{stream.index}")]
            args += ["-c", "copy", "-f", "framecrc", file_arg(Path(scratch) / f"{number}.crc")]
        run_ffmpeg(args, check=False)
        for number, (path, info) in enumerate(files):
            try:
                text = (Path(scratch) / f"{number}.crc").read_text("ascii", "replace")
            except OSError:
                continue
            scanned[path] = _with_packets(info, text)
    return scanned


# framecrc lines: stream, dts, pts, duration, size, crc[, F=flags][, side data]. The
# flags appear only when they are not exactly "key", so a line without them is a keyframe.
_PACKET = re.compile(r"^(\d+),\s*(-?\d+),\s*(-?\d+),\s*(-?\d+),\s*\d+,\s*0x[0-9a-f]+"
                     r"(?:,\s*F=0x([0-9A-Fa-f]+))?(.*)$", re.M)
_CRC_TIME_BASE = re.compile(r"^#tb (\d+): (\d+)/(\d+)", re.M)
_NO_PTS = -(2**63)


def _with_packets(info: MediaInfo, text: str) -> MediaInfo:
    """`info` with what the framecrc `text` of its audio (then video) stream shows."""
    bases = {int(m[1]): Fraction(int(m[2]), int(m[3])) for m in _CRC_TIME_BASE.finditer(text)}
    ticks: dict[int, int] = {}  # each stream's end in its time base
    counts: dict[int, int] = {}
    first: dict[int, str] = {}
    for line in _PACKET.finditer(text):
        stream, pts, duration = int(line[1]), int(line[3]), int(line[4])
        counts[stream] = counts.get(stream, 0) + 1
        first.setdefault(stream, line[6])
        if pts != _NO_PTS:
            end = pts + max(duration, 0)
            ticks[stream] = max(ticks.get(stream, end), end)
    ends = {stream: end * bases[stream] for stream, end in ticks.items() if stream in bases}
    audio, video = info.audio, info.video
    if audio is not None:
        stated = any(name == "Skip Samples" or (not name and size == "10")
                     for name, size in _SIDE_DATA.findall(first.get(0, "").partition("S=")[2]))
        audio = replace(audio, packets=counts.get(0, 0), end=_seconds(ends.get(0)),
                        priming=0 if stated or 0 not in counts
                        else usual_priming(audio))
    if video is not None:
        number = 1 if audio is not None else 0
        video = replace(video, packets=counts.get(number, 0), end=_seconds(ends.get(number)))
    return replace(info, audio=audio, video=video)


def _seconds(time: Fraction | None) -> float | None:
    return None if time is None else float(time)


_KEY, _CORRUPT = 0x1, 0x2  # AV_PKT_FLAG_KEY, AV_PKT_FLAG_CORRUPT
_TRACE_EXTRADATA = re.compile(r"^#extradata (\d+):\s*(\d+),\s*(0x[0-9a-f]+)", re.M)


def read_packets(path: Path, stream: int = 0) -> PacketTrace:
    """Every packet of video stream `stream` without decoding, timestamps exactly as stored.

    `-copyts` keeps the file's own timestamps (the concat demuxer sees the same ones).
    """
    text = ffmpeg_output(["-copyts", "-i", file_arg(path), "-map", f"0:{stream}", "-c", "copy",
                          "-f", "framecrc", "-"]).decode("ascii", "replace")
    return _packet_trace(text, missing=f"{path.name}: no packets in stream {stream}")


def _packet_trace(text: str, *, stream: int = 0, shift: int = 0, missing: str) -> PacketTrace:
    """Stream `stream` of a `framecrc` listing as a trace; `MediaError(missing)` when absent.

    `shift`: microseconds ffmpeg moved the file's timestamps by (without `-copyts`,
    minus the file's start), taken back off to give them as stored.
    """
    time_base = next((Fraction(int(found[2]), int(found[3]))
                      for found in _CRC_TIME_BASE.finditer(text) if int(found[1]) == stream),
                     None)
    if time_base is None:
        raise MediaError(missing)
    ticks = _ticks(shift, time_base)
    packets = [packet[1:5] for packet in _PACKET.findall(text) if int(packet[0]) == stream]
    extradata = _extradata_line(text, stream)
    return PacketTrace(
        time_base=time_base,
        extradata=f"{extradata[0]} bytes, crc {extradata[1]}" if extradata else None,
        dts=tuple(_unshifted(int(packet[0]), ticks) for packet in packets),
        pts=tuple(_unshifted(int(packet[1]), ticks) for packet in packets),
        duration=tuple(int(packet[2]) for packet in packets),
        keyframe=tuple(not packet[3] or bool(int(packet[3], 16) & _KEY) for packet in packets),
        corrupt=any(packet[3] and int(packet[3], 16) & _CORRUPT for packet in packets),
    )


def _extradata_line(text: str, stream: int) -> tuple[int, str] | None:
    """(size, crc) of stream `stream`'s codec extradata in a framecrc listing."""
    return next(((int(found[2]), found[3]) for found in _TRACE_EXTRADATA.finditer(text)
                 if int(found[1]) == stream), None)


def _ticks(microseconds: int, time_base: Fraction) -> int:
    """`microseconds` in `time_base` units, rounded half away from zero as ffmpeg does."""
    exact = Fraction(microseconds, 1_000_000) / time_base
    return int(exact + (Fraction(1, 2) if exact >= 0 else Fraction(-1, 2)))


def _unshifted(timestamp: int, ticks: int) -> int:
    return timestamp if timestamp == _NO_PTS else timestamp - ticks


def _surveyed(info: MediaInfo, text: str, scratch: Path, number: int) -> VideoSurvey | None:
    """The survey of input `number` of a probe, whose framecrc `text` lists audio first."""
    try:
        # Without -copyts ffmpeg moved every timestamp by minus the file's start.
        return _read_survey(text, scratch, number, stream=1 if info.audio else 0,
                            shift=-round(info.start * 1_000_000), missing="the part")
    except (OSError, MediaError):  # not kept: stream copy will read the part itself
        return None


def _survey_outputs(stream: str, scratch: Path, number: int) -> list[str]:
    """ffmpeg outputs keeping, under `scratch`, what `_read_survey` reads of `stream`.

    Both copy packets as they are, with no decoding and whatever the codec: the
    first packet with the codec's extradata in front, and the in-band H.264 SPS
    and PPS NAL units (types 7 and 8) alone. `filter_units` takes the codecs ffmpeg can split
    into units (H.264, H.265, VP8, VP9, AV1, ...); with any other the run fails.
    """
    source = ["-map", stream, "-c", "copy"]
    return [*source, "-frames:v", "1", "-bsf:v", "dump_extra=freq=all", "-f", "data",
            file_arg(scratch / f"{number}.first"),
            *source, "-bsf:v", "filter_units=pass_types=7-8", "-f", "data",
            file_arg(scratch / f"{number}.sets")]


def _read_survey(text: str, scratch: Path, number: int, *, stream: int, shift: int,
                 missing: str) -> VideoSurvey:
    """The survey `_survey_outputs` wrote, its packets stream `stream` of framecrc `text`."""
    packets = _packet_trace(text, stream=stream, shift=shift,
                            missing=f"{missing}: no packets in its video stream")
    extradata = _extradata_line(text, stream)
    first = (scratch / f"{number}.first").read_bytes()
    # dump_extra leaves out the extradata when the packet already starts with it.
    size = extradata[0] if extradata else 0
    return VideoSurvey(packets=packets, extradata=first[:size], first_packet=first[size:],
                       in_band_sets=(scratch / f"{number}.sets").read_bytes())


def survey_video(streams: Sequence[tuple[Path, int]], scratch: Path) -> list[VideoSurvey]:
    """Survey each (file, video stream index) of `streams` with one ffmpeg reading each once.

    For a file `probe_many` could not survey, or a video-only extract of one.
    Raises `FFmpegError` when a file cannot be read or its codec cannot be split
    into units (see `_survey_outputs`).
    """
    args = ["-y", "-copyts"] + [arg for path, _ in streams for arg in ("-i", file_arg(path))]
    for number, (_, stream) in enumerate(streams):
        args += ["-map", f"{number}:{stream}", "-c", "copy", "-f", "framecrc",
                 file_arg(scratch / f"{number}.crc"),
                 *_survey_outputs(f"{number}:{stream}", scratch, number)]
    run_ffmpeg(args)
    return [_read_survey((scratch / f"{number}.crc").read_text("ascii", "replace"), scratch,
                         number, stream=0, shift=0, missing=path.name)
            for number, (path, _) in enumerate(streams)]
