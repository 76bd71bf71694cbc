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
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch

from audiomodels.media import SUPPORTED_TEXT as MEDIA_TEXT
from audiomodels.media import MediaError, MediaFile
from audiomodels.ogg_chain import OggChain
from audiomodels.ogg_stream import link_spans
from audiomodels.raw_samples import RAW_DTYPES, samples_from_bytes
from audiomodels.resampling import StreamingResampler, resampler

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 96000

# libsndfile reads many more containers; only these are tested and promised to clients.
# WAVEX (WAVE_FORMAT_EXTENSIBLE) and RF64 are what libsndfile reports for some ordinary WAVs.
# MP3 (Common Voice's format) needs the libsndfile >= 1.1 that soundfile's wheels bundle; its MP3
# decoder is gapless, so times are not shifted. Ogg Opus is told apart by libsndfile, decoded by FFmpeg.
SUPPORTED_CONTAINERS = ("WAV", "WAVEX", "RF64", "FLAC", "MP3", "OGG")
_SUPPORTED_TEXT = f"WAV (PCM 16/24/32-bit or float), FLAC, MP3, Ogg (Vorbis or Opus), {MEDIA_TEXT}"

# Each link of a chained Ogg file costs opens (an Opus link of 0.1 s: 0.5 ms for its length, 3 ms to
# decode) however little audio it holds, so a file of tiny links could cost far more than its
# duration says; a day of radio has under 1000 titles.
MAX_CHAIN_LINKS = 1000

# load_audio decodes longer files block by block (blocks of _BLOCK_S seconds of the source).
WHOLE_DECODE_LIMIT_S = 600.0
_BLOCK_S = 60.0


Source = str | os.PathLike | bytes
Reader = sf.SoundFile | MediaFile | OggChain  # what _open yields: the same few members each way


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
    if encoding not in RAW_DTYPES:
        raise AudioError(f"unknown raw encoding {encoding!r}; supported: {', '.join(RAW_DTYPES)}")
    _check_rate(sample_rate)
    itemsize = RAW_DTYPES[encoding].itemsize
    if len(data) % itemsize:
        raise AudioError(
            f"raw {encoding} audio must be a whole number of {itemsize}-byte samples, got {len(data)} bytes"
        )
    return samples_from_bytes(data, encoding)


def encode_pcm16(samples: np.ndarray) -> bytes:
    """Float samples -> headerless little-endian 16-bit PCM (what a client streaming LINEAR16 sends).

    The exact inverse of :func:`decode_raw` on its grid: samples are scaled by 32768 and rounded to
    the nearest step, so any float lands within half a step of what it decodes to. Truncating
    instead would add a DC offset and distortion that matter for quiet talkers; values beyond the
    int16 range clip."""
    steps = np.rint(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(steps, -32768, 32767).astype(RAW_DTYPES["pcm16"]).tobytes()


def quantize_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples as a LINEAR16 client sends them: rounded to 16-bit steps (and clipped)."""
    return decode_raw(encode_pcm16(samples), "pcm16", 16000)


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
    (scaled by 1/32768). Resampling is ``torchaudio.functional.resample``'s (:func:`resampler`), on
    CPU with fixed parameters, and deterministic. Returns a contiguous float32 array of shape ``(n,)``.
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
    audio = _finite_mono(audio)

    _check_duration(len(audio), rate, min_duration_s, max_duration_s)
    if rate != target_rate:
        audio = resampler(rate, target_rate)(torch.from_numpy(np.ascontiguousarray(audio))).numpy()
    return np.ascontiguousarray(audio, dtype=np.float32)


def _finite_mono(audio: np.ndarray) -> np.ndarray:
    """float32 ``(n,)`` or ``(n, channels)`` -> ``(n,)``, the mean of the channels (a new array for 2-D
    input); NaN/Inf rejected."""
    if not np.isfinite(audio).all():
        raise AudioError("audio contains NaN or Inf samples")
    return audio.mean(axis=1, dtype=np.float32) if audio.ndim == 2 else audio


def load_audio(
    source: Source,
    *,
    target_rate: int = 16000,
    max_duration_s: float | None = None,
    min_duration_s: float = 0.05,
) -> np.ndarray:
    """:func:`decode_audio` + :func:`prepare_waveform`.

    With ``max_duration_s`` set, over-long audio is rejected from the header *before* decoding,
    so an hour-long upload costs no decode time or memory. Files longer than
    :data:`WHOLE_DECODE_LIMIT_S` (lectures, meetings) are decoded, downmixed and resampled block
    by block, matching the whole-file computation to within 1e-4: a 30-minute 44.1 kHz stereo
    FLAC took 1.39 GB above the process's baseline decoded whole, 0.31 GB in blocks (the result
    itself is 115 MB).
    """
    with _open(source) as snd:
        if max_duration_s is not None:
            _check_duration(snd.frames, snd.samplerate, 0.0, max_duration_s)
        if snd.frames <= WHOLE_DECODE_LIMIT_S * snd.samplerate:
            samples = snd.read(dtype="float32", always_2d=False)
            return prepare_waveform(
                samples,
                snd.samplerate,
                target_rate=target_rate,
                max_duration_s=max_duration_s,
                min_duration_s=min_duration_s,
            )
        return _load_in_blocks(snd, target_rate, max_duration_s, min_duration_s)


def _load_in_blocks(
    snd: Reader, target_rate: int, max_duration_s: float | None, min_duration_s: float
) -> np.ndarray:
    """:func:`load_audio` for long files: one block of the source in memory at a time."""
    rate = _check_rate(snd.samplerate)
    resampler = StreamingResampler(rate, target_rate) if rate != target_rate else None
    pieces, num_samples = [], 0
    for block in _source_blocks(snd, round(_BLOCK_S * rate)):
        mono = _finite_mono(block)
        num_samples += len(mono)
        if max_duration_s is not None:  # the header may understate a compressed file's length
            _check_duration(num_samples, rate, 0.0, max_duration_s)
        pieces.append(resampler.accept(mono) if resampler else mono)
    _check_duration(num_samples, rate, min_duration_s, max_duration_s)
    if resampler:
        pieces.append(resampler.finish())
    return np.concatenate(pieces)


def _source_blocks(snd: Reader, frames: int) -> Iterator[np.ndarray]:
    """The file as float32 ``(frames, channels)`` blocks.

    MP3 is read in one piece: libsndfile 1.2.2 decodes it wrongly when it is read in parts (a
    sweep read in blocks came out with errors of up to 0.3 after the first block; one read
    matches the signal), so a long MP3 costs its decoded size in memory, the others one block.
    """
    if snd.format == "MP3":
        whole = snd.read(dtype="float32", always_2d=True)
        yield from (whole[start : start + frames] for start in range(0, len(whole), frames))
    else:
        yield from snd.blocks(blocksize=frames, dtype="float32", always_2d=True)


def audio_duration(source: Source) -> float:
    """Duration in seconds from the header alone (cheap: no sample data is decoded)."""
    with _open(source) as snd:
        return snd.frames / snd.samplerate


@contextmanager
def _open(source: Source) -> Iterator[Reader]:
    """Open ``source`` with soundfile (or, for MP4 and WebM, :mod:`audiomodels.media`), turning
    every way it can fail into :class:`AudioError`.

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

    with file, _reader(file, name) as snd:
        try:
            yield snd
        except (sf.SoundFileError, RuntimeError, MediaError) as exc:
            raise _undecodable(name, _detail(exc)) from exc


def _reader(file: BinaryIO, name: str) -> Reader:
    """libsndfile's reader of ``file`` or, for the containers it does not know and for Ogg Opus,
    FFmpeg's (:class:`MediaFile`, which fills timestamp gaps as the live Ogg reader does); for a
    chained Ogg file, each link's own, one after another (:class:`OggChain`)."""
    try:
        snd = sf.SoundFile(file)
    except (sf.SoundFileError, RuntimeError) as exc:
        file.seek(0)
        try:
            return MediaFile(file)
        except MediaError as media_exc:
            raise _undecodable(name, f"{_detail(exc)}; as MP4/WebM: {media_exc}") from exc
    if snd.format not in SUPPORTED_CONTAINERS:
        snd.close()
        raise AudioError(f"{name}: container {snd.format_info} is not supported; supported: {_SUPPORTED_TEXT}")
    if snd.format == "OGG" and len(spans := link_spans(file)) > 1:  # libsndfile would stop after the first link
        snd.close()
        if len(spans) > MAX_CHAIN_LINKS:
            raise AudioError(f"{name} is a chain of {len(spans)} Ogg links; at most {MAX_CHAIN_LINKS} are read: split it")
        return OggChain(file, spans, lambda link, where: _reader(link, f"{name}, {where}"))
    # FFmpeg reads the granule positions, so gaps stay gaps; libsndfile keeps the surround files
    # (channel mapping family 1) that the Opus decoder here, mono or stereo, does not take
    if snd.format == "OGG" and snd.subtype == "OPUS" and snd.channels <= 2:
        snd.close()
        file.seek(0)
        try:
            return MediaFile(file)
        except MediaError as exc:
            raise _undecodable(name, str(exc)) from exc
    return snd


def _detail(exc: BaseException) -> str:
    return getattr(exc, "error_string", None) or str(exc)


def _undecodable(name: str, detail: str) -> AudioError:
    return AudioError(f"could not decode {name}: unsupported or corrupt container ({detail}); supported: {_SUPPORTED_TEXT}")


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
