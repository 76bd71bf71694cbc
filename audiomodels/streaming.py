"""Live streams through the latency-controlled model: per-stream state plus one batched step.

A :class:`ChunkedStream` turns audio pieces of any size into model chunks: its features come from
the streaming featurizer (identical to featurizing the whole signal), and a chunk of ``C`` frames
is ready as soon as ``R`` frames of look-ahead follow it. The state that must survive between
chunks is small and explicit -- the unconsumed feature frames and one forward GRU state per
layer -- so any number of streams can be stepped together by :func:`step_streams`, one padded
model call, and the log-probs equal the offline chunked computation of the same audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from audiomodels.config import Chunking
from audiomodels.features import Featurizer, StreamingFeaturizer
from audiomodels.model import AcousticModel
from audiomodels.warp import mean_posterior, warp_features


@dataclass(frozen=True)
class ChunkInput:
    """What one stream contributes to a batched model step."""

    main: torch.Tensor  # (m, D) frames to emit, m <= C
    context: torch.Tensor  # (r, D) look-ahead frames, r <= R (only with a full main chunk)
    state: torch.Tensor | None  # (num_layers, H) forward states carried from the previous chunk; (K, ...) for K warps
    chunking: Chunking  # the stream's; only chunks of one chunking are stepped together


class ChunkedStream:
    """One stream's model-side state: pending feature frames and the carried GRU states."""

    def __init__(self, featurizer: Featurizer, chunking: Chunking) -> None:
        self.chunking = chunking
        self._features = StreamingFeaturizer(featurizer)
        self._audio: list[np.ndarray] = []  # samples not featurized yet: MFCC runs once per chunk, not per piece
        self._audio_length = 0
        self._pending = torch.zeros(0, featurizer.config.model_input_dim)
        self._state: torch.Tensor | None = None
        self.ended = False
        self.frames_emitted = 0  # model frames whose log-probs have been produced

    def accept(self, samples: np.ndarray) -> None:
        """Audio at the model's rate, in pieces of any size; featurized once the next chunk can be."""
        self._audio.append(samples)
        self._audio_length += len(samples)
        missing = self.chunking.latency_frames - len(self._pending)
        if self._audio_length >= self._features.samples_needed(missing):
            self._featurize()

    def end(self) -> None:
        """No more audio: the remaining frames become (shorter) chunks without full look-ahead."""
        self._featurize()
        self.ended = True

    def _featurize(self) -> None:
        if not self._audio:
            return
        frames = self._features.accept(np.concatenate(self._audio))
        self._audio, self._audio_length = [], 0
        if len(frames):
            self._pending = torch.cat([self._pending, frames])

    def ready(self) -> ChunkInput | None:
        """The next chunk when its look-ahead has arrived (or the stream ended), else None."""
        chunk, right = self.chunking.chunk, self.chunking.right_context
        available = len(self._pending)
        if available >= chunk + right or (self.ended and available):
            size = min(chunk, available)
            return ChunkInput(self._pending[:size], self._pending[size : size + right], self._state, self.chunking)
        return None

    def advance(self, chunk: ChunkInput, state: torch.Tensor) -> None:
        """Record a computed chunk: its main frames are consumed and its states carried."""
        self._pending = self._pending[len(chunk.main) :]
        self._state = state
        self.frames_emitted += len(chunk.main)


@torch.inference_mode()
def step_streams(
    model: AcousticModel, chunks: list[ChunkInput], warp_matrices: Sequence[torch.Tensor] = ()
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One padded model call for many streams' chunks -> [(log_probs (m, V), state (L, H))].

    With ``warp_matrices`` (a recognizer's warp ensemble, :attr:`Recognizer.warp_matrices`) every
    chunk is stepped once per warp in the same call, each warp carrying its own states, so a
    stream's state is ``(K, L, H)`` and its log-probs are the mean posterior of the K passes: the
    offline ensemble's, chunk by chunk.
    """
    if not warp_matrices:
        return _step(model, chunks)
    count = len(warp_matrices)
    warped = [
        ChunkInput(
            warp_features(c.main, matrix),
            warp_features(c.context, matrix),
            None if c.state is None else c.state[k],
            c.chunking,
        )
        for c in chunks
        for k, matrix in enumerate(warp_matrices)
    ]
    outputs = _step(model, warped)
    results = []
    for first in range(0, len(outputs), count):
        passes = outputs[first : first + count]
        results.append((mean_posterior([log_probs for log_probs, _ in passes]), torch.stack([s for _, s in passes])))
    return results


def _step(model: AcousticModel, chunks: list[ChunkInput]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    device = model.feature_mean.device
    main = torch.nn.utils.rnn.pad_sequence([c.main for c in chunks], batch_first=True)
    context = torch.nn.utils.rnn.pad_sequence([c.context for c in chunks], batch_first=True)
    if any(len(c.context) and len(c.main) < main.shape[1] for c in chunks):  # its look-ahead would not follow it
        raise ValueError("a chunk with look-ahead must have a full main part")
    config = model.config
    zeros = torch.zeros(config.stacked_layers, config.hidden_size)
    states = torch.stack([zeros if c.state is None else c.state for c in chunks], dim=1)
    log_probs, new_states = model.forward_chunk(
        main.to(device),
        torch.tensor([len(c.main) for c in chunks], device=device),
        context.to(device),
        torch.tensor([len(c.context) for c in chunks], device=device),
        states.to(device),
    )
    log_probs, new_states = log_probs.float().cpu(), new_states.cpu()
    return [(log_probs[i, : len(c.main)], new_states[:, i]) for i, c in enumerate(chunks)]
