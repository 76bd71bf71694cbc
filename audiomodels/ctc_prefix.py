"""CTC prefix scores: how probable a CTC model finds a label sequence as the *start* of what an
utterance says, whatever follows.

A beam search with another model (the char model) can ask, each time a hypothesis grows, how
likely this model (the phone model) finds its labels so far, without knowing the rest: that is
the prefix probability of Graves (2008) and Watanabe et al. (2017),

    psi(h) = sum over t of  P(h[:-1] emitted within frames < t) * y_t(h[-1]),

which shrinks as ``h`` grows (it sums the probabilities of all continuations), so a word the
model hears costs nearly nothing and one it does not hear costs a lot. The whole-utterance
probability of exactly ``h`` (the CTC loss's) closes a hypothesis.

Each prefix keeps the forward variables of its paths (ending in its last label, or in blank) over
all frames; extending it by one label is two linear recurrences over time, solved with cumulative
sums and ``logaddexp.accumulate`` in numpy rather than a Python loop over frames. Prefixes are
cached, so hypotheses sharing their start share the work.
"""

from __future__ import annotations

import numpy as np
import torch

# log-probabilities below this count as impossible; kept finite so that differences of two
# impossible scores (a hypothesis growing from an impossible prefix) are 0, not NaN
IMPOSSIBLE = -1e30
_FRAME_FLOOR = -1e4  # a frame's log-prob of a label is at least this (a -inf would make NaNs of cumulative sums)


class CtcPrefixScores:
    """Prefix and whole-sequence log-probabilities of label sequences under one utterance's CTC
    log-probs ``(T, V)``."""

    def __init__(self, log_probs: torch.Tensor, blank: int = 0) -> None:
        if log_probs.ndim != 2:
            raise ValueError(f"log_probs must have shape (T, V), got {tuple(log_probs.shape)}")
        frames = log_probs.detach().to("cpu", torch.float64).numpy().T  # (V, T): one label's row is contiguous
        self._frames = np.ascontiguousarray(np.maximum(frames, _FRAME_FLOOR))
        self._blank = blank
        # B[t]: log P(frames 1..t all blank), B[0] = 0; the empty prefix's paths are exactly these
        self._blanks = np.concatenate([[0.0], np.cumsum(self._frames[blank])])
        empty = np.full(len(self._blanks), -np.inf)
        # per prefix: (ending in its last label, ending in blank) at frames 0..T, and its prefix score
        self._prefixes: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, float]] = {
            (): (empty, self._blanks, 0.0)
        }

    def prefix(self, labels: tuple[int, ...]) -> float:
        """log psi(labels): the probability that the utterance's labels start with ``labels``."""
        return max(self._prefix(labels)[2], IMPOSSIBLE)

    def whole(self, labels: tuple[int, ...]) -> float:
        """log P(labels | utterance): exactly ``labels``, nothing after (as ``F.ctc_loss`` gives)."""
        ends_in_label, ends_in_blank, _ = self._prefix(labels)
        return max(float(np.logaddexp(ends_in_label[-1], ends_in_blank[-1])), IMPOSSIBLE)

    def _prefix(self, labels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, float]:
        """The cached entry of ``labels``, computed from its longest cached prefix on (a loop, not
        recursion: a long recording's sentence has thousands of labels)."""
        known = self._prefixes.get(labels)
        if known is not None:
            return known
        cached = len(labels) - 1
        while labels[:cached] not in self._prefixes:
            cached -= 1
        entry = self._prefixes[labels[:cached]]
        for end in range(cached + 1, len(labels) + 1):
            entry = self._prefixes[labels[:end]] = self._extended(entry, labels[:end])
        return entry

    def _extended(
        self, shorter: tuple[np.ndarray, np.ndarray, float], labels: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """The entry of ``labels`` from ``shorter``, the entry of ``labels[:-1]``."""
        ends_in_label, ends_in_blank, _ = shorter
        label = labels[-1]
        if label == self._blank:
            raise ValueError("a CTC prefix holds no blanks")
        # paths of the shorter prefix that may be followed by `label` at the next frame: a repeat
        # needs a blank in between
        start = ends_in_blank if len(labels) > 1 and labels[-2] == label else np.logaddexp(ends_in_blank, ends_in_label)
        row = self._frames[label]
        emitted = np.concatenate([[0.0], np.cumsum(row)])  # log P(label at every frame 1..t)
        # x[t] = (x[t-1] + start[t-1]) * y_t  =>  x[t] = E[t] + logcumsumexp(start[s-1] - E[s-1])
        label_end = np.concatenate([[-np.inf], emitted[1:] + np.logaddexp.accumulate(start[:-1] - emitted[:-1])])
        blank_end = np.concatenate(
            [[-np.inf], self._blanks[1:] + np.logaddexp.accumulate(label_end[:-1] - self._blanks[:-1])]
        )
        return label_end, blank_end, float(np.logaddexp.reduce(start[:-1] + row))


def sequence_log_likelihoods(log_probs: torch.Tensor, sequences: list[list[int]], blank: int = 0) -> list[float]:
    """log P(sequence | utterance) of each label sequence under one utterance's CTC log-probs
    ``(T, V)``, in one batched ``F.ctc_loss`` call (exact, where a beam's score sums only the
    paths it kept); floored at :data:`IMPOSSIBLE`."""
    if not sequences:
        return []
    frames = log_probs.detach().to("cpu", torch.float32)
    inputs = frames.unsqueeze(1).expand(-1, len(sequences), -1)
    targets = torch.tensor([label for sequence in sequences for label in sequence], dtype=torch.long)
    target_lengths = torch.tensor([len(sequence) for sequence in sequences], dtype=torch.long)
    input_lengths = torch.full((len(sequences),), len(frames), dtype=torch.long)
    losses = torch.nn.functional.ctc_loss(
        inputs, targets, input_lengths, target_lengths, blank=blank, reduction="none", zero_infinity=False
    )
    return [max(-float(loss), IMPOSSIBLE) for loss in losses]
