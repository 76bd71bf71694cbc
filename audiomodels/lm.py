"""Label n-gram language model (interpolated Kneser-Ney) for CTC prefix beam search.

The acoustic model spells what it hears; on voices it has never heard it spells badly, and a
model of which label sequences English text makes (``th`` before ``e``, not ``q``) repairs part of
that at decoding time (shallow fusion: beam score = acoustic + weight x LM + bonus x labels).

It works on the label ids of a :class:`LabelSet` (characters with the space, or phones), so one
class serves char and phone models. Stored in ARPA's backoff form: the interpolated probability
of every n-gram seen in training, and a backoff weight per history, so a query is a few dict
lookups. N-grams are packed into integers (one base-``num_labels + 2`` digit per label), which keeps
the file a compact ``.npz`` and the lookups fast. Built by ``speechlabel lm`` (:mod:`training.lm`).

The same file may carry a word n-gram (:class:`WordNgram`) over the label set's words, scored
whenever a prefix completes a word: characters alone cannot tell "your" from "you're".
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from audiomodels.files import FileVersion, file_version

BOS = 0  # sentence start; CTC's blank (id 0) never occurs in text, so its id is free for this
LMState = int  # the last order-1 labels (BOS-padded at the start), packed (:func:`pack`)


class LMError(ValueError):
    """An LM file that cannot be used (missing, corrupt, or for another label set)."""


def pack(ngram: Sequence[int], base: int) -> int:
    """Integer key of an n-gram; distinct lengths never collide (digits are ids + 1)."""
    key = 0
    for label in ngram:
        key = key * base + label + 1
    return key


@dataclass
class NgramLM:
    """Backoff n-gram model over ids ``1..num_labels-1``, plus end of sentence (``num_labels``).

    A label LM's ids are the label set's; ``words``, when present, is a word-level model over the
    same label set's words, which beam search consults each time a word is complete.
    """

    order: int
    num_labels: int  # vocabulary size with id 0 (blank / sentence start) included; EOS = num_labels
    labels: tuple[str, ...]  # the label set's symbols, to refuse use with a different label set
    log_probs: dict[int, float]  # packed n-gram -> natural-log P(last | rest), interpolated
    backoffs: dict[int, float]  # packed history -> natural-log backoff weight
    source: str = ""  # what text it was built from (for model cards)
    words: WordNgram | None = None

    @property
    def eos(self) -> int:
        return self.num_labels

    @property
    def base(self) -> int:
        return self.num_labels + 2

    def initial_state(self) -> LMState:
        return self.state_of(())

    def state_of(self, history: Sequence[int]) -> LMState:
        """The state after ``history`` (label ids; only the last order-1 count)."""
        width = self.order - 1
        last = list(history[-width:]) if width else []
        return pack([BOS] * (width - len(last)) + last, self.base)

    def log_prob(self, state: LMState, label: int) -> float:
        """log P(label | state), backing off to shorter histories until the n-gram was seen.

        A packed key's last k digits are the key of its last k labels, so every shorter history
        is one modulo away (beam search with an LM spends most of its time here)."""
        base, powers = self.base, self._powers
        ngram = state * base + label + 1
        backoff = 0.0
        for length in range(self.order - 1, -1, -1):
            value = self.log_probs.get(ngram % powers[length + 1])
            if value is not None:
                return backoff + value
            backoff += self.backoffs.get(state % powers[length], 0.0)
        raise LMError(f"label id {label} is outside the LM's vocabulary")

    @cached_property
    def _powers(self) -> list[int]:
        return [self.base**length for length in range(self.order + 1)]

    def advance(self, state: LMState, label: int) -> LMState:
        return (state * self.base + label + 1) % self._powers[self.order - 1]

    def sentence_log_prob(self, label_ids: Sequence[int]) -> float:
        """log P of a whole sentence, end included (for perplexity)."""
        state, total = self.initial_state(), 0.0
        for label in [*label_ids, self.eos]:
            total += self.log_prob(state, label)
            state = self.advance(state, label)
        return total

    def save(self, path: str | os.PathLike) -> None:
        header = {"order": self.order, "num_labels": self.num_labels, "labels": list(self.labels), "source": self.source}
        arrays = self.arrays("")
        if self.words is not None:
            header["words"] = self.words.header()
            arrays |= self.words.arrays()
        np.savez_compressed(path, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The n-gram and backoff tables as the file stores them (names start with ``prefix``)."""
        count, histories = len(self.log_probs), len(self.backoffs)
        return {
            f"{prefix}ngrams": np.fromiter(self.log_probs, dtype=np.int64, count=count),
            f"{prefix}log_probs": np.fromiter(self.log_probs.values(), dtype=np.float32, count=count),
            f"{prefix}histories": np.fromiter(self.backoffs, dtype=np.int64, count=histories),
            f"{prefix}backoffs": np.fromiter(self.backoffs.values(), dtype=np.float32, count=histories),
        }

    @staticmethod
    def tables(data: Mapping[str, np.ndarray], prefix: str) -> tuple[dict[int, float], dict[int, float]]:
        """Inverse of :meth:`arrays`: (log_probs, backoffs)."""
        log_probs = dict(zip(data[f"{prefix}ngrams"].tolist(), data[f"{prefix}log_probs"].tolist(), strict=True))
        backoffs = dict(zip(data[f"{prefix}histories"].tolist(), data[f"{prefix}backoffs"].tolist(), strict=True))
        return log_probs, backoffs

    @classmethod
    def load(cls, path: str | os.PathLike) -> NgramLM:
        try:
            with np.load(path) as data:
                header = json.loads(data["header"].tobytes().decode())
                words = WordNgram.from_file(header["words"], data) if "words" in header else None
                tables = cls.tables(data, "")
        except FileNotFoundError:
            raise LMError(f"no language model at {path}") from None
        except (OSError, ValueError, KeyError) as error:
            raise LMError(f"{path} is not a speechlabel language model: {error}") from None
        labels = tuple(header["labels"])
        return cls(header["order"], header["num_labels"], labels, *tables, header.get("source", ""), words)

    def check_labels(self, labels: Sequence[str]) -> None:
        """Refuse a model built for another label set (ids would mean other symbols)."""
        if tuple(labels) != self.labels:
            raise LMError("the language model was built for a different label set than the acoustic model's")


UNKNOWN_WORD = 1  # word id of every word outside the vocabulary (0 is sentence start, as for labels)


@dataclass
class WordNgram:
    """Word n-gram over a label set's words: the label sequences between its word separators.

    Char models spell words, so a word model tells "your local" from "you're local", which a
    character n-gram of six or seven letters cannot see; for phone models a word is its pronunciation.
    """

    ngrams: NgramLM  # over word ids: 1 = unknown word, 2.. = ``vocabulary``
    separator: int  # the label id between words
    vocabulary: tuple[tuple[int, ...], ...]  # label ids of word id 2, 3, ...

    def __post_init__(self) -> None:
        self._ids = {spelling: index + 2 for index, spelling in enumerate(self.vocabulary)}

    def word_id(self, spelling: tuple[int, ...]) -> int:
        return self._ids.get(spelling, UNKNOWN_WORD)

    def header(self) -> dict[str, int]:
        return {"order": self.ngrams.order, "num_words": self.ngrams.num_labels, "separator": self.separator}

    def arrays(self) -> dict[str, np.ndarray]:
        """The word tables, and the vocabulary as all spellings end to end plus each one's length."""
        lengths = np.fromiter(map(len, self.vocabulary), dtype=np.int32, count=len(self.vocabulary))
        spellings = np.fromiter((label for word in self.vocabulary for label in word), dtype=np.int32)
        return {**self.ngrams.arrays("word_"), "word_spellings": spellings, "word_lengths": lengths}

    @classmethod
    def from_file(cls, header: dict[str, int], data: Mapping[str, np.ndarray]) -> WordNgram:
        """Inverse of :meth:`header` and :meth:`arrays`."""
        flat, lengths = data["word_spellings"].tolist(), data["word_lengths"].tolist()
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist() if lengths else []
        vocabulary = tuple(tuple(flat[start : start + length]) for start, length in zip(starts, lengths, strict=True))
        ngrams = NgramLM(header["order"], header["num_words"], (), *NgramLM.tables(data, "word_"))
        return cls(ngrams, header["separator"], vocabulary)


# What float32 storage may add to a log-probability that should be at most 0 (its error is ~1e-7
# of a value, so this is generous: a bound too high only prunes less).
_ROUNDING = 1e-3
FusionState = tuple[LMState, LMState, tuple[int, ...]]  # label LM state, word LM state, word so far


@dataclass(frozen=True)
class Fusion:
    """How beam search weighs an LM: score = acoustic + ``weight`` x LM + ``length_bonus`` x labels,
    and with a word model, + ``word_weight`` x word LM + ``word_bonus`` per word (at each word's end)."""

    lm: NgramLM
    weight: float = 0.8  # tuned on the corpus's dev split with the shipped char model (README)
    length_bonus: float = 2.0  # 1.5 until the LMs grew by a third: 2.0 won on dev for both shipped models (README)
    word_weight: float = 0.2  # tuned with the char model and its word trigram on dev (README)
    word_bonus: float = 0.0

    def initial_state(self) -> FusionState:
        words = self.lm.words
        return self.lm.initial_state(), words.ngrams.initial_state() if words else 0, ()

    def extend(self, state: FusionState, label: int) -> tuple[float, FusionState]:
        """The score a prefix gains by ``label``, and the prefix's new state."""
        labels, words, spelling = state
        score = self.weight * self.lm.log_prob(labels, label) + self.length_bonus
        labels = self.lm.advance(labels, label)
        if self.lm.words is None:
            return score, (labels, words, spelling)
        if label != self.lm.words.separator:
            return score, (labels, words, (*spelling, label))
        if spelling:
            gained, words = self._word(words, spelling)
            score += gained
        return score, (labels, words, ())

    def gain_bound(self, label: int) -> float:
        """A log-probability is at most 0, so a label gains at most its bonuses (a word's at the
        separator), give or take the rounding of probabilities stored in float32."""
        if self.weight < 0 or self.word_weight < 0:
            return math.inf
        bound = self.length_bonus + _ROUNDING
        if self.lm.words is not None and label == self.lm.words.separator:
            bound += max(self.word_bonus, 0.0) + _ROUNDING
        return bound

    def finish(self, state: FusionState) -> float:
        """The score of ending the sentence here (the last word, if unfinished, included)."""
        labels, words, spelling = state
        score = self.weight * self.lm.log_prob(labels, self.lm.eos)
        if self.lm.words is not None:
            if spelling:
                gained, words = self._word(words, spelling)
                score += gained
            score += self.word_weight * self.lm.words.ngrams.log_prob(words, self.lm.words.ngrams.eos)
        return score

    def _word(self, state: LMState, spelling: tuple[int, ...]) -> tuple[float, LMState]:
        words = self.lm.words
        word = words.word_id(spelling)
        gained = self.word_weight * words.ngrams.log_prob(state, word) + self.word_bonus
        return gained, words.ngrams.advance(state, word)


def lm_beside(checkpoint: str | os.PathLike) -> Path:
    """Where a model's own LM lives: ``NAME.lm.npz`` beside ``NAME.ckpt`` (used by beam search by default)."""
    return Path(checkpoint).with_suffix(".lm.npz")


def own_fusion(checkpoint: str | os.PathLike, **weights: float) -> Fusion | None:
    """The model's own LM (:func:`lm_beside`) with default or given :class:`Fusion` weights; None without one.
    A file already loaded (and unchanged since) gives the same :class:`NgramLM`, which nothing
    changes once loaded: a server whose char model also reads for the char check holds one copy
    of a char LM (~0.25 GB), not two."""
    path = lm_beside(checkpoint)
    if not path.is_file():
        return None
    return Fusion(_shared_lm(file_version(path)), **weights)


@lru_cache(maxsize=4)
def _shared_lm(version: FileVersion) -> NgramLM:
    """One loaded LM per file version."""
    return NgramLM.load(version[0])


def add_fusion_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--lm`` and the :class:`Fusion` weights: the options of every command that decodes."""
    defaults = {name: field.default for name, field in Fusion.__dataclass_fields__.items()}
    parser.add_argument(
        "--lm",
        help="label language model (.npz from `speechlabel lm`) for beam search; default: NAME.lm.npz beside the "
        "checkpoint when there is one; 'none' = no LM",
    )
    parser.add_argument(
        "--lm-weight", type=float, default=defaults["weight"], help="weight of the LM log-probability"
    )
    parser.add_argument(
        "--length-bonus", type=float, default=defaults["length_bonus"], help="score added per label with an LM"
    )
    parser.add_argument(
        "--word-weight", type=float, default=defaults["word_weight"],
        help="weight of the word LM log-probability (LM files built with --word-order)",
    )
    parser.add_argument(
        "--word-bonus", type=float, default=defaults["word_bonus"], help="score added per word with a word LM"
    )


def fusion_from_args(args: argparse.Namespace, checkpoint: str | os.PathLike) -> Fusion | None:
    """The :class:`Fusion` the options ask for: the model's own LM for beam search unless ``--lm``
    names another or ``none``; never for greedy decoding. Raises :class:`LMError`."""
    if args.lm == "none":
        return None
    weights = {
        "weight": args.lm_weight, "length_bonus": args.length_bonus,
        "word_weight": args.word_weight, "word_bonus": args.word_bonus,
    }
    if args.lm is None:
        return own_fusion(checkpoint, **weights) if args.beam_size > 1 else None
    if args.beam_size <= 1:
        raise LMError("--lm is used by beam search: give --beam-size > 1 (e.g. 8)")
    return Fusion(NgramLM.load(args.lm), **weights)
