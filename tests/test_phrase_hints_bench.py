"""benchmarks/phrase_hints.py: which words count as unknown to the LM, how hinted words are found,
and that the model output it decodes many ways is the one transcription decodes."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audiomodels.recognizer import Recognizer
from tests.bench_scripts import benchmark_module


def test_unknown_words_and_their_recall() -> None:
    with benchmark_module("phrase_hints.py") as bench:
        assert bench.unknown_words("the zyx of ox and qwerty", {"the", "of", "and"}) == ["zyx", "qwerty"]  # 3+ letters
        assert bench.recall(["ann", "ann", "bob"], "ann and ann met bob") == (3, 3)
        assert bench.recall(["ann", "ann", "bob"], "ann met bobby") == (1, 3)  # whole words, as a multiset


def test_distractors_are_other_utterances_unknown_words_drawn_by_seed() -> None:
    with benchmark_module("phrase_hints.py") as bench:
        spoken = [["ann", "zyx"], ["bob"], [], ["qwerty", "ann"]]
        lists = bench.distractor_lists(spoken, 2, seed=0)
        assert [len(extra) for extra in lists] == [2, 2, 2, 2]
        assert all(not set(extra) & set(own) for own, extra in zip(spoken, lists))  # never the said words
        assert all(set(extra) <= {"ann", "zyx", "bob", "qwerty"} for extra in lists)
        assert bench.distractor_lists(spoken, 2, seed=0) == lists


def test_decodable_output_decodes_as_transcribe_does(model_dir, speech_files) -> None:
    recognizer = Recognizer.from_checkpoint(model_dir / "tiny.ckpt")
    samples, rate = sf.read(speech_files["hello world"], dtype="float32")
    padded = np.concatenate([np.zeros(rate, np.float32), samples])  # leading silence is skipped, then restored
    ((log_probs, duration, _),) = recognizer.decodable_batch([(padded, rate)])
    expected = recognizer.transcribe(padded, rate, beam_size=4)
    assert duration == pytest.approx(len(padded) / rate, abs=1e-4)  # resampled to 16 kHz
    assert recognizer.decode(log_probs, duration, beam_size=4) == expected
