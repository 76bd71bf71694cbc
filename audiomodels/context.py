"""Phrase hints: contextual biasing of beam search towards phrases the caller expects.

A speech service's users know words the model and its LM do not: names, product terms, the
options of a menu. :class:`PhraseBias` rewards a beam hypothesis ``boost`` per label for every
label that continues a hinted phrase, and takes the reward back when the match breaks off, so
only whole phrases keep their bonus (a prefix trie of the phrases; the idea of the context graphs
in WeNet and icefall). Phrases match at word boundaries only: a match starts at the start of the
utterance or after a word separator, and is whole only where a separator or the end follows, so
"ann" lifts "ann" but not "annual". :class:`BiasedFusion` adds it to the label LM's score (or
stands alone without one) in :func:`audiomodels.decoding.prefix_beam_search_nbest`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from audiomodels.labels import LabelSet
from audiomodels.lm import Fusion, FusionState

DEFAULT_BOOST = 2.0  # per matched label; the best of 1-4 on the corpus's dev split with the shipped char model (README)
MAX_BOOST = 20.0

# (trie node: the phrase labels matched so far, 0 = none; whether a phrase may start here)
BiasState = tuple[int, bool]


class PhraseError(ValueError):
    """Phrases that cannot be hinted (empty, or symbols outside the model's label set)."""


@dataclass(frozen=True)
class PhraseBias:
    """A prefix trie of phrases (as label ids, each ended by the word separator) and the boost.

    Equal phrase lists and boosts compare and hash equal, so requests with the same hints can
    share a batch. Build it with :meth:`from_phrases`. One match is followed at a time (no
    Aho-Corasick failure links): a phrase that starts inside another's broken match is missed
    unless the break falls on a word boundary.
    """

    phrases: tuple[tuple[int, ...], ...]
    separator: int
    boost: float = DEFAULT_BOOST
    _children: dict[tuple[int, int], int] = field(default_factory=dict, init=False, compare=False, repr=False)
    # per node: labels matched beyond the last whole phrase on its path (what breaking off costs)
    _pending: list[int] = field(default_factory=list, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.boost <= MAX_BOOST:
            raise PhraseError(f"phrase boost must be in (0, {MAX_BOOST:g}], got {self.boost:g}")
        parents, whole = [0], [False]
        for phrase in self.phrases:
            node = 0
            for label in (*phrase, self.separator):
                child = self._children.get((node, label))
                if child is None:
                    child = self._children[(node, label)] = len(parents)
                    parents.append(node)
                    whole.append(False)
                node = child
            whole[node] = True
        self._pending.append(0)
        for node in range(1, len(parents)):  # a parent's id is below its children's
            self._pending.append(0 if whole[node] else self._pending[parents[node]] + 1)

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
        return 0, True

    def extend(self, state: BiasState, label: int) -> tuple[float, BiasState]:
        """The score a hypothesis gains by ``label`` (negative when a partial match breaks off)."""
        node, word_start = state
        child = self._children.get((node, label))
        if child is not None and (node or word_start):  # a match goes on, or starts at a word start
            return self.boost, (child, label == self.separator)
        lost = -self.boost * self._pending[node]
        if node and word_start and (start := self._children.get((0, label))) is not None:
            return lost + self.boost, (start, False)  # broke off at a word boundary, where another starts
        return lost, (0, label == self.separator)

    def finish(self, state: BiasState) -> float:
        """At the end of the utterance a phrase is whole if its separator would end it."""
        node, _ = state
        end = self._children.get((node, self.separator))
        return 0.0 if end is not None and self._pending[end] == 0 else -self.boost * self._pending[node]


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

    def finish(self, state: tuple[FusionState | None, BiasState]) -> float:
        lm_state, bias_state = state
        lm_score = self.fusion.finish(lm_state) if self.fusion is not None and lm_state is not None else 0.0
        return lm_score + self.bias.finish(bias_state)
