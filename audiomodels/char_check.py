"""A char model's reading for a phone model's beam search: the phone check
(:mod:`audiomodels.phone_check`) the other way round.

A phone model knows sounds but not words; the char model with its LM knows words, and the phone
references are espeak-ng's phones of words. So the char model transcribes the utterance with the
same beam and its own LM, phone-checked by the phone model's posteriors, which are already there
(:mod:`audiomodels.phone_check`); the transcript is phonemized as the phone model's training
targets were (its *reading*), and the phone model's final beam plus the reading itself are ranked
by one exact score: the phone model's CTC log-likelihood (one batched ``F.ctc_loss``), its LM's
score, ``agreement_bonus`` for the reading itself and ``distance_weight`` x each hypothesis' phone
edit distance to the reading. Where the models agree nothing changes; where the phone model
wavers between hypotheses, the one nearer the words the char model heard wins.

The weights were chosen on the corpus's dev split (531 utterances, shipped models, phone beam 8
+ LM, the reading with beam 8 + LM unchecked; models/HISTORY.md): PER 5.42% plain, 5.34% ranked
by the exact score alone, 5.17% with this check; a phone-checked reading took it to 5.09% (and at
beam 32, 5.16% to 4.93%). It costs the char model's pass and its checked search beside the phone
model's.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from audiomodels.decoding import PrefixScorer
from audiomodels.labels import LabelSet
from audiomodels.lm import own_fusion
from audiomodels.model_check import add_checking_model_argument, check_pair, checking_recognizer, exact_ranking
from audiomodels.phone_check import PhoneCheck, spoken_phones

if TYPE_CHECKING:  # the recognizer holds a CharCheck, which holds the char model's recognizer
    from audiomodels.recognizer import Recognizer

DEFAULT_AGREEMENT_BONUS = 2.0  # chosen with DEFAULT_DISTANCE_WEIGHT on the corpus's dev split (module doc)
DEFAULT_DISTANCE_WEIGHT = 0.5
DEFAULT_CHAR_MODEL = Path(__file__).resolve().parent.parent / "models" / "char.ckpt"  # the shipped one


class CharCheckError(ValueError):
    """A char check that cannot serve the model it is given to."""


@dataclass(frozen=True)
class CharCheck:
    """The char model (as a :class:`Recognizer`, with its LM) and how much its reading weighs."""

    recognizer: Recognizer
    agreement_bonus: float = DEFAULT_AGREEMENT_BONUS
    distance_weight: float = DEFAULT_DISTANCE_WEIGHT
    phone_checked: bool = True  # the reading's search is phone-checked by the phone model it serves

    def check_serves(self, labels: LabelSet, sample_rate: int) -> None:
        """Refuse a check for a model that does not label phones, or hears another sample rate."""
        check_pair(CharCheckError, "char check", (labels, sample_rate), self.recognizer, ("phone", "char"))
        if not 0 <= self.agreement_bonus <= 100 or not 0 <= self.distance_weight <= 10:
            raise CharCheckError(
                f"char check bonus must be in [0, 100] and weight in [0, 10], got {self.agreement_bonus:g} "
                f"and {self.distance_weight:g}"
            )

    def reader(self, phone: Recognizer) -> Recognizer:
        """The char recognizer that reads for the phone model ``phone``: this check's, phone-checked
        by ``phone`` (a copy sharing its model and LM) unless ``phone_checked`` is off."""
        if not self.phone_checked:
            return self.recognizer
        check = PhoneCheck(phone)
        check.check_serves(self.recognizer.labels, self.recognizer.sample_rate)
        reader = copy.copy(self.recognizer)
        reader.phone_check = check
        return reader

    def reading(
        self,
        reader: Recognizer,
        char_log_probs: torch.Tensor,
        phone_log_probs: torch.Tensor,
        beam_size: int,
        phone_labels: LabelSet,
    ) -> list[int]:
        """One utterance's reading (char and phone log-probs, T x V, of the same speech) as label ids
        of ``phone_labels``: the :meth:`reader`'s best hypothesis at ``beam_size``, phonemized as one
        sentence, phones outside the phone model's labels left out."""
        best = reader.ranked(char_log_probs, phone_log_probs, beam_size=beam_size)[0]
        return spoken_phones(reader.labels.decode(best), phone_labels)

    def rank(
        self,
        hypotheses: Sequence[list[int]],
        log_probs: torch.Tensor,
        blank: int,
        scorer: PrefixScorer | None,
        reading: list[int],
    ) -> list[list[int]]:
        """The phone model's hypotheses and the reading, best first by the exact score (module doc)."""
        candidates = [list(h) for h in hypotheses]
        if reading not in candidates:
            candidates.append(reading)

        def closeness(labels: list[int]) -> float:  # the reading is at distance 0 from itself
            return (self.agreement_bonus if labels == reading else 0.0) - self.distance_weight * edit_distance(labels, reading)

        return exact_ranking(candidates, log_probs, blank, scorer, closeness)


def edit_distance(first: Sequence[int], second: Sequence[int]) -> int:
    """Levenshtein distance, one numpy row per label of ``first``: an insertion chain along the row
    is a running minimum of ``cost - position``."""
    if not first or not second:
        return len(first) + len(second)
    targets = np.asarray(second)
    positions = np.arange(len(second) + 1)
    row = positions.copy()
    for index, label in enumerate(first, start=1):
        best = np.empty_like(row)
        best[0] = index
        best[1:] = np.minimum(row[1:] + 1, row[:-1] + (targets != label))
        row = np.minimum.accumulate(best - positions) + positions
    return int(row[-1])


def add_char_check_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--char-check [CKPT]`` and its weights: the options of every command that decodes whole utterances."""
    add_checking_model_argument(
        parser,
        "char-check",
        DEFAULT_CHAR_MODEL,
        "beam search only, phone models: a char model (default: the shipped models/char.ckpt) transcribes "
        "the utterance with its LM, and the phone model's beam and that transcript's phones are ranked by the phone "
        "model's exact score and their closeness to it: fewer errors, for a second model pass and search",
    )
    parser.add_argument(
        "--char-check-bonus",
        type=float,
        default=DEFAULT_AGREEMENT_BONUS,
        metavar="B",
        help=f"score of the char model's reading itself in the ranking (default {DEFAULT_AGREEMENT_BONUS})",
    )
    parser.add_argument(
        "--char-check-weight",
        type=float,
        default=DEFAULT_DISTANCE_WEIGHT,
        metavar="W",
        help=f"cost per phone a hypothesis differs from the char model's reading (default {DEFAULT_DISTANCE_WEIGHT})",
    )


def char_check_from_args(
    args: argparse.Namespace, beam_size: int | None = None, **recognizer_options: object
) -> CharCheck | None:
    """The :class:`CharCheck` the options ask for, the char model with the LM beside it, or None
    (:func:`checking_recognizer`: a greedy command's check raises :class:`CharCheckError`)."""
    fusion = own_fusion(args.char_check) if args.char_check is not None else None
    recognizer = checking_recognizer(args, "char-check", beam_size, CharCheckError, fusion=fusion, **recognizer_options)
    if recognizer is None:
        return None
    return CharCheck(recognizer, args.char_check_bonus, args.char_check_weight)
