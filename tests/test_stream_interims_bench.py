"""benchmarks/stream_interims.py: how interims are scored against the reference so far, grouped by
utterance, and how a stable text taken back is caught."""

from __future__ import annotations

from audiomodels.recognizer import Transcript
from service.sessions import StreamResult
from tests.bench_scripts import benchmark_module


def result(text: str, stable: str, is_final: bool = False) -> StreamResult:
    return StreamResult(Transcript(text, (), (), (), 1.0, 0.03), 0.0, 1.0, is_final, stable)


def test_the_reference_so_far_is_the_letters_aligned_to_end_by_then() -> None:
    with benchmark_module("stream_interims.py") as bench:
        letters = [(0.1, "a"), (0.2, "n"), (0.3, " "), (0.5, "o"), (0.6, "x")]
        assert bench.text_by(letters, 0.05) == ""
        assert bench.text_by(letters, 0.3) == "an"  # the trailing word separator is not scored
        assert bench.text_by(letters, 0.55) == "an o"
        assert bench.text_by(letters, 2.0) == "an ox"


def test_interims_are_grouped_by_utterance_and_broken_promises_counted() -> None:
    with benchmark_module("stream_interims.py") as bench:
        kept = [result("he", "h"), result("hel", "he"), result("hello", "hello", True), result("wo", "w")]
        assert [[r.transcript.text for r in group] for group in bench.interims_per_utterance(kept)] == [
            ["he", "hel"],
            ["wo"],
        ]
        assert bench.promises_broken(kept) == 0  # a new utterance starts with nothing promised
        taken_back = [result("hel", "hel"), result("hat", "h"), result("hat", "hat", True)]
        assert bench.promises_broken(taken_back) == 2  # the second interim and the final dropped the promised "hel"
        assert bench.hinted_in_interims(["ann", "ann", "bob"], [result("ann met", ""), result("ann and ann", "")]) == 2
