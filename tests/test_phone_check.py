"""The phone check: the shipped phone model's likelihood of a char hypothesis' phones, its guide
of the char model's search and the re-ranking of its beam, on real espeak-ng speech."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from audiomodels.audio import load_audio
from audiomodels.context import BiasedFusion, PhraseBias
from audiomodels.ctc_prefix import sequence_log_likelihoods
from audiomodels.decoding import sentence_score
from audiomodels.lm import own_fusion
from audiomodels.phone_check import PhoneCheck, PhoneCheckError, PhoneGuide, phone_check_from_args
from audiomodels.recognizer import Recognizer
from service.cli import main as cli_main
from tests.conftest import synthesize_wav
from training.evaluate import add_arguments, run

MODELS = Path(__file__).resolve().parent.parent / "models"
SPOKEN = "open the door"


@pytest.fixture(scope="module")
def phone_check() -> PhoneCheck:
    return PhoneCheck(Recognizer.from_checkpoint(MODELS / "phone.ckpt"))


@pytest.fixture(scope="module")
def char_recognizer(phone_check: PhoneCheck) -> Recognizer:
    char = MODELS / "char.ckpt"
    return Recognizer.from_checkpoint(char, fusion=own_fusion(char), phone_check=phone_check)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """SPOKEN in a voice the shipped models never trained on (a held-out test voice of the corpus)."""
    path = synthesize_wav(SPOKEN, tmp_path_factory.mktemp("speech") / "door.wav", voice="en-us+m7")
    return load_audio(path, target_rate=16000)


@pytest.fixture(scope="module")
def phone_log_probs(char_recognizer: Recognizer, speech: np.ndarray) -> torch.Tensor:
    ((_, _, phone_log_probs),) = char_recognizer.decodable_batch([(speech, 16000)])
    assert phone_log_probs is not None
    return phone_log_probs


def test_the_phone_model_finds_the_words_spoken_likelier_than_near_misses(
    char_recognizer: Recognizer, phone_check: PhoneCheck, phone_log_probs: torch.Tensor
) -> None:
    labels = char_recognizer.labels
    opinion = phone_check.opinion(phone_log_probs, labels)
    texts = [SPOKEN, "often the door", "open the tour", "open a door", ""]
    likelihoods = [opinion.whole(labels.encode(text)) for text in texts]
    assert likelihoods[0] == max(likelihoods)
    assert all(likelihood < likelihoods[0] - 1.0 for likelihood in likelihoods[1:])
    assert list(opinion.phones(labels.encode("open a"))) == phone_check.recognizer.labels.encode("oʊ p ə n | eɪ")


def test_the_ranking_adds_the_phone_models_opinion_to_the_char_models_and_the_lms(
    char_recognizer: Recognizer, phone_check: PhoneCheck, speech: np.ndarray, phone_log_probs: torch.Tensor
) -> None:
    labels = char_recognizer.labels
    ((log_probs, _, _),) = char_recognizer.decodable_batch([(speech, 16000)])
    opinion = phone_check.opinion(phone_log_probs, labels)
    texts = ["often the door", SPOKEN, "open the tour", "open a door"]
    hypotheses = [labels.encode(text) for text in texts]
    scorer = phone_check.guide(char_recognizer.fusion, opinion)
    ranked = phone_check.rank(hypotheses, log_probs, labels.blank_id, scorer, opinion)
    assert labels.decode(ranked[0]) == SPOKEN
    heard = sequence_log_likelihoods(log_probs, hypotheses, labels.blank_id)
    totals = [
        char_heard + sentence_score(scorer, label_ids) + phone_check.weight * opinion.whole(label_ids)
        for char_heard, label_ids in zip(heard, hypotheses)
    ]
    assert ranked == [hypotheses[i] for i in sorted(range(len(texts)), key=totals.__getitem__, reverse=True)]
    # the phone model's say widens the margin by which the words spoken win
    unchecked = [char_heard + sentence_score(char_recognizer.fusion, ids) for char_heard, ids in zip(heard, hypotheses)]
    assert max(unchecked) - sorted(unchecked)[-2] < max(totals) - sorted(totals)[-2]


def test_the_guide_charges_each_word_as_it_ends_and_the_whole_sentence_at_the_end(
    char_recognizer: Recognizer, phone_check: PhoneCheck, phone_log_probs: torch.Tensor
) -> None:
    labels = char_recognizer.labels
    opinion = phone_check.opinion(phone_log_probs, labels)
    guide = phone_check.guide(None, opinion)
    assert isinstance(guide, PhoneGuide)
    for text in (SPOKEN, "often the door", "open the tour "):
        spelled = labels.encode(text)
        expected = guide.weight * opinion.whole(spelled) + guide.word_bonus * len(text.split())
        assert sentence_score(guide, spelled) == pytest.approx(expected)
    # mid-search, ending a word the phone model heard costs little, one it did not hear much more
    space = labels.encode(" ")[0]
    ended = {}
    for word in ("open", "often"):
        state = guide.initial_state()
        for label in labels.encode(word):
            state = guide.extend(state, label)[1]
        ended[word] = guide.extend(state, space)[0]
    assert ended["open"] > guide.word_bonus - 2.0 * guide.weight  # under 2 nats of the phone model's
    assert ended["often"] < ended["open"] - 10.0 * guide.weight
    # on top of the LM and phrase hints: their scores and the phone model's simply add up
    hinted = BiasedFusion(PhraseBias.from_phrases(["the door"], labels), char_recognizer.fusion)
    both = phone_check.guide(hinted, opinion)
    assert isinstance(both, PhoneGuide)
    for text in (SPOKEN, "often the door"):
        spelled = labels.encode(text)
        assert sentence_score(both, spelled) == pytest.approx(sentence_score(hinted, spelled) + sentence_score(guide, spelled))
    # re-ranking only: the search keeps its own scorer
    rerank_only = PhoneCheck(phone_check.recognizer, search_weight=0.0)
    assert rerank_only.guide(char_recognizer.fusion, opinion) is char_recognizer.fusion


def test_a_checked_recognizer_runs_the_phone_model_only_for_beam_search(
    char_recognizer: Recognizer, speech: np.ndarray
) -> None:
    ((_, _, skipped),) = char_recognizer.decodable_batch([(speech, 16000)], check=False)
    assert skipped is None
    checked = char_recognizer.transcribe(speech, 16000, beam_size=8, alternatives=3)
    assert checked.text == SPOKEN
    assert len({checked.text, *(a.text for a in checked.alternatives)}) == 3  # the re-ranked beam's runner-ups
    unchecked = Recognizer(
        char_recognizer.config, char_recognizer.model, fusion=char_recognizer.fusion, calibration=char_recognizer.calibration
    )
    greedy = char_recognizer.transcribe(speech, 16000)  # no phone pass, nothing to re-rank
    assert greedy == unchecked.transcribe(speech, 16000)


def test_phone_checks_that_cannot_serve_are_refused_by_name(phone_check: PhoneCheck) -> None:
    char_model = Recognizer.from_checkpoint(MODELS / "char.ckpt")
    with pytest.raises(PhoneCheckError, match="needs a phone model, got a char model"):
        Recognizer.from_checkpoint(MODELS / "char.ckpt", phone_check=PhoneCheck(char_model))
    with pytest.raises(PhoneCheckError, match="not a phone model's"):
        Recognizer.from_checkpoint(MODELS / "phone.ckpt", phone_check=phone_check)
    with pytest.raises(PhoneCheckError, match="weight must be in"):
        Recognizer.from_checkpoint(MODELS / "char.ckpt", phone_check=PhoneCheck(phone_check.recognizer, 0.0))
    with pytest.raises(PhoneCheckError, match="search weight must be in"):
        Recognizer.from_checkpoint(MODELS / "char.ckpt", phone_check=PhoneCheck(phone_check.recognizer, 0.5, -1.0))


def test_the_commands_refuse_a_phone_check_without_beam_search_or_phone_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    greedy = parser.parse_args(["--checkpoint", str(MODELS / "char.ckpt"), "--manifest", str(manifest), "--phone-check"])
    with pytest.raises(SystemExit, match="speechlabel evaluate: --phone-check checks beam search: add --beam-size 8"):
        run(greedy)
    missing = tmp_path / "none.ckpt"
    args = ["--checkpoint", str(MODELS / "char.ckpt"), "--manifest", str(manifest), "--beam-size", "8"]
    weights = parser.parse_args([*args, "--phone-check", "--phone-check-weight", "0.7", "--phone-check-search-weight", "0"])
    check = phone_check_from_args(weights)
    assert check is not None and (check.weight, check.search_weight) == (0.7, 0.0)
    with pytest.raises(SystemExit, match="none.ckpt"):
        run(parser.parse_args([*args, "--phone-check", str(missing)]))
    audio = synthesize_wav("hello", tmp_path / "hello.wav")
    job = ["transcribe", str(audio), "--out", str(tmp_path / "out"), "--no-progress", "--phone-check"]
    assert cli_main(job) == 2  # greedy by default
    assert "add --beam-size" in capsys.readouterr().err
    assert cli_main([*job, str(missing), "--beam-size", "8"]) == 2
    assert "none.ckpt" in capsys.readouterr().err
    assert cli_main([*job, "--beam-size", "4", "--server", "localhost:1"]) == 2
    assert "--phone-check and --char-check are for local recognition" in capsys.readouterr().err


def test_a_checked_search_keeps_what_an_overbearing_guide_prunes(
    char_recognizer: Recognizer, phone_check: PhoneCheck, tmp_path: Path
) -> None:
    """Where the phone model hears badly a heavy guide drives its beam to run words together (its
    cost put off); the unguided beam, ranked beside it, keeps the spelling the objective prefers."""
    path = synthesize_wav("the temperature of the aqueous content", tmp_path / "aqueous.wav", voice="en-us+m7")
    heavy = PhoneCheck(phone_check.recognizer, search_weight=5.0)
    recognizer = Recognizer(char_recognizer.config, char_recognizer.model, fusion=char_recognizer.fusion, phone_check=heavy)
    ((log_probs, duration_s, phone_log_probs),) = recognizer.decodable_batch([(load_audio(path, target_rate=16000), 16000)])
    assert phone_log_probs is not None
    opinion = heavy.opinion(phone_log_probs, recognizer.labels)
    scorer = heavy.guide(recognizer.fusion, opinion)

    def objective(label_ids: list[int]) -> float:
        (heard,) = sequence_log_likelihoods(log_probs, [label_ids], recognizer.labels.blank_id)
        return heard + sentence_score(scorer, label_ids) + heavy.weight * opinion.whole(label_ids)

    best = {}
    for name, guided in (("guided", opinion), ("unguided", None)):
        search = recognizer.search(8, phone_opinion=guided)
        search.advance(log_probs)
        best[name] = max(search.hypotheses(8), key=objective)
    assert objective(best["guided"]) < objective(best["unguided"]) - 10.0
    checked = recognizer.decode(log_probs, duration_s, phone_log_probs, beam_size=8)
    assert checked.text == recognizer.labels.decode(best["unguided"])
    assert len(checked.text.split()) > len(recognizer.labels.decode(best["guided"]).split())
