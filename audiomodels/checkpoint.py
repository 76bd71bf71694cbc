"""One-file checkpoints: format version, full config, normalization stats, weights, metadata.

Files are written atomically (temp file + fsync + rename) so a crash never leaves half a model,
and read with ``torch.load(weights_only=True)`` so a model file cannot execute code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import torch

from audiomodels.config import AcousticConfig
from audiomodels.files import FileVersion, atomic_write, file_version
from audiomodels.model import AcousticModel

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, of an unknown format version, or does not fit its config."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds, rebuilt into objects."""

    config: AcousticConfig
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    def build_model(self) -> AcousticModel:
        """The model with its weights and normalization stats loaded, in eval mode."""
        model = AcousticModel(self.config.model)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as error:
            raise CheckpointError(f"weights do not match the stored model config: {error}") from error
        return model.eval()


def atomic_torch_save(payload: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written file behind (see :mod:`audiomodels.files`)."""
    atomic_write(path, lambda stream: torch.save(payload, stream))


def save_checkpoint(
    path: str | os.PathLike,
    config: AcousticConfig,
    model: AcousticModel,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write model weights (incl. normalization buffers) with the config that built them."""
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "metadata": metadata or {},
    }
    atomic_torch_save(payload, path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint; every failure is a :class:`CheckpointError` naming the file."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"checkpoint {source} is corrupt or not a speechlabel checkpoint: {error}") from error
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"checkpoint {source} is not a speechlabel checkpoint (no format_version)")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {source} has format version {version}; this speechlabel reads version {FORMAT_VERSION}"
        )
    try:
        config = AcousticConfig.from_dict(payload["config"])
        return Checkpoint(config=config, state_dict=payload["state_dict"], metadata=payload.get("metadata", {}))
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {source} has an invalid config: {error}") from error


class SharedModel(NamedTuple):
    """A checkpoint's model built once for inference, with its config and metadata (not its
    state dict: the model holds the weights, and a second copy would undo the sharing)."""

    config: AcousticConfig
    model: AcousticModel
    metadata: dict[str, Any]


def shared_model(path: str | os.PathLike) -> SharedModel:
    """The checkpoint's model, loaded once per file version (its path, modification time and
    size) and shared, as :func:`audiomodels.lm.own_fusion` shares LMs: inference only reads
    weights, so a server's char model and the char check reading with the same file hold one copy.
    Whoever changes weights (training) builds its own (:meth:`Checkpoint.build_model`)."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")
    return _shared(file_version(source))


@lru_cache(maxsize=4)
def _shared(version: FileVersion) -> SharedModel:
    checkpoint = load_checkpoint(version[0])
    return SharedModel(checkpoint.config, checkpoint.build_model(), checkpoint.metadata)
