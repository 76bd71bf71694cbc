"""Manifest utterances -> padded training batches.

The dataset runs the SAME :class:`~audiomodels.features.Featurizer` as serving and returns raw
(unnormalized) model frames: normalization lives in the model's buffers, fed by
:func:`compute_feature_stats`. Augmentation is reproducible per item: its random draws depend only
on ``(seed, epoch, index)``, never on which DataLoader worker fetched the item.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, Sampler

from audiomodels.audio import load_audio, prepare_waveform
from audiomodels.checkpoint import atomic_torch_save
from audiomodels.features import FeatureStats, Featurizer
from audiomodels.labels import LabelSet
from audiomodels.warp import warp_features, warp_matrix
from training.augment import BACKGROUNDS
from training.feature_pack import FeaturePack, FeaturePackError
from training.manifest import Utterance, spread_subset
from training.noise import FeatureNoise
from training.reverb import FeatureReverb
from training.telephone import FeatureTelephone


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (SpecAugment on model frames, Kaldi-style speed perturbation,
    vocal tract length perturbation, room reverberation, background noise, phone lines)."""

    spec_time_masks: int = 2  # time masks per utterance
    spec_time_mask_max: int = 10  # widest time mask, in model frames (30 ms each by default)
    spec_freq_masks: int = 2  # coefficient masks per utterance
    spec_freq_mask_max: int = 8  # widest coefficient mask, in MFCC coefficients (same band in every stacked copy)
    speed_factors: tuple[float, ...] = (0.9, 1.0, 1.1)  # speed-up factors drawn uniformly when perturbing
    speed_prob: float = 0.0  # probability that an utterance is speed-perturbed at all
    vtlp_prob: float = 0.0  # probability that an utterance's frequency axis is warped (audiomodels/warp.py)
    vtlp_range: tuple[float, float] = (0.87, 1.15)  # warp factors, drawn log-uniformly (>1: shorter vocal tract)
    reverb_prob: float = 0.0  # probability that an utterance's features are put in a fresh room (training/reverb.py)
    reverb_rt60: tuple[float, float] = (0.2, 0.9)  # reverberation time range in seconds, drawn uniformly
    reverb_drr_db: tuple[float, float] = (-2.0, 12.0)  # direct-to-reverberant ratio range (lower: farther away)
    noise_prob: float = 0.0  # probability that fresh noise is added to an utterance's features (training/noise.py)
    noise_snr_db: tuple[float, float] = (5.0, 30.0)  # SNR range, drawn uniformly; the kind uniformly from noise_kinds
    noise_kinds: tuple[str, ...] = ("brown", "pink", "white")  # of training.augment.BACKGROUNDS ("music" too)
    telephone_prob: float = 0.0  # probability that an utterance goes through a phone line (training/telephone.py)
    # Probability that an utterance gets silence before and after its speech, as recordings have and the synthetic
    # corpus mostly lacks (its speech starts within ~0.2 s; 0.5 s of silence around clean test speech costs the
    # shipped models 1-1.6 points, 0.3 s before 150 test utterances, degraded ones included, cost char 3.2).
    silence_prob: float = 0.0
    silence_s: tuple[float, float] = (0.0, 1.0)  # seconds at each end, drawn uniformly and independently

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.noise_kinds if kind not in BACKGROUNDS]
        if unknown or not self.noise_kinds:
            raise ValueError(f"augment.noise_kinds must name some of {', '.join(BACKGROUNDS)}, got {list(self.noise_kinds)}")


class SpeechDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Utterances -> ``(features (T, D) float32, targets (L,) int64)``.

    Targets are encoded up front, so a symbol outside the label set fails at construction (with
    the utterance's path in the error notes) rather than hours into training.

    With ``cache_dir`` the un-augmented features are stored per utterance and speed factor, keyed
    by a hash of the audio path, size, mtime, feature config and factor, so epochs after the first
    skip decoding, resampling and MFCC. Speed perturbation is deterministic per factor, so its
    variants are cached too (one more cache copy per factor on disk): computing them cost 84 ms
    per 1,000 model frames against 5 ms to read, ~0.3 s of a ~1.6 s CPU step at ``speed_prob`` 0.6.
    The key does not cover the featurizer *code*: clear the cache when that changes. VTLP, reverb,
    noise, phone line and SpecAugment are drawn afresh and applied after the cache.

    With ``pack`` (:mod:`training.feature_pack`) the features come from the pack instead, whose
    utterances these must be; speed perturbation needs the audio, so it is refused then.

    Call :meth:`set_epoch` every epoch to vary augmentation. With ``persistent_workers=True`` a
    DataLoader's workers keep their copy of the dataset, so the epoch would not reach them.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        featurizer: Featurizer,
        labels: LabelSet,
        *,
        target_field: str = "text",
        augment: AugmentConfig | None = None,
        cache_dir: Path | None = None,
        pack: FeaturePack | None = None,
        seed: int = 0,
    ) -> None:
        if pack is not None:
            if pack.features_config != featurizer.config:
                raise FeaturePackError(f"the pack's features {pack.features_config} are not this run's {featurizer.config}")
            if augment is not None and augment.speed_prob > 0:
                raise FeaturePackError("speed perturbation re-reads the audio, which a feature pack lacks: set augment.speed_prob=0")
        self.pack = pack
        self.utterances = list(utterances)
        self.featurizer = featurizer
        self.labels = labels
        self.target_field = target_field
        self.augment = augment
        self.cache_dir = cache_dir
        self.seed = seed
        self.epoch = 0
        self._targets = [self._encode_target(u) for u in self.utterances]
        self._feature_key = json.dumps(asdict(featurizer.config), sort_keys=True)
        self._noise = FeatureNoise(featurizer) if augment is not None and augment.noise_prob > 0 else None
        self._reverb = FeatureReverb(featurizer) if augment is not None and augment.reverb_prob > 0 else None
        self._telephone = FeatureTelephone(featurizer) if augment is not None and augment.telephone_prob > 0 else None
        # Digital silence's model frame (every frame of silence is the same); rooms and noise drawn later fill it.
        silent = augment is not None and augment.silence_prob > 0
        self._silence_frame = featurizer(torch.zeros(featurizer.config.sample_rate))[0] if silent else None
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.utterances)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws :meth:`__getitem__` makes."""
        self.epoch = epoch

    def num_frames(self, index: int) -> int:
        """Model frames estimated from the manifest duration (no audio read), for batching.

        Speed perturbation changes the real count by up to the chosen factor.
        """
        sample_rate = self.featurizer.config.sample_rate
        return self.featurizer.num_model_frames(round(self.utterances[index].duration * sample_rate))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (augmented when configured) and the encoded target of utterance ``index``."""
        if self.augment is None:
            return self.features(index), self._targets[index]
        generator = torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, index))
        speed = _draw_speed(self.augment, generator)
        features = self.features(index, speed)
        if self.augment.vtlp_prob > 0:  # no draw otherwise: runs without VTLP keep their augmentation streams
            alpha = _draw_warp(self.augment, generator)
            if alpha != 1.0:
                features = warp_features(features, warp_matrix(self.featurizer.config, alpha))
        if self._silence_frame is not None:  # drawn only when configured, like VTLP; before the room and the noise
            before, after = _draw_silence(self.augment, generator, self.featurizer.config.frame_shift_s)
            features = torch.cat([self._silence_frame.expand(before, -1), features, self._silence_frame.expand(after, -1)])
        if self._reverb is not None:  # the room before the noise, as in the corpus; drawn only when configured
            room = _draw_reverb(self.augment, generator)
            if room is not None:
                features = self._reverb.add(features, *room)
        if self._noise is not None:  # drawn only when configured, like VTLP
            noise = _draw_noise(self.augment, generator)
            if noise is not None:
                features = self._noise.add(features, *noise, generator)
        if self._telephone is not None and torch.rand((), generator=generator).item() < self.augment.telephone_prob:
            features = self._telephone.add(features)  # the line after the room and the noise, as in the corpus
        n_mfcc = self.featurizer.config.n_mfcc
        return spec_augment(features, self.augment, generator, n_mfcc), self._targets[index]

    def features(self, index: int, speed: float = 1.0) -> torch.Tensor:
        """Model frames (T, D) of the utterance at ``speed``, from the pack or the cache when there is one."""
        if self.pack is not None:
            return self.pack.features(index)
        if self.cache_dir is None:
            return self._compute_features(index, speed)
        path = self._cache_path(self.cache_dir, index, speed)
        if path.exists():
            return torch.load(path, weights_only=True)
        features = self._compute_features(index, speed)
        atomic_torch_save(features, path)  # atomic: concurrent workers never read a partial file
        return features

    def _compute_features(self, index: int, speed: float = 1.0) -> torch.Tensor:
        """Decode, optionally speed-perturb, featurize.

        Speed perturbation reads the samples as if recorded at ``rate * speed`` and resamples them
        back to ``rate``: tempo and pitch change together, like Kaldi's ``sox speed``.
        """
        rate = self.featurizer.config.sample_rate
        waveform = load_audio(self.utterances[index].audio_filepath, target_rate=rate)
        if speed != 1.0:
            waveform = prepare_waveform(waveform, round(rate * speed), target_rate=rate)
        return self.featurizer(waveform)

    def _cache_path(self, cache_dir: Path, index: int, speed: float) -> Path:
        audio = self.utterances[index].audio_filepath
        stat = audio.stat()
        fields: list[object] = [str(audio), stat.st_size, stat.st_mtime_ns, self._feature_key]
        if speed != 1.0:  # unperturbed keys stay as they were, so existing caches remain valid
            fields.append(speed)
        key = json.dumps(fields)
        return cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"

    def _encode_target(self, utterance: Utterance) -> torch.Tensor:
        try:
            text = utterance.target(self.target_field)
            if text is None:
                raise ValueError(f"utterance has no {self.target_field!r} field")
            return torch.tensor(self.labels.encode(self.labels.normalize(text)), dtype=torch.long)
        except ValueError as exc:  # LabelError is a ValueError too
            exc.add_note(f"in manifest entry for {utterance.audio_filepath}")
            raise


def _item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 64-bit seed for one item's augmentation draws."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0])


def _draw_speed(config: AugmentConfig, generator: torch.Generator) -> float:
    """The speed factor for one item: 1.0 unless it is perturbed (probability ``speed_prob``)."""
    perturb = torch.rand((), generator=generator).item() < config.speed_prob
    choice = int(torch.randint(len(config.speed_factors), (), generator=generator))
    return config.speed_factors[choice] if perturb else 1.0


def _draw_warp(config: AugmentConfig, generator: torch.Generator) -> float:
    """The VTLP factor for one item: 1.0 unless it is warped (probability ``vtlp_prob``)."""
    perturb = torch.rand((), generator=generator).item() < config.vtlp_prob
    low, high = np.log(config.vtlp_range[0]), np.log(config.vtlp_range[1])
    alpha = float(np.exp(low + (high - low) * torch.rand((), generator=generator).item()))
    return alpha if perturb else 1.0


def _draw_silence(config: AugmentConfig, generator: torch.Generator, frame_shift_s: float) -> tuple[int, int]:
    """Model frames of silence (before, after) one item: (0, 0) unless it gets some (probability ``silence_prob``)."""
    perturb = torch.rand((), generator=generator).item() < config.silence_prob
    low, high = config.silence_s
    before, after = (round((low + (high - low) * torch.rand((), generator=generator).item()) / frame_shift_s)
                     for _ in range(2))
    return (before, after) if perturb else (0, 0)


def _draw_reverb(config: AugmentConfig, generator: torch.Generator) -> tuple[float, float] | None:
    """(rt60, DRR in dB) of the room one item is put in, or None (probability ``1 - reverb_prob``)."""
    perturb = torch.rand((), generator=generator).item() < config.reverb_prob
    rt60, drr_db = (low + (high - low) * torch.rand((), generator=generator).item()
                    for low, high in (config.reverb_rt60, config.reverb_drr_db))
    return (rt60, drr_db) if perturb else None


def _draw_noise(config: AugmentConfig, generator: torch.Generator) -> tuple[float, str] | None:
    """(SNR in dB, colour) of the noise added to one item, or None (probability ``1 - noise_prob``)."""
    perturb = torch.rand((), generator=generator).item() < config.noise_prob
    low, high = config.noise_snr_db
    snr_db = low + (high - low) * torch.rand((), generator=generator).item()
    kinds = config.noise_kinds
    kind = kinds[int(torch.randint(len(kinds), (), generator=generator))]
    return (snr_db, kind) if perturb else None


def spec_augment(
    features: torch.Tensor, config: AugmentConfig, generator: torch.Generator, n_mfcc: int
) -> torch.Tensor:
    """SpecAugment on stacked model frames (T, stack * n_mfcc); returns a new tensor, same shape.

    Time masks cover whole model frames; a coefficient mask covers the same MFCC band in every
    stacked copy, so it hides that band for the full 3 x 10 ms of each frame. Masked cells take the
    utterance's mean of that input dimension, not zero: the features are raw MFCCs (normalized
    later, inside the model), where zero is far from typical for c0 and would be an outlier.
    """
    num_frames, dim = features.shape
    fill = features.mean(dim=0)  # (D,)
    masked = features.clone()
    for _ in range(config.spec_time_masks):
        start, width = _draw_band(num_frames, config.spec_time_mask_max, generator)
        masked[start : start + width] = fill
    copies = masked.view(num_frames, dim // n_mfcc, n_mfcc)  # (T, stack, n_mfcc), shares storage with masked
    fill_copies = fill.view(dim // n_mfcc, n_mfcc)  # (stack, n_mfcc)
    for _ in range(config.spec_freq_masks):
        start, width = _draw_band(n_mfcc, config.spec_freq_mask_max, generator)
        copies[:, :, start : start + width] = fill_copies[:, start : start + width]
    return masked


def _draw_band(size: int, max_width: int, generator: torch.Generator) -> tuple[int, int]:
    """(start, width) with width uniform in [0, min(max_width, size)] and the band inside ``size``."""
    width = int(torch.randint(min(max_width, size) + 1, (), generator=generator))
    start = int(torch.randint(size - width + 1, (), generator=generator))
    return start, width


@dataclass
class Batch:
    """Padded batch; padding is zeros and must be ignored through the ``*_lengths``."""

    features: torch.Tensor  # (B, T_max, D) float32
    feature_lengths: torch.Tensor  # (B,) int64, model frames
    targets: torch.Tensor  # (B, L_max) int64
    target_lengths: torch.Tensor  # (B,) int64

    def to(self, device: torch.device | str) -> Batch:
        """All tensors on ``device``; copies from pinned memory are asynchronous (safe only there)."""
        return Batch(*(tensor.to(device, non_blocking=tensor.is_pinned()) for tensor in self._tensors()))

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)``, which cannot pin a custom type itself."""
        return Batch(*(tensor.pin_memory() for tensor in self._tensors()))

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return self.features, self.feature_lengths, self.targets, self.target_lengths


def collate(items: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    """``[(features (T_i, D), targets (L_i,))]`` -> :class:`Batch` (zero padded)."""
    features, targets = zip(*items, strict=True)
    return Batch(
        features=pad_sequence(features, batch_first=True),
        feature_lengths=torch.tensor([f.shape[0] for f in features], dtype=torch.long),
        targets=pad_sequence(targets, batch_first=True),
        target_lengths=torch.tensor([t.shape[0] for t in targets], dtype=torch.long),
    )


class FrameBudgetBatchSampler(Sampler[list[int]]):
    """Length-bucketed batches whose padded size (batch size x longest item) stays within a budget.

    Per epoch: shuffle all indices, split them into pools of ``pool_size``, sort each pool by
    frame count and cut it into batches, then shuffle the batch order. Sorting inside pools (not
    globally) keeps padding low while batch composition still changes between epochs. An item
    longer than ``max_frames`` gets a batch of its own; nothing is dropped. Items count as at
    least one frame, so empty ones cannot form unbounded batches. Without ``shuffle`` the order
    is one global length sort (for evaluation). Everything is seeded by ``(seed, epoch)``.
    """

    def __init__(
        self,
        frame_counts: Sequence[int],
        max_frames: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        pool_size: int = 10_000,
    ) -> None:
        if max_frames < 1 or pool_size < 1:
            raise ValueError("max_frames and pool_size must be positive")
        self._costs = [max(int(count), 1) for count in frame_counts]  # frames, at least 1
        self.max_frames = max_frames
        self.shuffle = shuffle
        self.seed = seed
        self.pool_size = pool_size
        self.epoch = 0
        self._yielded = 0  # batches handed out in the current epoch, including skipped ones
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip) from load_state_dict
        self._cached: tuple[int, list[list[int]]] | None = None  # (epoch, its batches)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next (different epochs give different orders)."""
        self.epoch = epoch
        self._yielded = self._skip()  # 0, or the resume point when this is the resumed epoch

    def __len__(self) -> int:
        """Batches the next iteration yields (fewer after resuming mid-epoch)."""
        return len(self._epoch_batches()) - self._skip()

    def __iter__(self) -> Iterator[list[int]]:
        # Not a generator itself: the position resets when iteration is requested, not on first next().
        batches = self._epoch_batches()
        self._yielded = self._skip()
        return self._counted(batches[self._yielded :])

    def _counted(self, batches: list[list[int]]) -> Iterator[list[int]]:
        # The resume point is spent only once iteration really starts: DataLoader calls iter() on
        # its batch sampler twice and uses only the second iterator.
        self._resume = None
        for batch in batches:
            self._yielded += 1
            yield batch

    def state_dict(self, *, batches_consumed: int | None = None) -> dict[str, int]:
        """Position within the epoch, for :meth:`load_state_dict`.

        A DataLoader with workers draws batches ahead of the training loop, so the sampler's own
        count can exceed what was trained on; pass the loop's count as ``batches_consumed`` then.
        """
        done = self._yielded if batches_consumed is None else batches_consumed
        return {"epoch": self.epoch, "batches_yielded": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration of that epoch yields exactly the batches not yet yielded."""
        self.epoch = state["epoch"]
        self._yielded = state["batches_yielded"]
        self._resume = (state["epoch"], state["batches_yielded"])

    def _skip(self) -> int:
        """Batches the next iteration skips: only a resumed epoch skips any."""
        return self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0

    def _epoch_batches(self) -> list[list[int]]:
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self._make_batches(self.epoch))
        return self._cached[1]

    def _make_batches(self, epoch: int) -> list[list[int]]:
        count = len(self._costs)
        if not self.shuffle:
            return self._cut(sorted(range(count), key=self._costs.__getitem__))
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(count).tolist()
        batches = []
        for start in range(0, count, self.pool_size):
            pool = sorted(order[start : start + self.pool_size], key=self._costs.__getitem__)
            batches.extend(self._cut(pool))
        return [batches[i] for i in rng.permutation(len(batches))]

    def _cut(self, ascending: list[int]) -> list[list[int]]:
        """Greedy cut of length-sorted indices: close a batch when the next item would overflow it."""
        batches: list[list[int]] = []
        batch: list[int] = []
        for index in ascending:
            if batch and (len(batch) + 1) * self._costs[index] > self.max_frames:
                batches.append(batch)
                batch = []
            batch.append(index)
        if batch:
            batches.append(batch)
        return batches


def compute_feature_stats(
    dataset: SpeechDataset, max_utterances: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global per-coefficient ``(mean, std)``, each (n_mfcc,), for ``AcousticModel.set_normalization``.

    Uses un-augmented features (through the cache, which this pass also fills). With
    ``max_utterances``, an evenly spaced subset is used, so a manifest ordered by speaker or
    length is still sampled across its whole range.
    """
    indices = range(len(dataset))
    stats = FeatureStats(dataset.featurizer.config.n_mfcc)
    for index in indices if max_utterances is None else spread_subset(indices, max_utterances):
        stats.update(dataset.features(index))
    return stats.mean_std()
