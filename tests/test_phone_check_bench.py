"""benchmarks/phone_check.py: each split and beam scored plainly, re-ranked and guided by the phone check, per engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from audiomodels.phone_check import PhoneCheck
from audiomodels.recognizer import Recognizer
from tests.bench_scripts import benchmark_module, speech_manifest
from training.evaluate import evaluate

PHONE_MODEL = Path(__file__).resolve().parent.parent / "models" / "phone.ckpt"


def test_every_split_and_beam_is_scored_plainly_reranked_and_checked(
    trained: tuple[Path, list[float]], speech_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, utterances = speech_manifest(speech_files, tmp_path)
    checkpoint, check = trained[0], PhoneCheck(Recognizer.from_checkpoint(PHONE_MODEL), weight=10.0)
    with benchmark_module("phone_check.py") as bench:
        results = bench.score(checkpoint, check, {"test": manifest}, beam_sizes=[2, 4])
        bench.print_table(results)

    assert list(results["test"]) == ["beam2", "beam4"]  # the tiny model has no LM beside it
    reranking = dataclasses.replace(check, search_weight=0.0)
    for decoder, beam_size in (("beam2", 2), ("beam4", 4)):
        rows = results["test"][decoder]
        assert list(rows) == ["plain", "reranked", "checked"]
        for variant, phone_check in (("plain", None), ("reranked", reranking), ("checked", check)):
            row = rows[variant]  # each row is what evaluate() gives that recognizer
            recognizer = Recognizer.from_checkpoint(checkpoint, phone_check=phone_check)
            assert row["counts"] == evaluate(recognizer, utterances, beam_size=beam_size).summary()["counts"]
            assert row["by_engine"] == {"espeak-ng": row["rates"]} and row["real_time_factor"] > 0
    assert "| test | beam2 | " in capsys.readouterr().out
