"""Error counting: hand-worked S/I/D, a brute-force cross-check, symmetry, the CER/WER/PER conventions."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.metrics import ErrorCounts, align_tokens, char_errors, phone_errors, word_errors


def sid(counts: ErrorCounts) -> tuple[int, int, int, int]:
    return counts.substitutions, counts.insertions, counts.deletions, counts.reference_length


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("", "", (0, 0, 0, 0)),
        ("", "a b", (0, 2, 0, 0)),  # all insertions
        ("a b c", "", (0, 0, 3, 3)),  # all deletions
        ("a b c d", "a x c d e", (1, 1, 0, 4)),  # mixed, unique optimum
        ("a b c d e", "a c d x e y", (0, 2, 1, 5)),  # b deleted, x and y inserted
        ("a b", "b c", (2, 0, 0, 2)),  # tie: 2 S beats 1 D + 1 I
        ("the cat sat on the mat", "the cat sit on mat today", (3, 0, 0, 6)),  # tie again
    ],
)
def test_word_errors_hand_worked(reference: str, hypothesis: str, expected: tuple[int, int, int, int]) -> None:
    assert sid(word_errors(reference, hypothesis)) == expected


def test_rates_and_empty_reference_convention() -> None:
    assert word_errors("", "").rate == 0.0
    assert word_errors("", "a b").rate == 2.0  # divided by 1: the insertion count
    assert word_errors("a b c", "").rate == 1.0
    assert word_errors("a b c d", "a x c d e").rate == 0.5


def test_counts_sum_over_a_corpus() -> None:
    parts = [word_errors("a b c d", "a x c d e"), word_errors("a b c", ""), word_errors("", "z")]
    total = sum(parts, ErrorCounts())
    assert sid(total) == (1, 2, 3, 7)
    assert total.errors == 6 and total.rate == pytest.approx(6 / 7)
    with pytest.raises(TypeError):
        total + 1  # type: ignore[operator]


def test_char_errors_count_single_spaces_and_ignore_layout() -> None:
    assert sid(char_errors("hello world", "helo world")) == (0, 0, 1, 11)
    assert sid(char_errors("hello world", "helloworld")) == (0, 0, 1, 11)  # lost word break
    assert sid(char_errors(" hello   world ", "hello world")) == (0, 0, 0, 11)  # layout only
    assert sid(char_errors("abc", "abd")) == (1, 0, 0, 3)


def test_phone_errors_ignore_word_boundaries() -> None:
    reference = "h ə l oʊ | w ɜː l d"
    assert sid(phone_errors(reference, "h ə l oʊ w ɜː l d")) == (0, 0, 0, 8)
    assert sid(phone_errors(reference, "| h ə l | oʊ w ɜː d |")) == (0, 0, 1, 8)
    assert sid(phone_errors(reference, "h ɛ l oʊ | w ɜː l d z")) == (1, 1, 0, 8)  # multi-char tokens
    assert sid(phone_errors("|", "")) == (0, 0, 0, 0)


@cache
def _all_alignments(reference: tuple[str, ...], hypothesis: tuple[str, ...]) -> frozenset[tuple[int, int, int]]:
    """Every (S, I, D) reachable by some alignment: the reference the DP must agree with."""
    if not reference or not hypothesis:
        return frozenset({(0, len(hypothesis), len(reference))})
    options = set()
    step = 0 if reference[0] == hypothesis[0] else 1
    options |= {(s + step, i, d) for s, i, d in _all_alignments(reference[1:], hypothesis[1:])}
    options |= {(s, i + 1, d) for s, i, d in _all_alignments(reference, hypothesis[1:])}
    options |= {(s, i, d + 1) for s, i, d in _all_alignments(reference[1:], hypothesis)}
    return frozenset(options)


tokens = st.lists(st.sampled_from("abc"), max_size=6).map(tuple)


@given(tokens, tokens)
def test_align_tokens_matches_brute_force_minimum(reference: tuple[str, ...], hypothesis: tuple[str, ...]) -> None:
    best = min(_all_alignments(reference, hypothesis), key=lambda c: (sum(c), c[1] + c[2]))
    counts = align_tokens(reference, hypothesis)
    assert (counts.substitutions, counts.insertions, counts.deletions) == best
    assert counts.reference_length == len(reference)


@given(tokens, tokens)
def test_swapping_reference_and_hypothesis_swaps_insertions_and_deletions(
    reference: tuple[str, ...], hypothesis: tuple[str, ...]
) -> None:
    forward, backward = align_tokens(reference, hypothesis), align_tokens(hypothesis, reference)
    assert forward.errors == backward.errors
    assert (forward.substitutions, forward.insertions, forward.deletions) == (
        backward.substitutions,
        backward.deletions,
        backward.insertions,
    )


@given(st.text(alphabet="ab \t", max_size=12), st.text(alphabet="ab \t", max_size=12))
def test_word_and_char_errors_are_token_alignments(reference: str, hypothesis: str) -> None:
    assert word_errors(reference, hypothesis) == align_tokens(reference.split(), hypothesis.split())
    normalized = " ".join(reference.split()), " ".join(hypothesis.split())
    assert char_errors(reference, hypothesis) == align_tokens(list(normalized[0]), list(normalized[1]))
