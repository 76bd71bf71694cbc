"""``speechlabel average``: one checkpoint whose weights are the mean of several of one lineage.

The weights at any one step carry the noise of the last updates; the mean of the models of the
last few evaluations (a run with ``keep_checkpoints: N`` keeps them) lies nearer the middle of the
region SGD was moving through. That pays while the learning rate is high; at the end of a cosine
decay it scored like the best checkpoint (measurements in the README, Retraining).
Only checkpoints of one lineage can be averaged: the same config and the same feature
normalization: one run, or fine-tuning rounds started from it (``init_from``) with its config.
Averaging a round's first and last model (a "soup") pays where the round traded one held-out set
for another: both shipped models are such means, better than either part (README, Retraining).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from audiomodels.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint

NORMALIZATION_BUFFERS = ("feature_mean", "feature_std")


def average_checkpoints(paths: Sequence[Path], weights: Sequence[float] | None = None) -> Checkpoint:
    """The mean of the checkpoints' floating-point weights (computed in float64), weighted by
    ``weights`` (normalized to sum 1; default equal), with the config of the first and the metadata
    of the last plus ``averaged_from`` (each path, step and share)."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    shares = shares_of(weights if weights is not None else [1.0] * len(paths), len(paths))
    return weighted_mean(paths, load_lineage(paths), shares)


def load_lineage(paths: Sequence[Path]) -> list[Checkpoint]:
    """The checkpoints at ``paths`` (at least one), refused unless they are one lineage: the same
    config and the same feature normalization. Load once to mix them in several ways."""
    checkpoints = [load_checkpoint(path) for path in paths]
    first = checkpoints[0]
    for path, other in zip(paths[1:], checkpoints[1:], strict=True):
        if other.config.to_dict() != first.config.to_dict():
            raise CheckpointError(f"{path} was built with another config than {paths[0]}: not one lineage")
        for name in NORMALIZATION_BUFFERS:
            if not torch.equal(other.state_dict[name], first.state_dict[name]):
                raise CheckpointError(f"{path} normalizes features differently from {paths[0]} ({name}): not one lineage")
    return checkpoints


def weighted_mean(paths: Sequence[Path], checkpoints: Sequence[Checkpoint], shares: Sequence[float]) -> Checkpoint:
    """``checkpoints`` (from :func:`load_lineage`, loaded from ``paths``) mixed by ``shares`` (from
    :func:`shares_of`), as :func:`average_checkpoints` describes."""
    first = checkpoints[0]
    state_dict = {}
    for name, tensor in first.state_dict.items():
        if not tensor.is_floating_point():
            state_dict[name] = tensor
            continue
        total = sum(share * checkpoint.state_dict[name].double() for share, checkpoint in zip(shares, checkpoints, strict=True))
        state_dict[name] = total.to(tensor.dtype)
    sources = [
        {"path": str(path), "step": c.metadata.get("step"), "share": share}
        for path, c, share in zip(paths, checkpoints, shares, strict=True)
    ]
    return Checkpoint(first.config, state_dict, {**checkpoints[-1].metadata, "averaged_from": sources})


def shares_of(weights: Sequence[float], count: int) -> list[float]:
    """Each checkpoint's share of the mean; a weight per checkpoint, none negative, not all zero."""
    if len(weights) != count:
        raise CheckpointError(f"{len(weights)} weights for {count} checkpoints: give one per checkpoint")
    if not all(math.isfinite(weight) and weight >= 0 for weight in weights) or sum(weights) <= 0:
        raise CheckpointError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
    total = sum(weights)
    return [weight / total for weight in weights]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoints",
        nargs="+",
        type=Path,
        help="checkpoints of one run or of fine-tuning rounds started from it, e.g. RUN_DIR/checkpoints/step-*.ckpt",
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the averaged checkpoint")
    parser.add_argument(
        "--weights",
        type=_float_list,
        help="W1,W2,...: one weight per checkpoint, normalized to sum 1 (default: equal), e.g. 2,1 "
        "keeps two thirds of the first",
    )


def _float_list(value: str) -> list[float]:
    try:
        return [float(part) for part in value.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {value!r}") from error


def run(args: argparse.Namespace) -> int:
    try:
        averaged = average_checkpoints(args.checkpoints, args.weights)
        save_checkpoint(args.out, averaged.config, averaged.build_model(), averaged.metadata)
    except CheckpointError as error:
        raise SystemExit(f"speechlabel average: {error}") from error
    steps = ", ".join(f"{source['step']} x {source['share']:.3g}" for source in averaged.metadata["averaged_from"])
    print(f"averaged {len(args.checkpoints)} checkpoints (step x share: {steps}) into {args.out}")
    return 0
