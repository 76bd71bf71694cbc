"""What the phone check (:mod:`audiomodels.phone_check`) and the char check
(:mod:`audiomodels.char_check`) share: one model checks another's beam search, so the two must
label the kinds each expects and hear the same sample rate, and the checking model is loaded
only for commands that search with a beam."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from audiomodels.ctc_prefix import sequence_log_likelihoods
from audiomodels.decoding import PrefixScorer, sentence_score
from audiomodels.labels import LabelSet

if TYPE_CHECKING:  # the recognizer module imports the checks, which use this one
    from audiomodels.recognizer import Recognizer


def check_pair(
    error: type[ValueError], name: str, checked: tuple[LabelSet, int], checker: Recognizer, kinds: tuple[str, str]
) -> None:
    """Raise ``error`` unless the checked model (its labels and rate) is of kind ``kinds[0]``, the
    checking model of kind ``kinds[1]``, and both hear the same rate. ``name``: the check's."""
    labels, sample_rate = checked
    served, checking = kinds
    if labels.kind != served:
        raise error(f"a {name} checks a {served} model's hypotheses, not a {labels.kind} model's")
    if checker.labels.kind != checking:
        raise error(f"the {name} needs a {checking} model, got a {checker.labels.kind} model")
    if checker.sample_rate != sample_rate:
        raise error(f"the {checking} model hears {checker.sample_rate} Hz, the {served} model {sample_rate} Hz")


def exact_ranking(
    hypotheses: Sequence[list[int]],
    log_probs: torch.Tensor,
    blank: int,
    scorer: PrefixScorer | None,
    check_score: Callable[[list[int]], float],
) -> list[list[int]]:
    """Hypotheses (label ids of the checked model) best first by one exact score, whichever search
    found them: the checked model's CTC log-likelihood over its ``log_probs`` (one batched
    ``F.ctc_loss``) + ``scorer``'s sentence score (LM, hints) + ``check_score``, the check's say."""
    acoustic = sequence_log_likelihoods(log_probs, list(hypotheses), blank)
    totals = [
        heard + sentence_score(scorer, labels) + check_score(labels) for heard, labels in zip(acoustic, hypotheses)
    ]
    order = sorted(range(len(hypotheses)), key=totals.__getitem__, reverse=True)
    return [hypotheses[i] for i in order]


def add_checking_model_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, option: str, shipped: Path, help: str
) -> None:
    """``--OPTION [CKPT]``: the checking model's checkpoint, ``shipped`` when the option has no value."""
    parser.add_argument(f"--{option}", type=Path, nargs="?", const=shipped, metavar=f"{shipped.stem.upper()}_CKPT", help=help)


def checking_recognizer(
    args: argparse.Namespace,
    option: str,
    beam_size: int | None,
    error: type[ValueError],
    **recognizer_options: object,
) -> Recognizer | None:
    """The checking model ``--OPTION`` names (a checkpoint path in ``args``), or None without the
    option. ``beam_size`` is the command's beam (None where each request brings its own, as on the
    server): a check needs beam search, so a greedy command's check raises ``error``. Raises
    ``CheckpointError`` for a missing or unreadable model, ``LMError`` for a bad LM beside it
    (``recognizer_options`` may ask for it: ``fusion``; also device, precision)."""
    path: Path | None = getattr(args, option.replace("-", "_"))
    if path is None:
        return None
    if beam_size is not None and beam_size <= 1:
        raise error(f"--{option} checks beam search: add --beam-size 8 (or more)")
    from audiomodels.recognizer import Recognizer  # at call time: the recognizer module imports the checks

    return Recognizer.from_checkpoint(path, **recognizer_options)
