"""Feature-domain noise: adding it to clean MFCCs gives what noisy audio's MFCCs are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiomodels.audio import load_audio
from audiomodels.config import FeatureConfig
from audiomodels.features import Featurizer
from audiomodels.silence import block_dbfs
from training.augment import add_noise, background
from training.data import AugmentConfig
from training.noise import FeatureNoise

FEATURIZER = Featurizer(FeatureConfig())


@pytest.fixture(scope="module")
def speech(speech_files: dict[str, Path]) -> np.ndarray:
    """Three real utterances in a row: speech with espeak-ng's digitally silent pauses."""
    return np.concatenate([load_audio(path, target_rate=16000) for path in list(speech_files.values())[:3]])


@pytest.mark.parametrize(
    ("color", "snr_db"), [("white", 5.0), ("white", 25.0), ("pink", 15.0), ("brown", 10.0), ("music", 10.0)]
)
def test_noisy_features_match_features_of_noisy_audio(speech: np.ndarray, color: str, snr_db: float) -> None:
    """The augmented features are as close to the features of really noisy audio as a second real
    noise draw is (the error that cannot be removed), far closer than the clean features, and their
    level (mean log-mel, from c0) is within 1.5 dB of the real draws' mean level (a red noise's
    audible level varies by that much from draw to draw; white noise's by 0.1 dB). Music is not a
    steady sound, so any two pieces differ note by note: there the augmented features must move as
    far from the clean ones as real music does, rather than close in on one piece."""
    rng = np.random.default_rng(0)
    clean = FEATURIZER(speech)
    real, other_draw, *more_draws = (FEATURIZER(add_noise(speech, snr_db, color, rng)) for _ in range(6))
    augmented = FeatureNoise(FEATURIZER).add(clean, snr_db, color, torch.Generator().manual_seed(0))

    def error(features: torch.Tensor) -> float:
        return float((features - real).abs().mean())

    assert error(augmented) < 1.15 * error(other_draw)
    if color == "music":
        moved = float((augmented - clean).abs().mean()) / float((real - clean).abs().mean())
        assert 0.8 < moved < 1.25
    else:
        assert error(augmented) < 0.6 * error(clean)

    def level_db(features: torch.Tensor) -> float:  # c0 is the band sum of log-mel / sqrt(n_mels)
        return float(features[:, 0].mean()) / np.sqrt(FEATURIZER.config.n_mels)

    real_level = np.mean([level_db(draw) for draw in (real, other_draw, *more_draws)])
    assert abs(level_db(augmented) - real_level) < 1.5


def test_lower_snr_buries_the_speech_deeper(speech: np.ndarray) -> None:
    clean = FEATURIZER(speech)
    noise = FeatureNoise(FEATURIZER)
    distances = [
        float((noise.add(clean, snr, "pink", torch.Generator().manual_seed(0)) - clean).abs().mean())
        for snr in (30.0, 15.0, 0.0)
    ]
    assert distances[0] < distances[1] < distances[2]


def test_music_changes_level_note_by_note_where_noise_is_steady() -> None:
    """What sets music apart from the noise colours for a speech model: its 100 ms levels move."""
    rng = np.random.default_rng(0)
    music, pink = background(16000 * 4, "music", rng), background(16000 * 4, "pink", rng)
    assert music.std() == pytest.approx(1.0, abs=1e-3) and music.dtype == np.float32
    assert np.array_equal(music, background(16000 * 4, "music", np.random.default_rng(0)))  # seeded

    def level_spread_db(audio: np.ndarray) -> float:
        levels = [block_dbfs(audio[i : i + 1600], 16000) for i in range(0, len(audio), 1600)]
        return float(np.percentile(levels, 90) - np.percentile(levels, 10))

    assert level_spread_db(music) > 6.0 > 1.5 > level_spread_db(pink)
    with pytest.raises(ValueError, match="unknown background"):
        background(100, "purple", rng)


def test_noise_kinds_are_checked_when_a_config_is_read() -> None:
    assert AugmentConfig(noise_kinds=("pink", "music")).noise_kinds == ("pink", "music")
    with pytest.raises(ValueError, match="noise_kinds"):
        AugmentConfig(noise_kinds=("pink", "jazz"))


def test_stacked_frames_keep_their_shape_and_an_unknown_background_is_refused() -> None:
    stacked = Featurizer(FeatureConfig(stack=3))(np.random.default_rng(0).standard_normal(8000).astype(np.float32))
    noise = FeatureNoise(Featurizer(FeatureConfig(stack=3)))
    assert noise.add(stacked, 10.0, "white", torch.Generator()).shape == stacked.shape
    with pytest.raises(ValueError, match="unknown background .purple."):
        noise.add(stacked, 10.0, "purple", torch.Generator())
