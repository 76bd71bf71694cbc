"""CTC forced alignment of a known label sequence, and grouping of label spans into words.

Frames in, frames out: the caller converts frame indices to seconds with the feature
config's frame shift, so this module never needs to know it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torchaudio.functional as taf


class AlignmentError(ValueError):
    """The transcript cannot be aligned to these emissions (too few frames, none at all)."""


@dataclass(frozen=True)
class LabelSpan:
    """Frames ``[start_frame, end_frame)`` where the alignment emits one label."""

    label_id: int
    start_frame: int
    end_frame: int  # exclusive
    score: float  # mean posterior probability of the label over its frames, in [0, 1]


@dataclass(frozen=True)
class WordSpan:
    """A run of label spans between word separators."""

    label_ids: tuple[int, ...]
    start_frame: int
    end_frame: int  # exclusive
    confidence: float  # geometric mean of the label span scores, in [0, 1]
    weakest: float  # the lowest label span score (audiomodels.calibration weighs both)


def align_labels(
    log_probs: torch.Tensor, label_ids: Sequence[int], blank: int = 0
) -> list[LabelSpan]:
    """Viterbi-align ``label_ids`` to ``log_probs`` ``(T, V)``; one span per label, in order.

    CTC needs one frame per label plus one blank frame between equal neighbours, so a
    transcript that does not fit raises :class:`AlignmentError` saying how many frames it
    needs; the caller usually has a too-long transcript or a truncated recording.
    """
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must have shape (T, V), got {tuple(log_probs.shape)}")
    labels = list(label_ids)
    if not labels:
        return []
    num_frames, num_labels = log_probs.shape
    bad = [label for label in labels if label == blank or not 0 <= label < num_labels]
    if bad:
        raise ValueError(f"label ids {bad} are blank or outside [0, {num_labels})")
    repeats = sum(a == b for a, b in zip(labels, labels[1:]))
    needed = len(labels) + repeats
    if num_frames < needed:
        raise AlignmentError(
            f"{len(labels)} labels ({repeats} adjacent repeats) need at least {needed} frames, "
            f"but the emissions have {num_frames}"
        )

    emissions = log_probs.detach().to("cpu", torch.float32).unsqueeze(0)
    targets = torch.tensor([labels], dtype=torch.int32)
    path, frame_scores = taf.forced_align(emissions, targets, blank=blank)
    # Equal neighbours are separated by a blank on any CTC path, so merging runs yields
    # exactly one span per label; exp() makes merge_tokens' mean a mean posterior.
    return [
        LabelSpan(span.token, span.start, span.end, span.score)
        for span in taf.merge_tokens(path[0], frame_scores[0].exp(), blank=blank)
    ]


def _geometric_mean(values: Sequence[float]) -> float:
    if min(values) <= 0.0:
        return 0.0
    return math.exp(math.fsum(math.log(v) for v in values) / len(values))


def group_words(spans: Sequence[LabelSpan], separator_id: int | None) -> list[WordSpan]:
    """Split label spans into words at ``separator_id`` spans (which are dropped).

    Words are maximal runs of non-separator spans, so leading, trailing and doubled
    separators produce no empty words. ``separator_id=None`` (e.g. a phone set without a
    word boundary symbol) makes the whole sequence one word.

    Confidence is the geometric mean of the span scores rather than the arithmetic mean:
    one badly matching label should pull the whole word down (a single score near 0 drives
    it to 0), as a product of probabilities would, while staying comparable across lengths.
    """
    words: list[WordSpan] = []
    run: list[LabelSpan] = []

    def flush() -> None:
        if run:
            words.append(
                WordSpan(
                    label_ids=tuple(span.label_id for span in run),
                    start_frame=run[0].start_frame,
                    end_frame=run[-1].end_frame,
                    confidence=_geometric_mean([span.score for span in run]),
                    weakest=min(span.score for span in run),
                )
            )
            run.clear()

    for span in spans:
        if span.label_id == separator_id:
            flush()
        else:
            run.append(span)
    flush()
    return words
