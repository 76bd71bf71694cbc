"""Feature packs: a corpus's un-augmented model features, quantized and compressed, so a run can
train where its audio is not (``speechlabel pack``, then ``speechlabel train --train-pack``).

Why: a machine lent for minutes (a GPU box that can reach nothing) takes tens of megabytes, not the
gigabytes of WAV a corpus is. Each MFCC coefficient is kept as one signed byte in steps of
1/``STEPS_PER_STD`` of its standard deviation over the pack, then LZMA: ~2.7 KB per second of audio
(~9.7 MB an hour) against 32 KB/s of WAV and 18 KB/s of FLAC. At 16 steps the shipped char model
reads packed test features at 15.95% greedy CER against 15.90% on the exact ones; 8 steps (2.3 KB/s)
cost it 0.27 points, 4 steps 0.83 (``benchmarks/feature_pack.py``).

Everything a run draws after its feature cache (VTLP, silence, rooms, noise, phone lines,
SpecAugment) works on packed features alike; speed perturbation re-reads the audio, which a pack does
not hold, so :class:`training.data.SpeechDataset` refuses a pack with ``speed_prob`` above 0.
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from audiomodels.config import FeatureConfig
from audiomodels.features import Featurizer
from audiomodels.files import atomic_write
from training.manifest import Utterance, read_manifests, validate_manifest

PACK_VERSION = 1
STEPS_PER_STD = 16  # quantization steps per standard deviation of each coefficient


class FeaturePackError(ValueError):
    """A pack file is missing, corrupt, of another version, or unfit for the run reading it."""


@dataclass
class FeaturePack:
    """Packed utterances and their quantized MFCC frames, (n_mfcc, total frames) coefficient-major."""

    features_config: FeatureConfig
    utterances: list[Utterance]
    offsets: np.ndarray  # (N + 1,) MFCC frame offsets of each utterance into ``codes``
    mean: np.ndarray  # (n_mfcc,) float32
    step: np.ndarray  # (n_mfcc,) float32, one quantization step per coefficient
    codes: np.ndarray  # (n_mfcc, total MFCC frames) int8

    def __post_init__(self) -> None:
        self._featurizer = Featurizer(self.features_config)

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def hours(self) -> float:
        """Audio hours in the pack, from the manifest durations."""
        return sum(u.duration for u in self.utterances) / 3600

    def features(self, index: int) -> torch.Tensor:
        """Stacked model frames (T, n_mfcc * stack) of utterance ``index``, dequantized."""
        codes = self.codes[:, self.offsets[index] : self.offsets[index + 1]]
        mfcc = codes.T.astype(np.float32) * self.step + self.mean
        return self._featurizer.stack(torch.from_numpy(mfcc))


def quantize(mfcc: np.ndarray, mean: np.ndarray, step: np.ndarray) -> np.ndarray:
    """(frames, n_mfcc) float -> int8 codes; values beyond +-127 steps (7.9 std at 16 steps) are clipped."""
    return np.clip(np.rint((mfcc - mean) / step), -127, 127).astype(np.int8)


def build_pack(
    utterances: list[Utterance],
    model_frames: list[torch.Tensor],
    config: FeatureConfig,
    steps_per_std: int = STEPS_PER_STD,
) -> FeaturePack:
    """Quantize each utterance's stacked model frames (T, D) into one pack."""
    featurizer = Featurizer(config)
    mfccs = [featurizer.unstack(frames).numpy() for frames in model_frames]
    every = np.concatenate(mfccs)
    mean = every.mean(axis=0).astype(np.float32)
    step = (every.std(axis=0) / steps_per_std).astype(np.float32)
    step[step == 0] = 1.0  # a constant coefficient: any step rounds it exactly
    codes = np.ascontiguousarray(quantize(every, mean, step).T)
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in mfccs])]).astype(np.int64)
    return FeaturePack(config, list(utterances), offsets, mean, step, codes)


def write_pack(path: str | os.PathLike, pack: FeaturePack) -> None:
    """One atomic file: an LZMA-compressed ``.npz`` (no pickles) with a JSON header."""
    header = {
        "version": PACK_VERSION,
        "features": asdict(pack.features_config),
        "utterances": [u.to_record() for u in pack.utterances],
    }
    buffer = io.BytesIO()
    np.savez(
        buffer, header=np.array(json.dumps(header)), offsets=pack.offsets, mean=pack.mean, step=pack.step,
        codes=pack.codes,
    )
    atomic_write(path, lambda stream: stream.write(lzma.compress(buffer.getvalue(), preset=6)))


def read_pack(path: str | os.PathLike) -> FeaturePack:
    """Load a pack written by :func:`write_pack`; every failure is a :class:`FeaturePackError`."""
    source = Path(path)
    if not source.is_file():
        raise FeaturePackError(f"feature pack {source} does not exist")
    try:
        with np.load(io.BytesIO(lzma.decompress(source.read_bytes())), allow_pickle=False) as arrays:
            header = json.loads(str(arrays["header"]))
            offsets, mean, step, codes = (arrays[name] for name in ("offsets", "mean", "step", "codes"))
    except (lzma.LZMAError, OSError, ValueError, KeyError) as error:
        raise FeaturePackError(f"feature pack {source} is corrupt or not a feature pack: {error}") from error
    if header.get("version") != PACK_VERSION:
        raise FeaturePackError(f"feature pack {source} has version {header.get('version')}; this reads {PACK_VERSION}")
    utterances = [Utterance.from_record(record, source.parent) for record in header["utterances"]]
    if len(offsets) != len(utterances) + 1 or offsets[-1] != codes.shape[1]:
        raise FeaturePackError(f"feature pack {source} is inconsistent: its offsets do not cover its frames")
    return FeaturePack(FeatureConfig(**header["features"]), utterances, offsets, mean, step, codes)


def sample_hours(utterances: list[Utterance], hours: float | None, seed: int) -> list[Utterance]:
    """A seeded random subset of about ``hours`` of audio (all of it when None), in manifest order."""
    if hours is None:
        return list(utterances)
    order = list(range(len(utterances)))
    random.Random(seed).shuffle(order)
    chosen, total = [], 0.0
    for index in order:
        if total >= hours * 3600:
            break
        chosen.append(index)
        total += utterances[index].duration
    return [utterances[i] for i in sorted(chosen)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=Path, nargs="+", required=True, help="manifest(s) to pack, as one")
    parser.add_argument("--out", type=Path, required=True, help="pack file to write")
    parser.add_argument("--labels", default="char", help="char, phone or a label file: packs only what it can train on")
    parser.add_argument("--hours", type=float, help="a seeded random subset of this many hours (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --hours subset")
    parser.add_argument("--feature-cache", type=Path, help="a run's feature cache to read (and fill)")


def pack_manifests(
    manifests: list[Path], labels_spec: str, hours: float | None, seed: int, cache_dir: Path | None
) -> tuple[FeaturePack, str]:
    """Validate for ``labels_spec`` (char, phone or a label file), draw the subset, featurize
    through the cache; returns the pack and the validation summary."""
    from training.data import SpeechDataset  # here, not at the top: training.data imports this module
    from training.train import build_label_set

    labels = build_label_set(labels_spec)
    config = FeatureConfig()
    target_field = "phones" if labels.kind == "phone" else "text"
    report = validate_manifest(
        read_manifests(manifests), labels, target_field=target_field, frames_per_second=1 / config.frame_shift_s
    )
    utterances = sample_hours(report.kept, hours, seed)
    dataset = SpeechDataset(utterances, Featurizer(config), labels, target_field=target_field, cache_dir=cache_dir)
    return build_pack(utterances, [dataset.features(i) for i in range(len(dataset))], config), report.summary()


def run(args: argparse.Namespace) -> int:
    """CLI: validate, subset, featurize (through the cache) and write one pack."""
    pack, validation = pack_manifests(args.train, args.labels, args.hours, args.seed, args.feature_cache)
    print(validation)
    write_pack(args.out, pack)
    size = args.out.stat().st_size
    print(json.dumps({"pack": str(args.out), "utterances": len(pack), "hours": round(pack.hours, 3),
                      "megabytes": round(size / 1e6, 2), "bytes_per_audio_s": round(size / (pack.hours * 3600), 1)}))
    return 0
