"""MFCC parity with librosa, stream == whole signal, batch == single, normalization stats."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audiomodels.config import FeatureConfig
from audiomodels.features import FeatureStats, Featurizer, StreamingFeaturizer

SR = 16000


def chirp_with_noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    signal = 0.3 * np.sin(2 * np.pi * (200 + 1500 * t / seconds) * t) + 0.05 * rng.standard_normal(t.shape)
    return signal.astype(np.float32)


@pytest.fixture(scope="module")
def featurizer() -> Featurizer:
    return Featurizer(FeatureConfig())


def librosa_mfcc(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y, sr=config.sample_rate, n_fft=config.win_length, hop_length=config.hop_length,
        win_length=config.win_length, n_mels=config.n_mels, center=False,
    )
    return librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=config.n_mfcc).T


def test_mfcc_matches_librosa(featurizer: Featurizer, speech_files) -> None:
    """Same numbers as librosa.feature.mfcc on a chirp and on real speech.

    librosa's mfcc applies power_to_db with top_db=80 (relative to the signal's loudest bin), which
    would make a frame depend on the whole file; both sides use top_db=None here, as we do always.
    """
    speech, _ = librosa.load(next(iter(speech_files.values())), sr=SR)
    for y in (chirp_with_noise(2.0), speech):
        ours = featurizer.mfcc(torch.from_numpy(y)).numpy()
        reference = librosa_mfcc(y, featurizer.config)
        assert ours.shape == reference.shape == (featurizer.num_mfcc_frames(len(y)), 40)
        # Values reach ~900 in magnitude (log of near-silent bins); float32 FFT rounding: max ~6e-4, mean ~1e-4.
        assert np.abs(ours - reference).max() < 2e-3
        assert np.abs(ours - reference).mean() < 2e-4


def test_frame_counts_and_stacking(featurizer: Featurizer) -> None:
    assert featurizer.num_mfcc_frames(399) == 0
    assert featurizer.num_mfcc_frames(400) == 1
    assert featurizer.num_mfcc_frames(16000) == 98
    assert featurizer.num_model_frames(16000) == 32
    frames = featurizer(chirp_with_noise(1.0))
    assert frames.shape == (32, 120)
    mfcc = featurizer.mfcc(torch.from_numpy(chirp_with_noise(1.0)))
    assert torch.equal(frames[5], torch.cat([mfcc[15], mfcc[16], mfcc[17]]))
    assert featurizer(np.zeros(100, dtype=np.float32)).shape == (0, 120)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=24000), max_size=12))
def test_streaming_equals_whole_signal_for_any_split(split_points: list[int]) -> None:
    featurizer = Featurizer(FeatureConfig())
    y = chirp_with_noise(1.5, seed=3)
    stream = StreamingFeaturizer(featurizer)
    bounds = [0, *sorted(split_points), len(y)]
    pieces = [stream.accept(y[a:b]) for a, b in zip(bounds, bounds[1:])]
    streamed = torch.cat(pieces)
    whole = featurizer(y)
    assert streamed.shape == whole.shape
    assert torch.allclose(streamed, whole, atol=1e-3, rtol=1e-5)


def test_batch_equals_single(featurizer: Featurizer) -> None:
    signals = [chirp_with_noise(s, seed=i) for i, s in enumerate((0.7, 1.9, 1.2))]
    features, lengths = featurizer.batch(signals)
    assert lengths.tolist() == [featurizer.num_model_frames(len(s)) for s in signals]
    for row, signal in enumerate(signals):
        single = featurizer(signal)
        assert torch.allclose(features[row, : lengths[row]], single, atol=1e-3)
        assert torch.count_nonzero(features[row, lengths[row] :]) == 0


def test_feature_stats_match_numpy(featurizer: Featurizer) -> None:
    stats = FeatureStats(40)
    chunks = [featurizer.mfcc(torch.from_numpy(chirp_with_noise(1.0, seed=i))) for i in range(3)]
    for chunk in chunks:
        stats.update(chunk)
    mean, std = stats.mean_std()
    everything = torch.cat(chunks).double().numpy()
    np.testing.assert_allclose(mean.numpy(), everything.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(std.numpy(), everything.std(axis=0), rtol=1e-4, atol=1e-4)
    assert stats.count == everything.shape[0]
    with pytest.raises(ValueError, match="no frames"):
        FeatureStats(40).mean_std()


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=1, max_value=30))
def test_samples_needed_is_exactly_what_the_next_frames_take(already: int, frames: int) -> None:
    y = chirp_with_noise(2.0, seed=4)
    stream = StreamingFeaturizer(Featurizer(FeatureConfig()))
    stream.accept(y[:already])
    needed = stream.samples_needed(frames)
    if needed:
        shorter = StreamingFeaturizer(Featurizer(FeatureConfig()))
        shorter.accept(y[:already])
        assert shorter.accept(y[already : already + needed - 1]).shape[0] < frames
    assert stream.accept(y[already : already + needed]).shape[0] >= frames
