"""benchmarks/robustness.py: noisy copies at the asked SNR, rooms that smear, codec copies at the asked
bitrate, a trained model hurt by noise, rooms and a phone line."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from audiomodels.audio import load_audio
from tests.bench_scripts import benchmark_module
from training.manifest import Utterance


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with benchmark_module("robustness.py") as module:
        yield module


@pytest.fixture
def utterances(speech_files: dict[str, Path]) -> list[Utterance]:
    return [Utterance(path, 1.0, text) for text, path in speech_files.items()]


def test_noisy_copies_have_the_asked_snr(bench: ModuleType, utterances: list[Utterance], tmp_path: Path) -> None:
    copies = bench.degraded_copies(utterances, bench.Condition("noise", color="pink", snr_db=10.0), tmp_path, seed=0)
    for original, copy in zip(utterances, copies, strict=True):
        clean, noisy = load_audio(original.audio_filepath, target_rate=16000), load_audio(copy.audio_filepath)
        snr_db = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))
        assert snr_db == pytest.approx(10.0, abs=0.3)
        assert copy.text == original.text


def test_recorded_backgrounds_come_at_the_asked_snr_and_never_from_a_pause(
    bench: ModuleType, utterances: list[Utterance], tmp_path: Path
) -> None:
    rate = 16000
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    recording = np.concatenate([tone, np.zeros(3 * rate, np.float32)])  # a second of sound, three of pause
    draws = [bench.excerpt((recording,), rate // 4, np.random.default_rng(seed)) for seed in range(20)]
    assert all(np.count_nonzero(d) and np.std(d) == pytest.approx(1.0, abs=1e-3) for d in draws)
    condition = bench.Condition("recorded", "tones", 10.0, recordings=(recording, tone))
    assert condition.name == "recorded tones 10 dB" and condition == bench.Condition("recorded", "tones", 10.0)
    for original, copy in zip(utterances, bench.degraded_copies(utterances, condition, tmp_path, seed=0), strict=True):
        clean, noisy = load_audio(original.audio_filepath, target_rate=rate), load_audio(copy.audio_filepath)
        snr_db = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))
        assert snr_db == pytest.approx(10.0, abs=0.3)


def test_rooms_add_a_decaying_tail_and_parse_from_the_command_line(
    bench: ModuleType, utterances: list[Utterance], tmp_path: Path
) -> None:
    room = bench.parse_room("0.6:3")
    assert (room.rt60, room.drr_db, room.name) == (0.6, 3.0, "room 0.6 s 3 dB")
    with pytest.raises(argparse.ArgumentTypeError, match="RT60:DRR"):
        bench.parse_room("big")
    original = utterances[0]
    copy = bench.degraded_copies([original], room, tmp_path, seed=0)[0]
    dry, wet = load_audio(original.audio_filepath, target_rate=16000), load_audio(copy.audio_filepath)
    assert len(wet) == len(dry) + round(0.6 * 16000) - 1  # the room's tail rings on after the speech
    speech_end = int(np.flatnonzero(np.abs(dry) > 0.05 * np.abs(dry).max())[-1])
    after = slice(speech_end + 160, speech_end + 1760)  # the 100 ms after the last sound
    assert np.mean(wet[after] ** 2) > 10 * np.mean(dry[after] ** 2)  # the room rings on where the speech stopped


def test_silence_copies_put_the_asked_pause_around_the_speech(
    bench: ModuleType, utterances: list[Utterance], tmp_path: Path
) -> None:
    condition = bench.Condition("silence", silence_s=0.5)
    assert condition.name == "silence 0.5 s"
    original = utterances[0]
    speech = load_audio(original.audio_filepath, target_rate=16000)
    padded = load_audio(bench.degraded_copies([original], condition, tmp_path, seed=0)[0].audio_filepath)
    assert len(padded) == len(speech) + 16000
    assert not padded[:8000].any() and not padded[-8000:].any()
    np.testing.assert_allclose(padded[8000:-8000], speech, atol=1 / 32768)


def test_codec_copies_are_the_compressed_files_a_client_sends_at_the_asked_bitrate(
    bench: ModuleType, utterances: list[Utterance], tmp_path: Path
) -> None:
    opus, aac = bench.parse_codec("opus:12"), bench.parse_codec("aac:32")
    assert (opus.name, aac.name) == ("opus 12 kbps", "aac 32 kbps")
    with pytest.raises(argparse.ArgumentTypeError, match="CODEC:KBPS with CODEC one of opus, aac"):
        bench.parse_codec("speex:8")
    original = utterances[0]
    speech = load_audio(original.audio_filepath, target_rate=16000)
    for condition, suffix in ((opus, ".webm"), (aac, ".m4a")):
        copy = bench.degraded_copies([original], condition, tmp_path, seed=0)[0]
        assert copy.audio_filepath.suffix == suffix and copy.text == original.text
        kbps = copy.audio_filepath.stat().st_size * 8 / (len(speech) / 16000) / 1000
        assert kbps < 1.5 * condition.kbps + 4  # the asked bitrate, plus the container's overhead
        decoded = load_audio(copy.audio_filepath)
        assert abs(len(decoded) - len(speech)) <= 160  # within 10 ms
        common = min(len(decoded), len(speech))
        assert np.corrcoef(decoded[:common], speech[:common])[0, 1] > 0.9  # lossy, yet the same speech


def test_noise_and_rooms_raise_a_trained_models_error_rate(
    bench: ModuleType, trained: tuple[Path, list[float]], utterances: list[Utterance], capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = str(trained[0])
    noise = bench.Condition("noise", color="white", snr_db=0.0)
    conditions = [bench.CLEAN, noise, bench.parse_room("0.9:-2"), bench.Condition("telephone")]
    speakers = ["ann" if index % 3 else "bob" for index in range(len(utterances))]
    tagged = [replace(u, extra={"speaker": s}) for u, s in zip(utterances, speakers, strict=True)]
    results = bench.run([trained[0]], tagged, conditions, by=["speaker"])
    assert list(results) == ["clean", "white 0 dB", "room 0.9 s -2 dB", "telephone"]
    clean, noisy, reverberant, telephoned = (bench.primary_rate(results[name][checkpoint]) for name in results)
    assert clean < 0.05  # the tiny model was trained on exactly these utterances
    assert noisy > clean + 0.2
    assert reverberant > clean + 0.1
    assert telephoned > clean + 0.1
    for name in results:  # every condition scored per speaker too, from the same utterances
        groups = results[name][checkpoint]["by"]["speaker"]
        assert {s: g["utterances"] for s, g in groups.items()} == {s: speakers.count(s) for s in ("ann", "bob")}
        rates = [bench.primary_rate(g) for g in groups.values()]
        assert min(rates) <= bench.primary_rate(results[name][checkpoint]) <= max(rates)
    bench.print_table(results)
    assert "| room 0.9 s -2 dB | " in capsys.readouterr().out
