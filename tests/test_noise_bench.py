"""benchmarks/noise_robustness.py: noisy copies at the asked SNR, and a trained model that is hurt by noise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from audiomodels.audio import load_audio
from tests.bench_scripts import benchmark_module
from training.manifest import Utterance


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with benchmark_module("noise_robustness.py") as module:
        yield module


@pytest.fixture
def utterances(speech_files: dict[str, Path]) -> list[Utterance]:
    return [Utterance(path, 1.0, text) for text, path in speech_files.items()]


def test_noisy_copies_have_the_asked_snr(bench: ModuleType, utterances: list[Utterance], tmp_path: Path) -> None:
    copies = bench.noisy_copies(utterances, 10.0, "pink", tmp_path, seed=0)
    for original, copy in zip(utterances, copies, strict=True):
        clean, noisy = load_audio(original.audio_filepath, target_rate=16000), load_audio(copy.audio_filepath)
        snr_db = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))
        assert snr_db == pytest.approx(10.0, abs=0.3)
        assert copy.text == original.text


def test_noise_raises_a_trained_models_error_rate(
    bench: ModuleType, trained: tuple[Path, list[float]], utterances: list[Utterance], capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = str(trained[0])
    results = bench.run([trained[0]], utterances, [("", None), ("white", 0.0)])
    assert list(results) == ["clean", "white 0 dB"]
    clean, noisy = (bench.primary_rate(results[name][checkpoint]) for name in results)
    assert clean < 0.05  # the tiny model was trained on exactly these utterances
    assert noisy > clean + 0.2
    bench.print_table(results)
    assert "| white 0 dB | " in capsys.readouterr().out
