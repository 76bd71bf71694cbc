"""Phrase hints: contextual biasing of beam search towards phrases the caller expects.

A speech service's users know words the model and its LM do not: names, product terms, the
options of a menu. :class:`PhraseBias` rewards a beam hypothesis ``boost`` per label for every
label that continues a hinted phrase, and takes the reward back when the match breaks off, so
only whole phrases keep their bonus (a trie of the phrases with Aho-Corasick failure links; the
idea of the context graphs in WeNet and icefall). Phrases match at word boundaries only: a match
starts at the start of the utterance or after a word separator, and is whole only where a
separator or the end follows, so "ann" lifts "ann" but not "annual". When a match breaks off,
the failure link carries on with the longest of its word-aligned tails that begins a phrase, so
with "new york city" and "york times" hinted, "new york times" keeps "york times".
:class:`BiasedFusion` adds it to the label LM's score (or stands alone without one) in
:func:`audiomodels.decoding.prefix_beam_search_nbest`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from audiomodels.labels import LabelSet
from audiomodels.lm import Fusion, FusionState

DEFAULT_BOOST = 2.0  # per matched label; the best of 1-4 on the corpus's dev split with the shipped char model (README)
MAX_BOOST = 20.0

# (trie node: the phrase labels matched so far, 0 = none; whether a phrase may start here;
#  which of the node's labels lie in a whole phrase, bit i = the i-th label from the end)
BiasState = tuple[int, bool, int]


class PhraseError(ValueError):
    """Phrases that cannot be hinted (empty, or symbols outside the model's label set)."""


@dataclass(frozen=True)
class PhraseBias:
    """A trie of phrases (as label ids, each ended by the word separator) and the boost.

    Every label that extends a match earns ``boost`` at once, so a hypothesis halfway through a
    phrase survives the beam; labels that end up in no whole phrase give it back when the match
    moves past them, so a finished utterance keeps ``boost`` per label of its whole phrases
    (their separators included), wherever matches overlap. Equal phrase lists and boosts compare
    and hash equal, so requests with the same hints can share a batch. Build it with
    :meth:`from_phrases`.
    """

    phrases: tuple[tuple[int, ...], ...]
    separator: int
    boost: float = DEFAULT_BOOST
    _children: dict[tuple[int, int], int] = field(default_factory=dict, init=False, compare=False, repr=False)
    # per node: labels on its path; the longest proper tail of its path that starts after a
    # separator and is a node too (the failure link); the longest whole phrase that ends its path
    _depth: list[int] = field(default_factory=list, init=False, compare=False, repr=False)
    _fail: list[int] = field(default_factory=list, init=False, compare=False, repr=False)
    _whole_tail: list[int] = field(default_factory=list, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.boost <= MAX_BOOST:
            raise PhraseError(f"phrase boost must be in (0, {MAX_BOOST:g}], got {self.boost:g}")
        self._link_failures(*self._build_trie())

    def _build_trie(self) -> tuple[list[int], list[bool]]:
        """Nodes for every phrase's labels and separator; returns each node's last label and
        whether a whole phrase ends at it."""
        last_labels, whole = [-1], [False]
        self._depth.append(0)
        for phrase in self.phrases:
            node = 0
            for label in (*phrase, self.separator):
                child = self._children.get((node, label))
                if child is None:
                    child = self._children[(node, label)] = len(last_labels)
                    last_labels.append(label)
                    whole.append(False)
                    self._depth.append(self._depth[node] + 1)
                node = child
            whole[node] = True
        return last_labels, whole

    def _link_failures(self, last_labels: list[int], whole: list[bool]) -> None:
        """Failure links and whole tails, breadth first: both point to shallower nodes."""
        self._fail.extend([0] * len(last_labels))
        self._whole_tail.extend([0] * len(last_labels))
        by_parent: dict[int, list[tuple[int, int]]] = {}
        for (parent, label), child in self._children.items():
            by_parent.setdefault(parent, []).append((label, child))
        queue = deque([0])
        while queue:
            node = queue.popleft()
            for label, child in by_parent.get(node, []):
                if node:
                    self._fail[child] = self._link(node, label, after_separator=last_labels[node] == self.separator)
                inherited = self._whole_tail[self._fail[child]]
                self._whole_tail[child] = self._depth[child] if whole[child] else inherited
                queue.append(child)

    def _link(self, node: int, label: int, after_separator: bool) -> int:
        """Failure link of ``node``'s child by ``label``: the longest tail of that path that starts
        after a separator and is a node (the root, 0, when none is)."""
        tail = self._fail[node]
        while True:
            child = self._children.get((tail, label))
            if child is not None and (tail or after_separator):
                return child
            if not tail:
                return 0
            tail = self._fail[tail]

    @classmethod
    def from_phrases(cls, phrases: Sequence[str], labels: LabelSet, boost: float = DEFAULT_BOOST) -> PhraseBias:
        """Phrases as text (phone models: phonemized by espeak-ng, or phone strings as they are),
        normalized as training text was; duplicates are dropped."""
        separator = labels.word_separator_id()
        if separator is None:
            raise PhraseError(f"label set {labels.kind!r} has no word separator, so phrases cannot be matched")
        encoded: dict[tuple[int, ...], None] = {}
        for phrase in phrases:
            try:
                spelling = tuple(labels.encode_text(phrase))
            except ValueError as error:  # LabelError: symbols outside the label set
                raise PhraseError(f"phrase {phrase!r}: {error}") from None
            if not spelling:
                raise PhraseError(f"phrase {phrase!r} is empty after normalization")
            encoded[spelling] = None
        return cls(tuple(encoded), separator, boost)

    def initial_state(self) -> BiasState:
        return 0, True, 0

    def extend(self, state: BiasState, label: int) -> tuple[float, BiasState]:
        """The score a hypothesis gains by ``label`` (negative when labels of a match it gives up
        turn out in no whole phrase)."""
        node, word_start, covered = state
        lost = 0
        while node and (node, label) not in self._children:  # the match breaks off: its tail goes on
            tail = self._fail[node]
            lost += self._depth[node] - self._depth[tail] - (covered >> self._depth[tail]).bit_count()
            covered &= (1 << self._depth[tail]) - 1
            node = tail
        child = self._children.get((node, label))
        if child is None or not (node or word_start):  # a match starts only at a word start
            return -self.boost * lost, (0, label == self.separator, 0)
        covered <<= 1
        if self._whole_tail[child]:
            covered |= (1 << self._whole_tail[child]) - 1
        return self.boost * (1 - lost), (child, label == self.separator, covered)

    def gain_bound(self, label: int) -> float:
        """A label earns at most one boost (what a broken match gives back is never negative)."""
        return self.boost

    def finish(self, state: BiasState) -> float:
        """At the end of the utterance a phrase is whole if its separator would end it: the score
        of that separator, less its own boost, less the labels still in no whole phrase."""
        gained, (node, _, covered) = self.extend(state, self.separator)
        uncovered = self._depth[node] - covered.bit_count()
        separator_kept = 1 if node and covered & 1 else 0
        return gained - self.boost * (uncovered + separator_kept)


@dataclass(frozen=True)
class BiasedFusion:
    """A label LM's :class:`Fusion` (or none) plus phrase hints: the scorer beam search takes."""

    bias: PhraseBias
    fusion: Fusion | None = None

    def initial_state(self) -> tuple[FusionState | None, BiasState]:
        return (self.fusion.initial_state() if self.fusion else None), self.bias.initial_state()

    def extend(
        self, state: tuple[FusionState | None, BiasState], label: int
    ) -> tuple[float, tuple[FusionState | None, BiasState]]:
        lm_state, bias_state = state
        gained, bias_state = self.bias.extend(bias_state, label)
        if self.fusion is None or lm_state is None:
            return gained, (None, bias_state)
        lm_gained, lm_state = self.fusion.extend(lm_state, label)
        return gained + lm_gained, (lm_state, bias_state)

    def gain_bound(self, label: int) -> float:
        return self.bias.gain_bound(label) + (self.fusion.gain_bound(label) if self.fusion is not None else 0.0)

    def finish(self, state: tuple[FusionState | None, BiasState]) -> float:
        lm_state, bias_state = state
        lm_score = self.fusion.finish(lm_state) if self.fusion is not None and lm_state is not None else 0.0
        return lm_score + self.bias.finish(bias_state)
