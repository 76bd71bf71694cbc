"""The models a server offers: every ``*.ckpt`` in one directory, named by file stem.

A ``NAME.lm.npz`` beside ``NAME.ckpt`` is that model's label language model: requests with
``beam_size`` > 1 decode with it.

Checkpoints are read once per file (``shared_model``; ``weights_only=True``: a model file cannot run
code) and wrapped in a :class:`Recognizer`, the only object that touches the model. A bad file
stops start-up with its ``CheckpointError`` rather than leaving a silently missing model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiomodels.checkpoint import CheckpointError, shared_model
from audiomodels.calibration import own_calibration
from audiomodels.lm import LMError, lm_beside, own_fusion
from audiomodels.recognizer import Recognizer
from service.limits import ModelNotFound

PREFERRED_DEFAULT = "char"  # the shipped character model, when present


@dataclass(frozen=True)
class ModelEntry:
    """One loaded model and what ListModels says about it."""

    name: str
    recognizer: Recognizer
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)
    model_card: str = ""  # NAME.md beside the checkpoint

    @property
    def metrics(self) -> dict[str, float]:
        """Numeric dev scores the training run stored (``metadata["metrics"]``)."""
        stored = self.metadata.get("metrics") or {}
        return {k: float(v) for k, v in stored.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class ModelRegistry:
    """Name -> :class:`ModelEntry`, with a default for requests that name no model."""

    def __init__(self, entries: list[ModelEntry], default: str | None = None) -> None:
        if not entries:
            raise CheckpointError("no models to serve")
        self._entries = {entry.name: entry for entry in sorted(entries, key=lambda e: e.name)}
        if default is None:
            default = PREFERRED_DEFAULT if PREFERRED_DEFAULT in self._entries else next(iter(self._entries))
        if default not in self._entries:
            raise CheckpointError(f"default model {default!r} is not among the loaded models: {self.names}")
        self.default_name = default

    @classmethod
    def load_dir(
        cls, directory: str | os.PathLike, default: str | None = None, **recognizer_kwargs: Any
    ) -> ModelRegistry:
        """Load every ``*.ckpt`` in ``directory`` (raises ``CheckpointError`` on any bad file)."""
        paths = sorted(Path(directory).glob("*.ckpt"))
        if not paths:
            raise CheckpointError(f"no *.ckpt files in {directory}")
        return cls([load_entry(path, **recognizer_kwargs) for path in paths], default)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())

    def get(self, name: str) -> ModelEntry:
        """The named model; the default one for an empty name."""
        entry = self._entries.get(name or self.default_name)
        if entry is None:
            raise ModelNotFound(f"model {name!r} is not loaded; available: {', '.join(self.names)}")
        return entry


CHECKS = {"char": "phone_check", "phone": "char_check"}  # label set kind -> the check its models take


def load_entry(path: Path, **recognizer_kwargs: Any) -> ModelEntry:
    """One checkpoint file -> a ready recognizer plus its ListModels facts. A ``phone_check`` among
    ``recognizer_kwargs`` goes to char models only (it re-ranks spelled hypotheses), a ``char_check``
    to phone models only (it re-ranks phone hypotheses)."""
    config, model, metadata = shared_model(path)  # one copy of the weights with a check reading with the same file
    kept = CHECKS.get(config.labels.kind)
    recognizer_kwargs = {k: v for k, v in recognizer_kwargs.items() if k not in CHECKS.values() or k == kept}
    try:  # beam search requests (beam_size > 1) use the model's own LM when one ships beside it
        fusion = own_fusion(path)
        recognizer = Recognizer(config, model, fusion=fusion, calibration=own_calibration(path), **recognizer_kwargs)
    except LMError as error:
        raise CheckpointError(f"{lm_beside(path)}: {error}") from None
    card = path.with_suffix(".md")
    return ModelEntry(
        name=path.stem,
        recognizer=recognizer,
        size_bytes=path.stat().st_size,
        metadata=dict(metadata),
        model_card=card.read_text() if card.is_file() else "",
    )
