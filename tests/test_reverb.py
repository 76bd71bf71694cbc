"""Feature-domain reverberation: a room applied to clean MFCCs gives what reverberant audio's MFCCs are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from audiomodels.audio import load_audio
from audiomodels.config import FeatureConfig
from audiomodels.features import Featurizer
from training.augment import room_impulse_response
from training.reverb import FeatureReverb, reverb_kernel

FEATURIZER = Featurizer(FeatureConfig())
HOP_SECONDS = 0.01


@pytest.fixture(scope="module")
def speech(speech_files: dict[str, Path]) -> np.ndarray:
    """Three real utterances in a row, with espeak-ng's silent pauses for the tail to fill."""
    return np.concatenate([load_audio(path, target_rate=16000) for path in list(speech_files.values())[:3]])


def in_room(speech: np.ndarray, rt60: float, drr_db: float, seed: int) -> torch.Tensor:
    """Features of the speech convolved with one of the corpus's rooms (its tail cut at the speech's end)."""
    impulse = room_impulse_response(16000, rt60, drr_db, np.random.default_rng(seed))
    wet = AF.fftconvolve(torch.from_numpy(speech), torch.from_numpy(impulse))[: len(speech)]
    return FEATURIZER(wet)


@pytest.mark.parametrize(("rt60", "drr_db"), [(0.3, 10.0), (0.5, 3.0), (0.8, -2.0), (0.9, 6.0)])
def test_reverberant_features_match_features_of_reverberant_audio(speech: np.ndarray, rt60: float, drr_db: float) -> None:
    """Closer to the features of really reverberant audio than another room with the same rt60 and
    DRR is, by a margin (the augmentation is the expected spectrum; a second random tail adds its
    own ripple), and far closer than the dry features. Mis-stating the DRR by 4 dB or rt60 by a
    factor of 2 breaks the margin."""
    clean = FEATURIZER(speech)
    real, other_room = in_room(speech, rt60, drr_db, seed=0), in_room(speech, rt60, drr_db, seed=1)
    augmented = FeatureReverb(FEATURIZER).add(clean, rt60, drr_db)

    def error(features: torch.Tensor) -> float:
        return float((features - real).abs().mean())

    assert augmented.shape == clean.shape == real.shape
    assert error(augmented) < 0.8 * error(other_room)
    assert error(augmented) < 0.45 * error(clean)


def test_a_livelier_or_farther_room_smears_more(speech: np.ndarray) -> None:
    clean = FEATURIZER(speech)
    reverb = FeatureReverb(FEATURIZER)

    def distance(rt60: float, drr_db: float) -> float:
        return float((reverb.add(clean, rt60, drr_db) - clean).abs().mean())

    assert distance(0.2, 6.0) < distance(0.5, 6.0) < distance(0.9, 6.0)
    assert distance(0.5, 12.0) < distance(0.5, 3.0) < distance(0.5, -2.0)


def test_kernel_holds_the_direct_path_and_the_tail_energy() -> None:
    kernel = reverb_kernel(0.5, 6.0, HOP_SECONDS)
    assert len(kernel) == 50  # 50 hops of tail, the direct path sharing lag 0
    assert float(kernel.sum()) == pytest.approx(1.0 + 10 ** -0.6)
    tail = kernel.clone()
    tail[0] -= 1.0
    assert bool((tail[1:] < tail[:-1]).all())  # decays every hop
    assert float(tail[0] / tail[25]) == pytest.approx(10 ** 3, rel=0.05)  # 30 dB down at half of rt60


def test_stacked_frames_keep_their_shape_and_a_room_without_decay_is_refused() -> None:
    featurizer = Featurizer(FeatureConfig(stack=3))
    stacked = featurizer(np.random.default_rng(0).standard_normal(8000).astype(np.float32))
    reverb = FeatureReverb(featurizer)
    assert reverb.add(stacked, 0.4, 0.0).shape == stacked.shape
    with pytest.raises(ValueError, match="rt60"):
        reverb.add(stacked, 0.0, 0.0)
