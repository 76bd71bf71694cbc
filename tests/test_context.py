"""Phrase hints: the trie's scores label by label, and what they do to beam search."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audiomodels.context import BiasedFusion, PhraseBias, PhraseError
from audiomodels.decoding import prefix_beam_search, sentence_score
from audiomodels.labels import LabelSet

LABELS = LabelSet.char()
BOOST = 2.0


def score(bias: PhraseBias, text: str) -> float:
    """What a hypothesis spelling ``text`` gains from the hints, end of utterance included."""
    return sentence_score(bias, LABELS.encode(text))


@pytest.mark.parametrize(
    ("text", "matched"),
    [
        ("ann", 3),  # a whole phrase at the end of the utterance
        ("ann is here", 4),  # ... and before a word separator, which counts too
        ("annual report", 0),  # the match broke off inside a word: taken back
        ("joanne", 0),  # a phrase only starts at a word start
        ("new york", 8),
        ("new yo", 0),  # unfinished at the end
        ("new jersey", 0),  # a multi-word phrase broken off after its first word
        ("see new york and ann", 9 + 3),  # several phrases, each whole (with its separator)
        ("new ann", 3),  # after a break at a word boundary another phrase may start there
    ],
)
def test_only_whole_phrases_at_word_boundaries_keep_their_boost(text: str, matched: int) -> None:
    bias = PhraseBias.from_phrases(["Ann", "new York"], LABELS, BOOST)
    assert score(bias, text) == pytest.approx(BOOST * matched)


def test_a_phrase_inside_a_longer_one_keeps_its_boost_when_the_longer_breaks_off() -> None:
    bias = PhraseBias.from_phrases(["new", "new york"], LABELS, BOOST)
    assert score(bias, "new jersey") == pytest.approx(BOOST * 4)  # "new" and its separator
    assert score(bias, "new yo") == pytest.approx(BOOST * 4)
    assert score(bias, "new york") == pytest.approx(BOOST * 8)


def test_a_phrase_starting_inside_another_broken_match_is_found() -> None:
    bias = PhraseBias.from_phrases(["new york city", "york times"], LABELS, BOOST)
    assert score(bias, "new york times") == pytest.approx(BOOST * len("york times"))
    assert score(bias, "the new york times today") == pytest.approx(BOOST * len("york times "))
    assert score(bias, "new york city") == pytest.approx(BOOST * len("new york city"))
    assert score(bias, "new yorker times") == pytest.approx(0.0)  # "york" inside a word is no start


def test_a_whole_phrase_at_the_end_of_a_longer_partial_match_keeps_its_boost() -> None:
    bias = PhraseBias.from_phrases(["big new york deal", "new york"], LABELS, BOOST)
    assert score(bias, "big new york plan") == pytest.approx(BOOST * len("new york "))
    assert score(bias, "big new york deal") == pytest.approx(BOOST * len("big new york deal"))


def covered_labels(phrases: list[str], text: str) -> int:
    """The labels of ``text`` inside a whole occurrence of a phrase, found by brute force."""
    covered: set[int] = set()
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == " "]
    for phrase in phrases:
        for start in starts:
            end = start + len(phrase)
            if text[start:end] == phrase and (end == len(text) or text[end] == " "):
                covered.update(range(start, min(end + 1, len(text))))
    return len(covered)


WORDS = st.sampled_from(["a", "b", "ab", "ba", "aab"])
PHRASES = st.lists(st.lists(WORDS, min_size=1, max_size=3).map(" ".join), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(PHRASES, st.lists(WORDS, min_size=1, max_size=8).map(" ".join))
def test_a_finished_utterance_keeps_the_boost_of_exactly_the_labels_of_its_whole_phrases(
    phrases: list[str], text: str
) -> None:
    bias = PhraseBias.from_phrases(phrases, LABELS, BOOST)
    assert score(bias, text) == pytest.approx(BOOST * covered_labels(phrases, text))


@settings(max_examples=200, deadline=None)
@given(PHRASES, st.lists(WORDS, min_size=1, max_size=8).map(" ".join))
def test_no_label_gains_more_than_one_boost(phrases: list[str], text: str) -> None:
    # Beam search skips extensions on this bound (audiomodels.decoding), so it must hold from any state.
    bias = PhraseBias.from_phrases(phrases, LABELS, BOOST)
    state = bias.initial_state()
    for label in LABELS.encode(text):
        gained, state = bias.extend(state, label)
        assert gained <= bias.gain_bound(label) == BOOST


def test_bad_phrases_and_boosts_are_refused_by_name() -> None:
    with pytest.raises(PhraseError, match="empty after normalization"):
        PhraseBias.from_phrases(["ok", " ?! "], LABELS)
    with pytest.raises(PhraseError, match="'東京'"):
        PhraseBias.from_phrases(["東京"], LABELS)
    with pytest.raises(PhraseError, match="boost"):
        PhraseBias.from_phrases(["ok"], LABELS, boost=0.0)
    with pytest.raises(PhraseError, match="no word separator"):
        PhraseBias.from_phrases(["a"], LabelSet("custom", ("<blank>", "a", "b"), ""))


def test_equal_hints_are_equal_and_hash_alike() -> None:
    first = PhraseBias.from_phrases(["Ann", "new york", "ann"], LABELS)
    assert first == PhraseBias.from_phrases(["ann", "New York."], LABELS)
    assert hash(first) == hash(PhraseBias.from_phrases(["ann", "new york"], LABELS))
    assert first != PhraseBias.from_phrases(["ann", "new york"], LABELS, boost=3.0)


def frames(*columns: dict[str, float]) -> torch.Tensor:
    """Log-probs over the char set: each frame's given label probabilities, the rest on blank."""
    probs = torch.full((len(columns), len(LABELS)), 1e-6)
    for t, column in enumerate(columns):
        for symbol, p in column.items():
            probs[t, LABELS.encode(symbol)[0]] = p
        probs[t, LABELS.blank_id] = max(1e-6, 1 - sum(column.values()))
    return (probs / probs.sum(-1, keepdim=True)).log()


def test_a_hint_turns_an_acoustically_close_call_its_way() -> None:
    # "anm" is a little more likely than "ann" by the sound alone; the hint decides for "ann".
    log_probs = frames({"a": 0.9}, {}, {"n": 0.9}, {}, {"m": 0.5, "n": 0.4})
    labels = LABELS.decode(prefix_beam_search(log_probs, beam_size=8))
    hinted = BiasedFusion(PhraseBias.from_phrases(["ann"], LABELS))
    assert labels == "anm"
    assert LABELS.decode(prefix_beam_search(log_probs, beam_size=8, fusion=hinted)) == "ann"
    unrelated = BiasedFusion(PhraseBias.from_phrases(["bob"], LABELS))
    assert LABELS.decode(prefix_beam_search(log_probs, beam_size=8, fusion=unrelated)) == "anm"
