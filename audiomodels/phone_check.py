"""A phone model's second opinion on a char model's beam: re-ranking its hypotheses by what the
phone model hears.

The shipped char and phone models hear the same audio through different label sets and were
trained apart, so they err in different places. Beam search with the char model and its LM ends
with up to ``beam_size`` hypotheses; each is phonemized with espeak-ng (as the phone model's
training targets were) and scored by the phone model's CTC log-likelihood of those phones over the
utterance; the hypothesis with the best ``beam score + weight x phone log-likelihood`` wins. On the
corpus's held-out test split it took the shipped char model with beam 32 + LM from 11.64% to
11.05% CER (models/HISTORY.md), for a second model pass and one espeak-ng call per utterance.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from audiomodels.labels import LabelError, LabelSet, phonemize_batch

if TYPE_CHECKING:  # the recognizer holds a PhoneCheck, which holds the phone model's recognizer
    from audiomodels.recognizer import Recognizer

DEFAULT_WEIGHT = 0.5  # 0.5-0.7 were best on 200 dev utterances with beam 32 + LM (models/HISTORY.md)
DEFAULT_PHONE_MODEL = Path(__file__).resolve().parent.parent / "models" / "phone.ckpt"  # the shipped one, from any directory


class PhoneCheckError(ValueError):
    """A phone check that cannot serve the model it is given to."""


@dataclass(frozen=True)
class PhoneCheck:
    """The phone model (as a :class:`Recognizer`) and how much its opinion weighs."""

    recognizer: Recognizer
    weight: float = DEFAULT_WEIGHT

    def check_serves(self, labels: LabelSet, sample_rate: int) -> None:
        """Refuse a check for a model that does not spell words, or hears another sample rate."""
        if labels.kind != "char":
            raise PhoneCheckError(f"a phone check re-ranks a char model's hypotheses, not a {labels.kind} model's")
        if self.recognizer.labels.kind != "phone":
            raise PhoneCheckError(f"the phone check needs a phone model, got a {self.recognizer.labels.kind} model")
        if self.recognizer.sample_rate != sample_rate:
            raise PhoneCheckError(
                f"the phone model hears {self.recognizer.sample_rate} Hz, the char model {sample_rate} Hz"
            )
        if not 0 < self.weight <= 10:
            raise PhoneCheckError(f"phone check weight must be in (0, 10], got {self.weight:g}")

    def emissions(self, speech: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """The phone model's log-probs (T, V) of each model-rate waveform, as the char model heard it
        (its leading silence skipped and its level set: silence adds nothing to a CTC likelihood)."""
        log_probs, lengths = self.recognizer.emissions(speech)
        return [log_probs[row, :length] for row, length in enumerate(lengths.tolist())]

    def rerank(
        self, scored: Sequence[tuple[list[int], float]], labels: LabelSet, phone_log_probs: torch.Tensor
    ) -> list[list[int]]:
        """Hypotheses (label ids of ``labels``, with their beam scores) best first by beam score +
        weight x the phone model's log-likelihood of their phones in ``phone_log_probs`` (T, V)."""
        texts = [labels.decode(label_ids) for label_ids, _ in scored]
        likelihoods = self.log_likelihoods(texts, phone_log_probs)
        order = sorted(
            range(len(scored)), key=lambda i: scored[i][1] + self.weight * likelihoods[i], reverse=True
        )
        return [scored[i][0] for i in order]

    def log_likelihoods(self, texts: Sequence[str], phone_log_probs: torch.Tensor) -> list[float]:
        """The phone model's CTC log-likelihood of each text's espeak-ng phones (-inf for phones it
        has no label for, or more phones than frames)."""
        phone_labels = self.recognizer.labels
        blank = phone_labels.blank_id
        frames = torch.tensor([len(phone_log_probs)])
        likelihoods = []
        for phones in phonemize_batch(texts, check=False):
            try:
                target = phone_labels.encode(phones)
            except LabelError:
                likelihoods.append(-math.inf)
                continue
            if not target:
                likelihoods.append(float(phone_log_probs[:, blank].sum()))
                continue
            loss = F.ctc_loss(
                phone_log_probs.unsqueeze(1).float(),
                torch.tensor([target]),
                frames,
                torch.tensor([len(target)]),
                blank=blank,
                reduction="sum",
            )
            likelihoods.append(-float(loss))
        return likelihoods


def add_phone_check_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--phone-check [CKPT]`` and its weight: the option of every command that decodes whole utterances."""
    parser.add_argument(
        "--phone-check",
        type=Path,
        nargs="?",
        const=DEFAULT_PHONE_MODEL,
        metavar="PHONE_CKPT",
        help="beam search only, char models: re-rank the beam's hypotheses by a phone model's likelihood of "
        "their phones (default: the shipped models/phone.ckpt): fewer errors on unfamiliar voices, for a second "
        "model pass and an espeak-ng call per utterance",
    )
    parser.add_argument(
        "--phone-check-weight",
        type=float,
        default=DEFAULT_WEIGHT,
        metavar="W",
        help=f"weight of the phone model's log-likelihood against the beam score (default {DEFAULT_WEIGHT})",
    )


def phone_check_from_args(args: argparse.Namespace, **recognizer_options: object) -> PhoneCheck | None:
    """The :class:`PhoneCheck` the options ask for (``recognizer_options``: device, precision), or None.
    Raises ``CheckpointError`` for a missing or unreadable phone model."""
    if args.phone_check is None:
        return None
    from audiomodels.recognizer import Recognizer  # at call time: the recognizer module imports this one

    return PhoneCheck(Recognizer.from_checkpoint(args.phone_check, **recognizer_options), args.phone_check_weight)
