"""BiGRU-CTC acoustic model with a full-context and a latency-controlled (chunked) mode.

A plain ``nn.Module``: no loss, optimizer or metrics inside. Each layer is a pair of
unidirectional GRUs rather than one bidirectional ``nn.GRU`` because the chunked mode drives the
two directions differently:

* the forward direction runs over the stream's frames once, carrying its state across chunks;
* the backward direction restarts for every chunk of ``C`` frames and runs over the chunk plus
  ``R`` frames of right context (look-ahead), whose outputs are thrown away afterwards.

This is the latency-controlled BLSTM scheme (Zhang et al., 2016) applied to GRUs: every output
frame depends on at most ``C + R`` frames of future, so a stream's frames can be emitted
``C + R`` frames after they arrive. Full context is the special case of one chunk covering the
whole utterance with no look-ahead, so both modes share one code path (:meth:`AcousticModel.forward`
for whole utterances, :meth:`AcousticModel.forward_chunk` for one chunk of many live streams).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from audiomodels.config import Chunking, ModelConfig


class BiGRULayer(nn.Module):
    """One bidirectional layer over chunks: main frames plus per-chunk right context."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.forward_gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.backward_gru = nn.GRU(input_size, hidden_size, batch_first=True)

    def forward(
        self,
        main: torch.Tensor,
        main_lengths: torch.Tensor,
        context: torch.Tensor,
        context_lengths: torch.Tensor,
        state: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run one layer.

        ``main`` (B, N*C, D) holds N chunks of C frames (the last ones padded), ``context``
        (B, N, R, D) the look-ahead of each chunk as seen by this layer, ``main_lengths`` (B,)
        and ``context_lengths`` (B, N) the valid frames, ``state`` (B, H) the forward state
        before the first frame (None = zeros). Returns the main outputs (B, N*C, 2H), the context
        outputs (B, N, R, 2H) and the forward state after each item's last main frame (B, H).
        """
        batch, num_chunks, right, _ = context.shape
        chunk = main.shape[1] // num_chunks
        h0 = None if state is None else state.unsqueeze(0).contiguous()
        forward_main = _run_gru(self.forward_gru, main, main_lengths, h0)  # (B, N*C, H)
        hidden = forward_main.shape[-1]
        last = (main_lengths - 1).clamp(min=0).view(batch, 1, 1).expand(batch, 1, hidden)
        final_state = forward_main.gather(1, last).squeeze(1)

        # The forward direction over each chunk's look-ahead starts from the state after the chunk.
        if right:
            chunk_ends = torch.arange(1, num_chunks + 1, device=main.device) * chunk
            ends = torch.minimum(chunk_ends.unsqueeze(0), main_lengths.unsqueeze(1)).clamp(min=1) - 1  # (B, N)
            starts = forward_main.gather(1, ends.unsqueeze(-1).expand(batch, num_chunks, hidden))
            forward_context = _run_gru(
                self.forward_gru,
                context.reshape(batch * num_chunks, right, -1),
                context_lengths.reshape(-1),
                starts.reshape(1, batch * num_chunks, hidden),
            )
            forward_context = forward_context.view(batch, num_chunks, right, hidden)
        else:
            forward_context = context.new_zeros(batch, num_chunks, 0, hidden)

        # The backward direction restarts on every chunk + look-ahead segment.
        chunk_lengths = (main_lengths.unsqueeze(1) - torch.arange(num_chunks, device=main.device) * chunk).clamp(0, chunk)
        segments = main.view(batch, num_chunks, chunk, -1)
        if right:  # (a cat with the empty look-ahead would copy the whole batch for nothing)
            segments = torch.cat([segments, context], dim=2)
        segments = segments.reshape(batch * num_chunks, chunk + right, -1)
        segment_lengths = (chunk_lengths + context_lengths).reshape(-1)
        flip = _reversal_index(segment_lengths, chunk + right)
        backward = _run_gru(self.backward_gru, _take_frames(segments, flip), segment_lengths, None)
        backward = _take_frames(backward, flip).view(batch, num_chunks, chunk + right, hidden)
        backward_main = backward[:, :, :chunk].reshape(batch, num_chunks * chunk, hidden)

        main_out = torch.cat([forward_main, backward_main], dim=-1)
        context_out = torch.cat([forward_context, backward[:, :, chunk:]], dim=-1)
        return main_out, context_out, final_state

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        # Checkpoints from before the split stored one bidirectional nn.GRU per layer.
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            for legacy, current in ((f"{name}_l0", "forward_gru"), (f"{name}_l0_reverse", "backward_gru")):
                if prefix + legacy in state_dict:
                    state_dict[f"{prefix}{current}.{name}_l0"] = state_dict.pop(prefix + legacy)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]


def _run_gru(gru: nn.GRU, frames: torch.Tensor, lengths: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """Outputs (S, T, H) of a batch-first GRU over items of ``lengths`` valid frames.

    Every item's valid frames come first, so padding never reaches them and outputs past an
    item's length are garbage to be ignored. Forward-only calls pack the items, which skips the
    padding's compute (a length-sorted batch of files still varies); under autograd the packed
    backward pass measured ~5x slower on CPU than the padded one, so training runs padded.
    """
    total = frames.shape[1]
    if not total or torch.is_grad_enabled() or bool((lengths == total).all()):
        return gru(frames, h0)[0]
    packed = pack_padded_sequence(frames, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    output, _ = gru(packed, h0)
    return pad_packed_sequence(output, batch_first=True, total_length=total)[0]


def _reversal_index(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """(S,) lengths -> (S, total) frame index that reverses each item's valid frames in place."""
    steps = torch.arange(total, device=lengths.device).unsqueeze(0)
    return torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)


def _take_frames(frames: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """frames (S, T, D) gathered along time by index (S, T).

    As whole-row copies of the flattened frames: ``gather`` with an index expanded over D reads an
    index per element and is several times slower.
    """
    items, steps, dim = frames.shape
    rows = index + torch.arange(items, device=index.device).unsqueeze(1) * steps
    return frames.reshape(items * steps, dim).index_select(0, rows.reshape(-1)).view(items, steps, dim)


def _zero_linear(width: int) -> nn.Linear:
    """A square linear map that starts as the zero map."""
    linear = nn.Linear(width, width)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def _context_lengths(lengths: torch.Tensor, num_chunks: int, chunking: Chunking) -> torch.Tensor:
    """(B,) utterance lengths -> (B, N) valid look-ahead frames after each chunk."""
    chunk_ends = (torch.arange(num_chunks, device=lengths.device) + 1) * chunking.chunk
    return (lengths.unsqueeze(1) - chunk_ends).clamp(0, chunking.right_context)


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
            BiGRULayer(config.proj_dim if index == 0 else 2 * config.hidden_size, config.hidden_size)
            for index in range(config.stacked_layers)
        )
        # Residual layers grow a trained stack deeper: x + W layer(x) + b, W and b starting at zero so a
        # model grown from a checkpoint begins as exactly that model. A full matrix rather than a gate
        # per channel: gates at zero grew ~0.002 in 500 steps of Adam, too slow to let the layer count.
        self.residual_projections = nn.ModuleList(
            _zero_linear(2 * config.hidden_size) for _ in range(config.residual_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.output_projection = nn.Linear(2 * config.hidden_size, config.num_labels)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-coefficient stats (F,) or per-input stats (input_dim,); F is tiled over the stack."""
        repeats = self.config.input_dim // mean.shape[0]
        self.feature_mean.copy_(mean.repeat(repeats))
        self.feature_std.copy_(std.repeat(repeats))

    def forward(
        self, features: torch.Tensor, feature_lengths: torch.Tensor, chunking: Chunking | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, input_dim), (B,) -> log_probs (B, T, num_labels), out_lengths (B,).

        ``chunking`` None = full context; otherwise the latency-controlled computation a stream
        would see. Frames past an item's length never influence its outputs; padded output frames
        are garbage and must be ignored through ``out_lengths``.
        """
        if feature_lengths.numel() and int(feature_lengths.min()) < 1:
            raise ValueError("every sequence needs at least one frame")
        batch, frames, dim = features.shape
        if chunking is None:
            chunking = Chunking(max(frames, 1), 0)
        num_chunks = -(-frames // chunking.chunk)
        padded = features.new_zeros(batch, num_chunks * chunking.chunk + chunking.right_context, dim)
        padded[:, :frames] = features
        main = padded[:, : num_chunks * chunking.chunk]
        # Look-ahead of chunk k: the first R frames of the chunks after it.
        ahead = (torch.arange(num_chunks, device=features.device) + 1).unsqueeze(1) * chunking.chunk
        ahead = (ahead + torch.arange(chunking.right_context, device=features.device)).reshape(-1)
        context = padded[:, ahead].view(batch, num_chunks, chunking.right_context, dim)
        context_lengths = _context_lengths(feature_lengths, num_chunks, chunking)
        log_probs, _ = self._run(main, feature_lengths, context, context_lengths, None)
        return log_probs[:, :frames], feature_lengths

    def forward_chunk(
        self,
        main: torch.Tensor,
        main_lengths: torch.Tensor,
        context: torch.Tensor,
        context_lengths: torch.Tensor,
        states: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk for each of B streams: main (B, C, D) + look-ahead (B, R, D) features.

        ``states`` (stacked_layers, B, H) are the forward states carried from each stream's previous
        chunk (None = stream start). Returns the main frames' log-probs (B, C, V) and the new
        states. An item's look-ahead may only be non-empty when its main chunk is full.
        """
        return self._run(main, main_lengths, context.unsqueeze(1), context_lengths.unsqueeze(1), states)

    def _run(
        self,
        main: torch.Tensor,
        main_lengths: torch.Tensor,
        context: torch.Tensor,
        context_lengths: torch.Tensor,
        states: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        main = self.input_projection((main - self.feature_mean) / self.feature_std)
        context = self.input_projection((context - self.feature_mean) / self.feature_std)
        final_states = []
        for index, layer in enumerate(self.layers):
            in_main, in_context = (self.dropout(main), self.dropout(context)) if index > 0 else (main, context)
            state = None if states is None else states[index]
            out_main, out_context, final_state = layer(in_main, main_lengths, in_context, context_lengths, state)
            if index < self.config.num_layers:
                main, context = out_main, out_context
            else:
                projection = self.residual_projections[index - self.config.num_layers]
                main, context = main + projection(out_main), context + projection(out_context)
            final_states.append(final_state)
        log_probs = self.output_projection(self.dropout(main)).log_softmax(dim=-1)
        return log_probs, torch.stack(final_states)

    def num_parameters(self) -> int:
        """Trainable parameter count (for model cards and logs)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
