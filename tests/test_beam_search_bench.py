"""benchmarks/beam_search.py: every search timed and scored on the same log-probs, beside flashlight's."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiomodels.labels import LabelSet
from audiomodels.lm import Fusion
from audiomodels.recognizer import Recognizer
from tests.bench_scripts import benchmark_module, speech_manifest
from tests.test_lm import char_lm
from training.evaluate import evaluate


def test_every_search_is_timed_and_scored_as_evaluate_scores_it(
    trained: tuple[Path, list[float]], speech_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, utterances = speech_manifest(speech_files, tmp_path)
    checkpoint = trained[0]
    recognizer = Recognizer.from_checkpoint(checkpoint, fusion=Fusion(char_lm(3)))
    assert recognizer.labels == LabelSet.char()
    with benchmark_module("beam_search.py") as bench:
        results = bench.measure(recognizer, manifest, limit=len(utterances), beam_sizes=[4])

    rows = results["decoders"]
    assert list(rows) == ["greedy", "beam 4", "beam 4 + LM", "flashlight beam 4", "flashlight beam 4 + LM"]
    assert results["utterances"] == len(utterances) and results["audio_seconds"] > 0
    plain = Recognizer.from_checkpoint(checkpoint)
    for name, source, beam in (("greedy", plain, 1), ("beam 4", plain, 4), ("beam 4 + LM", recognizer, 4)):
        assert rows[name]["rates"] == evaluate(source, utterances, beam_size=beam).summary()["rates"], name
    for name, row in rows.items():
        latency = row["latency_ms"]
        assert row["real_time_factor"] > 0 and 0 < latency["p50"] <= latency["p95"] <= latency["p99"], name
    # flashlight's hypotheses map back to our labels: the same search, near enough, finds the same text
    for name in ("beam 4", "beam 4 + LM"):
        assert rows[f"flashlight {name}"]["rates"]["cer"] == pytest.approx(rows[name]["rates"]["cer"], abs=0.03), name
    assert "flashlight beam 4 + LM" in capsys.readouterr().out
