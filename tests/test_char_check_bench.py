"""benchmarks/char_check.py: each split and beam scored plainly and with the char check, per engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiomodels.char_check import CharCheck
from audiomodels.labels import phonemize_normalized
from audiomodels.lm import own_fusion
from audiomodels.recognizer import Recognizer
from tests.bench_scripts import benchmark_module
from training.evaluate import evaluate
from training.manifest import Utterance, write_manifest

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_every_split_and_beam_is_scored_plainly_and_checked(
    speech_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = list(speech_files)
    utterances = [
        Utterance(speech_files[text], 1.0, text, phones=phones, extra={"voice": "espeak-ng:en-us"})
        for text, phones in zip(texts, phonemize_normalized(texts))
    ]
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, utterances, relative_to=tmp_path)
    char = MODELS / "char.ckpt"
    check = CharCheck(Recognizer.from_checkpoint(char, fusion=own_fusion(char)), agreement_bonus=50.0)
    with benchmark_module("char_check.py") as bench:
        results = bench.score(MODELS / "phone.ckpt", check, {"test": manifest}, beam_sizes=[4])
        bench.print_table(results, ("per",))

    rows = results["test"]["beam4 + LM"]
    assert list(rows) == ["plain", "checked"]
    phone = MODELS / "phone.ckpt"
    for variant, char_check in (("plain", None), ("checked", check)):
        recognizer = Recognizer.from_checkpoint(phone, fusion=own_fusion(phone), char_check=char_check)
        assert rows[variant]["counts"] == evaluate(recognizer, utterances, beam_size=4).summary()["counts"]
        assert rows[variant]["by_engine"] == {"espeak-ng": rows[variant]["rates"]}
        assert rows[variant]["real_time_factor"] > 0
    assert "| test | beam4 + LM | " in capsys.readouterr().out
