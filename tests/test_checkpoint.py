"""Checkpoints: round trip, atomic writes, clear errors for unknown versions and corrupt or unsafe files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from audiomodels.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint, shared_model
from audiomodels.config import AcousticConfig, FeatureConfig, LabelConfig, ModelConfig
from audiomodels.labels import LabelSet
from audiomodels.model import AcousticModel
from audiomodels.recognizer import Recognizer
from service.registry import load_entry
from tests.test_evaluate import save_tiny_model

CONFIG = AcousticConfig(
    features=FeatureConfig(n_mfcc=13, stack=2),
    labels=LabelConfig(kind="custom", symbols=("<blank>", "|", "a", "b"), word_separator="|"),
    model=ModelConfig(input_dim=26, num_labels=4, proj_dim=8, hidden_size=8, num_layers=1),
)


def saved_model(path: Path) -> AcousticModel:
    model = AcousticModel(CONFIG.model)
    model.set_normalization(torch.arange(13.0), torch.ones(13) * 2)
    save_checkpoint(path, CONFIG, model, metadata={"steps": 7, "dev_cer": 0.25})
    return model


def test_round_trip_restores_config_weights_stats_and_metadata(tmp_path: Path) -> None:
    model = saved_model(tmp_path / "m.ckpt")
    checkpoint = load_checkpoint(tmp_path / "m.ckpt")
    assert checkpoint.config == CONFIG
    assert checkpoint.metadata == {"steps": 7, "dev_cer": 0.25}
    rebuilt = checkpoint.build_model()
    assert not rebuilt.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name
    assert torch.equal(rebuilt.feature_mean, torch.arange(13.0).repeat(2))


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.ckpt"
    saved_model(path)
    original = path.read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        saved_model(path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.ckpt"
    saved_model(path)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated zip"])
def test_corrupt_files_fail_clearly(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or not a speechlabel checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "m.ckpt"
    saved_model(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


class _RunsCode:
    def __reduce__(self):  # noqa: D105 - the classic pickle exploit
        return (os.system, ("touch pwned",))


def test_pickled_code_is_not_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    torch.save({"format_version": FORMAT_VERSION, "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_missing_file_and_mismatched_weights(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    path = tmp_path / "m.ckpt"
    saved_model(path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["hidden_size"] = 16
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path).build_model()


def test_recognizers_and_served_models_of_one_file_share_its_model_until_it_changes(tmp_path: Path) -> None:
    # A server's char model and the char check reading with the same file hold one copy of the weights.
    path = save_tiny_model(tmp_path / "char.ckpt", LabelSet.char())
    served = load_entry(path).recognizer
    reading = Recognizer.from_checkpoint(path)
    assert reading.model is served.model and shared_model(path).metadata == {"note": "test"}
    fast = Recognizer.from_checkpoint(path, precision="bfloat16")  # another dtype is a copy, never a conversion
    assert fast.model is not served.model and next(served.model.parameters()).dtype == torch.float32
    save_checkpoint(path, served.config, served.model, metadata={"note": "retrained"})
    renewed = Recognizer.from_checkpoint(path)
    assert renewed.model is not served.model and shared_model(path).metadata == {"note": "retrained"}
    with pytest.raises(CheckpointError, match="does not exist"):
        shared_model(tmp_path / "missing.ckpt")
