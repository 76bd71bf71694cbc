"""CTC decoders: pure functions from a ``(T, V)`` log-probability matrix to label ids.

They know nothing about label sets or seconds; the caller maps ids to symbols and frames to
times. That keeps them testable on hand-built matrices and shared by server, batch job and
evaluation.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

# A label whose frame probability is below 1e-4 cannot start a prefix that survives a beam
# of useful width on a calibrated model, and skipping it is most of the speed-up.
DEFAULT_TOKEN_PRUNE_LOGPROB = math.log(1e-4)

_NEG_INF = float("-inf")

# A settling search keeps the leader's last this many words open. Over 400 dev utterances streamed in
# 600 ms chunks (char model, beam 8 + LM), settling every chunk with 4 / 3 / 2 / 1 open words left
# CER at 8.37 / 8.34 / 8.39 / 8.44% (8.40% without) and raised the share of interim text settled
# from 53% to 80 / 84 / 89 / 94%: the doubts a beam carries for long are about early words
# ("bread" or "read") that the rest of the sentence does not decide.
OPEN_WORDS = 2


@dataclass(frozen=True)
class Settling:
    """How a live stream's beam search commits: every ``every_frames`` frames the hypotheses that
    disagree with the leading one before its last ``open_words`` words (split at ``separator``)
    leave the beam, so what an interim shows before them is never taken back."""

    every_frames: int
    separator: int
    open_words: int = OPEN_WORDS

    def __post_init__(self) -> None:
        if self.every_frames < 1 or self.open_words < 1:
            raise ValueError(f"settling needs every_frames and open_words >= 1, got {self}")


class PrefixScorer(Protocol):
    """What beam search adds to a prefix's acoustic score, label by label: a label LM
    (:class:`audiomodels.lm.Fusion`), phrase hints (:mod:`audiomodels.context`) or both."""

    def initial_state(self) -> Any: ...

    def extend(self, state: Any, label: int) -> tuple[float, Any]: ...

    def finish(self, state: Any) -> float: ...

    def gain_bound(self, label: int) -> float:
        """The most :meth:`extend` can add for ``label`` from any state (``math.inf`` if unbounded):
        what lets beam search skip extensions that cannot make the beam without scoring them."""
        ...


def sentence_score(scorer: PrefixScorer | None, labels: Sequence[int]) -> float:
    """What a search with ``scorer`` adds to a hypothesis spelled ``labels``, its end included."""
    if scorer is None:
        return 0.0
    state, total = scorer.initial_state(), 0.0
    for label in labels:
        gained, state = scorer.extend(state, label)
        total += gained
    return total + scorer.finish(state)


def _check_matrix(log_probs: torch.Tensor) -> None:
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must have shape (T, V), got {tuple(log_probs.shape)}")


def frame_argmax(log_probs: torch.Tensor) -> torch.Tensor:
    """Best label per frame, ``(T, V) -> (T,)`` int64 (also the input to per-frame displays)."""
    _check_matrix(log_probs)
    return log_probs.argmax(dim=-1)


def greedy_decode(log_probs: torch.Tensor, blank: int = 0) -> list[int]:
    """Best-path decoding: per-frame argmax, repeats collapsed, then blanks removed.

    Collapsing happens before blank removal, so ``a a _ a`` gives ``[a, a]``. One pass of
    :class:`GreedySearch`.
    """
    search = GreedySearch(blank)
    search.advance(log_probs)
    return search.best()


class FrameSearch(Protocol):
    """A decoder fed a ``(T, V)`` matrix in pieces of frames (:class:`GreedySearch`,
    :class:`PrefixBeam`): any split gives the result of one pass over the whole matrix, so a live
    stream decodes each model chunk once, and its interims and final come from the same search."""

    def advance(self, log_probs: torch.Tensor) -> None: ...

    def best(self) -> list[int]: ...

    def stable(self) -> list[int]: ...

    def hypotheses(self, num_best: int = 1) -> list[list[int]]: ...


class GreedySearch:
    """Best-path decoding (:func:`greedy_decode`) fed frames in pieces: a repeat across a piece
    boundary collapses too, so any split gives the one-pass labels."""

    def __init__(self, blank: int = 0) -> None:
        self.blank = blank
        self._labels: list[int] = []
        self._last = -1  # the previous frame's best label

    def advance(self, log_probs: torch.Tensor) -> None:
        path = torch.unique_consecutive(frame_argmax(log_probs)).tolist()
        if path and path[0] == self._last:
            path = path[1:]
        self._labels += [label for label in path if label != self.blank]
        if path:
            self._last = path[-1]

    def best(self) -> list[int]:
        return list(self._labels)

    def stable(self) -> list[int]:
        """Greedy decoding never takes a label back: everything so far is settled."""
        return self.best()

    def hypotheses(self, num_best: int = 1) -> list[list[int]]:
        if num_best != 1:
            raise ValueError(f"greedy decoding has one hypothesis, not {num_best}")
        return [self.best()]


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
    """The ``num_best`` (at most ``beam_size``) most probable prefixes of :class:`PrefixBeam` over a
    whole ``(T, V)`` matrix, best first, end of sentence scored: see the class for the search."""
    beam = PrefixBeam(beam_size, blank, token_prune_logprob, token_top_k, fusion)
    beam.advance(log_probs)
    return beam.hypotheses(num_best)


class PrefixBeam:
    """CTC prefix beam search (Hannun et al., 2014) in log space, optionally with a label LM,
    fed frames in pieces: :meth:`advance` over any split of a matrix leaves exactly the beam of
    one pass over all of it, so a live stream searches each model chunk once as it arrives and
    its final result is the offline search's. With ``settling`` (live streams and their offline
    twins) it also commits to its leader's words as it goes (:class:`Settling`).

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
    O(T * beam_size * K) nodes. Most extensions cannot make the beam: one whose rank, with the
    most its scorer can add (:meth:`PrefixScorer.gain_bound`), falls under the beam_size-th best
    rank found so far in the frame is skipped before its node is made or the LM is asked, which
    leaves the result exactly as it was (``benchmarks/beam_search.py``: searches with the LM ran
    1.6-3.7x faster for it, README "Beam search speed").

    With ``fusion`` (shallow fusion of a label LM, and of a word LM at each completed word; or
    phrase hints) prefixes are ranked by acoustic log-probability + its score
    (:class:`PrefixScorer`; end of sentence included for the final choice); the score of a prefix
    is computed once, when its trie node is made.
    """

    def __init__(
        self,
        beam_size: int = 8,
        blank: int = 0,
        token_prune_logprob: float = DEFAULT_TOKEN_PRUNE_LOGPROB,
        token_top_k: int | None = None,
        fusion: PrefixScorer | None = None,
        settling: Settling | None = None,
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        top_k = token_top_k if token_top_k is not None else beam_size
        if top_k < 1:
            raise ValueError(f"token_top_k must be >= 1, got {token_top_k}")
        self.beam_size, self.blank = beam_size, blank
        self._prune, self._top_k, self._fusion = token_prune_logprob, top_k, fusion
        self._settling = settling
        self._frames = 0  # searched so far (settling falls on fixed frames, whatever the pieces)
        # Trie of prefixes: node 0 is the empty prefix; a node stores its parent and last label.
        self._parents = [-1]
        self._last_labels = [-1]
        self._children: dict[tuple[int, int], int] = {}
        self._beams: dict[int, tuple[float, float]] = {0: (0.0, _NEG_INF)}  # node -> (p_blank, p_nonblank), best first
        self._lm_scores = [0.0]  # node -> weighted LM score of its prefix (length and word bonuses included)
        self._lm_states = [fusion.initial_state() if fusion is not None else None]

    def _rank(self, item: tuple[int, list[float] | tuple[float, float]]) -> float:
        node, (pb, pnb) = item
        return _logaddexp(pb, pnb) + self._lm_scores[node]

    def _gain_bounds(self, num_labels: int) -> list[float]:
        """Per label, the most the fusion can add to a prefix it extends (0 without one)."""
        if self._fusion is None:
            return [0.0] * num_labels
        return [self._fusion.gain_bound(label) for label in range(num_labels)]

    def _new_child(self, node: int, label: int) -> int:
        child = self._children[(node, label)] = len(self._parents)
        self._parents.append(node)
        self._last_labels.append(label)
        if self._fusion is not None:
            gained, state = self._fusion.extend(self._lm_states[node], label)
            self._lm_scores.append(self._lm_scores[node] + gained)
            self._lm_states.append(state)
        else:
            self._lm_scores.append(0.0)
            self._lm_states.append(None)
        return child

    def advance(self, log_probs: torch.Tensor) -> None:
        """Search the next ``(T, V)`` frames (T may be 0)."""
        _check_matrix(log_probs)
        lp = log_probs.detach().to("cpu", torch.float64).numpy()
        num_labels = lp.shape[1]
        k = min(num_labels, self._top_k)
        top = np.argpartition(lp, num_labels - k, axis=1)[:, num_labels - k :]
        blank, beams, rank = self.blank, self._beams, self._rank
        children, last_labels, new_child = self._children, self._last_labels, self._new_child  # hot loop: locals
        lm_scores, gain_bounds = self._lm_scores, self._gain_bounds(num_labels)
        settle_every = self._settling.every_frames if self._settling else 0
        for t in range(len(lp)):
            row = lp[t].tolist()
            p_blank = row[blank]
            candidates = [c for c in top[t].tolist() if c != blank and row[c] >= self._prune]
            # Every prefix on the beam stays (by blank, or by repeating its last label) ...
            scores: dict[int, list[float]] = {}
            totals = []
            for node, (pb, pnb) in beams.items():
                total = _logaddexp(pb, pnb)
                last = last_labels[node]
                scores[node] = [total + p_blank, pnb + row[last] if last >= 0 else _NEG_INF]
                totals.append(total)
            # ... so the beam_size-th best rank so far is a floor the new beam cannot fall below (ranks
            # only grow as paths merge in; an extension off the beam has one path, from its parent):
            # an extension under it is skipped, and one under it even with the most the scorer can
            # add is never made nor scored by the LM, most of the cost. The floor rises as it goes.
            best_ranks = heapq.nlargest(self.beam_size, map(rank, scores.items())) if candidates else []
            heapq.heapify(best_ranks)
            floor = best_ranks[0] if len(best_ranks) == self.beam_size else _NEG_INF
            for (node, (pb, pnb)), total in zip(beams.items(), totals):
                last, parent_lm = last_labels[node], lm_scores[node]
                for c in candidates:
                    extended = (pb if c == last else total) + row[c]
                    child = children.get((node, c))
                    if child in beams:
                        entry = scores[child]
                        entry[1] = _logaddexp(entry[1], extended)
                        continue
                    if child is None:
                        if extended + parent_lm + gain_bounds[c] < floor:
                            continue
                        child = new_child(node, c)
                    child_rank = extended + lm_scores[child]
                    if child_rank < floor:
                        continue
                    scores[child] = [_NEG_INF, extended]
                    if len(best_ranks) < self.beam_size:
                        heapq.heappush(best_ranks, child_rank)
                    else:
                        heapq.heappushpop(best_ranks, child_rank)
                    if len(best_ranks) == self.beam_size:
                        floor = best_ranks[0]
            best = heapq.nlargest(self.beam_size, scores.items(), key=rank)  # sorted, best first
            live = [item for item in best if max(item[1]) > _NEG_INF] or best[:1]  # impossible prefixes drop out
            beams = {node: (pb, pnb) for node, (pb, pnb) in live}
            self._frames += 1
            if settle_every and self._frames % settle_every == 0:
                beams = self._settled(beams)
        self._beams = beams

    def _settled(self, beams: dict[int, tuple[float, float]]) -> dict[int, tuple[float, float]]:
        """The beams that agree with the leader up to the word break before its open words."""
        assert self._settling is not None
        leader = self._labels_of(next(iter(beams)))
        breaks = [i for i, label in enumerate(leader) if label == self._settling.separator]
        if len(breaks) < self._settling.open_words:
            return beams
        cut = breaks[-self._settling.open_words]
        return {node: scores for node, scores in beams.items() if self._labels_of(node)[:cut] == leader[:cut]}

    def best(self) -> list[int]:
        """The leading prefix so far, as a live result shows it: no end-of-sentence score, since
        the utterance goes on."""
        return self._labels_of(next(iter(self._beams)))

    def stable(self) -> list[int]:
        """The labels every surviving prefix starts with. Every later prefix extends a surviving one,
        so no later result (the final's hypotheses included) changes them: what a live caption can
        show as settled."""
        prefixes = [self._labels_of(node) for node in self._beams]
        shortest = min(prefixes, key=len)
        for length, label in enumerate(shortest):
            if any(prefix[length] != label for prefix in prefixes):
                return shortest[:length]
        return shortest

    def hypotheses(self, num_best: int = 1) -> list[list[int]]:
        """The ``num_best`` (at most ``beam_size``) most probable surviving prefixes as the search's
        final answer (with a fusion: end of sentence scored), best first, as label ids (blank never
        included); fewer when fewer survive pruning (on frames certain of blank only the empty prefix
        does). Prefixes are distinct label sequences, so no hypothesis comes twice. Ranked by the
        log-probability of their paths, plus with a fusion its LM score and bonuses."""
        if not 1 <= num_best <= self.beam_size:
            raise ValueError(f"num_best must be 1-{self.beam_size} (the beam), got {num_best}")
        finish = self._fusion.finish if self._fusion is not None else lambda state: 0.0
        scored = [(node, self._rank((node, beams)) + finish(self._lm_states[node])) for node, beams in self._beams.items()]
        scored.sort(key=lambda item: item[1], reverse=True)
        return [self._labels_of(node) for node, _ in scored[:num_best]]

    def _labels_of(self, node: int) -> list[int]:
        labels: list[int] = []
        while node > 0:
            labels.append(self._last_labels[node])
            node = self._parents[node]
        return labels[::-1]
