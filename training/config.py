"""Training configuration: frozen dataclasses filled from YAML files and ``--set key=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audiomodels.config import FeatureConfig, ModelConfig
from training.data import AugmentConfig

AMP_CHOICES = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine decay."""

    lr: float = 2e-3  # peak learning rate, reached after warmup
    weight_decay: float = 1e-2  # AdamW decoupled weight decay
    warmup_steps: int = 300  # linear ramp from 0 to lr
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio at max_steps
    grad_clip: float = 5.0  # max global gradient norm


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data paths."""

    labels: str = "char"  # "char", "phone", or a path to a custom label file
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # input_dim/num_labels are derived, not read
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    max_steps: int = 5000  # optimizer steps in the whole run
    batch_frames: int = 12000  # padded model frames per batch (batch size x longest item)
    eval_every: int = 500  # steps between dev evaluations (and "best" checkpoint decisions)
    checkpoint_every: int = 250  # steps between "last" checkpoints (bounds work lost to a crash)
    keep_checkpoints: int = 0  # models of the last N evaluations kept as checkpoints/step-N.ckpt (`speechlabel average`)
    dev_max_utterances: int = 400  # dev subset scored at each evaluation (keeps evaluation cheap)
    stats_max_utterances: int = 2000  # utterances used for the global normalization statistics
    num_workers: int = 2  # DataLoader worker processes (0 = load in the training process)
    torch_threads: int = 0  # intra-op CPU threads for the model (0 = torch's default, one per core)
    cache_features: bool = True  # cache un-augmented MFCCs under RUN_DIR/feature_cache (or feature_cache)
    # Another cache directory, e.g. one shared by a char and a phone run on the same manifests: its keys
    # are the audio file and the feature config, not the labels, and writes are atomic, so runs side by
    # side featurize each utterance once between them.
    feature_cache: str = ""
    amp: str = "auto"  # "auto" (bf16 where native: recent CUDA GPUs, AVX512-BF16/AMX CPUs), "bf16", "fp16" or "off"
    seed: int = 0  # seeds model init, sampler order and augmentation
    init_from: str = ""  # checkpoint whose weights (and normalization) start the run: fine-tuning
    chunked_prob: float = 0.0  # share of batches trained in latency-controlled (streaming) mode
    chunk_sizes: tuple[int, ...] = (10, 20, 40)  # C drawn per chunked batch, in model frames
    right_contexts: tuple[int, ...] = (5, 10, 20)  # R drawn per chunked batch, in model frames

    def __post_init__(self) -> None:
        if self.amp is False:  # YAML 1.1 reads a bare `off` as false
            object.__setattr__(self, "amp", "off")
        if self.amp not in AMP_CHOICES:  # a typo would otherwise train in a precision nobody chose
            raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")

    @property
    def target_field(self) -> str:
        """Manifest field holding the labels: phones for phone models, text otherwise."""
        return "phones" if self.labels == "phone" else "text"


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Recursively build dataclass ``cls`` from a dict, rejecting unknown keys with their names."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        field_type = fields[name].type
        nested = next((c for c in (FeatureConfig, ModelConfig, OptimConfig, AugmentConfig) if c.__name__ == field_type), None)
        if nested is not None and isinstance(value, dict):
            value = _build(nested, value)
        elif isinstance(value, list):
            value = tuple(value)
        else:
            value = _scalar(f"{cls.__name__}.{name}", field_type, value)
        values[name] = value
    return cls(**values)


def _scalar(name: str, field_type: str, value: Any) -> Any:
    """A number field's value as its type, or a ValueError that names the field.

    YAML 1.1 reads ``5e-4`` (no dot) as a string, which would otherwise reach the optimizer and
    fail there far from the setting that caused it.
    """
    if field_type not in ("int", "float"):
        return value
    try:
        if isinstance(value, bool):  # float(True) would pass as 1.0
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if field_type == "float":
        return number
    if not number.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _set_path(data: dict[str, Any], dotted: str, raw_value: str) -> None:
    """Apply one ``a.b=value`` override; the value is parsed as YAML (numbers, bools, lists)."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = yaml.safe_load(raw_value)


def load_train_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """YAML file (optional) + ``key.sub=value`` overrides -> TrainConfig."""
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
    for override in overrides:
        if "=" not in override:
            raise ValueError(f"override {override!r} must look like key.sub=value")
        key, value = override.split("=", 1)
        _set_path(data, key.strip(), value)
    return _build(TrainConfig, data)


def train_config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain dict for YAML/JSON (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))
