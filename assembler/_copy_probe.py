"""Reading parts for stream copy: packets, first access unit and parameter sets."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

from ._copy_layout import PartProbe, parse_h264_headers, stream_blocker
from .errors import CopyNotPossibleError
from .media import (
    MediaInfo,
    VideoStream,
    file_arg,
    first_access_unit,
    read_packets,
    run_ffmpeg,
    sequence_parameter_sets,
)
from .plan import TrackPlan

__all__ = ["probe_parts", "timescale_args"]


def probe_parts(track: TrackPlan, parts: Mapping[str, Path], infos: Mapping[str, MediaInfo],
                scratch: Path) -> dict[str, PartProbe]:
    """Probes for `copy_layout`; packets and headers are read only when streams allow copy."""
    probes = {part_id: PartProbe(path=parts[part_id], video=_video(infos[part_id], part_id))
              for part_id in dict.fromkeys(track.parts)}
    if stream_blocker([probe.video for probe in probes.values()]) is not None:
        return probes
    return {part_id: _deep_probe(probe, infos[part_id], scratch / f"part-{number}.mp4")
            for number, (part_id, probe) in enumerate(probes.items())}


def _video(info: MediaInfo, part_id: str) -> VideoStream:
    if info.video is None:
        raise CopyNotPossibleError(f"part {part_id} has no video stream")
    return info.video


def _deep_probe(probe: PartProbe, info: MediaInfo, extract: Path) -> PartProbe:
    path, stream = probe.path, probe.video.index
    if info.streams > 1:
        # The concat demuxer pairs streams by index and ends a file at `outpoint` on any
        # stream's packet: other streams would land in the video track or cut it short.
        path = extract
        run_ffmpeg(["-y", "-i", file_arg(probe.path), "-map", f"0:{stream}", "-c", "copy",
                    *timescale_args(probe.video.time_base), "-f", "mp4", file_arg(path)])
        stream = 0
    packets = read_packets(path, stream)
    first_frame = float(min(packets.pts) * packets.time_base) if packets.pts else info.start
    return PartProbe(path=path, video=probe.video, packets=packets,
                     headers=parse_h264_headers(first_access_unit(path, stream)),
                     parameter_sets=len(sequence_parameter_sets(path, stream)),
                     start_moved=path == probe.path and abs(first_frame - info.start) > 1e-3)


def timescale_args(time_base: Fraction | None) -> list[str]:
    """`-video_track_timescale` for an MP4 output keeping `time_base` (none when unknown)."""
    return ["-video_track_timescale", str(time_base.denominator)] if time_base else []
