"""Feature packs: quantization bounds, the file round trip, clear errors and the subset draw."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from audiomodels.config import FeatureConfig
from audiomodels.features import Featurizer
from audiomodels.labels import LabelSet
from training.data import AugmentConfig, SpeechDataset
from training.feature_pack import (
    STEPS_PER_STD,
    FeaturePackError,
    build_pack,
    read_pack,
    sample_hours,
    write_pack,
)
from training.manifest import Utterance

CONFIG = FeatureConfig()


def _utterance(index: int, duration: float) -> Utterance:
    return Utterance(Path(f"/nowhere/{index}.wav"), duration, f"utterance {index}", phones="j uː", extra={"voice": "v"})


def _speech_like(seconds: float, seed: int) -> torch.Tensor:
    """Model frames of a chirp with noise: coefficients of very different spreads, like speech's."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * CONFIG.sample_rate)) / CONFIG.sample_rate
    wave = 0.3 * torch.sin(2 * math.pi * (200 + 900 * t) * t) + 0.01 * torch.randn(len(t), generator=generator)
    return Featurizer(CONFIG)(wave)


def test_pack_round_trip_keeps_every_coefficient_within_half_a_step(tmp_path: Path) -> None:
    frames = [_speech_like(seconds, seed) for seed, seconds in enumerate((0.7, 1.3, 2.0))]
    utterances = [_utterance(i, len(f) * CONFIG.frame_shift_s) for i, f in enumerate(frames)]
    path = tmp_path / "train.pack"
    write_pack(path, build_pack(utterances, frames, CONFIG))
    pack = read_pack(path)
    assert pack.utterances == utterances and pack.features_config == CONFIG
    every = Featurizer(CONFIG).unstack(torch.cat(frames)).numpy()
    assert np.allclose(pack.step, every.std(axis=0) / STEPS_PER_STD, rtol=1e-5)
    for index, original in enumerate(frames):
        restored = pack.features(index)
        assert restored.shape == original.shape and restored.dtype == torch.float32
        error = (restored - original).abs() / torch.from_numpy(np.tile(pack.step, CONFIG.stack))
        assert float(error.max()) <= 0.5 + 1e-3  # rounding only: nothing clipped at +-127 steps
    assert pack.hours == pytest.approx(sum(u.duration for u in utterances) / 3600)


def test_a_damaged_or_foreign_pack_is_refused_by_name(tmp_path: Path) -> None:
    frames = [_speech_like(0.5, 0)]
    path = tmp_path / "train.pack"
    write_pack(path, build_pack([_utterance(0, 0.5)], frames, CONFIG))
    with pytest.raises(FeaturePackError, match="does not exist"):
        read_pack(tmp_path / "missing.pack")
    truncated = tmp_path / "truncated.pack"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(FeaturePackError, match="truncated.pack is corrupt"):
        read_pack(truncated)
    wav = tmp_path / "audio.pack"
    wav.write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(FeaturePackError, match="audio.pack is corrupt"):
        read_pack(wav)


def test_a_pack_run_refuses_speed_perturbation_and_other_features() -> None:
    pack = build_pack([_utterance(0, 0.5)], [_speech_like(0.5, 0)], CONFIG)
    labels = LabelSet.char()
    with pytest.raises(FeaturePackError, match="speed_prob=0"):
        SpeechDataset(pack.utterances, Featurizer(CONFIG), labels, augment=AugmentConfig(speed_prob=0.5), pack=pack)
    with pytest.raises(FeaturePackError, match="not this run's"):
        SpeechDataset(pack.utterances, Featurizer(FeatureConfig(n_mfcc=20)), labels, pack=pack)
    augmented = SpeechDataset(
        pack.utterances, Featurizer(CONFIG), labels, augment=AugmentConfig(noise_prob=1.0, vtlp_prob=1.0), pack=pack
    )
    features, _ = augmented[0]  # degradations after the cache still apply to packed features
    assert features.shape == pack.features(0).shape and not torch.equal(features, pack.features(0))


def test_hours_subset_is_seeded_in_manifest_order_and_near_the_size() -> None:
    utterances = [_utterance(i, 1.0 + (i % 7)) for i in range(400)]  # 1,597 s in all
    half = sample_hours(utterances, 800 / 3600, seed=3)
    assert half == sample_hours(utterances, 800 / 3600, seed=3) != sample_hours(utterances, 800 / 3600, seed=4)
    indices = [utterances.index(u) for u in half]
    assert indices == sorted(indices)
    assert 800 <= sum(u.duration for u in half) < 800 + 7
    assert sample_hours(utterances, None, seed=3) == utterances
