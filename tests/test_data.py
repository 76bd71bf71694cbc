"""Dataset, feature cache, SpecAugment, collate, frame-budget sampler and feature statistics."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from audiomodels.audio import load_audio
from audiomodels.config import FeatureConfig
from audiomodels.features import Featurizer
from audiomodels.labels import LabelError, LabelSet
from tests.test_manifest import write_tone
from training.data import (
    AugmentConfig,
    Batch,
    FrameBudgetBatchSampler,
    SpeechDataset,
    collate,
    compute_feature_stats,
    spec_augment,
)
from training.manifest import Utterance

NO_MASKS = AugmentConfig(spec_time_masks=0, spec_freq_masks=0)


class CountingFeaturizer(Featurizer):
    """A Featurizer that counts how often it really computes features."""

    calls = 0

    def __call__(self, waveform: torch.Tensor | np.ndarray) -> torch.Tensor:
        self.calls += 1
        return super().__call__(waveform)


@pytest.fixture
def utterances(tmp_path: Path) -> list[Utterance]:
    """Four clips of different lengths; one at 22.05 kHz so loading resamples."""
    specs = [
        (1.0, 16000, "hello world"),
        (0.6, 22050, "open the door"),
        (1.5, 16000, "seven green apples"),
        (0.8, 16000, "the quick brown fox"),
    ]
    return [
        Utterance(write_tone(tmp_path / f"{i}.wav", seconds, rate), seconds, text)
        for i, (seconds, rate, text) in enumerate(specs)
    ]


def make_dataset(utterances: list[Utterance], **kwargs: object) -> SpeechDataset:
    return SpeechDataset(utterances, CountingFeaturizer(FeatureConfig()), LabelSet.char(), **kwargs)  # type: ignore[arg-type]


def test_items_are_the_featurizer_on_the_loaded_audio(utterances: list[Utterance]) -> None:
    dataset = make_dataset(utterances)
    labels = LabelSet.char()
    assert len(dataset) == 4
    for index, utterance in enumerate(utterances):
        features, targets = dataset[index]
        expected = dataset.featurizer(load_audio(utterance.audio_filepath))
        assert features.dtype == torch.float32 and targets.dtype == torch.int64
        torch.testing.assert_close(features, expected, rtol=0, atol=0)
        assert targets.tolist() == labels.encode(labels.normalize(utterance.text))
        assert dataset.num_frames(index) == features.shape[0]


def test_phone_targets(tmp_path: Path) -> None:
    utterance = Utterance(write_tone(tmp_path / "a.wav", 1.0), 1.0, "hello", phones="h ə l oʊ")
    dataset = SpeechDataset([utterance], Featurizer(FeatureConfig()), LabelSet.phone(), target_field="phones")
    assert LabelSet.phone().decode(dataset[0][1].tolist()) == "h ə l oʊ"


def test_unencodable_target_fails_at_construction_naming_the_file(utterances: list[Utterance]) -> None:
    bad = Utterance(utterances[0].audio_filepath, 1.0, "price in ¥")
    with pytest.raises(LabelError) as info:
        make_dataset([utterances[1], bad])
    assert any(str(bad.audio_filepath) in note for note in info.value.__notes__)


def test_cache_is_used_and_returns_identical_features(utterances: list[Utterance], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = make_dataset(utterances, cache_dir=cache)
    computed = [first[i][0] for i in range(len(first))]
    assert first.featurizer.calls == 4
    assert len(list(cache.glob("*.pt"))) == 4
    assert not list(cache.glob("*.tmp"))

    second = make_dataset(utterances, cache_dir=cache)  # a new run (or epoch) over the same files
    for index, features in enumerate(computed):
        torch.testing.assert_close(second[index][0], features, rtol=0, atol=0)
    assert second.featurizer.calls == 0


def test_a_phone_run_reads_the_cache_a_char_run_wrote(utterances: list[Utterance], tmp_path: Path) -> None:
    """The cache keys hold no labels, so char and phone runs on one corpus can share a `feature_cache`."""
    cache = tmp_path / "shared"
    char = make_dataset(utterances, cache_dir=cache)
    char_features = [char[i][0] for i in range(len(char))]
    with_phones = [replace(u, phones="h ə l oʊ") for u in utterances]
    phone = SpeechDataset(
        with_phones, CountingFeaturizer(FeatureConfig()), LabelSet.phone(), target_field="phones", cache_dir=cache
    )
    for index, features in enumerate(char_features):
        torch.testing.assert_close(phone[index][0], features, rtol=0, atol=0)
    assert phone.featurizer.calls == 0 and len(list(cache.glob("*.pt"))) == len(utterances)


def test_cache_notices_changed_audio(utterances: list[Utterance], tmp_path: Path) -> None:
    dataset = make_dataset(utterances[:1], cache_dir=tmp_path / "cache")
    before = dataset[0][0]
    path = utterances[0].audio_filepath
    write_tone(path, 1.2)  # same name, new content
    os.utime(path, ns=(1, 1))  # even an mtime older than the cache entry must not hide the change
    after = dataset[0][0]
    assert dataset.featurizer.calls == 2
    assert after.shape[0] > before.shape[0]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_speed_perturbation_changes_length_and_is_cached_per_factor(utterances: list[Utterance], tmp_path: Path) -> None:
    plain = make_dataset(utterances[2:3])[0][0]
    faster = AugmentConfig(spec_time_masks=0, spec_freq_masks=0, speed_factors=(1.25,), speed_prob=1.0)
    dataset = make_dataset(utterances[2:3], augment=faster, cache_dir=tmp_path / "cache")
    perturbed = [dataset[0][0] for _ in range(2)]
    assert perturbed[0].shape[0] == pytest.approx(plain.shape[0] / 1.25, abs=1)
    assert dataset.featurizer.calls == 1  # the second draw of the same factor reads the cache
    torch.testing.assert_close(perturbed[1], make_dataset(utterances[2:3], augment=faster)[0][0], rtol=0, atol=0)
    unperturbed = make_dataset(utterances[2:3], cache_dir=tmp_path / "cache")
    torch.testing.assert_close(unperturbed[0][0], plain)  # its own entry, not the perturbed one
    assert unperturbed.featurizer.calls == 1
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


@pytest.mark.parametrize(
    "augment",
    [replace(NO_MASKS, vtlp_prob=1.0), replace(NO_MASKS, reverb_prob=1.0), replace(NO_MASKS, noise_prob=1.0)],
    ids=["vtlp", "reverb", "noise"],
)
def test_feature_augmentations_change_cached_features_without_featurizing_again(
    utterances: list[Utterance], tmp_path: Path, augment: AugmentConfig
) -> None:
    plain = make_dataset(utterances[2:3])[0][0]
    augmented = make_dataset(utterances[2:3], augment=augment, cache_dir=tmp_path / "cache")
    draws = [augmented[0][0], augmented[0][0]]
    augmented.set_epoch(1)
    draws.append(augmented[0][0])
    assert augmented.featurizer.calls == 1  # once into the cache; every draw reads it
    assert all(d.shape == plain.shape and not torch.allclose(d, plain, atol=1e-3) for d in draws)
    torch.testing.assert_close(draws[0], draws[1])  # same seed, epoch and index: the same draw
    assert not torch.allclose(draws[0], draws[2])  # another epoch: another draw


def test_phone_line_is_applied_to_cached_features_with_its_probability(utterances: list[Utterance], tmp_path: Path) -> None:
    plain = make_dataset(utterances[2:3])[0][0]
    always = make_dataset(utterances[2:3], augment=replace(NO_MASKS, telephone_prob=1.0), cache_dir=tmp_path / "cache")
    never = make_dataset(utterances[2:3], augment=replace(NO_MASKS, telephone_prob=1e-9), cache_dir=tmp_path / "cache")
    line, untouched = always[0][0], never[0][0]
    assert always.featurizer.calls == 1 and never.featurizer.calls == 0  # the second reads the first's cache entry
    assert line.shape == plain.shape and not torch.allclose(line, plain, atol=1e-3)
    torch.testing.assert_close(untouched, plain)


def test_silence_is_put_around_cached_features_and_noise_fills_it(utterances: list[Utterance], tmp_path: Path) -> None:
    plain = make_dataset(utterances[2:3])[0][0]
    augment = replace(NO_MASKS, silence_prob=1.0, silence_s=(0.1, 1.0))
    padded = make_dataset(utterances[2:3], augment=augment, cache_dir=tmp_path / "cache")
    silence = padded.featurizer(torch.zeros(16000))[0]
    shapes = set()
    for epoch in range(4):
        padded.set_epoch(epoch)
        features = padded[0][0]
        before = int((features == silence).all(dim=1).int().argmin())  # the first frame that is not silence
        after = len(features) - before - len(plain)
        assert 3 <= before <= 34 and 3 <= after <= 34  # 0.1-1.0 s of 30 ms frames at each end
        torch.testing.assert_close(features[before : before + len(plain)], plain, rtol=0, atol=0)
        assert (features[before + len(plain) :] == silence).all()
        shapes.add((before, after))
    assert len(shapes) > 1  # drawn afresh every epoch

    noisy = make_dataset(utterances[2:3], augment=replace(augment, noise_prob=1.0), cache_dir=tmp_path / "cache")[0][0]
    assert not (noisy == silence).all(dim=1).any()  # the noise drawn after the silence is in it too


def test_augmentation_depends_on_seed_epoch_and_index_only(utterances: list[Utterance]) -> None:
    augment = AugmentConfig(speed_prob=0.5)
    dataset = make_dataset(utterances, augment=augment, seed=3)
    again = make_dataset(utterances, augment=augment, seed=3)
    epoch0 = [dataset[i][0] for i in range(4)]
    for index in (3, 1, 0, 2):  # access order must not matter
        torch.testing.assert_close(again[index][0], epoch0[index], rtol=0, atol=0)
    dataset.set_epoch(1)
    assert any(not torch.equal(dataset[i][0], epoch0[i]) for i in range(4))
    unaugmented = make_dataset(utterances)
    assert any(not torch.equal(unaugmented[i][0], epoch0[i]) for i in range(4))


def band(mask: torch.Tensor) -> list[int]:
    """Indices where ``mask`` is true, asserted to be one contiguous run."""
    indices = mask.nonzero().flatten().tolist()
    if indices:
        assert indices == list(range(indices[0], indices[0] + len(indices)))
    return indices


@pytest.mark.parametrize("seed", range(20))
def test_spec_augment_time_mask(seed: int) -> None:
    features = torch.randn(50, 3 * 8)
    config = AugmentConfig(spec_time_masks=1, spec_time_mask_max=10, spec_freq_masks=0)
    masked = spec_augment(features, config, torch.Generator().manual_seed(seed), n_mfcc=8)
    assert masked.shape == features.shape
    rows = band((masked != features).any(dim=1))
    assert len(rows) <= 10
    for row in rows:
        torch.testing.assert_close(masked[row], features.mean(dim=0))
    unmasked = [r for r in range(50) if r not in rows]
    torch.testing.assert_close(masked[unmasked], features[unmasked], rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(20))
def test_spec_augment_coefficient_mask_is_the_same_band_in_every_stacked_copy(seed: int) -> None:
    features = torch.randn(40, 3 * 8)
    config = AugmentConfig(spec_time_masks=0, spec_freq_masks=1, spec_freq_mask_max=5)
    masked = spec_augment(features, config, torch.Generator().manual_seed(seed), n_mfcc=8)
    changed = (masked != features).any(dim=0).view(3, 8)  # (stack, n_mfcc)
    assert (changed == changed[0]).all()
    coefficients = band(changed[0])
    assert len(coefficients) <= 5
    columns = [copy * 8 + c for copy in range(3) for c in coefficients]
    torch.testing.assert_close(masked[:, columns], features[:, columns].mean(dim=0).expand(40, -1))


def test_spec_augment_masks_do_happen_and_leave_the_input_alone() -> None:
    features = torch.randn(50, 3 * 8)
    original = features.clone()
    masked_rows = [
        int((spec_augment(features, AugmentConfig(), torch.Generator().manual_seed(s), 8) != features).any(1).sum())
        for s in range(10)
    ]
    assert max(masked_rows) > 0
    torch.testing.assert_close(features, original, rtol=0, atol=0)
    empty = torch.zeros(0, 24)
    assert spec_augment(empty, AugmentConfig(), torch.Generator(), 8).shape == (0, 24)


def test_collate_pads_and_reports_lengths() -> None:
    items = [
        (torch.randn(5, 6), torch.tensor([1, 2, 3])),
        (torch.randn(9, 6), torch.tensor([4])),
        (torch.randn(2, 6), torch.tensor([5, 6])),
    ]
    batch = collate(items)
    assert batch.features.shape == (3, 9, 6) and batch.targets.shape == (3, 3)
    assert batch.feature_lengths.tolist() == [5, 9, 2] and batch.target_lengths.tolist() == [3, 1, 2]
    assert batch.targets.dtype == torch.int64 and batch.feature_lengths.dtype == torch.int64
    for row, (features, targets) in enumerate(items):
        torch.testing.assert_close(batch.features[row, : len(features)], features)
        assert batch.features[row, len(features) :].abs().sum() == 0
        assert batch.targets[row, : len(targets)].tolist() == targets.tolist()
    moved = batch.to("meta")
    assert isinstance(moved, Batch)
    tensors = (moved.features, moved.feature_lengths, moved.targets, moved.target_lengths)
    assert {t.device.type for t in tensors} == {"meta"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning needs a CUDA device")
def test_batch_pins_and_moves_to_the_gpu() -> None:
    batch = collate([(torch.randn(5, 6), torch.tensor([1, 2])), (torch.randn(3, 6), torch.tensor([3]))])
    pinned = batch.pin_memory()
    assert pinned.features.is_pinned() and pinned.target_lengths.is_pinned()
    on_gpu = pinned.to("cuda")
    assert on_gpu.targets.is_cuda
    torch.testing.assert_close(on_gpu.features.cpu(), batch.features)


def test_dataloader_with_sampler_and_collate(utterances: list[Utterance]) -> None:
    dataset = make_dataset(utterances, augment=AugmentConfig())
    frame_counts = [dataset.num_frames(i) for i in range(len(dataset))]
    sampler = FrameBudgetBatchSampler(frame_counts, max_frames=100)
    batches = list(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate))
    assert sorted(int(n) for b in batches for n in b.feature_lengths) == sorted(frame_counts)
    for batch in batches:
        assert batch.features.shape[0] * batch.features.shape[1] <= 100 or batch.features.shape[0] == 1


def test_feature_stats_match_direct_computation(utterances: list[Utterance]) -> None:
    dataset = make_dataset(utterances, augment=AugmentConfig(speed_prob=1.0))  # stats ignore augmentation
    n_mfcc = dataset.featurizer.config.n_mfcc

    def direct(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        frames = torch.cat([dataset.featurizer(load_audio(utterances[i].audio_filepath)) for i in indices])
        coefficients = frames.reshape(-1, n_mfcc).double()
        return coefficients.mean(0).float(), coefficients.std(0, unbiased=False).float()

    mean, std = compute_feature_stats(dataset)
    assert mean.shape == std.shape == (n_mfcc,)
    for got, expected in zip((mean, std), direct([0, 1, 2, 3]), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
    for got, expected in zip(compute_feature_stats(dataset, max_utterances=2), direct([0, 2]), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------- sampler

frame_lists = st.lists(st.integers(0, 300), max_size=60)


def epoch_batches(sampler: FrameBudgetBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@settings(max_examples=200, deadline=None)
@given(
    counts=frame_lists,
    max_frames=st.integers(1, 600),
    pool_size=st.integers(1, 25),
    seed=st.integers(0, 99),
    shuffle=st.booleans(),
)
def test_sampler_invariants(counts: list[int], max_frames: int, pool_size: int, seed: int, shuffle: bool) -> None:
    sampler = FrameBudgetBatchSampler(counts, max_frames, shuffle=shuffle, seed=seed, pool_size=pool_size)
    twin = FrameBudgetBatchSampler(counts, max_frames, shuffle=shuffle, seed=seed, pool_size=pool_size)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        expected_length = len(sampler)
        batches = list(sampler)
        assert len(batches) == expected_length
        assert sorted(i for b in batches for i in b) == list(range(len(counts)))  # each index exactly once
        for batch in batches:
            assert len(batch) == 1 or len(batch) * max(counts[i] for i in batch) <= max_frames
        assert epoch_batches(twin, epoch) == batches  # same seed, same order


@settings(max_examples=200, deadline=None)
@given(
    counts=frame_lists,
    max_frames=st.integers(1, 600),
    pool_size=st.integers(1, 25),
    epoch=st.integers(0, 5),
    data=st.data(),
)
def test_sampler_resumes_mid_epoch_with_exactly_the_remaining_batches(
    counts: list[int], max_frames: int, pool_size: int, epoch: int, data: st.DataObject
) -> None:
    sampler = FrameBudgetBatchSampler(counts, max_frames, seed=7, pool_size=pool_size)
    sampler.set_epoch(epoch)
    full = list(sampler)
    done = data.draw(st.integers(0, len(full)))
    iterator = iter(sampler)
    for _ in range(done):
        next(iterator)
    state = sampler.state_dict()
    assert state == {"epoch": epoch, "batches_yielded": done}

    resumed = FrameBudgetBatchSampler(counts, max_frames, seed=7, pool_size=pool_size)
    resumed.load_state_dict(state)
    resumed.set_epoch(epoch)  # a training loop calls this on resume too; it must not undo the skip
    assert resumed.state_dict() == state
    assert len(resumed) == len(full) - done
    assert list(resumed) == full[done:]
    assert resumed.state_dict() == {"epoch": epoch, "batches_yielded": len(full)}
    assert epoch_batches(resumed, epoch + 1) == epoch_batches(sampler, epoch + 1)  # later epochs are whole


def test_state_dict_can_report_what_the_training_loop_consumed() -> None:
    sampler = FrameBudgetBatchSampler([10] * 20, max_frames=20, seed=1)
    full = list(sampler)
    state = sampler.state_dict(batches_consumed=3)  # a DataLoader prefetched everything, the loop used 3
    resumed = FrameBudgetBatchSampler([10] * 20, max_frames=20, seed=1)
    resumed.load_state_dict(state)
    assert list(resumed) == full[3:]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_through_a_dataloader_yields_only_the_remaining_batches(num_workers: int) -> None:
    """DataLoader calls iter() on its batch sampler twice; the resume point must survive that."""
    counts = list(range(10, 210))
    full = list(FrameBudgetBatchSampler(counts, max_frames=600, seed=3))
    resumed = FrameBudgetBatchSampler(counts, max_frames=600, seed=3)
    resumed.load_state_dict({"epoch": 0, "batches_yielded": 4})
    loader = torch.utils.data.DataLoader(
        list(range(len(counts))), batch_sampler=resumed, collate_fn=list, num_workers=num_workers
    )
    assert list(loader) == full[4:]


def test_sampler_orders_differ_between_epochs_and_seeds() -> None:
    counts = np.random.default_rng(0).integers(10, 500, 300).tolist()
    sampler = FrameBudgetBatchSampler(counts, 2000, pool_size=100)
    epoch0, epoch1 = epoch_batches(sampler, 0), epoch_batches(sampler, 1)
    other_seed = epoch_batches(FrameBudgetBatchSampler(counts, 2000, seed=1, pool_size=100), 0)
    assert epoch0 != epoch1 and epoch0 != other_seed
    assert {tuple(b) for b in epoch0} != {tuple(b) for b in epoch1}  # composition changes, not just order


def test_overlong_items_get_a_batch_of_their_own() -> None:
    batches = list(FrameBudgetBatchSampler([5, 500, 5, 700, 5], max_frames=100))
    assert sorted(map(sorted, batches)) == [[0, 2, 4], [1], [3]]


def test_length_bucketing_keeps_padding_low() -> None:
    counts = np.random.default_rng(1).integers(30, 1000, 2000).tolist()
    batches = list(FrameBudgetBatchSampler(counts, 20_000, pool_size=1000))
    padded = sum(len(b) * max(counts[i] for i in b) for b in batches)
    assert padded / sum(counts) < 1.1


def test_unshuffled_sampler_is_one_length_sort() -> None:
    counts = [30, 10, 20, 40, 10]
    sampler = FrameBudgetBatchSampler(counts, 40, shuffle=False)
    assert epoch_batches(sampler, 0) == epoch_batches(sampler, 3) == [[1, 4], [2], [0], [3]]


def test_sampler_rejects_a_nonpositive_budget() -> None:
    with pytest.raises(ValueError):
        FrameBudgetBatchSampler([1, 2], max_frames=0)
