"""Vocal tract length perturbation: the MFCC-domain warp moves formants like a shorter/longer tract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiomodels.config import FeatureConfig
from audiomodels.features import Featurizer
from training.warp import warp_features, warp_matrix

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
