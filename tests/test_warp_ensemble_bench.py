"""benchmarks/warp_ensemble.py: each split scored plainly and with the ensemble, per decoder and engine."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from audiomodels.recognizer import Recognizer
from tests.bench_scripts import benchmark_module, speech_manifest
from training.evaluate import evaluate


def test_every_split_and_decoder_is_scored_plainly_and_with_the_warps(
    trained: tuple[Path, list[float]], speech_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, utterances = speech_manifest(speech_files, tmp_path)
    checkpoint, warps = trained[0], (0.9, 1.1)
    with benchmark_module("warp_ensemble.py") as bench:
        assert bench.parse_split("test=a/b.jsonl") == ("test", Path("a/b.jsonl"))
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=MANIFEST"):
            bench.parse_split("a/b.jsonl")
        results = bench.score(checkpoint, {"test": manifest}, warps, beam_size=2)
        bench.print_table({"warps": list(warps), "results": {"tiny": results}})

    assert list(results["test"]) == ["greedy", "beam2"]
    for decoder, beam_size in (("greedy", 1), ("beam2", 2)):
        plain, ensemble = results["test"][decoder]["plain"], results["test"][decoder]["ensemble"]
        for row, factors in ((plain, ()), (ensemble, warps)):  # each row is what evaluate() gives that recognizer
            direct = evaluate(Recognizer.from_checkpoint(checkpoint, warps=factors), utterances, beam_size=beam_size)
            assert row["counts"] == direct.summary()["counts"]
            assert row["by_engine"] == {"espeak-ng": row["rates"]} and row["real_time_factor"] > 0
    assert "| test | greedy | CER" in capsys.readouterr().out
