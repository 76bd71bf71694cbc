"""The char check: the shipped char model's reading (its transcript, phonemized) joins and ranks
the shipped phone model's beam, on real espeak-ng speech."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from audiomodels.audio import load_audio
from audiomodels.char_check import CharCheck, CharCheckError, char_check_from_args, edit_distance
from audiomodels.ctc_prefix import sequence_log_likelihoods
from audiomodels.decoding import sentence_score
from audiomodels.labels import phonemize_normalized
from audiomodels.lm import own_fusion
from audiomodels.phone_check import PhoneCheck
from audiomodels.recognizer import Recognizer
from service.cli import main as cli_main
from tests.conftest import synthesize_wav
from training.evaluate import add_arguments, run
from training.metrics import align_tokens

MODELS = Path(__file__).resolve().parent.parent / "models"
SPOKEN = "the quiet hall was cold"


@pytest.fixture(scope="module")
def char_check() -> CharCheck:
    char = MODELS / "char.ckpt"
    return CharCheck(Recognizer.from_checkpoint(char, fusion=own_fusion(char)))


@pytest.fixture(scope="module")
def phone_recognizer(char_check: CharCheck) -> Recognizer:
    phone = MODELS / "phone.ckpt"
    return Recognizer.from_checkpoint(phone, fusion=own_fusion(phone), char_check=char_check)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """SPOKEN in a voice the shipped models never trained on (a held-out test voice of the corpus)."""
    path = synthesize_wav(SPOKEN, tmp_path_factory.mktemp("speech") / "hall.wav", voice="en-us+m7")
    return load_audio(path, target_rate=16000)


@pytest.fixture(scope="module")
def decodable(phone_recognizer: Recognizer, speech: np.ndarray) -> tuple[torch.Tensor, float, torch.Tensor]:
    ((log_probs, duration_s, char_log_probs),) = phone_recognizer.decodable_batch([(speech, 16000)])
    assert char_log_probs is not None and char_log_probs.shape[1] == len(phone_recognizer.char_check.recognizer.labels)
    return log_probs, duration_s, char_log_probs


def test_edit_distance_counts_what_the_scorer_counts() -> None:
    generator = random.Random(0)
    for _ in range(500):
        first = [generator.randrange(4) for _ in range(generator.randrange(0, 15))]
        second = [generator.randrange(4) for _ in range(generator.randrange(0, 15))]
        assert edit_distance(first, second) == align_tokens(first, second).errors


def test_the_reading_is_the_char_models_phone_checked_transcript_in_phones(
    phone_recognizer: Recognizer, char_check: CharCheck, decodable: tuple[torch.Tensor, float, torch.Tensor]
) -> None:
    """The char model reads at the phone search's beam, checked by the phone model's own posteriors
    (no third model pass): as a char recognizer with that phone check decodes the same speech."""
    log_probs, duration_s, char_log_probs = decodable
    reader = phone_recognizer.char_reader
    assert reader is not None and reader.phone_check is not None and reader.phone_check.recognizer is phone_recognizer
    assert reader.model is char_check.recognizer.model and char_check.recognizer.phone_check is None  # shared, untouched
    reading = char_check.reading(reader, char_log_probs, log_probs, 8, phone_recognizer.labels)
    checked_char = Recognizer(
        reader.config, reader.model, fusion=reader.fusion, phone_check=PhoneCheck(phone_recognizer)
    ).decode(char_log_probs, duration_s, log_probs, beam_size=8)
    assert checked_char.text == SPOKEN
    assert phone_recognizer.labels.decode(reading) == phonemize_normalized([SPOKEN])[0]
    unchecked = CharCheck(char_check.recognizer, phone_checked=False)
    assert unchecked.reader(phone_recognizer) is char_check.recognizer


def test_the_beam_and_the_reading_are_ranked_by_the_stated_objective(
    phone_recognizer: Recognizer, char_check: CharCheck, decodable: tuple[torch.Tensor, float, torch.Tensor]
) -> None:
    """The phone model's CTC log-likelihood + its LM's sentence score + the bonus for the reading
    itself - the weight x each hypothesis' edit distance from the reading, exactly; the checked
    transcript is the top of that ranking, its alternatives the next ones."""
    log_probs, duration_s, char_log_probs = decodable
    labels = phone_recognizer.labels
    reading = char_check.reading(phone_recognizer.char_reader, char_log_probs, log_probs, 8, labels)
    search = phone_recognizer.search(8)
    search.advance(log_probs)
    beam = search.hypotheses(8)
    ranked = char_check.rank(beam, log_probs, labels.blank_id, phone_recognizer.fusion, reading)

    def objective(ids: list[int]) -> float:
        (heard,) = sequence_log_likelihoods(log_probs, [ids], labels.blank_id)
        agreement = char_check.agreement_bonus if ids == reading else 0.0
        distance = align_tokens(ids, reading).errors
        return heard + sentence_score(phone_recognizer.fusion, ids) + agreement - char_check.distance_weight * distance

    assert sorted(map(tuple, ranked)) == sorted({*map(tuple, beam), tuple(reading)})
    scores = [objective(ids) for ids in ranked]
    assert scores == sorted(scores, reverse=True)
    checked = phone_recognizer.decode(log_probs, duration_s, char_log_probs, beam_size=8, alternatives=3)
    assert [checked.text, *(a.text for a in checked.alternatives)] == [labels.decode(ids) for ids in ranked[:3]]
    assert checked.segments and checked.segments[-1].end_s <= duration_s  # aligned like any transcript


def test_how_much_the_reading_weighs_decides_between_it_and_the_beam(
    phone_recognizer: Recognizer, char_check: CharCheck, tmp_path: Path
) -> None:
    """Where the models disagree (a word the phone model mishears in this voice), a heavy check
    gives the reading and a weightless one the phone model's own best hypothesis by its exact score."""
    path = synthesize_wav("the temperature of the aqueous content", tmp_path / "aqueous.wav", voice="en-us+m7")
    ((log_probs, duration_s, char_log_probs),) = phone_recognizer.decodable_batch([(load_audio(path, target_rate=16000), 16000)])
    labels = phone_recognizer.labels
    reading = labels.decode(char_check.reading(phone_recognizer.char_reader, char_log_probs, log_probs, 8, labels))
    plain = Recognizer(phone_recognizer.config, phone_recognizer.model, fusion=phone_recognizer.fusion)
    own = plain.decode(log_probs, duration_s, beam_size=8).text
    assert own != reading  # the two models disagree here

    def checked(bonus: float, weight: float) -> str:
        check = CharCheck(char_check.recognizer, bonus, weight)  # reads as phone_recognizer's check does
        recognizer = Recognizer(plain.config, plain.model, fusion=plain.fusion, char_check=check)
        return recognizer.decode(log_probs, duration_s, char_log_probs, beam_size=8).text

    assert checked(100.0, 0.0) == reading
    search = plain.search(8)
    search.advance(log_probs)
    beam = search.hypotheses(8)
    (exact,) = CharCheck(char_check.recognizer, 0.0, 0.0).rank(beam, log_probs, labels.blank_id, plain.fusion, [])[:1]
    assert checked(0.0, 0.0) == labels.decode(exact)


def test_char_checks_that_cannot_serve_are_refused_by_name(char_check: CharCheck) -> None:
    phone_model = Recognizer.from_checkpoint(MODELS / "phone.ckpt")
    with pytest.raises(CharCheckError, match="needs a char model, got a phone model"):
        Recognizer.from_checkpoint(MODELS / "phone.ckpt", char_check=CharCheck(phone_model))
    with pytest.raises(CharCheckError, match="not a char model's"):
        Recognizer.from_checkpoint(MODELS / "char.ckpt", char_check=char_check)
    with pytest.raises(CharCheckError, match="bonus must be in"):
        Recognizer.from_checkpoint(MODELS / "phone.ckpt", char_check=CharCheck(char_check.recognizer, -1.0))
    # a check each way: the char model keeps its phone check, the phone model its char check
    both = Recognizer.from_checkpoint(MODELS / "char.ckpt", phone_check=PhoneCheck(phone_model))
    assert both.char_check is None and both.phone_check is not None


def test_the_commands_refuse_a_char_check_without_beam_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    phone = ["--checkpoint", str(MODELS / "phone.ckpt"), "--manifest", str(manifest)]
    with pytest.raises(SystemExit, match="speechlabel evaluate: --char-check checks beam search: add --beam-size 8"):
        run(parser.parse_args([*phone, "--char-check"]))
    weights = parser.parse_args([*phone, "--beam-size", "8", "--char-check", "--char-check-bonus", "3", "--char-check-weight", "1"])
    check = char_check_from_args(weights)
    assert check is not None and (check.agreement_bonus, check.distance_weight) == (3.0, 1.0)
    assert check.recognizer.fusion is not None  # the char model reads with its own LM
    with pytest.raises(SystemExit, match="none.ckpt"):
        run(parser.parse_args([*phone, "--beam-size", "8", "--char-check", str(tmp_path / "none.ckpt")]))
    audio = synthesize_wav("hello", tmp_path / "hello.wav")
    job = ["transcribe", str(audio), "--out", str(tmp_path / "out"), "--no-progress", "--model", "phone", "--char-check"]
    assert cli_main(job) == 2  # greedy by default
    assert "add --beam-size" in capsys.readouterr().err
    assert cli_main([*job, "--beam-size", "8", "--server", "localhost:1"]) == 2
    assert "--char-check are for local recognition" in capsys.readouterr().err
    assert cli_main(["transcribe", str(audio), "--out", str(tmp_path / "char"), "--no-progress", "--beam-size", "8",
                     "--char-check"]) == 2  # fmt: skip
    assert "not a char model's" in capsys.readouterr().err
