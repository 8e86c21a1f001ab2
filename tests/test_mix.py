"""`--mix`: everyone's audio summed, at the loudness asked for, peaks held, silence kept.

Loudness is measured with pyloudnorm (an ITU-R BS.1770-4 meter independent of
the ffmpeg filter the mix is made with), true peak with ffmpeg's `ebur128`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyloudnorm
import pytest

from assembler.deliverables.mix import (
    LIMIT,
    Leveling,
    Loudness,
    leveling,
    measure_argv,
    mix_argv,
    parse_loudness,
)
from assembler.errors import DeliverableError
from assembler.ffmpeg_process import file_arg, run_ffmpeg
from tests.support.media import decode_audio, dominant_frequency, ffmpeg
from tests.support.recording import RECORDING_START, RecordingBuilder
from tests.support.server import serve_directory
from tests.support.stamps import read_bext

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.recording import Manifests

RATE = 48000
DURATION = 4.0
# (participant, name, slot start, slot length, tone Hz, channels, amplitude)
VOICES = [(1, "Ada", 0.5, 1.0, 440.0, 1, 0.5), (2, "Bob", 1.0, 1.5, 660.0, 2, 0.25),
          (3, "Cy", 3.0, 0.5, 880.0, 1, 0.125)]
SILENT = [(0.0, 0.5), (2.5, 3.0), (3.5, 4.0)]  # where every track is silent


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assembler", "run", *args, "--quiet"],
                          capture_output=True, text=True, timeout=300, check=False)


def loudness(samples: np.ndarray) -> float:
    return float(pyloudnorm.Meter(RATE).integrated_loudness(samples.astype(np.float64)))


def true_peak(path: Path) -> float:
    stderr = run_ffmpeg(["-i", file_arg(path), "-af", "ebur128=peak=true:framelog=verbose",
                         "-f", "null", "-"])
    peak = parse_loudness(stderr).true_peak
    assert peak is not None
    return peak


def dbfs(value: float) -> float:
    return float(20 * np.log10(value))


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manifests]:
    build = RecordingBuilder(tmp_path_factory.mktemp("www"))
    for participant, name, start, length, freq, channels, amplitude in VOICES:
        segment = build.audio_part(participant, name, start, length, freq=freq, ext=".wav",
                                   channels=channels)
        ffmpeg(["-y", "-f", "lavfi", "-i",  # the builder's tones are all at 0.5
                f"aevalsrc={'|'.join([f'{amplitude}*sin(2*PI*{freq}*t)'] * channels)}:s={RATE},"
                f"atrim=end_sample={round(length * RATE)}",
                "-c:a", "pcm_s16le", file_arg(build.parts_dir / segment.file)])
    with serve_directory(build.root) as server:
        yield build.write(server.base_url)


def make_mix(manifests: Manifests, out: Path, *options: str) -> tuple[dict[str, Any], Path]:
    done = run_cli("--out", str(out), "--audio-parts", str(manifests.audio_parts),
                   "--duration", str(DURATION), "--mix", *options)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    mixes = [entry for entry in report["outputs"] if entry["kind"] == "mix"]
    assert len(mixes) == 1, report["outputs"]
    return mixes[0], out / mixes[0]["path"]


@pytest.fixture(scope="module")
def default_mix(voices: Manifests, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[dict[str, Any], Path]:
    return make_mix(voices, tmp_path_factory.mktemp("out"))


def test_mix_is_the_timeline_long_and_stereo_when_a_track_is(
        default_mix: tuple[dict[str, Any], Path]) -> None:
    entry, path = default_mix
    assert entry["path"] == "mix.flac"
    assert entry["format"] == "flac"
    samples = decode_audio(path, rate=None)
    assert samples.shape == (round(DURATION * RATE), 2)


def test_mix_reaches_the_default_loudness_with_peaks_under_the_ceiling(
        default_mix: tuple[dict[str, Any], Path]) -> None:
    _, path = default_mix
    samples = decode_audio(path)
    assert abs(loudness(samples) - -16.0) <= 1.0
    assert dbfs(np.abs(samples).max()) <= -1.0
    assert true_peak(path) <= -1.0


def test_silence_stays_digital_silence_and_each_tone_is_at_its_slot(
        default_mix: tuple[dict[str, Any], Path]) -> None:
    _, path = default_mix
    samples = decode_audio(path)
    for start, end in SILENT:
        assert not samples[round(start * RATE):round(end * RATE)].any(), (start, end)
    for _, _, start, length, freq, _, _ in VOICES:
        # Alone in its slot (away from the overlap), each tone is what sounds there.
        alone = samples[round((start + length - 0.3) * RATE):round((start + length) * RATE)]
        assert dominant_frequency(alone, RATE) == pytest.approx(freq, abs=3)
        # It starts on its slot's first sample: silence, or only the others, before.
        first = round(start * RATE)
        assert np.abs(samples[first:first + 48]).max() > 0


def test_tracks_are_summed_as_they_are(default_mix: tuple[dict[str, Any], Path]) -> None:
    """One gain for everyone: the levels of the voices keep their ratios (no 1/N, no
    per-track levelling); a mono voice is spread -3 dB over both channels."""
    _, path = default_mix
    samples = decode_audio(path)

    def peak(start: float, end: float) -> float:
        return float(np.abs(samples[round(start * RATE):round(end * RATE)]).max())

    ada, bob, cy = peak(0.6, 0.95), peak(1.6, 2.45), peak(3.05, 3.45)
    assert ada / cy == pytest.approx(0.5 / 0.125, rel=0.01)
    assert bob / cy == pytest.approx(0.25 / (0.125 * np.sqrt(0.5)), rel=0.01)
    # Where Ada and Bob overlap, the mix is their sum: powers add for unrelated tones.
    both = samples[round(1.1 * RATE):round(1.45 * RATE)]
    power = float(np.mean(both ** 2))
    assert power == pytest.approx((ada ** 2 + bob ** 2) / 2, rel=0.02)


def test_broadcast_mix_at_minus_23_is_a_broadcast_wav(
        voices: Manifests, tmp_path: Path) -> None:
    entry, path = make_mix(voices, tmp_path / "out", "--loudness", "-23",
                           "--audio-format", "wav")
    assert entry["path"] == "mix.wav"
    samples = decode_audio(path)
    assert len(samples) == round(DURATION * RATE)
    assert abs(loudness(samples) - -23.0) <= 1.0
    assert not samples[:round(0.5 * RATE)].any()
    bext = read_bext(path)
    assert bext.time_reference == 14 * 3600 * RATE  # RECORDING_START is 14:00:00 UTC
    assert (bext.origination_date, bext.origination_time) == (
        RECORDING_START.strftime("%Y-%m-%d"), "14:00:00")
    assert bext.description == "mix of Ada, Bob, Cy"
    assert bext.originator == "assembler"


def test_loud_peaks_are_limited_and_the_loudness_still_reached(tmp_path: Path) -> None:
    """A quiet voice with short loud bursts: the gain to -16 LUFS would lift them past
    0 dBFS, and holding them down costs more than 0.5 LU (one pass more, gain corrected)."""
    build = RecordingBuilder(tmp_path / "www")
    segment = build.audio_part(1, "Bursty", 0.0, 3.0, ext=".wav")
    bursts = "(1+7*lt(mod(t\\,0.7)\\,0.005))"
    ffmpeg(["-y", "-f", "lavfi", "-i",
            f"aevalsrc=0.05*sin(2*PI*300*t)*{bursts}:s={RATE},atrim=end_sample={3 * RATE}",
            "-c:a", "pcm_s16le", file_arg(build.parts_dir / segment.file)])
    with serve_directory(build.root) as server:
        manifests = build.write(server.base_url)
        _, path = make_mix(manifests, tmp_path / "out")
    samples = decode_audio(path)
    assert len(samples) == round(DURATION * RATE)
    assert dbfs(np.abs(samples).max()) <= -1.0
    assert true_peak(path) <= -1.0
    assert abs(loudness(samples) - -16.0) <= 0.5  # 0.7 LU short before the correction


# --- pure: measurement, decision, argv ------------------------------------------------------

SUMMARY = """[Parsed_ebur128_1 @ 0x55] Summary:

  Integrated loudness:
    I:         -26.6 LUFS
    Threshold: -36.7 LUFS

  Loudness range:
    LRA:         8.5 LU
    Threshold: -47.1 LUFS
    LRA low:   -32.5 LUFS
    LRA high:  -24.0 LUFS

  True peak:
    Peak:       -6.8 dBFS
"""


def test_parse_loudness_reads_the_summary() -> None:
    assert parse_loudness(SUMMARY) == Loudness(integrated=-26.6, true_peak=-6.8)
    silent = SUMMARY.replace("-26.6", "-70.0").replace("-6.8", "-inf")
    assert parse_loudness(silent) == Loudness(integrated=None, true_peak=None)
    with pytest.raises(DeliverableError, match="no summary"):
        parse_loudness("Conversion failed!")


@pytest.mark.parametrize(("measured", "target", "expected"), [
    (Loudness(-26.6, -12.0), -16.0, Leveling(gain=10.6, limit=None)),
    (Loudness(-26.6, -12.0), -23.0, Leveling(gain=3.6, limit=None)),
    # 10.6 dB would put the peak at -1.0 dBTP: too close for a 0.1 dB printout.
    (Loudness(-26.6, -11.6), -16.0, Leveling(gain=10.6, limit=LIMIT)),
    (Loudness(-30.0, -3.0), -16.0, Leveling(gain=14.0, limit=LIMIT)),
    (Loudness(None, None), -16.0, Leveling(gain=0.0, limit=None)),
], ids=["linear", "broadcast", "at-the-ceiling", "limited", "silent"])
def test_leveling(measured: Loudness, target: float, expected: Leveling) -> None:
    assert leveling(measured, target) == expected


def test_measure_argv_sums_without_scaling() -> None:
    argv = measure_argv([Path("/o/a.flac"), Path("/o/b.flac")], "stereo")
    assert argv[:2] == ["-y", "-nostats"]
    assert argv[argv.index("-filter_complex") + 1] == (
        "[0:a]aformat=channel_layouts=stereo:sample_fmts=fltp:sample_rates=48000[s0];"
        "[1:a]aformat=channel_layouts=stereo:sample_fmts=fltp:sample_rates=48000[s1];"
        "[s0][s1]amix=duration=longest:inputs=2:normalize=0[s2];"
        "[s2]ebur128=framelog=verbose:peak=true[s3]")
    assert argv[-4:] == ["[s3]", "-f", "null", "-"]


def test_mix_argv_limits_only_when_asked_and_stamps_a_wav() -> None:
    paths = [Path("/o/a.flac")]
    linear = mix_argv(paths, "mono", Leveling(gain=3.5, limit=None), Path("/o/mix.flac"),
                      "flac", "mix of Ada", None)
    graph = linear[linear.index("-filter_complex") + 1]
    assert graph.endswith("amix=duration=longest:inputs=1:normalize=0[s1];[s1]volume=3.50dB[s2]")
    assert "-write_bext" not in linear
    limited = mix_argv(paths, "mono", Leveling(gain=12.0, limit=-1.5), Path("/o/mix.wav"),
                       "wav", "mix of Ada", RECORDING_START)
    graph = limited[limited.index("-filter_complex") + 1]
    assert graph.endswith("[s2]alimiter=attack=5.0:latency=1:level=0:limit=0.841395:"
                          "release=50.0[s3];[s3]ebur128=framelog=verbose[s4]")
    assert limited[-1] == "file:/o/mix.wav"
    assert limited[limited.index("-write_bext") + 1] == "1"
    assert f"time_reference={14 * 3600 * RATE}" in limited
