"""BiGRU-CTC acoustic model.

A plain ``nn.Module``: no loss, optimizer or metrics inside. Layers are separate single-layer
bidirectional GRUs (not one stacked ``nn.GRU``) so that dropout sits between them and a chunked
streaming forward can drive each layer with its own carried state.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from audiomodels.config import ModelConfig


class AcousticModel(nn.Module):
    """Stacked MFCC frames -> per-frame log-probabilities over labels (blank at 0)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # Global normalization statistics from training; buffers so they travel with the weights.
        self.register_buffer("feature_mean", torch.zeros(config.input_dim))
        self.register_buffer("feature_std", torch.ones(config.input_dim))
        self.input_projection = nn.Sequential(nn.Linear(config.input_dim, config.proj_dim), nn.ReLU())
        self.layers = nn.ModuleList(
            nn.GRU(
                config.proj_dim if index == 0 else 2 * config.hidden_size,
                config.hidden_size,
                batch_first=True,
                bidirectional=True,
            )
            for index in range(config.num_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.output_projection = nn.Linear(2 * config.hidden_size, config.num_labels)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-coefficient stats (F,) or per-input stats (input_dim,); F is tiled over the stack."""
        repeats = self.config.input_dim // mean.shape[0]
        self.feature_mean.copy_(mean.repeat(repeats))
        self.feature_std.copy_(std.repeat(repeats))

    def forward(self, features: torch.Tensor, feature_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, T, input_dim), (N,) -> log_probs (N, T, num_labels), out_lengths (N,).

        Sequences are packed, so frames past an item's length never influence its outputs;
        padded output frames are zeros and must be ignored through ``out_lengths``.
        """
        if feature_lengths.numel() and int(feature_lengths.min()) < 1:
            raise ValueError("every sequence needs at least one frame")
        hidden = (features - self.feature_mean) / self.feature_std  # (N, T, D)
        hidden = self.input_projection(hidden)  # (N, T, proj_dim)
        lengths_cpu = feature_lengths.cpu()
        for index, layer in enumerate(self.layers):
            if index > 0:
                hidden = self.dropout(hidden)
            packed = pack_padded_sequence(hidden, lengths_cpu, batch_first=True, enforce_sorted=False)
            packed_out, _ = layer(packed)
            hidden, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=features.shape[1])
        logits = self.output_projection(self.dropout(hidden))  # (N, T, num_labels)
        return logits.log_softmax(dim=-1), feature_lengths

    def num_parameters(self) -> int:
        """Trainable parameter count (for model cards and logs)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
