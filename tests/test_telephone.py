"""Feature-domain phone line: applied to clean MFCCs, close to the MFCCs of really telephoned audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiomodels.audio import load_audio
from audiomodels.config import FeatureConfig
from audiomodels.features import Featurizer
from training.augment import telephone
from training.telephone import FeatureTelephone

FEATURIZER = Featurizer(FeatureConfig())


@pytest.fixture(scope="module")
def speech(speech_files: dict[str, Path]) -> np.ndarray:
    return np.concatenate([load_audio(path, target_rate=16000) for path in list(speech_files.values())[:3]])


def test_phone_line_features_match_features_of_telephoned_audio(speech: np.ndarray) -> None:
    """Less than half as far from the real phone line's features as the clean features are (a
    per-band gain alone, without coding noise and idle line, stays at 0.76), and band-limited like it."""
    clean = FEATURIZER(speech)
    real = FEATURIZER(telephone(speech, 16000))
    augmented = FeatureTelephone(FEATURIZER).add(clean)
    assert augmented.shape == clean.shape

    def error(features: torch.Tensor) -> float:
        return float((features - real).abs().mean())

    assert error(augmented) < 0.5 * error(clean)

    def log_mel(features: torch.Tensor) -> torch.Tensor:
        return 10 * torch.log10(FEATURIZER.mel_power_from_mfcc(FEATURIZER.unstack(features).double()))

    def highs_below_lows_db(features: torch.Tensor) -> float:  # mel bands 70+ sit above 4.5 kHz
        bands = log_mel(features).mean(dim=0)
        return float(bands[20:50].mean() - bands[70:].mean())

    # Above 4.5 kHz the line leaves ~38 dB less than in the voice band; the model ~46 (its stop band
    # misses some of the resampler's leakage of real speech), the clean speech 12.
    assert highs_below_lows_db(augmented) == pytest.approx(highs_below_lows_db(real), abs=10.0)
    assert highs_below_lows_db(augmented) > highs_below_lows_db(clean) + 20.0


def test_stacked_frames_keep_their_shape() -> None:
    featurizer = Featurizer(FeatureConfig(stack=3))
    stacked = featurizer(np.random.default_rng(0).standard_normal(8000).astype(np.float32))
    assert FeatureTelephone(featurizer).add(stacked).shape == stacked.shape
