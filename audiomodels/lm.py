"""Label n-gram language model (interpolated Kneser-Ney) for CTC prefix beam search.

The acoustic model spells what it hears; on voices it has never heard it spells badly, and a
model of which label sequences English text makes (``th`` before ``e``, not ``q``) repairs part of
that at decoding time (shallow fusion: beam score = acoustic + weight x LM + bonus x labels).

It works on the label ids of a :class:`LabelSet` (characters with the space, or phones), so one
class serves char and phone models. Stored in ARPA's backoff form: the interpolated probability
of every n-gram seen in training, and a backoff weight per history, so a query is a few dict
lookups. N-grams are packed into integers (one base-``num_labels + 2`` digit per label), which keeps
the file a compact ``.npz`` and the lookups fast. Built by ``speechlabel lm`` (:mod:`training.lm`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOS = 0  # sentence start; CTC's blank (id 0) never occurs in text, so its id is free for this
LMState = tuple[int, ...]  # the last order-1 labels (BOS-padded at the start)


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
    """Backoff n-gram model over label ids ``1..num_labels-1``, plus end of sentence (``num_labels``)."""

    order: int
    num_labels: int  # the label set's size (blank included); EOS = num_labels
    labels: tuple[str, ...]  # the label set's symbols, to refuse use with a different label set
    log_probs: dict[int, float]  # packed n-gram -> natural-log P(last | rest), interpolated
    backoffs: dict[int, float]  # packed history -> natural-log backoff weight
    source: str = ""  # what text it was built from (for model cards)

    @property
    def eos(self) -> int:
        return self.num_labels

    @property
    def base(self) -> int:
        return self.num_labels + 2

    def initial_state(self) -> LMState:
        return (BOS,) * (self.order - 1)

    def log_prob(self, state: LMState, label: int) -> float:
        """log P(label | state), backing off to shorter histories until the n-gram was seen."""
        backoff = 0.0
        for start in range(len(state) + 1):
            history = state[start:]
            value = self.log_probs.get(pack((*history, label), self.base))
            if value is not None:
                return backoff + value
            backoff += self.backoffs.get(pack(history, self.base), 0.0)
        raise LMError(f"label id {label} is outside the LM's vocabulary")

    def advance(self, state: LMState, label: int) -> LMState:
        return (*state[1:], label) if self.order > 1 else ()

    def sentence_log_prob(self, label_ids: Sequence[int]) -> float:
        """log P of a whole sentence, end included (for perplexity)."""
        state, total = self.initial_state(), 0.0
        for label in [*label_ids, self.eos]:
            total += self.log_prob(state, label)
            state = self.advance(state, label)
        return total

    def save(self, path: str | os.PathLike) -> None:
        header = {
            "order": self.order,
            "num_labels": self.num_labels,
            "labels": list(self.labels),
            "source": self.source,
        }
        np.savez_compressed(
            path,
            header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            ngrams=np.fromiter(self.log_probs, dtype=np.int64, count=len(self.log_probs)),
            log_probs=np.fromiter(self.log_probs.values(), dtype=np.float32, count=len(self.log_probs)),
            histories=np.fromiter(self.backoffs, dtype=np.int64, count=len(self.backoffs)),
            backoffs=np.fromiter(self.backoffs.values(), dtype=np.float32, count=len(self.backoffs)),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> NgramLM:
        try:
            with np.load(path) as data:
                header = json.loads(data["header"].tobytes().decode())
                log_probs = dict(zip(data["ngrams"].tolist(), data["log_probs"].tolist(), strict=True))
                backoffs = dict(zip(data["histories"].tolist(), data["backoffs"].tolist(), strict=True))
        except FileNotFoundError:
            raise LMError(f"no language model at {path}") from None
        except (OSError, ValueError, KeyError) as error:
            raise LMError(f"{path} is not a speechlabel language model: {error}") from None
        labels = tuple(header["labels"])
        return cls(header["order"], header["num_labels"], labels, log_probs, backoffs, header.get("source", ""))

    def check_labels(self, labels: Sequence[str]) -> None:
        """Refuse a model built for another label set (ids would mean other symbols)."""
        if tuple(labels) != self.labels:
            raise LMError("the language model was built for a different label set than the acoustic model's")


@dataclass(frozen=True)
class Fusion:
    """How beam search weighs an LM: score = acoustic + ``weight`` x LM + ``length_bonus`` x labels."""

    lm: NgramLM
    weight: float = 0.8  # tuned on the corpus's dev split with the shipped char model (README)
    length_bonus: float = 1.5


def lm_beside(checkpoint: str | os.PathLike) -> Path:
    """Where a model's own LM lives: ``NAME.lm.npz`` beside ``NAME.ckpt`` (used by beam search by default)."""
    return Path(checkpoint).with_suffix(".lm.npz")


def own_fusion(checkpoint: str | os.PathLike, **weights: float) -> Fusion | None:
    """The model's own LM (:func:`lm_beside`) with default or given ``weight``/``length_bonus``; None without one."""
    path = lm_beside(checkpoint)
    return Fusion(NgramLM.load(path), **weights) if path.is_file() else None


def add_fusion_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--lm``, ``--lm-weight``, ``--length-bonus``: the options of every command that decodes."""
    defaults = Fusion.__dataclass_fields__
    parser.add_argument(
        "--lm",
        help="label language model (.npz from `speechlabel lm`) for beam search; default: NAME.lm.npz beside the "
        "checkpoint when there is one; 'none' = no LM",
    )
    parser.add_argument(
        "--lm-weight", type=float, default=defaults["weight"].default, help="weight of the LM log-probability"
    )
    parser.add_argument(
        "--length-bonus", type=float, default=defaults["length_bonus"].default, help="score added per label with an LM"
    )


def fusion_from_args(args: argparse.Namespace, checkpoint: str | os.PathLike) -> Fusion | None:
    """The :class:`Fusion` the options ask for: the model's own LM for beam search unless ``--lm``
    names another or ``none``; never for greedy decoding. Raises :class:`LMError`."""
    if args.lm == "none":
        return None
    weights = {"weight": args.lm_weight, "length_bonus": args.length_bonus}
    if args.lm is None:
        return own_fusion(checkpoint, **weights) if args.beam_size > 1 else None
    if args.beam_size <= 1:
        raise LMError("--lm is used by beam search: give --beam-size > 1 (e.g. 8)")
    return Fusion(NgramLM.load(args.lm), **weights)
