"""Word confidences as probabilities: the maps (audiomodels.calibration), their fit on real words
(training.calibrate) and the measures that judge them (training.metrics)."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from audiomodels.alignment import LabelSpan, WordSpan, align_labels
from audiomodels.audio import load_audio
from audiomodels.calibration import (
    CalibrationError,
    Calibration,
    LogisticMap,
    calibration_beside,
    own_calibration,
    word_features,
)
from audiomodels.recognizer import Recognizer
from service.cli import main as cli_main
from service.mapping import model_info
from service.registry import load_entry
from tests.conftest import SPEECH_TEXTS, synthesize_wav
from training.calibrate import fit_logistic, moved_times, with_calibration_section
from training.evaluate import evaluate
from training.manifest import Utterance, write_manifest
from training.metrics import confidence_quality, right_tokens, separated_words

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_a_word_is_right_where_the_alignment_pairs_it_with_the_same_word():
    assert right_tokens("the cat sat".split(), "the bat sat".split()) == [True, False, True]
    doubled = right_tokens("the cat sat".split(), "the cat cat sat".split())  # one cat is inserted, either
    assert doubled[0] and doubled[3] and doubled[1:3].count(True) == 1
    assert right_tokens("the cat sat".split(), "cat".split()) == [True]
    assert right_tokens([], "noise".split()) == [False]
    assert right_tokens("anything".split(), []) == []
    assert separated_words("h ə l oʊ | w ɜː l d", "|") == ["h ə l oʊ", "w ɜː l d"]
    assert separated_words("  hello  world ", " ") == ["hello", "world"]


def test_confidence_quality_measures_calibration_and_ranking():
    rng = np.random.default_rng(0)
    confidences = rng.uniform(size=20000)
    calibrated = rng.uniform(size=20000) < confidences  # right exactly as often as the confidence says
    quality = confidence_quality(confidences.tolist(), calibrated.tolist())
    assert quality["ece"] < 0.02 and quality["words"] == 20000
    overconfident = confidence_quality((0.5 + confidences / 2).tolist(), calibrated.tolist())
    assert overconfident["ece"] == pytest.approx(0.25, abs=0.02)  # the same words, said 0.25 surer on average
    assert overconfident["auc"] == pytest.approx(quality["auc"])  # a monotone change keeps the ranking
    # AUC by hand: right words at 0.9 and 0.4, wrong at 0.4 and 0.1: pairs (0.9>0.4, 0.9>0.1, tie, 0.4>0.1)
    assert confidence_quality([0.9, 0.4, 0.4, 0.1], [True, True, False, False])["auc"] == pytest.approx(3.5 / 4)
    assert math.isnan(confidence_quality([0.3, 0.7], [True, True])["auc"])  # no wrong word to rank against
    assert confidence_quality([], []) == {"words": 0}


def test_the_logistic_fit_recovers_the_map_that_made_the_outcomes():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(30000, 3))
    truth = LogisticMap((1.5, -0.7, 0.3), 0.4)
    outcomes = rng.uniform(size=30000) < [truth.probability(row) for row in features]
    fitted = fit_logistic(features, outcomes.astype(float))
    np.testing.assert_allclose(fitted.weights, truth.weights, atol=0.08)
    assert fitted.bias == pytest.approx(truth.bias, abs=0.08)


def span(confidence: float, weakest: float, labels: int) -> WordSpan:
    return WordSpan(tuple(range(1, labels + 1)), 0, labels, confidence, weakest)


def test_a_map_weighs_the_vocabulary_it_was_fitted_with():
    calibration = Calibration({"greedy": LogisticMap((1.0, 0.0, 0.0, 3.0), -2.0)}, frozenset({"door"}))
    word = span(0.9, 0.5, 4)
    logit = math.log(0.9 / 0.1)
    assert calibration.confidence("greedy", word, "door") == pytest.approx(1 / (1 + math.exp(-(logit + 1))))
    assert calibration.confidence("greedy", word, "dour") == pytest.approx(1 / (1 + math.exp(-(logit - 2))))
    plain = Calibration({"greedy": LogisticMap((1.0, 0.0, 0.0), -1.0)})  # no vocabulary: three features
    assert plain.confidence("greedy", word, "dour") == pytest.approx(1 / (1 + math.exp(-(logit - 1))))
    assert word_features(span(1.0, 0.0, 1), None) == pytest.approx([math.log(9999), -math.log(9999), 0.0])
    with pytest.raises(CalibrationError, match="no confidence map for 'beam'"):
        plain.confidence("beam", word, "door")
    with pytest.raises(CalibrationError, match="map 'greedy' of 3 weights, expected one of .* of 4"):
        Calibration({"greedy": LogisticMap((1.0, 0.0, 0.0), -1.0)}, frozenset({"door"}))


def test_a_calibration_file_round_trips_and_a_bad_one_is_refused(tmp_path: Path):
    calibration = Calibration(
        {"beam": LogisticMap((0.5, 0.1, -0.2, 2.0), 0.3)},
        frozenset({"café", "door"}),
        word_shift_s=(-0.006, 0.026),
        checkpoint_sha256="ab" * 32,
        report={"note": 1},
    )
    path = tmp_path / "m.calibration.json"
    calibration.save(path)
    assert Calibration.load(path) == calibration
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="not a readable calibration file"):
        Calibration.load(path)
    path.write_text(json.dumps({"format": 1, "maps": {"beam": {"weights": [1.0], "bias": 0.0}}}))
    with pytest.raises(CalibrationError, match="m.calibration.json: map 'beam' of 1 weights"):
        Calibration.load(path)
    path.write_text(json.dumps({"format": 2, "maps": {}}))
    with pytest.raises(CalibrationError, match="format 2, expected 1"):
        Calibration.load(path)


def test_word_times_move_by_the_measured_bias_within_the_audio_and_their_neighbours():
    calibration = Calibration({}, word_shift_s=(-0.01, 0.03))
    assert calibration.word_times([(0.005, 0.3), (0.33, 0.6), (1.0, 1.39)], duration_s=1.4) == [
        (0.0, 0.32),  # the start stops at the audio's; the end at the next word's moved start
        (0.32, 0.63),
        (0.99, 1.4),  # the end stops at the audio's
    ]
    assert calibration.word_times([(0.5, 0.5)], 2.0) == [(0.49, 0.53)]
    assert Calibration({}).word_times([(0.2, 0.4)], 1.0) == [(0.2, 0.4)]


def test_label_segments_ends_move_up_to_the_next_segment_and_the_audio_end():
    calibration = Calibration({}, segment_end_shift_s=0.03)
    segments = [(0.0, 0.03), (0.06, 0.09), (0.15, 0.18), (0.3, 0.39)]
    assert calibration.segment_times(segments, duration_s=0.4) == [(0.0, 0.06), (0.06, 0.12), (0.15, 0.21), (0.3, 0.4)]


@pytest.fixture(scope="module")
def calibrated_model(
    trained: tuple[Path, list[float]], speech_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A copy of the tiny model, fitted by ``speechlabel calibrate`` on its four utterances and four
    it never heard (whose words it gets wrong); the four are espeak-ng en-us, so their words are
    timed too; (checkpoint, manifest)."""
    directory = tmp_path_factory.mktemp("calibrated")
    checkpoint = directory / "tiny.ckpt"
    shutil.copy(trained[0], checkpoint)
    unheard = ["purple monkey dishwasher", "seven bright lamps", "hello yellow world", "close the window now"]
    utterances = [Utterance(path, 1.0, text, extra={"voice": "espeak-ng:en-us"}) for text, path in speech_files.items()]
    utterances += [
        Utterance(synthesize_wav(text, directory / f"unheard{i}.wav", voice="en-gb"), 1.0, text)
        for i, text in enumerate(unheard)
    ]
    manifest = directory / "dev.jsonl"
    write_manifest(manifest, utterances, relative_to=directory)
    checkpoint.with_suffix(".md").write_text("# tiny\nA test model.\n")
    assert cli_main(["calibrate", "--checkpoint", str(checkpoint), "--manifest", str(manifest)]) == 0
    return checkpoint, manifest


def test_calibrate_fits_on_real_words_and_every_recognizer_of_the_checkpoint_uses_it(calibrated_model, caplog):
    """The tiny model's raw confidences say little; fitted on right and wrong words of real speech,
    the map beside the checkpoint is loaded by from_checkpoint and applied to recognized words,
    while an alignment's word confidences stay alignment scores."""
    checkpoint, manifest = calibrated_model
    path = calibration_beside(checkpoint)
    calibration = Calibration.load(path)
    assert set(calibration.maps) == {"greedy"} and not calibration.vocabulary  # no LM beside the tiny model
    (quality,) = calibration.report["splits"].values()
    assert 0 < quality["greedy"]["raw"]["accuracy"] < 1  # right and wrong words to learn from
    assert quality["greedy"]["calibrated"]["ece"] < quality["greedy"]["raw"]["ece"]
    assert quality["greedy"]["calibrated"]["confidence"] == pytest.approx(
        quality["greedy"]["raw"]["accuracy"], abs=0.05
    )

    raw = Recognizer.from_checkpoint(checkpoint, calibration=None)
    mapped = Recognizer.from_checkpoint(checkpoint)
    assert mapped.calibration == calibration
    audio = load_audio(manifest.parent / "unheard1.wav", target_rate=16000)
    plain, fitted = raw.transcribe(audio, 16000), mapped.transcribe(audio, 16000)
    assert plain.text == fitted.text and fitted.words
    spans = raw.word_spans(_alignment(raw, audio, plain.text))
    texts = [w.word for w in plain.words]
    assert [w.confidence for w in fitted.words] == [
        round(calibration.confidence("greedy", s, text), 4) for s, text in zip(spans, texts, strict=True)
    ]
    assert [w.confidence for w in plain.words] == [round(s.confidence, 4) for s in spans]
    assert mapped.word_confidence(spans[0], texts[0], "beam") == spans[0].confidence  # no beam map: raw
    raw_aligned, mapped_aligned = raw.align(audio, 16000, plain.text), mapped.align(audio, 16000, plain.text)
    assert [w.confidence for w in mapped_aligned.words] == [w.confidence for w in raw_aligned.words]
    assert [(w.start_s, w.end_s) for w in mapped_aligned.words] == calibration.word_times(
        [(w.start_s, w.end_s) for w in raw_aligned.words], raw_aligned.duration_s
    )
    assert [(w.start_s, w.end_s) for w in fitted.words] != [(w.start_s, w.end_s) for w in plain.words]
    entry = load_entry(checkpoint)  # the server's models too, and ListModels says so, in its card too
    assert entry.recognizer.calibration == calibration
    assert list(model_info(entry, "tiny").calibrated_confidence) == ["greedy"]
    assert entry.model_card.startswith("# tiny\nA test model.\n\n## Calibration (`tiny.calibration.json`")
    assert with_calibration_section(entry.model_card, "tiny.calibration.json", calibration) == entry.model_card
    assert f"word times moved by {1000 * calibration.word_shift_s[0]:+.1f} ms" in entry.model_card

    result = evaluate(mapped, [Utterance(manifest.parent / "unheard0.wav", 1.0, "purple monkey dishwasher")])
    assert result.word_confidence is not None
    assert result.word_confidence["words"] == len(result.per_utterance[0]["hypothesis"].split())

    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")  # retrained, say: the maps no longer fit it
    with caplog.at_level(logging.WARNING):
        assert own_calibration(checkpoint) is None
    assert "was fitted for another tiny.ckpt" in caplog.text


def test_calibrate_measures_the_word_time_bias_against_true_times(calibrated_model):
    """The shift is minus the median errors of the tiny model's aligned word times on the espeak-ng
    utterances, spoken again with their true times; after it, those medians are nearer 0."""
    calibration = Calibration.load(calibration_beside(calibrated_model[0]))
    (times,) = calibration.report["word_times"].values()
    raw, moved = times["raw"], times["calibrated"]
    assert raw["words"] == moved["words"] == sum(len(text.split()) for text in SPEECH_TEXTS)
    assert calibration.segment_end_shift_s == 0.0 and not calibration.report["segment_times"]  # characters: no truth
    assert calibration.word_shift_s == pytest.approx(
        (-raw["start"]["median_ms"] / 1000, -raw["end"]["median_ms"] / 1000), abs=1e-4
    )
    for side in ("start", "end"):
        # nearer 0 (not at it: a word cannot start before the one ahead of it ends), and no worse in size
        assert abs(moved[side]["median_ms"]) < abs(raw[side]["median_ms"])
        assert moved[side]["median_abs_ms"] <= raw[side]["median_abs_ms"]


def _alignment(recognizer: Recognizer, audio: np.ndarray, text: str) -> list[LabelSpan]:
    """The labels of ``text`` aligned as recognition aligns its hypothesis."""
    ((log_probs, _, _),) = recognizer.decodable_batch([(audio, 16000)])
    return align_labels(log_probs, recognizer.labels.encode(text), blank=recognizer.labels.blank_id)


@pytest.mark.parametrize("name", ["char", "phone"])
def test_the_shipped_calibrations_belong_to_their_models_and_pay_on_held_out_voices(name: str):
    """The calibrations in models/ are the shipped checkpoints' (else they would be ignored); on
    every held-out test set they report a smaller calibration error than the raw confidences, and
    on the held-out espeak-ng voices word ends (and the phone model's segment ends) nearer the truth."""
    calibration = own_calibration(MODELS / f"{name}.ckpt")
    assert calibration is not None
    assert {"greedy", "beam"} <= set(calibration.maps)
    assert len(calibration.vocabulary) > 20_000  # both LMs have words (the phone one, their phone spellings)
    heldout = calibration.report["heldout"]
    assert len(heldout) >= 3
    for split in heldout:
        for mode in ("greedy", "beam"):
            quality = calibration.report["splits"][split][mode]
            assert quality["calibrated"]["ece"] < quality["raw"]["ece"], (split, mode)
    timed = ["word_times", "segment_times"] if name == "phone" else ["word_times"]
    for key in timed:
        times = [calibration.report[key][split] for split in heldout if split in calibration.report[key]]
        assert times, key
        for time in times:
            assert time["calibrated"]["end"]["median_abs_ms"] < time["raw"]["end"]["median_abs_ms"], key


def test_calibrate_scores_the_times_a_calibrated_recognizer_returns(speech_files):
    """calibrate moves a raw alignment's times rather than aligning again: what it scores is what
    a recognizer with the calibration returns (the shipped phone model: words and segments move)."""
    calibrated = Recognizer.from_checkpoint(MODELS / "phone.ckpt")
    assert calibrated.calibration is not None
    raw = Recognizer(calibrated.config, calibrated.model)
    audio = load_audio(speech_files["open the door"])
    aligned = raw.align(audio, 16000, "open the door")
    moved = moved_times(calibrated.calibration, aligned)
    assert moved == calibrated.align(audio, 16000, "open the door")
    assert [w.end_s for w in moved.words] != [w.end_s for w in aligned.words]
    assert [s.end_s for s in moved.segments] != [s.end_s for s in aligned.segments]
