"""True word times from espeak-ng's synthesis (training.espeak_timing) and benchmarks/word_times.py,
which scores the service's word times against them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiomodels.calibration import Calibration
from audiomodels.recognizer import Recognizer
from tests.bench_scripts import benchmark_module
from tests.conftest import SPEECH_TEXTS
from training.espeak_timing import SpeechJob, TimedSpeech, time_error_summary, timed_speech, word_time_errors
from training.manifest import Utterance


def test_espeak_reports_each_words_true_times():
    """Words in order, each inside the audio and before the next; the comma's pause lies between
    "world" and "open" and is near silent, while every word carries sound."""
    fast, slow = timed_speech([SpeechJob("hello world, open the door"), SpeechJob("hello world", speed=0.6)])
    assert fast.rate == 22050 and [word for word, _, _ in fast.words] == ["hello", "world", "open", "the", "door"]
    times = [time for _, start, end in fast.words for time in (start, end)]
    assert times == sorted(times) and times[-1] <= len(fast.samples) / fast.rate
    (_, _, world_end), (_, open_start, _) = fast.words[1], fast.words[2]
    pause = fast.samples[round(world_end * fast.rate) : round(open_start * fast.rate)]
    assert len(pause) > 0.1 * fast.rate and np.abs(pause).max() < 0.05 * 32768
    for _, start, end in fast.words:
        word = fast.samples[round(start * fast.rate) : round(end * fast.rate)].astype(np.float64)
        assert np.sqrt(np.mean(word**2)) > 0.02 * 32768
    assert slow.words[1][2] > 1.4 * fast.words[1][2]  # speed is a factor of the program's 175 words a minute


def test_word_time_errors_pair_words_by_text_or_in_order():
    truth = TimedSpeech(np.zeros(1, np.int16), 22050, (("I'm", 0.1, 0.3), ("here", 0.4, 0.7)))
    found = [("um", 0.0, 0.05), ("i'm", 0.12, 0.28), ("here", 0.41, 0.66)]
    expected = [20.0, -20.0, 10.0, -40.0]  # (start, end) of I'm, then of here
    assert np.ravel(word_time_errors(truth, found)) == pytest.approx(expected)
    assert word_time_errors(truth, found, in_order=True) == []  # three words for two: no pairing by position
    assert np.ravel(word_time_errors(truth, found[1:], in_order=True)) == pytest.approx(expected)
    summary = time_error_summary([(20.0, -20.0), (10.0, -40.0)])
    assert summary["start"]["mean_ms"] == 15.0 and summary["end"]["within_20ms"] == 0.5


def test_the_benchmark_times_every_decoder_against_the_truth(trained: tuple[Path, list[float]]):
    texts = list(SPEECH_TEXTS[:2])
    speech = timed_speech([SpeechJob(text) for text in texts])
    with benchmark_module("word_times.py") as bench:
        jobs = bench.espeak_jobs(
            [Utterance(Path("a.wav"), 1.0, "hi", extra={"voice": "flite:slt"})]
            + [Utterance(Path("b.wav"), 1.0, "hello there", extra={"voice": "espeak-ng:en-us+f3", "speed": 1.2})],
            limit=5,
        )
        recognizer = Recognizer.from_checkpoint(trained[0])
        stages = bench.measure(recognizer, None, speech, texts)
        noisy = bench.measure(recognizer, None, speech, texts, noise_snr_db=10)["raw"]
    results = stages["raw"]
    assert stages["calibrated"] == results  # no calibration given: nothing moves
    assert jobs == [SpeechJob("hello there", "en-us+f3", 1.2, 1.0, 0)]  # espeak-ng's utterances only
    assert list(results) == ["char align", "char greedy", "char beam 8 + LM"]
    errors = []  # the alignment's errors, worked out here from the same speech
    for truth, text in zip(speech, texts, strict=True):
        aligned = recognizer.align(truth.samples.astype(np.float32) / 32768, truth.rate, text)
        errors += word_time_errors(truth, [(w.word, w.start_s, w.end_s) for w in aligned.words])
    assert len(errors) == 6  # every word of both texts
    assert results["char align"] == {"utterances": 2, **time_error_summary(errors)}
    assert noisy["char align"]["words"] == 6 and noisy["char align"] != results["char align"]  # the noise is heard

    shift = Calibration({}, word_shift_s=(-0.01, 0.03))  # the calibrated rows: what a recognizer with it returns
    with benchmark_module("word_times.py") as bench:
        moved = bench.measure(recognizer, None, speech, texts, calibrations={"char": shift})["calibrated"]
    calibrated = Recognizer(recognizer.config, recognizer.model, calibration=shift)
    errors = []
    for truth, text in zip(speech, texts, strict=True):
        aligned = calibrated.align(truth.samples.astype(np.float32) / 32768, truth.rate, text)
        errors += word_time_errors(truth, [(w.word, w.start_s, w.end_s) for w in aligned.words])
    assert moved["char align"] == {"utterances": 2, **time_error_summary(errors)} != results["char align"]
