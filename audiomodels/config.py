"""One config tree for features, labels and model.

A checkpoint stores ``AcousticConfig.to_dict()`` and rebuilds everything from it, so feature
settings are never retyped by hand in a second place (training, server and batch job all read
the same tree).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FeatureConfig:
    """MFCC front end. Defaults match ``librosa.feature.mfcc`` with the same arguments."""

    sample_rate: int = 16000  # Hz; all audio is resampled to this before featurizing
    win_length_ms: float = 25.0  # analysis window (Hann, periodic), also the FFT size
    hop_length_ms: float = 10.0  # step between MFCC frames
    n_mels: int = 80  # mel filters (Slaney scale and area normalization, as librosa)
    n_mfcc: int = 40  # cepstral coefficients kept after the orthonormal DCT-II
    f_min: float = 0.0  # lowest mel filter edge, Hz
    f_max: float | None = None  # highest mel filter edge, Hz; None = Nyquist
    stack: int = 3  # MFCC frames stacked into one model frame (and the subsampling factor)

    @property
    def win_length(self) -> int:
        """Window length in samples."""
        return round(self.sample_rate * self.win_length_ms / 1000)

    @property
    def hop_length(self) -> int:
        """Hop length in samples."""
        return round(self.sample_rate * self.hop_length_ms / 1000)

    @property
    def frame_samples(self) -> int:
        """Samples between consecutive model frames (hop x stack): the grid cuts keep frames on."""
        return self.hop_length * self.stack

    @property
    def frame_shift_s(self) -> float:
        """Seconds between consecutive model frames (hop x stack)."""
        return self.frame_samples / self.sample_rate

    @property
    def model_input_dim(self) -> int:
        """Width of a stacked model frame."""
        return self.n_mfcc * self.stack


@dataclass(frozen=True)
class LabelConfig:
    """The output alphabet. ``symbols[0]`` is always the CTC blank."""

    kind: str = "char"  # "char", "phone" or "custom": selects the text normalizer/tokenizer
    symbols: tuple[str, ...] = ()  # full symbol list, blank first; empty = the kind's default set
    word_separator: str = " "  # symbol that separates words (words and their times come from it)


@dataclass(frozen=True)
class Chunking:
    """Latency control for streaming: ``chunk`` model frames per step, ``right_context`` of look-ahead."""

    chunk: int
    right_context: int

    def __post_init__(self) -> None:
        if self.chunk < 1 or self.right_context < 0:
            raise ValueError(f"chunking needs chunk >= 1 and right_context >= 0, got {self}")

    @property
    def latency_frames(self) -> int:
        """Algorithmic latency in model frames: the chunk plus its look-ahead."""
        return self.chunk + self.right_context

    @classmethod
    def for_latency(cls, latency_s: float, frame_s: float) -> Chunking:
        """The chunking whose chunk + look-ahead fills ``latency_s``, a third of it look-ahead (as trained).

        ``for_latency(0.9, 0.03)`` is (20, 10); raises ``ValueError`` below two frames.
        """
        frames = math.floor(latency_s / frame_s + 1e-9)
        if frames < 2:
            two_frames_ms = 2 * frame_s * 1000
            raise ValueError(f"a latency of {latency_s * 1000:g} ms is under two model frames ({two_frames_ms:g} ms)")
        return cls(frames - frames // 3, frames // 3)


@dataclass(frozen=True)
class ModelConfig:
    """BiGRU-CTC acoustic model size."""

    input_dim: int = 120  # stacked feature width (FeatureConfig.model_input_dim)
    num_labels: int = 29  # output classes including blank (len(LabelSet))
    proj_dim: int = 256  # width of the input projection before the GRU stack
    hidden_size: int = 256  # GRU units per direction
    num_layers: int = 3  # bidirectional GRU layers
    residual_layers: int = 0  # more layers on top, each adding a projection of its output to its input
    dropout: float = 0.1  # dropout between layers (training only)
    stream_chunk: int = 20  # model frames per streaming step (20 x 30 ms = 600 ms)
    stream_right_context: int = 10  # look-ahead frames per streaming step (300 ms)

    @property
    def stacked_layers(self) -> int:
        """All GRU layers, plain and residual: the number of forward states a stream carries."""
        return self.num_layers + self.residual_layers

    @property
    def streaming(self) -> Chunking:
        """The chunking the server streams this model with."""
        return Chunking(self.stream_chunk, self.stream_right_context)


@dataclass(frozen=True)
class AcousticConfig:
    """Everything needed to rebuild featurizer, label set and model from a checkpoint."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML/torch-safe: only str, int, float, bool, None, lists)."""
        data = asdict(self)
        data["labels"]["symbols"] = list(self.labels.symbols)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AcousticConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError`` so typos surface."""
        labels = dict(data.get("labels", {}))
        labels["symbols"] = tuple(labels.get("symbols", ()))
        return cls(
            features=FeatureConfig(**data.get("features", {})),
            labels=LabelConfig(**labels),
            model=ModelConfig(**data.get("model", {})),
        )
