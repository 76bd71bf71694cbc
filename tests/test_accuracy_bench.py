"""benchmarks/accuracy.py: hypothesis cleanup, a run with a tiny model, peers skipped when missing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from audiomodels.labels import LabelSet
from audiomodels.phone_check import DEFAULT_SEARCH_WEIGHT, DEFAULT_WEIGHT
from tests.bench_scripts import benchmark_module
from tests.test_evaluate import save_tiny_model
from training.manifest import Utterance, write_manifest


@pytest.fixture(scope="module")
def accuracy() -> Iterator[ModuleType]:
    with benchmark_module("accuracy.py") as module:
        yield module


def test_unmappable_hypothesis_symbols_are_dropped_and_counted(accuracy: ModuleType) -> None:
    assert accuracy.normalize_hypothesis("It costs $5, 100%.") == ("it costs five dollars one hundred percent", {})
    text, dropped = accuracy.normalize_hypothesis("Price ¥500 東京 ok")
    assert text == "price five hundred ok"
    assert dropped == {"¥": 1, "東": 1, "京": 1}


def test_run_scores_ours_and_skips_missing_peers(
    accuracy: ModuleType,
    speech_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint = save_tiny_model(tmp_path / "char.ckpt", LabelSet.char())
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, [Utterance(path, 1.0, text.title() + "!") for text, path in speech_files.items()])
    for package in ("pocketsphinx", "faster_whisper"):
        monkeypatch.setitem(sys.modules, package, None)  # makes `import package` raise ImportError
    out = tmp_path / "accuracy.json"

    assert accuracy.main(["--manifest", str(manifest), "--checkpoint", str(checkpoint), "--beam-size", "4",
                          "--limit", "3", "--phone-check", "--out", str(out)]) == 0

    report = json.loads(out.read_text())
    assert report["num_utterances"] == 3
    assert set(report["skipped"]) == {"pocketsphinx", "whisper-tiny.en"}
    assert all(".[bench]" in reason for reason in report["skipped"].values())
    ours = report["systems"]
    assert [s["system"] for s in ours] == [
        "speechlabel char, greedy", "speechlabel char, beam 4", "speechlabel char, beam 4 + phone check"
    ]
    weights = f"(weights {DEFAULT_SEARCH_WEIGHT:g} / {DEFAULT_WEIGHT:g})"
    assert f"guided and re-ranked by a phone model {weights}" in ours[2]["notes"]
    for summary in ours:
        assert summary["num_scored"] == 3 and summary["num_failed"] == 0
        assert summary["rtf"] > 0 and summary["wer"] >= 0 and summary["cer"] >= 0
        row = summary["per_utterance"][0]
        assert row["reference"] == row["reference"].lower()  # normalized ("Hello World!" -> "hello world")
    printed = capsys.readouterr()
    assert "| speechlabel char, beam 4 |" in printed.out
    assert "skipping pocketsphinx" in printed.err
