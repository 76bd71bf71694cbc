"""Checkpoint averaging: the (weighted) mean of one lineage's weights, refused across runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from audiomodels.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from audiomodels.config import AcousticConfig
from audiomodels.model import AcousticModel
from service.cli import main as cli_main
from tests.test_checkpoint import CONFIG
from training.average import average_checkpoints


def save(path: Path, seed: int, config: AcousticConfig = CONFIG, mean: float = 0.0) -> AcousticModel:
    """A randomly initialized model with one run's normalization, saved as a checkpoint of step ``seed``."""
    torch.manual_seed(seed)
    model = AcousticModel(config.model)
    model.set_normalization(torch.full((config.features.n_mfcc,), mean), torch.ones(config.features.n_mfcc))
    save_checkpoint(path, config, model, metadata={"step": seed})
    return model


def test_average_is_the_mean_of_every_weight_and_records_its_sources(tmp_path: Path) -> None:
    paths = [tmp_path / f"{seed}.ckpt" for seed in (1, 2, 3)]
    models = [save(path, seed) for seed, path in enumerate(paths, start=1)]
    out = tmp_path / "avg.ckpt"
    assert cli_main(["average", *map(str, paths), "--out", str(out)]) == 0
    averaged = load_checkpoint(out)
    for name, tensor in averaged.build_model().state_dict().items():
        expected = sum(m.state_dict()[name] for m in models) / 3
        torch.testing.assert_close(tensor, expected, msg=name)
    assert averaged.metadata["step"] == 3  # the last checkpoint's metadata
    assert [s["step"] for s in averaged.metadata["averaged_from"]] == [1, 2, 3]
    weights = [m.state_dict()["input_projection.0.weight"] for m in models]
    assert not torch.equal(weights[0], weights[1])  # the models differ, so the mean is a real test


def test_weights_set_each_checkpoints_share(tmp_path: Path) -> None:
    """``--weights 3,1`` is three quarters of the first model and a quarter of the second (a soup
    that leans toward one round); shares are recorded, and weights that cannot be shares are refused."""
    paths = [tmp_path / f"{seed}.ckpt" for seed in (1, 2)]
    models = [save(path, seed) for seed, path in enumerate(paths, start=1)]
    out = tmp_path / "soup.ckpt"
    assert cli_main(["average", *map(str, paths), "--weights", "3,1", "--out", str(out)]) == 0
    averaged = load_checkpoint(out)
    for name, tensor in averaged.build_model().state_dict().items():
        expected = 0.75 * models[0].state_dict()[name] + 0.25 * models[1].state_dict()[name]
        torch.testing.assert_close(tensor, expected, msg=name)
    assert [s["share"] for s in averaged.metadata["averaged_from"]] == [0.75, 0.25]
    for weights, message in (([1.0], "1 weights for 2 checkpoints"), ([1.0, -1.0], ">= 0"), ([1.0, float("nan")], "finite"), ([0.0, 0.0], "not all 0")):
        with pytest.raises(CheckpointError, match=message):
            average_checkpoints(paths, weights)
    with pytest.raises(SystemExit):
        cli_main(["average", *map(str, paths), "--weights", "1,x", "--out", str(tmp_path / "x.ckpt")])
    assert not (tmp_path / "x.ckpt").exists()


def test_checkpoints_of_different_runs_are_refused(tmp_path: Path) -> None:
    save(tmp_path / "a.ckpt", 1)
    save(tmp_path / "renormalized.ckpt", 2, mean=1.0)
    with pytest.raises(CheckpointError, match="normalizes features differently"):
        average_checkpoints([tmp_path / "a.ckpt", tmp_path / "renormalized.ckpt"])
    wider = replace(CONFIG, model=replace(CONFIG.model, hidden_size=16))
    save(tmp_path / "wider.ckpt", 3, config=wider)
    with pytest.raises(SystemExit, match="another config than"):
        cli_main(["average", str(tmp_path / "a.ckpt"), str(tmp_path / "wider.ckpt"), "--out", str(tmp_path / "x.ckpt")])
    assert not (tmp_path / "x.ckpt").exists()
