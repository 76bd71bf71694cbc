"""CTC decoders: pure functions from a ``(T, V)`` log-probability matrix to label ids.

They know nothing about label sets or seconds; the caller maps ids to symbols and frames to
times. That keeps them testable on hand-built matrices and shared by server, batch job and
evaluation.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Protocol

import numpy as np
import torch

# A label whose frame probability is below 1e-4 cannot start a prefix that survives a beam
# of useful width on a calibrated model, and skipping it is most of the speed-up.
DEFAULT_TOKEN_PRUNE_LOGPROB = math.log(1e-4)

_NEG_INF = float("-inf")


class PrefixScorer(Protocol):
    """What beam search adds to a prefix's acoustic score, label by label: a label LM
    (:class:`audiomodels.lm.Fusion`), phrase hints (:mod:`audiomodels.context`) or both."""

    def initial_state(self) -> Any: ...

    def extend(self, state: Any, label: int) -> tuple[float, Any]: ...

    def finish(self, state: Any) -> float: ...


def _check_matrix(log_probs: torch.Tensor) -> None:
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must have shape (T, V), got {tuple(log_probs.shape)}")


def frame_argmax(log_probs: torch.Tensor) -> torch.Tensor:
    """Best label per frame, ``(T, V) -> (T,)`` int64 (also the input to per-frame displays)."""
    _check_matrix(log_probs)
    return log_probs.argmax(dim=-1)


def greedy_decode(log_probs: torch.Tensor, blank: int = 0) -> list[int]:
    """Best-path decoding: per-frame argmax, repeats collapsed, then blanks removed.

    Collapsing happens before blank removal, so ``a a _ a`` gives ``[a, a]``.
    """
    path = torch.unique_consecutive(frame_argmax(log_probs))
    return [label for label in path.tolist() if label != blank]


def _logaddexp(a: float, b: float) -> float:
    # Scalar version: np.logaddexp on Python floats costs several times more per call.
    if a < b:
        a, b = b, a
    if b == _NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def prefix_beam_search(log_probs: torch.Tensor, beam_size: int = 8, blank: int = 0, **options: Any) -> list[int]:
    """The best hypothesis of :func:`prefix_beam_search_nbest` (``options``: its keyword arguments)."""
    return prefix_beam_search_nbest(log_probs, beam_size, blank, **options)[0]


def prefix_beam_search_nbest(
    log_probs: torch.Tensor,
    beam_size: int = 8,
    blank: int = 0,
    token_prune_logprob: float = DEFAULT_TOKEN_PRUNE_LOGPROB,
    token_top_k: int | None = None,
    fusion: PrefixScorer | None = None,
    num_best: int = 1,
) -> list[list[int]]:
    """CTC prefix beam search (Hannun et al., 2014) in log space, optionally with a label LM.

    Each prefix keeps two scores: ``p_blank`` (its paths so far end in blank) and
    ``p_nonblank`` (they end in its last label). The split is what makes repeats right:
    a repeated label ``c`` extends prefix ``...c`` only from ``p_blank``, while from
    ``p_nonblank`` it merges back into the same prefix, so ``aa`` needs a blank between.
    Unlike greedy decoding it sums over alignments, so a label spread thinly over several
    frames can beat a blank that wins every single frame.

    Per frame only labels that are among the ``token_top_k`` best of that frame *and* have
    a log-probability of at least ``token_prune_logprob`` may extend a prefix. The default
    ``token_top_k=beam_size`` is nearly lossless: an extension by a lower-ranked label can
    rarely outrank the ``beam_size`` better extensions of the same prefix, and only loses
    the mass it would add to a prefix already on the beam. Blank and the repeat of a
    prefix's own last label are always scored exactly.

    Like any beam search it can lose to greedy decoding: a prefix's score only counts paths
    that stayed on the beam, so on flat frames the returned prefix is occasionally slightly
    less probable than the best path's. At ``beam_size=1`` it equals greedy decoding only
    while frames are peaked (argmax around 0.9); on a flat frame it keeps the prefix with
    the larger summed probability, e.g. blank 0.3 + repeat 0.3 over a new label at 0.4.

    Cost is O(T*V) in numpy for the per-frame top-k, plus O(T * beam_size * K) Python
    steps, K being the number of labels kept per frame (<= ``token_top_k``). Prefixes are
    nodes of a trie, so extending or hashing one is O(1) whatever its length; the trie holds
    O(T * beam_size * K) nodes.

    With ``fusion`` (shallow fusion of a label LM, and of a word LM at each completed word; or
    phrase hints) prefixes are ranked by acoustic log-probability + its score
    (:class:`PrefixScorer`; end of sentence included for the final choice); the score of a prefix
    is computed once, when its trie node is made.

    Returns the ``num_best`` (at most ``beam_size``) most probable surviving prefixes, best first,
    as label ids (blank never included); fewer when fewer survive pruning (on frames certain of
    blank only the empty prefix does). Prefixes are distinct label sequences, so no hypothesis
    comes twice.
    """
    _check_matrix(log_probs)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 1 <= num_best <= beam_size:
        raise ValueError(f"num_best must be 1-{beam_size} (the beam), got {num_best}")
    lp = log_probs.detach().to("cpu", torch.float64).numpy()
    num_frames, num_labels = lp.shape
    if num_frames == 0:
        return [[]]
    k = min(num_labels, token_top_k if token_top_k is not None else beam_size)
    if k < 1:
        raise ValueError(f"token_top_k must be >= 1, got {token_top_k}")
    top = np.argpartition(lp, num_labels - k, axis=1)[:, num_labels - k :]

    # Trie of prefixes: node 0 is the empty prefix; a node stores its parent and last label.
    parents = [-1]
    last_labels = [-1]
    children: dict[tuple[int, int], int] = {}
    beams: dict[int, tuple[float, float]] = {0: (0.0, _NEG_INF)}  # node -> (p_blank, p_nonblank)
    lm_scores = [0.0]  # node -> weighted LM score of its prefix (length and word bonuses included)
    lm_states = [fusion.initial_state() if fusion is not None else None]

    def rank(item: tuple[int, list[float] | tuple[float, float]]) -> float:
        node, (pb, pnb) = item
        return _logaddexp(pb, pnb) + lm_scores[node]

    for t in range(num_frames):
        row = lp[t].tolist()
        p_blank = row[blank]
        candidates = [c for c in top[t].tolist() if c != blank and row[c] >= token_prune_logprob]
        scores: dict[int, list[float]] = {}

        for node, (pb, pnb) in beams.items():
            total = _logaddexp(pb, pnb)
            last = last_labels[node]
            entry = scores.setdefault(node, [_NEG_INF, _NEG_INF])
            entry[0] = _logaddexp(entry[0], total + p_blank)
            if last >= 0:
                entry[1] = _logaddexp(entry[1], pnb + row[last])
            for c in candidates:
                child = children.get((node, c))
                if child is None:
                    child = children[(node, c)] = len(parents)
                    parents.append(node)
                    last_labels.append(c)
                    if fusion is not None:
                        gained, state = fusion.extend(lm_states[node], c)
                        lm_scores.append(lm_scores[node] + gained)
                        lm_states.append(state)
                    else:
                        lm_scores.append(0.0)
                        lm_states.append(None)
                entry = scores.setdefault(child, [_NEG_INF, _NEG_INF])
                entry[1] = _logaddexp(entry[1], (pb if c == last else total) + row[c])

        best = heapq.nlargest(beam_size, scores.items(), key=rank)
        beams = {node: (pb, pnb) for node, (pb, pnb) in best}

    if fusion is None:
        ranked = [node for node, _ in best]  # nlargest sorts best first
    else:
        ranked = sorted(beams, key=lambda n: rank((n, beams[n])) + fusion.finish(lm_states[n]), reverse=True)

    def labels_of(node: int) -> list[int]:
        labels: list[int] = []
        while node > 0:
            labels.append(last_labels[node])
            node = parents[node]
        return labels[::-1]

    return [labels_of(node) for node in ranked[:num_best]]
