"""CTC prefix scores against the CTC loss and against their own definition, on random posteriors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiomodels.ctc_prefix import IMPOSSIBLE, CtcPrefixScores, sequence_log_likelihoods

LABELS = 6  # blank and 5 labels


def random_log_probs(frames: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(frames, LABELS, generator=generator, dtype=torch.float64)).log_softmax(-1)


@pytest.mark.parametrize("target", [(1,), (2, 2), (1, 2, 3), (3, 1, 3, 3, 2), (4, 4, 4)])
def test_whole_is_the_ctc_likelihood(target: tuple[int, ...]) -> None:
    log_probs = random_log_probs(30, seed=len(target))
    expected = -F.ctc_loss(
        log_probs.unsqueeze(1), torch.tensor([target]), torch.tensor([30]), torch.tensor([len(target)]), reduction="sum"
    )
    assert CtcPrefixScores(log_probs).whole(target) == pytest.approx(float(expected), abs=1e-4)


def test_a_beam_is_scored_in_one_call_as_one_by_one() -> None:
    """sequence_log_likelihoods: the exact likelihood of each of a beam's hypotheses, the empty
    one and one too long for the frames included."""
    log_probs = random_log_probs(12, seed=5)
    scores = CtcPrefixScores(log_probs)
    beam = [[1, 2, 3], [], [2, 2], [3, 1, 3, 3, 2], [1, 2] * 7]
    batched = sequence_log_likelihoods(log_probs, beam)
    assert batched[:-1] == pytest.approx([scores.whole(tuple(target)) for target in beam[:-1]], abs=1e-4)
    assert batched[-1] == IMPOSSIBLE
    assert sequence_log_likelihoods(log_probs, []) == []


@pytest.mark.parametrize("prefix", [(), (1,), (2, 2), (3, 1, 3)])
def test_a_prefix_is_its_exact_reading_or_one_of_its_longer_ones(prefix: tuple[int, ...]) -> None:
    """psi(g) = P(g) + sum over labels c of psi(g + c): the prefix score's definition."""
    scores = CtcPrefixScores(random_log_probs(25, seed=7))
    parts = [scores.whole(prefix)] + [scores.prefix((*prefix, label)) for label in range(1, LABELS)]
    assert scores.prefix(prefix) == pytest.approx(float(np.logaddexp.reduce(parts)), abs=1e-9)
    assert all(part <= scores.prefix(prefix) + 1e-12 for part in parts)


def test_the_empty_prefix_is_certain_and_impossible_readings_stay_finite() -> None:
    scores = CtcPrefixScores(random_log_probs(3, seed=1))
    assert scores.prefix(()) == 0.0
    assert scores.whole(()) == pytest.approx(float(random_log_probs(3, seed=1)[:, 0].sum()))
    too_long = (1, 2, 1, 2)  # four labels cannot fit in three frames
    assert scores.prefix(too_long) == IMPOSSIBLE and scores.whole(too_long) == IMPOSSIBLE
    assert scores.prefix((*too_long, 3)) - scores.prefix(too_long) == 0.0  # no NaN for a search to rank


def test_labels_the_model_rules_out_and_blanks_in_a_prefix() -> None:
    log_probs = random_log_probs(10, seed=3)
    log_probs[:, 5] = -math.inf  # a label the model never emits
    scores = CtcPrefixScores(log_probs)
    assert scores.prefix((1, 5)) < -1e3 and math.isfinite(scores.prefix((1, 5)))
    with pytest.raises(ValueError, match="no blanks"):
        scores.prefix((1, 0))


def test_a_long_recordings_sentence_is_scored_without_deep_recursion() -> None:
    """Thousands of labels (minutes of speech) in one first call, as re-ranking asks of a long file."""
    frames, target = 6000, tuple(1 + (i % (LABELS - 1)) for i in range(2500))
    log_probs = random_log_probs(frames, seed=11)
    expected = -F.ctc_loss(
        log_probs.unsqueeze(1), torch.tensor([target]), torch.tensor([frames]), torch.tensor([len(target)]),
        reduction="sum",
    )
    assert CtcPrefixScores(log_probs).whole(target) == pytest.approx(float(expected), rel=1e-9)
