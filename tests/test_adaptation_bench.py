"""benchmarks/adaptation.py: each split scored plainly and adapted, per decoder and engine, and
evaluate_decoders (its path) scoring each decoder as evaluate() does."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiomodels.adaptation import Adaptation
from audiomodels.recognizer import Recognizer
from tests.bench_scripts import benchmark_module
from training.evaluate import evaluate, evaluate_decoders
from training.manifest import Utterance, write_manifest


def test_every_split_and_decoder_is_scored_plainly_and_adapted(
    trained: tuple[Path, list[float]], speech_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    utterances = [
        Utterance(path, 1.0, text, extra={"voice": "espeak-ng:en-us"}) for text, path in speech_files.items()
    ]
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, utterances, relative_to=tmp_path)
    checkpoint, adaptation = trained[0], Adaptation(steps=2)
    with benchmark_module("adaptation.py") as bench:
        results = bench.score(checkpoint, {"test": manifest}, adaptation, beam_size=2, limit=None)
        bench.print_table({"adaptation": vars(adaptation), "results": results})

    assert list(results["test"]) == ["greedy", "beam2"]
    for decoder, beam_size in (("greedy", 1), ("beam2", 2)):
        for variant, adapting in (("plain", None), ("adapted", adaptation)):
            row = results["test"][decoder][variant]
            direct = evaluate(Recognizer.from_checkpoint(checkpoint, adaptation=adapting), utterances, beam_size=beam_size)
            assert row["counts"] == direct.summary()["counts"]
            assert row["by_engine"] == {"espeak-ng": row["rates"]} and row["real_time_factor"] > 0
    assert "| test | greedy | CER" in capsys.readouterr().out


def test_evaluate_decoders_scores_each_beam_as_evaluate_does(
    trained: tuple[Path, list[float]], speech_files: dict[str, Path]
) -> None:
    utterances = [Utterance(path, 1.0, text) for text, path in speech_files.items()]
    utterances.append(Utterance(Path("/nonexistent.wav"), 1.0, "lost"))  # a failed row in every result
    recognizer = Recognizer.from_checkpoint(trained[0])
    together = evaluate_decoders(recognizer, utterances, (1, 3))
    for beam in (1, 3):
        alone = evaluate(recognizer, utterances, beam_size=beam)
        assert together[beam].per_utterance == alone.per_utterance and together[beam].num_failed == 1
        assert together[beam].summary()["counts"] == alone.summary()["counts"]
