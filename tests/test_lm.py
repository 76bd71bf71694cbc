"""Label n-gram LM: Kneser-Ney distributions, held-out perplexity, shallow fusion, files and CLIs."""

from __future__ import annotations

import argparse
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from audiomodels.checkpoint import CheckpointError
from audiomodels.decoding import prefix_beam_search
from audiomodels.labels import LabelSet
from audiomodels.lm import (
    UNKNOWN_WORD,
    Fusion,
    LMError,
    NgramLM,
    WordNgram,
    add_fusion_arguments,
    fusion_from_args,
    lm_beside,
    own_fusion,
)
from audiomodels.recognizer import Recognizer
from service.cli import main as cli_main
from service.registry import load_entry
from tests.test_evaluate import save_tiny_model
from training import evaluate
from training.corpus import load_sentences, split_sentences
from training.lm import build_lm, build_word_lm, encode_all, kn_discounts, perplexity, read_sentences
from training.manifest import Utterance, write_manifest

CHARS = LabelSet.char()
TEXT = [
    "the cat sat on the mat",
    "the dog ate the bone",
    "then they went there together",
    "the weather is other than the last time",
    "three thin thieves thought that through",
    "she sells sea shells on the sea shore",
]


def char_lm(order: int) -> NgramLM:
    return build_lm(encode_all(TEXT, CHARS)[0], len(CHARS), order, CHARS.symbols)


def word_lm(order: int, min_count: int = 2) -> WordNgram:
    return build_word_lm(encode_all(TEXT, CHARS)[0], CHARS.symbols.index(" "), order, min_count)


def spelled(word: str) -> tuple[int, ...]:
    return tuple(CHARS.encode(word))


@pytest.mark.parametrize("order", [1, 2, 4])
def test_every_history_gets_a_proper_distribution(order: int) -> None:
    lm = char_lm(order)
    rng = random.Random(order)
    vocabulary = range(1, lm.num_labels + 1)  # labels and end of sentence
    histories = [lm.initial_state(), *(lm.state_of([rng.choice(vocabulary[:-1]) for _ in range(order - 1)]) for _ in range(20))]
    histories.append(lm.advance(lm.advance(lm.initial_state(), CHARS.encode("t")[0]), CHARS.encode("h")[0]))
    for history in histories:
        total = sum(math.exp(lm.log_prob(history, label)) for label in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-9), history


def test_a_state_is_its_last_labels_however_it_was_reached() -> None:
    lm = char_lm(4)
    the = CHARS.encode("the")
    state = lm.initial_state()
    for label in [*CHARS.encode("on "), *the]:
        state = lm.advance(state, label)
    assert state == lm.state_of(the) == lm.state_of(CHARS.encode("bathe")[-3:])
    assert lm.state_of(CHARS.encode("e")) != lm.state_of(CHARS.encode("he"))  # padded with sentence starts


def test_no_label_gains_more_than_the_fusion_bound_says() -> None:
    # Beam search skips extensions on this bound (audiomodels.decoding), so it must hold from any state.
    lm = char_lm(4)
    lm.words = word_lm(2)
    fusion = Fusion(lm, weight=0.8, length_bonus=2.0, word_weight=0.3, word_bonus=1.5)
    rng = random.Random(3)
    for _ in range(200):
        state = fusion.initial_state()
        for label in rng.choices(range(1, len(CHARS)), k=12):
            gained, state = fusion.extend(state, label)
            assert gained <= fusion.gain_bound(label)
    assert fusion.gain_bound(CHARS.encode(" ")[0]) > fusion.gain_bound(CHARS.encode("a")[0])  # a word's bonus
    assert Fusion(lm, weight=-0.5).gain_bound(1) == math.inf  # a negative weight rewards improbable labels


def test_discounts_follow_the_count_of_counts_and_fall_back_on_tiny_texts() -> None:
    """Modified Kneser-Ney: grams seen once, twice and 3+ times lose more the more often they were seen."""
    of_counts = {1: 10, 2: 5, 3: 3, 4: 2}  # how many grams were seen c times
    counts = Counter({(gram, c): c for c, n in of_counts.items() for gram in range(n)})
    y = 10 / (10 + 2 * 5)
    assert kn_discounts(counts) == pytest.approx((1 - 2 * y * 5 / 10, 2 - 3 * y * 3 / 5, 3 - 4 * y * 2 / 3))
    del counts[(0, 4)], counts[(1, 4)]  # no gram seen four times: one discount for all
    assert kn_discounts(counts) == (y, y, y)


def test_word_model_keeps_repeated_words_and_gives_the_rest_to_the_unknown_word() -> None:
    words = word_lm(2)
    assert {CHARS.decode(word) for word in words.vocabulary} == {"the", "on", "sea"}  # each seen 2+ times
    assert words.word_id(spelled("cat")) == words.word_id(spelled("zebra")) == UNKNOWN_WORD
    ngrams = words.ngrams
    the = words.word_id(spelled("the"))
    for history in (ngrams.initial_state(), ngrams.state_of([the]), ngrams.state_of([UNKNOWN_WORD])):
        total = sum(math.exp(ngrams.log_prob(history, word)) for word in range(1, ngrams.num_labels + 1))
        assert total == pytest.approx(1.0, abs=1e-9), history
    # Most words of this text occur once, so after "the" an unknown word is likelier than "sea".
    after_the = ngrams.state_of([the])
    assert ngrams.log_prob(after_the, UNKNOWN_WORD) > ngrams.log_prob(after_the, words.word_id(spelled("sea")))


def test_higher_orders_predict_held_out_english_better_and_scrambled_text_worse() -> None:
    held_out = encode_all(["the cat ate the other bone", "they sat there on the shore"], CHARS)[0]
    scrambled = [random.Random(0).sample(ids, len(ids)) for ids in held_out]
    unigram, fourgram = char_lm(1), char_lm(4)
    assert perplexity(fourgram, held_out) < perplexity(unigram, held_out) < len(CHARS)
    assert perplexity(fourgram, scrambled) > 2 * perplexity(fourgram, held_out)


def one_hot_frames(frames: list[dict[str, float]]) -> torch.Tensor:
    """(T, V) log-probs from per-frame label -> probability (the rest of the mass on blank)."""
    probs = torch.full((len(frames), len(CHARS)), 1e-6)
    for t, frame in enumerate(frames):
        for symbol, p in frame.items():
            probs[t, CHARS.encode(symbol)[0]] = p
        probs[t, CHARS.blank_id] = max(1.0 - sum(frame.values()), 1e-6)
    return probs.log()


def test_fusion_fixes_a_spelling_the_acoustics_alone_get_wrong() -> None:
    # "teh" by a hair for the acoustics; the text says "the".
    log_probs = one_hot_frames([{"t": 0.95}, {}, {"e": 0.55, "h": 0.43}, {}, {"h": 0.55, "e": 0.43}, {}])
    plain = CHARS.decode(prefix_beam_search(log_probs, beam_size=8))
    fused = CHARS.decode(prefix_beam_search(log_probs, beam_size=8, fusion=Fusion(char_lm(3), 0.8, 1.0)))
    assert (plain, fused) == ("teh", "the")


def test_word_model_fixes_a_word_the_label_model_misses() -> None:
    # "see shore" by a hair for the acoustics; a character bigram cannot see that the text says "sea shore".
    spelling = [{"s": 0.95}, {"e": 0.95}, {"e": 0.53, "a": 0.45}, {" ": 0.95}, *({c: 0.95} for c in "shore")]
    log_probs = one_hot_frames([frame for symbol in spelling for frame in (symbol, {})])
    lm = char_lm(2)
    labels_only = CHARS.decode(prefix_beam_search(log_probs, beam_size=8, fusion=Fusion(lm, 0.8, 1.0)))
    lm.words = word_lm(2, min_count=1)
    with_words = CHARS.decode(prefix_beam_search(log_probs, beam_size=8, fusion=Fusion(lm, 0.8, 1.0, 0.8, 0.0)))
    assert (labels_only, with_words) == ("see shore", "sea shore")


def test_saved_model_loads_identically_and_refuses_another_label_set(tmp_path: Path) -> None:
    lm = char_lm(3)
    lm.words = word_lm(2, min_count=1)
    lm.save(tmp_path / "char.npz")
    loaded = NgramLM.load(tmp_path / "char.npz")
    assert (loaded.order, loaded.labels) == (lm.order, lm.labels)
    assert loaded.log_probs.keys() == lm.log_probs.keys() and loaded.backoffs.keys() == lm.backoffs.keys()
    assert loaded.words is not None and loaded.words.vocabulary == lm.words.vocabulary
    assert loaded.words.ngrams.log_probs == pytest.approx(lm.words.ngrams.log_probs)
    assert loaded.words.word_id(spelled("shore")) == lm.words.word_id(spelled("shore")) != UNKNOWN_WORD
    state = loaded.advance(loaded.initial_state(), CHARS.encode("t")[0])
    assert loaded.log_prob(state, CHARS.encode("h")[0]) == pytest.approx(lm.log_prob(state, CHARS.encode("h")[0]))
    with pytest.raises(LMError, match="different label set"):
        loaded.check_labels(LabelSet.phone().symbols)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(LMError, match="not a speechlabel language model"):
        NgramLM.load(tmp_path / "junk.npz")
    with pytest.raises(LMError, match="no language model"):
        NgramLM.load(tmp_path / "missing.npz")


def test_lm_command_builds_from_a_manifest_and_evaluate_decodes_with_it(
    speech_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = save_tiny_model(tmp_path / "char.ckpt", CHARS)
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [Utterance(path, 1.0, text) for text, path in speech_files.items()])
    text_file = tmp_path / "more.txt"
    text_file.write_text("\n".join(TEXT) + "\n", encoding="utf-8")
    out = tmp_path / "lm.npz"
    argv = ["lm", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--text", str(text_file)]
    assert cli_main([*argv, "--order", "3", "--out", str(out), "--dev", str(manifest)]) == 0
    printed = capsys.readouterr().out
    assert f"{len(speech_files) + len(TEXT)} sentences" in printed and "perplexity" in printed
    assert "word perplexity" in printed
    loaded = NgramLM.load(out)
    assert loaded.order == 3 and loaded.words is not None and loaded.words.ngrams.order == 3

    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    common = ["--checkpoint", str(checkpoint), "--manifest", str(manifest), "--lm", str(out)]
    assert evaluate.run(parser.parse_args([*common, "--beam-size", "4", "--json"])) == 0
    with pytest.raises(SystemExit, match="--lm is used by beam search"):
        evaluate.run(parser.parse_args(common))


def test_lm_text_from_the_corpus_source_adds_the_unspoken_sentences() -> None:
    """--fortunes-unspoken adds text the corpus never speaks; no dev or test sentence comes with it."""
    pools = split_sentences(load_sentences(), seed=0)
    spoken = read_sentences(CHARS, fortunes_split="train")
    both = read_sentences(CHARS, fortunes_split="train", fortunes_unspoken=True)
    assert both[: len(spoken)] == spoken == [sentence.text for sentence in pools["train"]]
    added = both[len(spoken) :]
    assert len(added) > 0.3 * len(spoken)
    assert not {sentence.text for sentence in pools["dev"] + pools["test"]} & set(both)


def test_recognizer_refuses_an_lm_of_another_label_set(tmp_path: Path) -> None:
    phones = LabelSet.phone()
    checkpoint = save_tiny_model(tmp_path / "phone.ckpt", phones)
    with pytest.raises(LMError, match="different label set"):
        Recognizer.from_checkpoint(checkpoint, fusion=Fusion(char_lm(2)))


def test_a_models_own_lm_is_used_for_beam_search_by_every_command(tmp_path: Path) -> None:
    checkpoint = save_tiny_model(tmp_path / "char.ckpt", CHARS)
    parser = argparse.ArgumentParser()
    parser.add_argument("--beam-size", type=int, default=1)
    add_fusion_arguments(parser)
    assert fusion_from_args(parser.parse_args(["--beam-size", "8"]), checkpoint) is None  # no LM beside it yet

    char_lm(3).save(lm_beside(checkpoint))
    fusion = fusion_from_args(parser.parse_args(["--beam-size", "8", "--word-weight", "0.4"]), checkpoint)
    assert fusion is not None and fusion.lm.order == 3 and fusion.weight == Fusion.weight
    assert (fusion.word_weight, fusion.word_bonus) == (0.4, Fusion.word_bonus)
    assert fusion_from_args(parser.parse_args([]), checkpoint) is None  # greedy decoding ignores it
    assert fusion_from_args(parser.parse_args(["--beam-size", "8", "--lm", "none"]), checkpoint) is None
    assert load_entry(checkpoint).recognizer.fusion is not None  # the server pairs it too

    lm_beside(checkpoint).write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match="char.lm.npz: .* not a speechlabel language model"):
        load_entry(checkpoint)


def test_a_models_own_lm_is_loaded_once_while_its_file_is_unchanged(tmp_path: Path) -> None:
    """A server's char model and the char check that reads with the same model share one LM; a
    file rewritten since is loaded afresh."""
    checkpoint = save_tiny_model(tmp_path / "char.ckpt", CHARS)
    char_lm(3).save(lm_beside(checkpoint))
    first, again = own_fusion(checkpoint), own_fusion(checkpoint, weight=0.3)
    assert first is not None and again is not None and again.lm is first.lm and again.weight == 0.3
    char_lm(4).save(lm_beside(checkpoint))
    renewed = own_fusion(checkpoint)
    assert renewed is not None and renewed.lm is not first.lm and renewed.lm.order == 4
