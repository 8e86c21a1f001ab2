"""Reading parts for stream copy: each part read once, many parts per ffmpeg, in parallel.

One ffmpeg start costs more than reading a small part (FIELD-NOTES: three per part
made a 60-part track spend 5 s here), so parts are read in groups, one ffmpeg per
group, groups side by side as far as free `--jobs` slots allow.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from ._copy_layout import PartProbe, stream_blocker, surveyed_h264
from .errors import CopyNotPossibleError
from .ffmpeg_process import FfmpegSlots, file_arg, run_ffmpeg
from .media import MediaInfo, VideoStream, VideoSurvey, survey_video
from .plan import TrackPlan

__all__ = ["extract_argv", "probe_parts", "timescale_args"]

GROUP = 32  # parts one ffmpeg reads at most, as `media.probe_many`
T = TypeVar("T")


def probe_parts(track: TrackPlan, parts: Mapping[str, Path], infos: Mapping[str, MediaInfo],
                scratch: Path, ffmpeg: FfmpegSlots | None = None) -> dict[str, PartProbe]:
    """Probes for `copy_layout`; packets and headers are read only when streams allow copy.

    A part whose probe surveyed it (`MediaInfo.survey`), holding only video in
    MP4 or Matroska, is not read again; others are read from an extract.
    `ffmpeg`: the run's `--jobs` cap; the caller holds one of its slots, and
    groups of the other parts are read side by side on slots free right now
    (one at a time without it).
    """
    probes = {part_id: PartProbe(path=parts[part_id], video=_video(infos[part_id], part_id))
              for part_id in dict.fromkeys(track.parts)}
    if stream_blocker([probe.video for probe in probes.values()]) is not None:
        return probes
    ids = list(probes)
    extracts = {part_id: scratch / f"part-{number}.mp4" for number, part_id in enumerate(ids)
                if _needs_extract(infos[part_id])}
    _spread([functools.partial(run_ffmpeg, extract_argv(
        [(probes[part_id].path, probes[part_id].video, extracts[part_id]) for part_id in group]))
        for group in _groups(list(extracts), ffmpeg)], ffmpeg)
    sources = {part_id: (extracts[part_id], 0) if part_id in extracts
               else (probes[part_id].path, probes[part_id].video.index) for part_id in ids}
    surveys = {part_id: survey for part_id in ids
               if part_id not in extracts and (survey := infos[part_id].survey) is not None}
    groups = _groups([part_id for part_id in ids if part_id not in surveys], ffmpeg)
    surveyed = _spread([functools.partial(_survey_group, [sources[part_id] for part_id in group],
                                          scratch / f"survey-{number}")
                        for number, group in enumerate(groups)], ffmpeg)
    for group, results in zip(groups, surveyed, strict=True):
        surveys.update(zip(group, results, strict=True))
    found: dict[str, PartProbe] = {}
    for part_id in ids:
        packets = surveys[part_id].packets
        headers, parameter_sets, in_band = surveyed_h264(surveys[part_id])
        first_frame = float(min(packets.pts) * packets.time_base) if packets.pts \
            else infos[part_id].start
        found[part_id] = PartProbe(
            path=sources[part_id][0], video=probes[part_id].video, packets=packets,
            headers=headers, parameter_sets=parameter_sets, extradata=surveys[part_id].extradata,
            in_band=in_band,
            start_moved=part_id not in extracts
            and abs(first_frame - infos[part_id].start) > 1e-3)
    return found


# Containers in which the concat demuxer's seek to a part's `inpoint` lands exactly. An
# MPEG-TS seek lands on a later keyframe: a part with B-frames lost its first GOP.
_SEEKS_EXACTLY = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")


def _needs_extract(info: MediaInfo) -> bool:
    """Whether a part is copied from a video-only MP4 extract of it, not from itself.

    The concat demuxer pairs streams by index and ends a file at `outpoint` on any
    stream's packet: other streams would land in the video track or cut it short.
    """
    return info.streams > 1 or info.format not in _SEEKS_EXACTLY


def _video(info: MediaInfo, part_id: str) -> VideoStream:
    if info.video is None:
        raise CopyNotPossibleError(f"part {part_id} has no video stream")
    return info.video


def _survey_group(streams: Sequence[tuple[Path, int]], scratch: Path) -> list[VideoSurvey]:
    scratch.mkdir()
    return survey_video(streams, scratch)


def _groups(ids: Sequence[str], ffmpeg: FfmpegSlots | None) -> list[Sequence[str]]:
    """`ids` in consecutive groups: one per slot when they are few, at most `GROUP` each."""
    slots = ffmpeg.limit if ffmpeg else 1
    size = min(GROUP, math.ceil(len(ids) / slots)) if ids else 1
    return [ids[start:start + size] for start in range(0, len(ids), size)]


def _spread(work: Sequence[Callable[[], T]], ffmpeg: FfmpegSlots | None) -> list[T]:
    """Results of `work`, run side by side on as many spare `ffmpeg` slots as are free."""
    if not work:
        return []
    with ffmpeg.spare(len(work) - 1) if ffmpeg else nullcontext(0) as extra:
        if not extra:
            return [job() for job in work]
        with ThreadPoolExecutor(max_workers=extra + 1, thread_name_prefix="copy-probe") as pool:
            return list(pool.map(lambda job: job(), work))


def extract_argv(items: Sequence[tuple[Path, VideoStream, Path]]) -> list[str]:
    """ffmpeg arguments (no binary) copying each (file, its video, extract)'s video alone
    into an MP4 of the same time scale."""
    args = ["-y"] + [arg for path, _, _ in items for arg in ("-i", file_arg(path))]
    for index, (_, video, extract) in enumerate(items):
        args += ["-map", f"{index}:{video.index}", "-c", "copy",
                 *timescale_args(video.time_base), "-f", "mp4", file_arg(extract)]
    return args


def timescale_args(time_base: Fraction | None) -> list[str]:
    """`-video_track_timescale` for an MP4 output keeping `time_base` (none when unknown)."""
    return ["-video_track_timescale", str(time_base.denominator)] if time_base else []
