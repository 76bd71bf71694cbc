"""Tests for audiomodels.audio: decoding, validation, downmix and resampling."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from audiomodels import audio
from audiomodels.audio import (
    AudioError,
    audio_duration,
    decode_audio,
    decode_raw,
    encode_pcm16,
    load_audio,
    prepare_waveform,
)
from audiomodels.resampling import StreamingResampler

RATE = 16000


def sweep(rate: int = RATE, seconds: float = 1.0, f0: float = 100.0, f1: float = 4000.0) -> np.ndarray:
    """Linear chirp f0 -> f1 at amplitude 0.5: exercises every band a speech model cares about."""
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * seconds) * t**2))).astype(np.float32)


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    shape = (n,) if channels == 1 else (n, channels)
    return np.random.default_rng(seed).uniform(-0.5, 0.5, shape).astype(np.float32)


def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def as_source(data: bytes, kind: str, tmp_path: Path, ext: str) -> str | Path | bytes:
    if kind == "bytes":
        return data
    path = tmp_path / f"audio.{ext}"
    path.write_bytes(data)
    return str(path) if kind == "str" else path


# (format, subtype, extension, max abs error after round trip; None = lossy)
LOSSLESS_TOL = {
    ("WAV", "PCM_16"): 1 / 32768,
    ("WAV", "PCM_24"): 1 / 2**23,
    ("WAV", "PCM_32"): 1e-7,  # float32 output resolution near 0.5, not the 32-bit PCM step
    ("WAV", "FLOAT"): 0.0,
    ("FLAC", "PCM_16"): 1 / 32768,
    ("FLAC", "PCM_24"): 1 / 2**23,
}
EXT = {"WAV": "wav", "FLAC": "flac", "OGG": "ogg"}


# --- containers ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["path", "str", "bytes"])
@pytest.mark.parametrize(("fmt", "subtype"), list(LOSSLESS_TOL))
def test_lossless_round_trip(tmp_path, kind, fmt, subtype):
    original = sweep()
    source = as_source(encode(original, RATE, fmt, subtype), kind, tmp_path, EXT[fmt])

    samples, rate = decode_audio(source)

    assert rate == RATE
    assert samples.dtype == np.float32 and samples.shape == original.shape
    np.testing.assert_allclose(samples, original, rtol=0, atol=LOSSLESS_TOL[(fmt, subtype)])
    assert audio_duration(source) == pytest.approx(1.0)


LOSSY = [("OGG", "VORBIS", "ogg"), ("OGG", "OPUS", "opus"), ("MP3", "MPEG_LAYER_III", "mp3")]


@pytest.mark.parametrize("kind", ["path", "bytes"])
@pytest.mark.parametrize(("fmt", "subtype", "ext"), LOSSY)
def test_lossy_round_trip(tmp_path, kind, fmt, subtype, ext):
    original = sweep()
    source = as_source(encode(original, RATE, fmt, subtype), kind, tmp_path, ext)

    samples, rate = decode_audio(source)

    assert rate == RATE
    assert samples.dtype == np.float32 and samples.shape == original.shape
    # lossy: the spectrum and level kept, not the phase (Opus's SILK upsampler is not normative:
    # libopus at 48 kHz lags its 16 kHz output by ~40 us, which alone takes a sweep's waveform
    # correlation to 0.86). FFmpeg's own Opus decoder failed this: 0.89, and up to 2.8x the level.
    assert np.corrcoef(magnitudes(samples).ravel(), magnitudes(original).ravel())[0, 1] > 0.99
    level = frame_rms(samples) / frame_rms(original)
    assert 0.85 < level.min() and level.max() < 1.15
    assert audio_duration(source) == pytest.approx(1.0)


def magnitudes(samples: np.ndarray) -> np.ndarray:
    """Short-time magnitude spectra: 25 ms Hann windows every 10 ms at :data:`RATE`."""
    frames = np.lib.stride_tricks.sliding_window_view(samples, 400)[::160] * np.hanning(400)
    return np.abs(np.fft.rfft(frames, axis=1))


def frame_rms(samples: np.ndarray) -> np.ndarray:
    """RMS of each whole 20 ms frame."""
    frames = samples[: len(samples) // 320 * 320].reshape(-1, 320)
    return np.sqrt(np.mean(frames**2, axis=1))


@pytest.mark.parametrize(("fmt", "subtype", "ext"), LOSSY)
def test_lossy_decoders_keep_time(fmt, subtype, ext):
    """No codec delay or padding reaches the samples: a click stays at its sample (times stay true)."""
    clicks = np.zeros(3 * RATE, dtype=np.float32)
    clicks[RATE] = 0.9
    samples, _ = decode_audio(encode(clicks, RATE, fmt, subtype))
    assert samples.shape == clicks.shape
    assert abs(int(np.argmax(np.abs(samples))) - RATE) <= 1


def test_stereo_file_decodes_as_samples_by_channels_and_loads_as_mean(tmp_path):
    stereo = noise(8000, channels=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, RATE, subtype="FLOAT")

    samples, _ = decode_audio(path)
    assert samples.shape == (8000, 2)
    np.testing.assert_array_equal(samples, stereo)

    mono = load_audio(path, target_rate=RATE)
    np.testing.assert_allclose(mono, stereo.mean(axis=1), atol=1e-7)


def test_load_audio_resamples_to_target_rate(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, tone(440, 44100), 44100, subtype="PCM_16")

    out = load_audio(path)

    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert out.shape == (16000,)
    assert abs(peak_hz(out, 16000) - 440) <= 1


# --- prepare_waveform ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_to_16k_keeps_length_and_pitch(rate):
    x = tone(440, rate)
    x = np.concatenate([x, x[:37]])  # a length that does not divide evenly

    out = prepare_waveform(x, rate)

    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert len(out) == math.ceil(len(x) * 16000 / rate)
    assert abs(peak_hz(out, 16000) - 440) <= 1
    rms_in, rms_out = np.sqrt(np.mean(x**2)), np.sqrt(np.mean(out**2))
    assert rms_out == pytest.approx(rms_in, rel=0.02)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_is_torchaudio_functional_resample_bit_for_bit(rate):
    """The cached kernel (resampling.resampler) changes the cost, not the samples."""
    samples = noise(rate)
    expected = torchaudio.functional.resample(torch.from_numpy(samples), rate, RATE).numpy()
    assert np.array_equal(prepare_waveform(samples, rate), expected)
    assert np.array_equal(prepare_waveform(samples, rate), expected)  # the second call uses the cached kernel


def test_downsampling_removes_content_above_new_nyquist():
    # 12 kHz cannot exist at 16 kHz; without the anti-alias filter it would fold to 4 kHz.
    out = prepare_waveform(tone(12000, 48000), 48000)
    assert np.sqrt(np.mean(out**2)) < 0.01


def test_resampling_is_deterministic():
    x = noise(44100)
    first = prepare_waveform(x, 44100)
    second = prepare_waveform(x.copy(), 44100)
    np.testing.assert_array_equal(first, second)


def test_same_rate_passes_samples_through_unchanged():
    x = noise(16000).astype(np.float64)
    out = prepare_waveform(x, RATE)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_downmix_is_mean_of_channels():
    x = noise(16000, channels=3)
    np.testing.assert_allclose(prepare_waveform(x, RATE), x.mean(axis=1), atol=1e-7)
    np.testing.assert_array_equal(prepare_waveform(x[:, :1], RATE), x[:, 0])


def test_int16_is_scaled_to_unit_range():
    x = np.tile(np.array([-32768, 0, 16384, 32767], dtype=np.int16), 400)
    out = prepare_waveform(x, RATE)
    np.testing.assert_array_equal(out[:4], [-1.0, 0.0, 0.5, 32767 / 32768])


def test_torch_tensor_uses_the_same_layout_as_numpy():
    x = noise(16000, channels=2)
    out = prepare_waveform(torch.from_numpy(x).requires_grad_(), 44100)
    np.testing.assert_array_equal(out, prepare_waveform(x, 44100))


def test_non_contiguous_input_gives_contiguous_output():
    x = noise(32000, channels=2)[::2]
    out = prepare_waveform(x, RATE)
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out, x.mean(axis=1), atol=1e-7)


# --- raw PCM ------------------------------------------------------------------------------


def test_decode_raw_pcm16_little_endian():
    values = np.array([-32768, -1, 0, 1, 32767], dtype="<i2")
    out = decode_raw(values.tobytes(), "pcm16", RATE)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values / 32768)


def test_encode_pcm16_clips_and_rounds_to_the_nearest_step():
    samples = np.array([-2.0, -1.0, -0.25, -0.6 / 32768, 0.0, 0.4 / 32768, 0.5, 1.0, 3.0], dtype=np.float32)
    data = encode_pcm16(samples)
    assert len(data) == 2 * len(samples)
    assert np.frombuffer(data, "<i2").tolist() == [-32768, -32768, -8192, -1, 0, 0, 16384, 32767, 32767]


def test_encode_pcm16_inverts_decode_raw():
    grid = np.arange(-32768, 32768, dtype="<i2")
    assert encode_pcm16(decode_raw(grid.tobytes(), "pcm16", RATE)) == grid.tobytes()
    quiet = noise(4000) * 1e-3  # about -60 dBFS: a few steps either side of zero
    error = decode_raw(encode_pcm16(quiet), "pcm16", RATE) - quiet
    assert np.abs(error).max() <= 0.5 / 32768 + 1e-9
    assert abs(float(error.mean())) < 0.05 / 32768  # rounding, unlike truncation, adds no DC offset


def test_decode_raw_float32_little_endian():
    values = noise(1000).astype("<f4")
    out = decode_raw(values.tobytes(), "float32", RATE)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values)


def test_decode_raw_then_prepare():
    x = tone(440, 8000)
    pcm = np.round(x * 32767).astype("<i2").tobytes()
    out = prepare_waveform(decode_raw(pcm, "pcm16", 8000), 8000)
    assert len(out) == 16000 and abs(peak_hz(out, 16000) - 440) <= 1


@pytest.mark.parametrize(
    ("data", "encoding", "match"),
    [
        (b"\x00" * 1001, "pcm16", "whole number of 2-byte samples, got 1001 bytes"),
        (b"\x00" * 1002, "float32", "whole number of 4-byte samples, got 1002 bytes"),
        (b"\x00" * 1000, "mulaw", "unknown raw encoding 'mulaw'; supported: pcm16, float32"),
    ],
)
def test_decode_raw_rejects_bad_input(data, encoding, match):
    with pytest.raises(AudioError, match=re.escape(match)):
        decode_raw(data, encoding, RATE)


def test_decode_raw_rejects_bad_rate():
    with pytest.raises(AudioError, match="sample rate 4000 Hz is outside"):
        decode_raw(b"\x00\x00", "pcm16", 4000)


def test_empty_raw_stream_is_rejected_by_prepare():
    samples = decode_raw(b"", "pcm16", RATE)
    with pytest.raises(AudioError, match=re.escape("audio is empty (0 samples)")):
        prepare_waveform(samples, RATE)


# --- validation errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "rate", "kwargs", "match"),
    [
        (noise(4000), 4000, {}, "sample rate 4000 Hz is outside the supported 8000–96000 Hz"),
        (noise(192000), 192000, {}, "sample rate 192000 Hz is outside the supported 8000–96000 Hz"),
        (noise(16000), 16000.0, {}, "sample rate must be a whole number of Hz, got 16000.0"),
        (np.zeros(0, np.float32), RATE, {}, "audio is empty (0 samples)"),
        (np.zeros((0, 2), np.float32), RATE, {}, "audio is empty (0 samples)"),
        (np.full(16000, np.nan, np.float32), RATE, {}, "audio contains NaN or Inf samples"),
        (np.r_[noise(15999), np.inf].astype(np.float32), RATE, {}, "audio contains NaN or Inf"),
        (noise(160), RATE, {}, "audio is 0.010 s long, shorter than the 0.05 s minimum"),
        (noise(16000), RATE, {"min_duration_s": 2.0}, "shorter than the 2.0 s minimum"),
        (noise(32000), RATE, {"max_duration_s": 1.0}, "audio is 2.0 s long, longer than the 1.0 s limit"),
        (noise(16000).reshape(2, 8000), RATE, {}, "more channels than samples"),
        (np.zeros((10, 10, 10), np.float32), RATE, {}, "shape (num_samples,) or (num_samples, channels)"),
        (np.zeros(16000, np.int32), RATE, {}, "unsupported sample type int32"),
    ],
)
def test_prepare_waveform_rejects(samples, rate, kwargs, match):
    with pytest.raises(AudioError, match=re.escape(match)):
        prepare_waveform(samples, rate, **kwargs)


def test_torchaudio_channels_first_layout_is_rejected_not_guessed():
    with pytest.raises(AudioError, match="transpose"):
        prepare_waveform(torch.zeros(2, 16000), RATE)


def test_load_audio_rejects_long_file_from_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, noise(3 * RATE), RATE)

    def no_decoding(*args, **kwargs):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(AudioError, match=re.escape("audio is 3.0 s long, longer than the 2.5 s limit")):
        load_audio(path, max_duration_s=2.5)


def test_load_audio_rejects_short_file(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, noise(100), RATE)
    with pytest.raises(AudioError, match="shorter than the 0.05 s minimum"):
        load_audio(path)


def test_load_audio_rejects_unsupported_rate(tmp_path):
    path = tmp_path / "slow.wav"
    sf.write(path, noise(4000), 4000)
    with pytest.raises(AudioError, match="sample rate 4000 Hz is outside"):
        load_audio(path)


# --- long files: decoded block by block ---------------------------------------------------


@pytest.fixture
def small_blocks(monkeypatch):
    """Files over 1 s take the long-file path, in blocks of 0.37 s (a fraction of a resampler block)."""
    monkeypatch.setattr(audio, "WHOLE_DECODE_LIMIT_S", 1.0)
    monkeypatch.setattr(audio, "_BLOCK_S", 0.37)


@pytest.mark.parametrize(
    ("rate", "channels", "fmt", "subtype"),
    [(16000, 1, "WAV", "PCM_16"), (44100, 2, "FLAC", "PCM_16"), (22050, 1, "MP3", "MPEG_LAYER_III"), (8000, 2, "WAV", "FLOAT")],
)
def test_long_files_load_block_by_block_as_they_would_whole(tmp_path, small_blocks, rate, channels, fmt, subtype):
    path = tmp_path / f"long.{fmt.lower()}"
    sf.write(path, noise(round(2.5 * rate), channels), rate, format=fmt, subtype=subtype)
    decoded, _ = decode_audio(path)
    whole = prepare_waveform(decoded, rate)

    blocks = load_audio(path)

    assert blocks.dtype == np.float32 and blocks.shape == whole.shape
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=0 if rate == RATE else 1e-4)


def test_long_files_are_checked_block_by_block(tmp_path, small_blocks):
    path = tmp_path / "long.wav"
    samples = noise(3 * RATE)
    samples[2 * RATE + 5] = np.nan  # in the sixth block
    sf.write(path, samples, RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or Inf"):
        load_audio(path)
    sf.write(path, noise(3 * RATE), RATE)
    with pytest.raises(AudioError, match="longer than the 2.5 s limit"):
        load_audio(path, max_duration_s=2.5)
    with pytest.raises(AudioError, match="shorter than the 4.0 s minimum"):
        load_audio(path, min_duration_s=4.0)
    sf.write(path, noise(3 * RATE), 4000)
    with pytest.raises(AudioError, match="sample rate 4000 Hz is outside"):
        load_audio(path)


# --- unreadable input ---------------------------------------------------------------------

ALL_READERS = [decode_audio, load_audio, audio_duration]


@pytest.mark.parametrize("reader", ALL_READERS)
def test_missing_file(tmp_path, reader):
    with pytest.raises(AudioError, match="does not exist"):
        reader(tmp_path / "nope.wav")


@pytest.mark.parametrize("reader", ALL_READERS)
def test_directory(tmp_path, reader):
    with pytest.raises(AudioError, match="is a directory, not an audio file"):
        reader(tmp_path)


@pytest.mark.parametrize("reader", ALL_READERS)
def test_random_garbage_bytes(reader):
    garbage = np.random.default_rng(0).bytes(4096)
    with pytest.raises(AudioError, match="could not decode audio: unsupported or corrupt container"):
        reader(garbage)


def test_garbage_file_names_the_file(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(AudioError, match=r"could not decode audio file '.*garbage\.wav': unsupported"):
        decode_audio(path)


@pytest.mark.parametrize("source", [b"", "empty_file"])
def test_empty_input(tmp_path, source):
    if source == "empty_file":
        source = tmp_path / "empty.wav"
        source.touch()
        match = "could not decode audio file"
    else:
        match = re.escape("audio data is empty (0 bytes)")
    with pytest.raises(AudioError, match=match):
        decode_audio(source)


@pytest.mark.parametrize("cut", [4, 12, 30, 40])
def test_wav_truncated_in_header(cut):
    data = encode(sweep(), RATE, "WAV", "PCM_16")
    with pytest.raises(AudioError, match="could not decode audio: unsupported or corrupt container"):
        decode_audio(data[:cut])


def test_wav_with_header_but_no_data_is_empty():
    data = encode(sweep(), RATE, "WAV", "PCM_16")[:44]
    samples, _ = decode_audio(data)
    assert samples.shape == (0,)
    with pytest.raises(AudioError, match=re.escape("audio is empty (0 samples)")):
        load_audio(data)


def test_wav_truncated_in_data_returns_the_readable_prefix():
    original = sweep()
    data = encode(original, RATE, "WAV", "PCM_16")
    assert len(data) == 44 + 2 * len(original)  # canonical header, so the cut below is mid-data
    truncated = data[: 44 + 2 * 5000 + 1]  # ends half-way through sample 5000

    samples, rate = decode_audio(truncated)

    assert rate == RATE and samples.shape == (5000,)
    np.testing.assert_allclose(samples, original[:5000], atol=1 / 32768)
    assert audio_duration(truncated) == pytest.approx(5000 / RATE)


@pytest.mark.parametrize(("fmt", "subtype"), [("MP3", "MPEG_LAYER_III"), ("OGG", "OPUS")])
def test_compressed_stream_cut_mid_way_decodes_its_readable_prefix(fmt, subtype):
    original = sweep(seconds=3.0)
    data = encode(original, RATE, fmt, subtype)

    samples, rate = decode_audio(data[: len(data) // 2])

    assert rate == RATE
    assert 0.25 * len(original) < len(samples) < 0.7 * len(original)  # Ogg: up to its last whole page
    head = len(samples) // 2
    assert np.corrcoef(samples[:head], original[:head])[0, 1] > 0.99


@pytest.mark.parametrize(("fmt", "subtype"), [("MP3", "MPEG_LAYER_III"), ("OGG", "OPUS")])
def test_compressed_stream_cut_in_its_header_is_rejected(fmt, subtype):
    data = encode(sweep(), RATE, fmt, subtype)
    with pytest.raises(AudioError, match="could not decode audio: unsupported or corrupt container"):
        decode_audio(data[:30])


def test_flac_truncated_mid_stream_is_rejected():
    data = encode(sweep(), RATE, "FLAC", "PCM_16")
    with pytest.raises(AudioError, match="could not decode audio: unsupported or corrupt container"):
        decode_audio(data[: len(data) // 2])


def test_unsupported_container_is_rejected():
    data = encode(sweep(), RATE, "AIFF", "PCM_16")
    with pytest.raises(AudioError, match="container AIFF .* is not supported; supported: WAV"):
        decode_audio(data)


def test_wrong_source_type_is_a_programming_error():
    with pytest.raises(TypeError):
        decode_audio(12345)  # type: ignore[arg-type]


def test_audio_error_is_a_value_error():
    assert issubclass(AudioError, ValueError)


# --- resampling piece by piece ----------------------------------------------------------


@pytest.mark.parametrize("orig_rate", [8000, 22050, 44100, 48000])
def test_streaming_resampler_equals_resampling_the_whole_signal(orig_rate: int) -> None:
    rng = np.random.default_rng(orig_rate)
    signal = rng.standard_normal(orig_rate + 777).astype(np.float32) * 0.3
    whole = torchaudio.functional.resample(torch.from_numpy(signal), orig_rate, 16000).numpy()
    resampler = StreamingResampler(orig_rate, 16000)
    pieces, start = [], 0
    while start < len(signal):
        size = int(rng.integers(1, 3000))
        pieces.append(resampler.accept(signal[start : start + size]))
        start += size
    pieces.append(resampler.finish())
    streamed = np.concatenate(pieces)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() < 1e-4
