"""A phone model's second opinion on a char model's beam search: it guides the search word by
word and ranks the hypotheses it ends with.

The shipped char and phone models hear the same audio through different label sets and were
trained apart, so they err in different places. Hypotheses are phonemized with espeak-ng (as the
phone model's training targets were) and scored by the phone model's CTC probabilities of those
phones over the utterance (:mod:`audiomodels.ctc_prefix`):

- while the char model searches, each word a hypothesis ends adds ``search_weight`` x what the
  phone model thinks of the words so far (:class:`PhoneGuide`), so hypotheses it does not hear
  leave the beam early and ones it does stay;
- the final beams of that search and of the same search unguided are then ranked together
  (:meth:`PhoneCheck.rank`) by the char model's likelihood, the LM's and the guide's scores and
  ``weight`` x the phone model's log-likelihood of their phones, phonemized as whole sentences.
  The unguided beam is there for what the guide prunes: where the phone model hears badly,
  guided hypotheses put its cost off by running words together or by not spelling at all.

On the corpus's held-out test split the re-ranking alone took the shipped char model with beam 32
+ LM from 11.64% to 11.05% CER, and guiding the search as well to 10.73% (README, The phone
check), for a second model pass and the search's phonemization.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from audiomodels.ctc_prefix import CtcPrefixScores
from audiomodels.decoding import PrefixScorer
from audiomodels.labels import LabelSet, phonemize_normalized
from audiomodels.model_check import add_checking_model_argument, check_pair, checking_recognizer, exact_ranking

if TYPE_CHECKING:  # the recognizer holds a PhoneCheck, which holds the phone model's recognizer
    from audiomodels.recognizer import Recognizer

DEFAULT_WEIGHT = 0.5  # 0.5-0.7 were best on 200 dev utterances with beam 32 + LM (models/HISTORY.md)
# Guiding the search: the bonus chosen on 200 dev utterances with beam 8 + LM; the weight again once the
# unguided beam was ranked beside the guided one (0.3 won on all three corpora's dev sets; models/HISTORY.md)
DEFAULT_SEARCH_WEIGHT = 0.3
DEFAULT_WORD_BONUS = 1.0
DEFAULT_PHONE_MODEL = Path(__file__).resolve().parent.parent / "models" / "phone.ckpt"  # the shipped one, from any directory


class PhoneCheckError(ValueError):
    """A phone check that cannot serve the model it is given to."""


@dataclass(frozen=True)
class PhoneCheck:
    """The phone model (as a :class:`Recognizer`) and how much its opinion weighs: ``weight`` in
    re-ranking the beam, ``search_weight`` (0: re-ranking only) and ``word_bonus`` in the search."""

    recognizer: Recognizer
    weight: float = DEFAULT_WEIGHT
    search_weight: float = DEFAULT_SEARCH_WEIGHT
    word_bonus: float = DEFAULT_WORD_BONUS

    def check_serves(self, labels: LabelSet, sample_rate: int) -> None:
        """Refuse a check for a model that does not spell words, or hears another sample rate."""
        check_pair(PhoneCheckError, "phone check", (labels, sample_rate), self.recognizer, ("char", "phone"))
        if not 0 < self.weight <= 10:
            raise PhoneCheckError(f"phone check weight must be in (0, 10], got {self.weight:g}")
        if not 0 <= self.search_weight <= 10:
            raise PhoneCheckError(f"phone check search weight must be in [0, 10], got {self.search_weight:g}")

    def opinion(self, phone_log_probs: torch.Tensor, labels: LabelSet) -> PhoneOpinion:
        """What the phone model makes of hypotheses in ``labels`` (a char label set) over one
        utterance's phone log-probs (T, V): one per utterance, shared by the guide and the re-ranking."""
        scores = CtcPrefixScores(phone_log_probs, self.recognizer.labels.blank_id)
        return PhoneOpinion(scores, labels, self.recognizer.labels)

    def guide(self, scorer: PrefixScorer | None, opinion: PhoneOpinion) -> PrefixScorer | None:
        """The scorer a checked beam search runs with: ``scorer``'s (LM, hints) plus, at each word's
        end, the phone model's say on the words so far (:class:`PhoneGuide`); ``scorer`` itself
        when the check only re-ranks (``search_weight`` 0)."""
        if self.search_weight == 0:
            return scorer
        return PhoneGuide(scorer, opinion, self.search_weight, self.word_bonus)

    def rank(
        self,
        hypotheses: Sequence[list[int]],
        log_probs: torch.Tensor,
        blank: int,
        scorer: PrefixScorer | None,
        opinion: PhoneOpinion,
    ) -> list[list[int]]:
        """Hypotheses (char label ids) best first by one objective, whichever search found them:
        the char model's CTC log-likelihood over ``log_probs`` + ``scorer``'s sentence score (LM,
        hints and, from :meth:`guide`, the guide's words) + ``weight`` x the phone model's
        log-likelihood of their phones (:meth:`PhoneOpinion.whole`). Exact scores, not the
        searches' own: the beams of a guided and an unguided search are ranked together."""
        return exact_ranking(hypotheses, log_probs, blank, scorer, lambda label_ids: self.weight * opinion.whole(label_ids))


class PhoneOpinion:
    """The phone model's probabilities of char hypotheses' phones over one utterance. A hypothesis
    is phonemized with espeak-ng as the phone model's training targets were (phones outside the
    phone model's labels are left out), once per utterance however often it is asked about."""

    def __init__(self, scores: CtcPrefixScores, char_labels: LabelSet, phone_labels: LabelSet) -> None:
        self.scores, self.char_labels, self.phone_labels = scores, char_labels, phone_labels
        self._known: dict[tuple[int, ...], tuple[int, ...]] = {}

    def phones(self, label_ids: Sequence[int]) -> tuple[int, ...]:
        """The phone-model label ids of a hypothesis (char label ids) spoken as one sentence."""
        key = tuple(label_ids)
        phones = self._known.get(key)
        if phones is None:
            phones = self._known[key] = tuple(spoken_phones(self.char_labels.decode(key), self.phone_labels))
        return phones

    def prefix(self, label_ids: Sequence[int]) -> float:
        """log P(the utterance's phones start with the hypothesis')."""
        return self.scores.prefix(self.phones(label_ids))

    def whole(self, label_ids: Sequence[int]) -> float:
        """log P(the utterance's phones are exactly the hypothesis')."""
        return self.scores.whole(self.phones(label_ids))


def spoken_phones(text: str, phone_labels: LabelSet) -> list[int]:
    """A char model's text as ``phone_labels`` ids: phonemized with espeak-ng as one sentence, as
    the phone model's training targets were, phones outside its labels left out."""
    spoken = phonemize_normalized([text])[0] if text.strip() else ""
    return phone_labels.encode_known(spoken.split())


@dataclass
class PhoneGuide:
    """A beam search scorer (:class:`~audiomodels.decoding.PrefixScorer`): ``inner``'s scores plus,
    each time a hypothesis ends a word, ``weight`` x the change in the phone model's prefix score
    of its words' phones (:mod:`audiomodels.ctc_prefix`) and ``word_bonus``; at the end, the
    phone model's whole-utterance likelihood replaces the prefix score.

    Words are phonemized together, so each is spoken in the context of the ones before it (espeak-ng
    says "a" as ɐ inside a sentence, eɪ alone). Scoring at word ends, not letters, keeps
    half-spelled words out of espeak-ng, whose guesses for them are noise; the bonus per word
    offsets the cost every word pays, which would otherwise favour hypotheses that run words
    together to put it off."""

    inner: PrefixScorer | None
    opinion: PhoneOpinion
    weight: float
    word_bonus: float

    def __post_init__(self) -> None:
        separator = self.opinion.char_labels.word_separator_id()
        if separator is None:
            raise PhoneCheckError("the phone check's search needs a char label set with a word separator")
        self.separator = separator

    def initial_state(self) -> GuideState:
        return (self.inner.initial_state() if self.inner else None), (), ()

    def extend(self, state: GuideState, label: int) -> tuple[float, GuideState]:
        inner_state, words, spelling = state
        gained = 0.0
        if self.inner is not None:
            gained, inner_state = self.inner.extend(inner_state, label)
        if label != self.separator:
            return gained, (inner_state, words, (*spelling, label))
        if not spelling:
            return gained, (inner_state, words, ())
        longer = self._joined(words, spelling)
        gained += self.weight * (self.opinion.prefix(longer) - self.opinion.prefix(words)) + self.word_bonus
        return gained, (inner_state, longer, ())

    def gain_bound(self, label: int) -> float:
        """Unbounded at a word's end: espeak-ng may say the words before it anew, so the phone
        model's prefix score can rise."""
        if label == self.separator:
            return math.inf
        return self.inner.gain_bound(label) if self.inner is not None else 0.0

    def finish(self, state: GuideState) -> float:
        inner_state, words, spelling = state
        score = self.inner.finish(inner_state) if self.inner is not None else 0.0
        whole = self.opinion.whole(self._joined(words, spelling))
        return score + self.weight * (whole - self.opinion.prefix(words)) + (self.word_bonus if spelling else 0.0)

    def _joined(self, words: tuple[int, ...], spelling: tuple[int, ...]) -> tuple[int, ...]:
        return (*words, self.separator, *spelling) if words and spelling else words or spelling


GuideState = tuple[Any, tuple[int, ...], tuple[int, ...]]  # inner scorer's state, words so far, word being spelled


def add_phone_check_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--phone-check [CKPT]`` and its weight: the option of every command that decodes whole utterances."""
    add_checking_model_argument(
        parser,
        "phone-check",
        DEFAULT_PHONE_MODEL,
        "beam search only, char models: a phone model (default: the shipped models/phone.ckpt) guides the "
        "search word by word, and its likelihood of the hypotheses' phones ranks the final beams of that search "
        "and of the same search unguided: fewer errors on unfamiliar voices, for a second model pass",
    )
    parser.add_argument(
        "--phone-check-weight",
        type=float,
        default=DEFAULT_WEIGHT,
        metavar="W",
        help=f"weight of the phone model's log-likelihood in re-ranking the beam (default {DEFAULT_WEIGHT})",
    )
    parser.add_argument(
        "--phone-check-search-weight",
        type=float,
        default=DEFAULT_SEARCH_WEIGHT,
        metavar="W",
        help=f"weight of the phone model's say on each word during the search (default {DEFAULT_SEARCH_WEIGHT}; "
        "0: re-rank one unguided beam only)",
    )


def phone_check_from_args(
    args: argparse.Namespace, beam_size: int | None = None, **recognizer_options: object
) -> PhoneCheck | None:
    """The :class:`PhoneCheck` the options ask for, or None (:func:`checking_recognizer`: a greedy
    command's check raises :class:`PhoneCheckError`)."""
    recognizer = checking_recognizer(args, "phone-check", beam_size, PhoneCheckError, **recognizer_options)
    if recognizer is None:
        return None
    return PhoneCheck(recognizer, args.phone_check_weight, args.phone_check_search_weight)
