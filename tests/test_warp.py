"""Frequency warps of MFCCs: the warp moves formants like a shorter/longer tract (VTLP in training),
and the recognizer's warp ensemble averages the posteriors of warped passes (inference)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from audiomodels.audio import load_audio
from audiomodels.checkpoint import load_checkpoint
from audiomodels.config import FeatureConfig
from audiomodels.features import Featurizer
from audiomodels.recognizer import Recognizer
from audiomodels.warp import parse_warps, warp_features, warp_matrix

CONFIG = FeatureConfig()
FORMANTS_HZ = (500.0, 1500.0, 2500.0)  # a neutral vowel of a long vocal tract


def vowel(formant_scale: float, seconds: float = 0.5, f0: float = 50.0) -> np.ndarray:
    """A steady vowel: harmonics of ``f0`` shaped by three formants, all scaled by ``formant_scale``."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * CONFIG.sample_rate)) / CONFIG.sample_rate
    signal = np.zeros_like(t)
    for harmonic in np.arange(f0, 7800.0, f0):
        envelope = sum(np.exp(-(((harmonic - f * formant_scale) / (90.0 * formant_scale)) ** 2)) for f in FORMANTS_HZ)
        signal += (envelope + 0.003) * np.sin(2 * np.pi * harmonic * t + rng.uniform(0, 2 * np.pi))
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def mean_mfcc(audio: np.ndarray) -> torch.Tensor:
    return Featurizer(CONFIG).mfcc(torch.from_numpy(audio)).mean(dim=0)


def test_factor_one_is_the_identity() -> None:
    torch.testing.assert_close(warp_matrix(CONFIG, 1.0), torch.eye(CONFIG.n_mfcc), atol=1e-5, rtol=0)


@pytest.mark.parametrize("alpha", [0.88, 1.15])
def test_warping_a_vowel_gives_the_vowel_of_the_scaled_vocal_tract(alpha: float) -> None:
    """Warped MFCCs of a vowel land near the MFCCs of the same vowel with formants x alpha, far
    nearer than the unwarped ones or a warp the wrong way (c0, the level, is left out)."""
    original, scaled = mean_mfcc(vowel(1.0)), mean_mfcc(vowel(alpha))

    def distance(mfcc: torch.Tensor) -> float:
        return float((mfcc - scaled)[1:].norm())

    warped = distance(original @ warp_matrix(CONFIG, alpha))
    assert warped < 0.15 * distance(original)
    assert warped < 0.1 * distance(original @ warp_matrix(CONFIG, 1.0 / alpha))


def test_stacked_frames_are_warped_copy_by_copy() -> None:
    stacked = torch.randn(7, CONFIG.model_input_dim)
    matrix = warp_matrix(CONFIG, 1.1)
    copies = stacked.split(CONFIG.n_mfcc, dim=1)
    expected = torch.cat([copy @ matrix for copy in copies], dim=1)
    torch.testing.assert_close(warp_features(stacked, matrix), expected)


def test_non_positive_factor_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        warp_matrix(CONFIG, 0.0)


def test_batched_frames_are_warped_like_single_utterances() -> None:
    batch = torch.randn(3, 7, CONFIG.model_input_dim)
    matrix = warp_matrix(CONFIG, 0.9)
    expected = torch.stack([warp_features(item, matrix) for item in batch])
    torch.testing.assert_close(warp_features(batch, matrix), expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [("0.5,1", "lie in 0.7-1.4"), ("1,1", "must differ"), ("0.9,x", "could not convert"), ("", "could not convert")],
)
def test_bad_warp_lists_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_warps(text)


def test_warp_list_parses() -> None:
    assert parse_warps("0.88,1,1.12") == (0.88, 1.0, 1.12)


def test_warp_ensemble_averages_the_posteriors_of_its_passes(
    trained: tuple[Path, list[float]], speech_files: dict[str, Path]
) -> None:
    """In a padded batch of unequal utterances every frame is the mean probability of the warped
    passes; a one-pass ensemble at factor 1 is the plain recognizer."""
    checkpoint = load_checkpoint(trained[0])
    plain = Recognizer(checkpoint.config, checkpoint.build_model())
    factors = (0.9, 1.0, 1.1)
    ensemble = Recognizer(plain.config, plain.model, warps=factors)
    waveforms = [load_audio(path) for path in speech_files.values()][:3]
    log_probs, lengths = ensemble.emissions(waveforms)

    features, feature_lengths = plain.featurizer.batch(waveforms)
    with torch.inference_mode():
        passes = [
            plain.model(warp_features(features, warp_matrix(plain.config.features, w)), feature_lengths)[0].exp()
            for w in factors
        ]
    expected = torch.stack(passes).mean(dim=0).log()
    assert lengths.tolist() == feature_lengths.tolist() and len(set(lengths.tolist())) == 3
    for row, length in enumerate(lengths):
        torch.testing.assert_close(log_probs[row, :length], expected[row, :length], atol=1e-4, rtol=1e-4)
    plain_log_probs, _ = plain.emissions(waveforms)
    assert not torch.allclose(log_probs, plain_log_probs, atol=1e-3)  # the warps change what the model hears

    identity = Recognizer(plain.config, plain.model, warps=(1.0,))
    torch.testing.assert_close(identity.emissions(waveforms)[0], plain_log_probs, atol=1e-3, rtol=0)
