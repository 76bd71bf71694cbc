"""Waveform augmentations that make clean synthetic speech look more like recorded speech.

Every function is pure: float32 mono in, float32 mono out, randomness only from the
``np.random.Generator`` passed in. :func:`sample_augment` draws an utterance's chain of steps
(plain dicts, stored as the manifest's ``augment`` field) and :func:`apply_augment` replays it, so
a corpus job is reproducible from its seed and its manifest line says exactly what was done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF

TELEPHONE_RATE = 8000
TELEPHONE_BAND = (300.0, 3400.0)  # Hz, the classic PSTN voice band

# Power spectral density slope k (PSD ~ 1/f^k) of each generated noise color.
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
# Every background :func:`background` makes: the noise colours, and music (tonal, not steady: the
# shipped char model spells it out as letters, "a bade a an a aa apa", where it is silent in noise).
BACKGROUNDS = (*NOISE_COLORS, "music")

# Chance of each step once an utterance is augmented, in the order the steps are applied:
# the talker's rate, then the room, then background noise, then the channel, then the level.
STEP_PROBABILITIES = {"speed": 0.3, "reverb": 0.4, "noise": 0.6, "telephone": 0.15, "gain": 0.5}

Step = dict[str, Any]


def colored_noise(num_samples: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise with a 1/f^k power spectrum, shaped in the frequency domain."""
    white = rng.standard_normal(num_samples)
    slope = NOISE_COLORS[color]
    if slope:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(num_samples)
        spectrum[1:] *= freqs[1:] ** (-slope / 2)
        spectrum[0] = 0.0  # no DC offset
        white = np.fft.irfft(spectrum, num_samples)
    return (white / max(float(white.std()), 1e-12)).astype(np.float32)


def synthetic_music(num_samples: int, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """Unit-variance music: three voices of plucked notes (a fundamental of 65-1047 Hz and six
    decaying harmonics, 0.12-0.8 s each, on a major scale) over a drum of noise bursts on the beat.

    No recording can be downloaded here; what matters to a speech model is what music has and noise
    has not: harmonic partials like a voice's, and levels that change note by note.
    """
    out = np.zeros(num_samples)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    for lowest_octave in (0, 1, 2):
        position = int(rng.integers(0, sample_rate // 4))
        while position < num_samples:
            length = min(int(rng.uniform(0.12, 0.8) * sample_rate), num_samples - position)
            step = scale[rng.integers(len(scale))] + 12 * (lowest_octave + int(rng.integers(2)))
            f0 = 65.4 * 2.0 ** (step / 12)
            t = np.arange(length) / sample_rate
            envelope = np.exp(-t * rng.uniform(1.5, 8.0)) * (1.0 - np.exp(-t * 300.0))
            note = sum(0.6**h * np.sin(2 * np.pi * f0 * (h + 1) * t + rng.uniform(0, 2 * np.pi)) for h in range(7))
            out[position : position + length] += rng.uniform(0.4, 1.0) * envelope * note
            position += length
    beat = int(sample_rate * rng.uniform(0.35, 0.6))
    burst = np.exp(-np.arange(sample_rate // 10) / (sample_rate * 0.02))
    for position in range(int(rng.integers(beat)), num_samples, beat):
        length = min(len(burst), num_samples - position)
        out[position : position + length] += burst[:length] * rng.standard_normal(length)
    return (out / max(float(out.std()), 1e-12)).astype(np.float32)


def background(num_samples: int, kind: str, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """Unit-variance background sound of one of :data:`BACKGROUNDS`."""
    if kind == "music":
        return synthetic_music(num_samples, rng, sample_rate)
    if kind not in NOISE_COLORS:
        raise ValueError(f"unknown background {kind!r}; known: {', '.join(BACKGROUNDS)}")
    return colored_noise(num_samples, kind, rng)


def add_noise(audio: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Add a background of ``kind`` (:data:`BACKGROUNDS`) at ``snr_db`` relative to the utterance's
    mean power (silences included)."""
    return add_background(audio, snr_db, background(len(audio), kind, rng))


def add_background(audio: np.ndarray, snr_db: float, noise: np.ndarray) -> np.ndarray:
    """Add ``noise`` (unit variance, as long as ``audio``) at ``snr_db`` relative to the utterance's
    mean power (silences included)."""
    signal_power = float(np.mean(np.square(audio, dtype=np.float64)))
    scale = np.sqrt(signal_power / 10 ** (snr_db / 10))
    return (audio + scale * noise).astype(np.float32)


def room_impulse_response(sample_rate: int, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Direct path plus an exponentially decaying noise tail that falls 60 dB in ``rt60`` s.

    ``drr_db`` is the direct-to-reverberant energy ratio: lower sounds farther from the mic.
    """
    t = np.arange(1, max(2, round(rt60 * sample_rate))) / sample_rate
    tail = rng.standard_normal(len(t)) * np.exp(-np.log(1000.0) * t / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def reverb(audio: np.ndarray, sample_rate: int, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room; the output keeps the reverberant tail (``rt60`` longer)."""
    impulse = room_impulse_response(sample_rate, rt60, drr_db, rng)
    wet = AF.fftconvolve(torch.from_numpy(audio), torch.from_numpy(impulse)).numpy()
    return _match_peak(wet, audio)


def telephone(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Narrowband phone channel: 8 kHz, 300-3400 Hz band-pass and G.711 mu-law, then back."""
    narrow = AF.resample(torch.from_numpy(audio), sample_rate, TELEPHONE_RATE)
    narrow = AF.highpass_biquad(narrow, TELEPHONE_RATE, TELEPHONE_BAND[0])
    narrow = AF.lowpass_biquad(narrow, TELEPHONE_RATE, TELEPHONE_BAND[1])
    narrow = AF.mu_law_decoding(AF.mu_law_encoding(narrow.clamp(-1.0, 1.0), 256), 256)
    return AF.resample(narrow, TELEPHONE_RATE, sample_rate).numpy().astype(np.float32)


def gain(audio: np.ndarray, db: float) -> np.ndarray:
    """Scale the level; recording levels vary far more than TTS output levels."""
    return (audio * np.float32(10 ** (db / 20))).astype(np.float32)


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level in dB re full scale (-200 for silence)."""
    return 10.0 * float(np.log10(max(float(np.mean(np.square(audio, dtype=np.float64))), 1e-20)))


def to_level(audio: np.ndarray, dbfs: float, measured_on: np.ndarray | None = None) -> np.ndarray:
    """``audio`` scaled so the RMS of ``measured_on`` (default: ``audio`` itself) is ``dbfs``:
    a talker recorded that loud (benchmarks and tests of quiet and loud input)."""
    return gain(audio, dbfs - rms_dbfs(audio if measured_on is None else measured_on))


def speed(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Speed perturbation (tempo and pitch together) by resampling; length becomes len/factor."""
    source_rate = round(sample_rate * factor)  # factors with 2 decimals keep the ratio small
    return AF.resample(torch.from_numpy(audio), source_rate, sample_rate).numpy().astype(np.float32)


def _match_peak(audio: np.ndarray, reference: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio), initial=0.0))
    target = float(np.max(np.abs(reference), initial=0.0))
    return (audio * (target / peak) if peak > 0 else audio).astype(np.float32)


def _round(value: float) -> float:
    return round(float(value), 2)


_SAMPLERS: Mapping[str, Callable[[np.random.Generator], Step]] = {
    "speed": lambda rng: {"factor": _round(rng.uniform(0.9, 1.1))},
    "reverb": lambda rng: {"rt60": _round(rng.uniform(0.2, 0.9)), "drr_db": _round(rng.uniform(-2.0, 12.0))},
    "noise": lambda rng: {
        "color": str(rng.choice(list(NOISE_COLORS))),
        "snr_db": _round(rng.uniform(5.0, 30.0)),
    },
    "telephone": lambda rng: {},
    "gain": lambda rng: {"db": _round(rng.uniform(-15.0, 3.0))},
}

_APPLIERS: Mapping[str, Callable[[np.ndarray, int, Step, np.random.Generator], np.ndarray]] = {
    "speed": lambda audio, rate, step, rng: speed(audio, rate, step["factor"]),
    "reverb": lambda audio, rate, step, rng: reverb(audio, rate, step["rt60"], step["drr_db"], rng),
    "noise": lambda audio, rate, step, rng: add_noise(audio, step["snr_db"], step["color"], rng),
    "telephone": lambda audio, rate, step, rng: telephone(audio, rate),
    "gain": lambda audio, rate, step, rng: gain(audio, step["db"]),
}


def sample_augment(rng: np.random.Generator, probability: float) -> list[Step]:
    """An utterance's augmentation chain: empty with chance ``1 - probability``, else >= 1 step."""
    if rng.random() >= probability:
        return []
    kinds = [kind for kind, chance in STEP_PROBABILITIES.items() if rng.random() < chance]
    if not kinds:
        kinds = [str(rng.choice(list(STEP_PROBABILITIES)))]
    return [{"kind": kind, **_SAMPLERS[kind](rng)} for kind in STEP_PROBABILITIES if kind in kinds]


def apply_augment(audio: np.ndarray, sample_rate: int, steps: Sequence[Step], rng: np.random.Generator) -> np.ndarray:
    """Apply a chain from :func:`sample_augment` in order."""
    for step in steps:
        audio = _APPLIERS[step["kind"]](audio, sample_rate, step, rng)
    return audio
