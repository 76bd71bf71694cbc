"""Audio in: decode and validate once, so every caller gets the same thing or the same error.

Training, the gRPC server and the batch job all go through :func:`load_audio` (containers) or
:func:`decode_raw` + :func:`prepare_waveform` (raw PCM streams). The result is always a
contiguous float32 mono array at the model rate; anything wrong with the *input* raises
:class:`AudioError` with a message that names the problem and what is accepted, so the server
can hand it to the client unchanged. Wrong argument *types* are programming errors and raise
``TypeError`` instead.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 96000

# libsndfile reads many more containers; only these are tested and promised to clients.
# WAVEX (WAVE_FORMAT_EXTENSIBLE) and RF64 are what libsndfile reports for some ordinary WAVs.
# MP3 (Common Voice's format) and Ogg Opus (browsers' and phones' recordings) need the libsndfile
# >= 1.1 that soundfile's wheels bundle; its MP3 decoder is gapless, so times are not shifted.
SUPPORTED_CONTAINERS = ("WAV", "WAVEX", "RF64", "FLAC", "MP3", "OGG")
_SUPPORTED_TEXT = "WAV (PCM 16/24/32-bit or float), FLAC, MP3, Ogg (Vorbis or Opus)"

_RAW_DTYPES = {"pcm16": np.dtype("<i2"), "float32": np.dtype("<f4")}

Source = str | os.PathLike | bytes


class AudioError(ValueError):
    """Bad audio input; the message is meant for the person who sent the audio."""


def decode_audio(source: Source) -> tuple[np.ndarray, int]:
    """Decode a container file (path or in-memory bytes) without resampling or validation.

    Returns ``(samples, sample_rate)`` with float32 samples shaped ``(num_samples,)`` for mono
    or ``(num_samples, channels)`` otherwise, as soundfile gives them.

    A file truncated inside its header is rejected. A WAV truncated inside its data section is
    *accepted*: libsndfile clamps the header's declared length to the bytes present, so the
    readable prefix is returned (and :func:`audio_duration` reports that same shorter length).
    This matches how most tools treat interrupted recordings; the duration limits still apply
    afterwards. A cut MP3 file also decodes to its readable prefix (its header may still state
    the whole length), a cut Ogg file to its last whole page or, where the cut leaves the stream
    malformed, not at all; FLAC cut mid-frame fails to decode and raises.
    """
    with _open(source) as snd:
        return snd.read(dtype="float32", always_2d=False), snd.samplerate


def decode_raw(data: bytes, encoding: str, sample_rate: int) -> np.ndarray:
    """Decode headerless little-endian samples (``"pcm16"`` or ``"float32"``) to float32 mono.

    pcm16 is scaled to [-1, 1). ``sample_rate`` is validated here so a bad request fails before
    any further work; pass the same rate on to :func:`prepare_waveform`.
    """
    if encoding not in _RAW_DTYPES:
        raise AudioError(f"unknown raw encoding {encoding!r}; supported: {', '.join(_RAW_DTYPES)}")
    _check_rate(sample_rate)
    dtype = _RAW_DTYPES[encoding]
    if len(data) % dtype.itemsize:
        raise AudioError(
            f"raw {encoding} audio must be a whole number of {dtype.itemsize}-byte samples, "
            f"got {len(data)} bytes"
        )
    samples = np.frombuffer(data, dtype=dtype)
    if encoding == "pcm16":
        return samples.astype(np.float32) / np.float32(32768)
    return samples.astype(np.float32)


def prepare_waveform(
    samples: np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    target_rate: int = 16000,
    max_duration_s: float | None = None,
    min_duration_s: float = 0.05,
) -> np.ndarray:
    """Validate, downmix (mean of channels) and resample to ``target_rate``.

    Accepted layout, for numpy arrays and torch tensors alike: ``(num_samples,)`` or
    ``(num_samples, channels)`` -- the soundfile layout. torchaudio's ``(channels, num_samples)``
    must be transposed by the caller; a 2-D input with more channels than samples is rejected
    rather than guessed at. Accepted dtypes: float32/float64 (nominally in [-1, 1]) and int16
    (scaled by 1/32768). Resampling uses ``torchaudio.functional.resample`` on CPU with fixed
    parameters and is deterministic. Returns a contiguous float32 array of shape ``(n,)``.
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    if not isinstance(samples, np.ndarray):
        raise TypeError(f"samples must be a numpy array or torch tensor, not {type(samples).__name__}")
    rate = _check_rate(sample_rate)

    if samples.ndim not in (1, 2):
        raise AudioError(
            f"audio must have shape (num_samples,) or (num_samples, channels), got {samples.shape}"
        )
    if samples.size == 0:
        raise AudioError("audio is empty (0 samples)")
    if samples.ndim == 2 and samples.shape[1] > samples.shape[0]:
        raise AudioError(
            f"audio shape {samples.shape} has more channels than samples; expected "
            "(num_samples, channels) -- transpose (channels, num_samples) input first"
        )

    if samples.dtype == np.int16:
        audio = samples.astype(np.float32) / np.float32(32768)
    elif samples.dtype in (np.float32, np.float64):
        audio = samples.astype(np.float32, copy=False)
    else:
        raise AudioError(f"unsupported sample type {samples.dtype}; supported: float32, float64, int16")
    if not np.isfinite(audio).all():
        raise AudioError("audio contains NaN or Inf samples")
    if audio.ndim == 2:
        audio = audio.mean(axis=1, dtype=np.float32)

    _check_duration(len(audio), rate, min_duration_s, max_duration_s)
    if rate != target_rate:
        audio = AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), rate, target_rate).numpy()
    return np.ascontiguousarray(audio, dtype=np.float32)


def load_audio(
    source: Source,
    *,
    target_rate: int = 16000,
    max_duration_s: float | None = None,
    min_duration_s: float = 0.05,
) -> np.ndarray:
    """:func:`decode_audio` + :func:`prepare_waveform`.

    With ``max_duration_s`` set, over-long audio is rejected from the header *before* decoding,
    so an hour-long upload costs no decode time or memory.
    """
    with _open(source) as snd:
        if max_duration_s is not None:
            _check_duration(snd.frames, snd.samplerate, 0.0, max_duration_s)
        samples = snd.read(dtype="float32", always_2d=False)
        rate = snd.samplerate
    return prepare_waveform(
        samples,
        rate,
        target_rate=target_rate,
        max_duration_s=max_duration_s,
        min_duration_s=min_duration_s,
    )


def audio_duration(source: Source) -> float:
    """Duration in seconds from the header alone (cheap: no sample data is decoded)."""
    with _open(source) as snd:
        return snd.frames / snd.samplerate


@contextmanager
def _open(source: Source) -> Iterator[sf.SoundFile]:
    """Open ``source`` with soundfile, turning every way it can fail into :class:`AudioError`.

    Paths are opened here (not by libsndfile) so missing files, directories and permission
    problems get their own messages instead of libsndfile's "System error".
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError("audio data is empty (0 bytes)")
        name, file = "audio", io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = f"audio file {path!r}"
        try:
            file = open(path, "rb")
        except FileNotFoundError:
            raise AudioError(f"{name} does not exist") from None
        except IsADirectoryError:
            raise AudioError(f"{name} is a directory, not an audio file") from None
        except OSError as exc:
            raise AudioError(f"could not open {name}: {exc.strerror}") from None
    else:
        raise TypeError(f"audio source must be a path or bytes, not {type(source).__name__}")

    with file:
        try:
            with sf.SoundFile(file) as snd:
                if snd.format not in SUPPORTED_CONTAINERS:
                    raise AudioError(
                        f"{name}: container {snd.format_info} is not supported; "
                        f"supported: {_SUPPORTED_TEXT}"
                    )
                yield snd
        except (sf.SoundFileError, RuntimeError) as exc:
            detail = getattr(exc, "error_string", None) or str(exc)
            raise AudioError(
                f"could not decode {name}: unsupported or corrupt container ({detail}); "
                f"supported: {_SUPPORTED_TEXT}"
            ) from exc


def _check_rate(sample_rate: int) -> int:
    """Reject rates the model front end was never meant to see (and non-integer rates)."""
    if not isinstance(sample_rate, Integral) or isinstance(sample_rate, bool):
        raise AudioError(f"sample rate must be a whole number of Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample rate {sample_rate} Hz is outside the supported "
            f"{MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz"
        )
    return int(sample_rate)


def _check_duration(
    num_samples: int, sample_rate: int, min_duration_s: float, max_duration_s: float | None
) -> None:
    """Reject too-short and too-long audio, stating the limit that was hit."""
    seconds = num_samples / sample_rate
    if seconds < min_duration_s:
        raise AudioError(
            f"audio is {seconds:.3f} s long, shorter than the {min_duration_s} s minimum"
        )
    if max_duration_s is not None and seconds > max_duration_s:
        raise AudioError(f"audio is {seconds:.1f} s long, longer than the {max_duration_s} s limit")
