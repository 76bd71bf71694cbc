"""Error rates for transcripts: CER, WER and PER from one exact S/I/D alignment.

Pure Python (no torch) so the trainer, the ``evaluate`` command and offline scripts all score
the same way. Rates are computed from summed counts (``sum(counts, ErrorCounts())``), never by
averaging per-utterance rates, so long utterances weigh by their length as in every ASR toolkit.

Tie-break: many alignments can share the minimum number of edits (``"a b"`` vs ``"b c"`` is
two substitutions *or* one deletion plus one insertion). We pick the one with the fewest
insertions + deletions, i.e. the most substitutions. Since ``I - D = len(hyp) - len(ref)`` is
fixed, that makes S, I and D *unique* (not dependent on backtrace order), and swapping reference
and hypothesis exactly swaps I and D. Toolkits differ here (jiwer/rapidfuzz prefers indels), so
totals match theirs while the S/I/D split may not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from audiomodels.labels import PHONE_WORD_SEPARATOR  # torch-free module


@dataclass(frozen=True)
class ErrorCounts:
    """Edit counts of one hypothesis against one reference; ``+`` sums them over a corpus."""

    substitutions: int = 0
    insertions: int = 0
    deletions: int = 0
    reference_length: int = 0

    @property
    def errors(self) -> int:
        """Total edits, S + I + D."""
        return self.substitutions + self.insertions + self.deletions

    @property
    def rate(self) -> float:
        """errors / reference_length.

        An empty reference has rate 0.0 when the hypothesis is empty too; otherwise the rate is
        divided by 1, i.e. it equals the number of inserted tokens (always > 0, never inf/NaN, so
        it stays JSON-able). Such per-utterance rates are only indicative: score corpora by
        summing counts first.
        """
        return self.errors / max(self.reference_length, 1)

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        if not isinstance(other, ErrorCounts):
            return NotImplemented
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.insertions + other.insertions,
            self.deletions + other.deletions,
            self.reference_length + other.reference_length,
        )


def align_tokens(reference: Sequence[str], hypothesis: Sequence[str]) -> ErrorCounts:
    """Minimum-edit alignment counts (ties: fewest insertions + deletions, see module doc).

    One O(len(ref) x len(hyp)) dynamic programme over a single integer cost
    ``edits * scale + indels`` (``scale`` exceeds any possible indel count), which orders
    alignments by edits first and indels second. S, I and D then follow from the optimum's two
    parts and the length difference, so no backtrace table is kept (O(len(hyp)) memory).
    """
    ref_len, hyp_len = len(reference), len(hypothesis)
    scale = ref_len + hyp_len + 1
    indel = scale + 1  # one edit that is also one insertion or deletion
    previous = [j * indel for j in range(hyp_len + 1)]  # reference prefix of length 0: insertions
    for i in range(1, ref_len + 1):
        ref_token = reference[i - 1]
        current = [i * indel]  # hypothesis prefix of length 0: deletions
        for j in range(1, hyp_len + 1):
            diagonal = previous[j - 1] + (0 if ref_token == hypothesis[j - 1] else scale)
            current.append(min(diagonal, previous[j] + indel, current[j - 1] + indel))
        previous = current
    edits, indels = divmod(previous[hyp_len], scale)
    length_difference = hyp_len - ref_len  # = insertions - deletions in every alignment
    return ErrorCounts(
        substitutions=edits - indels,
        insertions=(indels + length_difference) // 2,
        deletions=(indels - length_difference) // 2,
        reference_length=ref_len,
    )


def char_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """CER counts over characters, *including* the single space between words.

    Whitespace runs are collapsed to one space and the ends stripped first, so only layout
    differences are forgiven; a missing or extra word break costs one error. Counting spaces is
    jiwer's ``cer`` convention (jiwer does not collapse inner runs) and matches the char models,
    whose alphabet has the space as its word separator label.
    """
    return align_tokens(" ".join(reference.split()), " ".join(hypothesis.split()))


def word_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """WER counts over whitespace-separated words."""
    return align_tokens(reference.split(), hypothesis.split())


def phone_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """PER counts over canonical phone strings (``"h ə l oʊ | w ɜː l d"``).

    Phones are whitespace-separated tokens; word-boundary ``"|"`` tokens are dropped on both
    sides because PER measures phone recognition, not word segmentation.
    """
    return align_tokens(_phones(reference), _phones(hypothesis))


def _phones(text: str) -> list[str]:
    return [token for token in text.split() if token != PHONE_WORD_SEPARATOR]


def separated_words(text: str, separator: str) -> list[str]:
    """The words of a label set's text: a char set's are its whitespace-separated words (its
    separator is the space); a phone or custom set's are the runs of whitespace-separated tokens
    between separator tokens, each joined by single spaces (``"h ə l oʊ | w ɜː l d"`` ->
    ``["h ə l oʊ", "w ɜː l d"]``), as :meth:`LabelSet.decode` spells a word of them."""
    if not separator.strip():
        return text.split()
    runs = groupby(text.split(), key=lambda token: token == separator)
    return [" ".join(tokens) for is_separator, tokens in runs if not is_separator]


def right_tokens(reference: Sequence[str], hypothesis: Sequence[str]) -> list[bool]:
    """For each hypothesis token, whether a minimum-edit alignment pairs it with an equal
    reference token: the outcome a word's confidence predicts (:mod:`training.calibrate`)."""
    right = [False] * len(hypothesis)
    for _, j in matched_pairs(reference, hypothesis):
        right[j] = True
    return right


def matched_pairs(reference: Sequence[str], hypothesis: Sequence[str]) -> list[tuple[int, int]]:
    """(reference index, hypothesis index) of the equal tokens a minimum-edit alignment pairs, in
    order. A full table and its backtrace, O(len(ref) x len(hyp)); among equally short alignments
    the backtrace prefers the diagonal step (a match or a substitution) wherever it is optimal."""
    ref_len, hyp_len = len(reference), len(hypothesis)
    table = [list(range(hyp_len + 1))]
    for i in range(1, ref_len + 1):
        row = [i]
        for j in range(1, hyp_len + 1):
            diagonal = table[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1])
            row.append(min(diagonal, table[i - 1][j] + 1, row[j - 1] + 1))
        table.append(row)
    pairs = []
    i, j = ref_len, hyp_len
    while i and j:
        same = reference[i - 1] == hypothesis[j - 1]
        if table[i][j] == table[i - 1][j - 1] + (not same):
            if same:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i][j] == table[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def confidence_quality(confidences: Sequence[float], outcomes: Sequence[bool], bins: int = 10) -> dict[str, float]:
    """How well word confidences predict which words are right: ``ece`` (expected calibration
    error: the words-weighted gap between mean confidence and accuracy over ``bins`` equal-width
    bins; 0 for confidences that are probabilities), ``auc`` (the chance that a right word has a
    higher confidence than a wrong one; ties count half), ``brier`` (mean squared error), and
    the mean ``confidence`` beside the ``accuracy``."""
    count = len(confidences)
    if count != len(outcomes):
        raise ValueError(f"{count} confidences for {len(outcomes)} outcomes")
    if not count:
        return {"words": 0}
    pairs = sorted(zip(confidences, outcomes))
    gaps = [[0.0, 0.0, 0] for _ in range(bins)]  # per bin: sum of confidences, of outcomes, count
    for confidence, right in pairs:
        gap = gaps[min(int(confidence * bins), bins - 1)]
        gap[0], gap[1], gap[2] = gap[0] + confidence, gap[1] + right, gap[2] + 1
    right_count = sum(outcomes)
    wrong_count = count - right_count
    rank_sum, at = 0.0, 0  # ranks of the right words, ties averaged (Mann-Whitney)
    while at < count:
        end = at
        while end < count and pairs[end][0] == pairs[at][0]:
            end += 1
        rank_sum += sum(right for _, right in pairs[at:end]) * (at + end + 1) / 2
        at = end
    auc = (
        (rank_sum - right_count * (right_count + 1) / 2) / (right_count * wrong_count)
        if right_count and wrong_count
        else float("nan")
    )
    return {
        "words": count,
        "accuracy": right_count / count,
        "confidence": sum(confidences) / count,
        "ece": sum(abs(s - r) for s, r, _ in gaps) / count,
        "auc": auc,
        "brier": sum((c - r) ** 2 for c, r in zip(confidences, outcomes)) / count,
    }
