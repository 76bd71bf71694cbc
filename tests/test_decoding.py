"""Decoders and alignment on hand-built and random (T, V) log-probability matrices."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audiomodels.alignment import AlignmentError, LabelSpan, WordSpan, align_labels, group_words
from audiomodels.decoding import (
    GreedySearch,
    PrefixBeam,
    Settling,
    frame_argmax,
    greedy_decode,
    prefix_beam_search,
    prefix_beam_search_nbest,
)

BLANK, A, B, C, SEP = 0, 1, 2, 3, 4


def peaks(path: list[int], num_labels: int = 5, peak: float = 0.9) -> torch.Tensor:
    """Log-probs whose frame t puts ``peak`` on ``path[t]`` and spreads the rest evenly."""
    probs = torch.full((len(path), num_labels), (1 - peak) / (num_labels - 1))
    probs[torch.arange(len(path)), torch.tensor(path, dtype=torch.long)] = peak
    return probs.log()


def random_log_probs(seed: int, frames: int, labels: int, temperature: float) -> torch.Tensor:
    """Softmax of Gaussian logits; a high temperature factor makes frames peaked."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(frames, labels, generator=gen) * temperature).log_softmax(-1)


def peaked_random(seed: int, frames: int, labels: int, min_peak: float) -> torch.Tensor:
    """Random best path; each frame puts a peak in [min_peak, 1) on it, the rest at random."""
    gen = torch.Generator().manual_seed(seed)
    path = torch.randint(0, labels, (frames,), generator=gen)
    peak = min_peak + (1 - min_peak) * torch.rand(frames, generator=gen)
    probs = torch.randn(frames, labels, generator=gen).softmax(-1) * (1 - peak[:, None])
    probs[torch.arange(frames), path] += peak
    return probs.log()


def all_label_sequences(frames: int, labels: int) -> list[list[int]]:
    """Every non-blank label sequence that fits in ``frames`` CTC frames."""
    sequences: list[list[int]] = [[]]
    for length in range(1, frames + 1):
        for seq in itertools.product(range(1, labels), repeat=length):
            if length + sum(a == b for a, b in zip(seq, seq[1:])) <= frames:
                sequences.append(list(seq))
    return sequences


def ctc_log_prob(log_probs: torch.Tensor, labels: list[int]) -> float:
    """Exact log p(labels | x), summed over all alignments."""
    loss = torch.nn.functional.ctc_loss(
        log_probs.double().unsqueeze(1),
        torch.tensor(labels, dtype=torch.long),
        torch.tensor([log_probs.shape[0]]),
        torch.tensor([len(labels)]),
        blank=BLANK,
        reduction="sum",
    )
    return -loss.item()


# --- greedy ---------------------------------------------------------------------------


def test_frame_argmax_shape_and_dtype() -> None:
    ids = frame_argmax(peaks([A, BLANK, B]))
    assert ids.dtype == torch.int64
    assert ids.tolist() == [A, BLANK, B]


def test_greedy_collapses_repeats_then_removes_blanks() -> None:
    assert greedy_decode(peaks([A, A, BLANK, A])) == [A, A]
    assert greedy_decode(peaks([BLANK, A, A, B, B, BLANK, C])) == [A, B, C]


def test_greedy_and_beam_on_all_blank_and_empty_input() -> None:
    all_blank = peaks([BLANK] * 6)
    assert greedy_decode(all_blank) == []
    assert prefix_beam_search(all_blank) == []
    empty = torch.zeros(0, 5)
    assert greedy_decode(empty) == []
    assert prefix_beam_search(empty) == []


def test_custom_blank_index() -> None:
    lp = peaks([3, 1, 1, 3, 1], num_labels=4)
    assert greedy_decode(lp, blank=3) == [1, 1]
    assert prefix_beam_search(lp, blank=3) == [1, 1]


# --- beam search ----------------------------------------------------------------------


def test_beam_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        prefix_beam_search(peaks([A]), beam_size=0)


def test_rejects_non_matrix() -> None:
    with pytest.raises(ValueError):
        prefix_beam_search(torch.zeros(2, 3, 4))


@pytest.mark.parametrize(
    "path", [[A, A, BLANK, A], [BLANK, A, B, B, C], [A, BLANK, A, BLANK, A], [C, C, C]]
)
def test_beam_matches_greedy_on_hand_built(path: list[int]) -> None:
    lp = peaks(path)
    assert prefix_beam_search(lp, beam_size=1) == greedy_decode(lp)
    assert prefix_beam_search(lp, beam_size=8) == greedy_decode(lp)


@pytest.mark.parametrize("seed", range(10))
def test_beam_size_one_equals_greedy_on_peaked_random(seed: int) -> None:
    # With every argmax >= 0.9 the most probable prefix follows the best path frame by frame.
    lp = peaked_random(seed, frames=60, labels=6, min_peak=0.9)
    assert prefix_beam_search(lp, beam_size=1) == greedy_decode(lp)


def test_beam_beats_greedy_by_summing_paths() -> None:
    # Every frame: blank 0.6, A 0.4. Best single path is blank-blank (p("") = 0.36), but
    # A has three paths (A A, A _, _ A): p("A") = 0.16 + 0.24 + 0.24 = 0.64.
    lp = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()
    assert greedy_decode(lp) == []
    assert prefix_beam_search(lp, beam_size=2) == [A]
    assert math.isclose(math.exp(ctc_log_prob(lp, [A])), 0.64, rel_tol=1e-6)


def test_beam_of_one_prefers_summed_prefix_over_flat_argmax() -> None:
    # Frame 2's argmax B (0.4) loses to "A" continuing via blank (0.3) or repeat (0.3).
    lp = torch.tensor([[0.0, 1.0, 0.0], [0.3, 0.3, 0.4]]).clamp_min(1e-9).log()
    assert greedy_decode(lp) == [A, B]
    assert prefix_beam_search(lp, beam_size=1) == [A]
    assert ctc_log_prob(lp, [A]) > ctc_log_prob(lp, [A, B])


def test_beam_keeps_blank_separated_repeats() -> None:
    # A on frames 0 and 2 with a clear blank between: "AA", not the merged "A".
    lp = torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]).log()
    assert prefix_beam_search(lp) == [A, A]
    # Without the blank frame the repeat merges into one A.
    assert prefix_beam_search(lp[[0, 2]]) == [A]


@pytest.mark.parametrize("seed", range(10))
def test_exhaustive_beam_finds_most_probable_sequence(seed: int) -> None:
    # T=4, V=3 has fewer live prefixes than the beam, so the search is exact and its result
    # must be at least as probable as greedy's (and as every other sequence).
    lp = random_log_probs(seed, frames=4, labels=3, temperature=1.0)
    beam = prefix_beam_search(lp, beam_size=64, token_prune_logprob=-math.inf)
    best = max(ctc_log_prob(lp, seq) for seq in all_label_sequences(4, 3))
    assert ctc_log_prob(lp, beam) == pytest.approx(best)
    assert ctc_log_prob(lp, beam) >= ctc_log_prob(lp, greedy_decode(lp)) - 1e-9


@pytest.mark.parametrize("seed", range(10))
def test_exhaustive_nbest_is_the_most_probable_sequences_in_order(seed: int) -> None:
    # As above the search is exact, so its n-best list must be the n most probable label
    # sequences, best first, each once.
    lp = random_log_probs(seed, frames=4, labels=3, temperature=1.0)
    nbest = prefix_beam_search_nbest(lp, beam_size=64, token_prune_logprob=-math.inf, num_best=5)
    exact = sorted((ctc_log_prob(lp, seq) for seq in all_label_sequences(4, 3)), reverse=True)
    assert [ctc_log_prob(lp, seq) for seq in nbest] == pytest.approx(exact[:5])
    assert len({tuple(seq) for seq in nbest}) == 5
    assert nbest[0] == prefix_beam_search(lp, beam_size=64, token_prune_logprob=-math.inf)


def test_nbest_bounds() -> None:
    lp = random_log_probs(0, frames=6, labels=4, temperature=1.0)
    with pytest.raises(ValueError, match="num_best must be 1-4"):
        prefix_beam_search_nbest(lp, beam_size=4, num_best=5)
    with pytest.raises(ValueError, match="num_best"):
        prefix_beam_search_nbest(lp, beam_size=4, num_best=0)
    certain_blanks = peaks([BLANK] * 5, peak=1.0)  # no other label survives pruning: one hypothesis
    assert prefix_beam_search_nbest(certain_blanks, beam_size=8, num_best=3) == [[]]
    assert prefix_beam_search_nbest(lp[:0], beam_size=8, num_best=3) == [[]]


def test_beam_result_usually_more_probable_than_greedy() -> None:
    # With pruning this is not guaranteed per matrix (pruned paths make prefix scores
    # underestimates), so check the aggregate on flat matrices where the two disagree most.
    gains = []
    for seed in range(40):
        lp = random_log_probs(seed, frames=20, labels=4, temperature=1.5)
        beam, greedy = prefix_beam_search(lp, beam_size=8), greedy_decode(lp)
        gains.append(ctc_log_prob(lp, beam) - ctc_log_prob(lp, greedy))
    assert sum(g > 1e-9 for g in gains) >= 25
    assert sum(g < -1e-9 for g in gains) <= 4
    assert min(gains) > -0.5
    assert sum(gains) > 0


# --- searching frames in pieces (live streams) --------------------------------------------


class RisingScorer:
    """A stateful prefix scorer for the tests: a label one above the previous gains, others lose,
    and the end of sentence costs by the last label, so fusion reorders the beam."""

    def initial_state(self) -> int:
        return 0

    def extend(self, state: int, label: int) -> tuple[float, int]:
        return (0.7 if label == state + 1 else -0.4), label

    def finish(self, state: int) -> float:
        return -3.0 * state

    def gain_bound(self, label: int) -> float:
        return 0.7


class CountingScorer(RisingScorer):
    """:class:`RisingScorer` that counts its extensions; ``bounded`` False says it cannot bound its
    gains, which turns the search's pruning of extensions off."""

    def __init__(self, bounded: bool) -> None:
        self.bounded, self.extensions = bounded, 0

    def extend(self, state: int, label: int) -> tuple[float, int]:
        self.extensions += 1
        return super().extend(state, label)

    def gain_bound(self, label: int) -> float:
        return super().gain_bound(label) if self.bounded else math.inf


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    beam_size=st.integers(1, 10),
    labels=st.integers(3, 8),
    temperature=st.sampled_from([0.5, 1.5, 3.0]),
    fused=st.booleans(),
)
def test_skipping_extensions_that_cannot_make_the_beam_changes_nothing(
    seed: int, beam_size: int, labels: int, temperature: float, fused: bool
) -> None:
    # The search leaves out an extension whose rank, with the most its scorer can add, is under the
    # beam it is building: the same beam as scoring every one, bit for bit, for fewer LM queries.
    lp = random_log_probs(seed, frames=30, labels=labels, temperature=temperature)
    searches = []
    for bounded in (True, False):
        scorer = CountingScorer(bounded) if fused else None
        beam = PrefixBeam(beam_size, token_top_k=labels, token_prune_logprob=-math.inf, fusion=scorer)
        beam.advance(lp)
        searches.append((beam.hypotheses(beam_size), beam.best(), beam.stable(), scorer))
    (pruned, *pruned_rest, bounded), (every, *every_rest, unbounded) = searches
    assert pruned == every and pruned_rest == every_rest
    if fused:
        assert bounded.extensions <= unbounded.extensions


def test_extensions_under_the_beam_are_not_scored() -> None:
    lp = random_log_probs(7, frames=60, labels=8, temperature=1.0)
    queries = []
    for bounded in (True, False):
        scorer = CountingScorer(bounded)
        PrefixBeam(4, token_top_k=8, token_prune_logprob=-math.inf, fusion=scorer).advance(lp)
        queries.append(scorer.extensions)
    assert queries[0] < 0.6 * queries[1], queries


def split_points(frames: int, cuts: list[int]) -> list[int]:
    return sorted({0, frames, *(c % (frames + 1) for c in cuts)})


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    frames=st.integers(0, 40),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    fused=st.booleans(),
    settling=st.sampled_from([None, Settling(3, SEP, 1), Settling(5, SEP, 2)]),
)
def test_a_beam_fed_in_pieces_is_the_one_pass_search(
    seed: int, frames: int, cuts: list[int], fused: bool, settling: Settling | None
) -> None:
    # What a live stream relies on: its interims are the leading prefix of the frames so far, and
    # its final (n-best, end of sentence scored) is the offline search of the whole utterance,
    # settling included (it falls on fixed frames, not on the pieces).
    lp = random_log_probs(seed, frames=frames, labels=5, temperature=2.0)
    fusion = RisingScorer() if fused else None
    points = split_points(frames, cuts)
    beam = PrefixBeam(4, fusion=fusion, settling=settling)
    shown: list[tuple[list[int], list[int]]] = []  # (stable, best) after each piece
    for start, end in zip(points, points[1:]):
        beam.advance(lp[start:end])
        whole_so_far = PrefixBeam(4, fusion=fusion, settling=settling)
        whole_so_far.advance(lp[:end])
        assert beam.best() == whole_so_far.best()
        assert beam.hypotheses(4) == whole_so_far.hypotheses(4)
        shown.append((beam.stable(), beam.best()))
    final = beam.hypotheses(4)
    one_pass = PrefixBeam(4, fusion=fusion, settling=settling)
    one_pass.advance(lp)
    assert final == one_pass.hypotheses(4)
    if settling is None:
        assert final == prefix_beam_search_nbest(lp, beam_size=4, fusion=fusion, num_best=4)
    # What was shown as stable is never taken back: later leaders and every final hypothesis start with it.
    for i, (stable, best) in enumerate(shown):
        assert best[: len(stable)] == stable
        for later in [b for _, b in shown[i + 1 :]] + final:
            assert later[: len(stable)] == stable, (stable, later)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), open_words=st.integers(1, 3))
def test_settling_commits_to_the_leader_but_its_open_words(seed: int, open_words: int) -> None:
    lp = random_log_probs(seed, frames=60, labels=5, temperature=2.0)  # SEP is one of five labels
    settled = PrefixBeam(4, settling=Settling(10, SEP, open_words))
    for start in range(0, 60, 10):
        settled.advance(lp[start : start + 10])
        leader = settled.best()
        breaks = [i for i, label in enumerate(leader) if label == SEP]
        settled_length = breaks[-open_words] if len(breaks) >= open_words else 0
        assert settled.stable()[:settled_length] == leader[:settled_length]


def test_settling_needs_a_period_and_open_words() -> None:
    with pytest.raises(ValueError, match="settling needs"):
        Settling(0, SEP)
    with pytest.raises(ValueError, match="settling needs"):
        Settling(20, SEP, open_words=0)


def test_the_end_of_sentence_score_decides_only_the_final_answer() -> None:
    # "A" then "B" is rising (+0.7 each) but ends high (-6.0 against -3.0); the interim ranks without that cost.
    lp = peaks([A, BLANK, B], num_labels=5, peak=0.6)
    beam = PrefixBeam(4, fusion=RisingScorer())
    beam.advance(lp)
    assert beam.best() == [A, B]
    assert beam.stable() == [A]  # B is still in doubt, A in every hypothesis
    assert beam.hypotheses(1) == [[A]]


def test_certain_frames_settle_the_whole_prefix_and_flat_ones_settle_less() -> None:
    beam = PrefixBeam(4)
    beam.advance(peaks([A, BLANK, B, B, BLANK], peak=1.0))  # no other label survives pruning
    assert beam.stable() == beam.best() == [A, B]
    beam.advance(torch.tensor([[0.34, 0.0, 0.0, 0.33, 0.33]]).clamp_min(1e-9).log())  # blank, C or SEP
    assert beam.stable() == [A, B] and len({tuple(h) for h in beam.hypotheses(3)}) == 3


@settings(max_examples=40, deadline=None)
@given(
    path=st.lists(st.sampled_from([BLANK, A, B]), max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=6),
)
def test_greedy_fed_in_pieces_is_greedy_decoding(path: list[int], cuts: list[int]) -> None:
    lp = peaks(path)  # repeats across a piece boundary must still collapse
    points = split_points(len(path), cuts)
    search = GreedySearch()
    for start, end in zip(points, points[1:]):
        search.advance(lp[start:end])
        assert search.stable() == search.best() == greedy_decode(lp[:end])
    assert search.hypotheses() == [greedy_decode(lp)]
    with pytest.raises(ValueError, match="one hypothesis"):
        search.hypotheses(2)


# --- alignment ------------------------------------------------------------------------


def test_align_spans_follow_hand_built_peaks() -> None:
    path = [BLANK, BLANK, A, A, A, BLANK, B, B, BLANK, A, BLANK]
    spans = align_labels(peaks(path), [A, B, A])
    assert [(s.label_id, s.start_frame, s.end_frame) for s in spans] == [
        (A, 2, 5),
        (B, 6, 8),
        (A, 9, 10),
    ]
    for span in spans:
        assert span.score == pytest.approx(0.9, rel=1e-5)


def test_align_spans_are_ordered_contiguous_and_in_range() -> None:
    lp = random_log_probs(3, frames=40, labels=5, temperature=2.0)
    labels = [A, B, B, C, A, A]
    spans = align_labels(lp, labels)
    assert [s.label_id for s in spans] == labels
    for span in spans:
        assert 0 <= span.start_frame < span.end_frame <= 40
        assert 0.0 < span.score <= 1.0
    for left, right in zip(spans, spans[1:]):
        assert left.end_frame <= right.start_frame
        if left.label_id == right.label_id:
            assert left.end_frame < right.start_frame  # a blank frame separates repeats


def test_align_repeated_label_needs_blank_between() -> None:
    spans = align_labels(peaks([A, A, BLANK, A]), [A, A])
    assert [(s.start_frame, s.end_frame) for s in spans] == [(0, 2), (3, 4)]


def test_align_empty_labels() -> None:
    assert align_labels(peaks([A, B]), []) == []


def test_align_infeasible_raises_with_frame_counts() -> None:
    with pytest.raises(AlignmentError, match=r"need at least 3 frames, but the emissions have 2"):
        align_labels(peaks([A, A]), [A, A])
    with pytest.raises(AlignmentError, match=r"emissions have 0"):
        align_labels(torch.zeros(0, 5), [A])


def test_align_rejects_blank_or_unknown_labels() -> None:
    with pytest.raises(ValueError):
        align_labels(peaks([A, B]), [BLANK])
    with pytest.raises(ValueError):
        align_labels(peaks([A, B]), [7])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    frames=st.integers(1, 60),
    labels=st.integers(2, 8),
)
def test_greedy_transcript_always_aligns(seed: int, frames: int, labels: int) -> None:
    lp = random_log_probs(seed, frames, labels, temperature=4.0)
    transcript = greedy_decode(lp)
    spans = align_labels(lp, transcript)
    assert [s.label_id for s in spans] == transcript
    starts = [s.start_frame for s in spans]
    assert starts == sorted(starts)
    for left, right in zip(spans, spans[1:]):
        assert left.end_frame <= right.start_frame
    assert all(0 <= s.start_frame < s.end_frame <= frames for s in spans)


# --- words ----------------------------------------------------------------------------


def span(label: int, start: int, end: int, score: float = 1.0) -> LabelSpan:
    return LabelSpan(label, start, end, score)


def test_group_words_drops_leading_trailing_and_double_separators() -> None:
    spans = [
        span(SEP, 0, 1),
        span(A, 1, 2, 0.25),
        span(B, 3, 5, 1.0),
        span(SEP, 5, 6),
        span(SEP, 7, 8),
        span(C, 9, 10, 0.5),
        span(SEP, 10, 12),
    ]
    assert group_words(spans, SEP) == [
        WordSpan((A, B), 1, 5, pytest.approx(0.5), 0.25),  # geometric mean of 0.25 and 1; the weakest
        WordSpan((C,), 9, 10, pytest.approx(0.5), 0.5),
    ]


def test_group_words_without_separator_is_one_word() -> None:
    spans = [span(A, 0, 2, 0.9), span(SEP, 2, 3, 0.9), span(B, 4, 6, 0.9)]
    (word,) = group_words(spans, None)
    assert word.label_ids == (A, SEP, B)
    assert (word.start_frame, word.end_frame) == (0, 6)
    assert word.confidence == pytest.approx(0.9)


def test_group_words_edge_cases() -> None:
    assert group_words([], SEP) == []
    assert group_words([span(SEP, 0, 1), span(SEP, 2, 3)], SEP) == []
    # One hopeless label zeroes the word instead of being averaged away.
    (word,) = group_words([span(A, 0, 1, 1.0), span(B, 1, 2, 0.0)], SEP)
    assert word.confidence == 0.0
