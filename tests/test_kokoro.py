"""Tests for the Kokoro corpus engine: fetching its voice tables, phonemizing, and speech that is understood."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from audiomodels.recognizer import Recognizer
from training import kokoro
from training.fetch_kokoro_voices import ENGLISH_VOICE_COUNT, english_tables, fetch
from training.metrics import ErrorCounts, char_errors
from training.voices import available_voices

SHIPPED_CHAR_MODEL = Path(__file__).resolve().parents[1] / "models" / "char.ckpt"


def test_fetch_refuses_a_tarball_that_fails_its_pinned_integrity(tmp_path: Path) -> None:
    """A tarball with the right layout but other bytes (a tampered or changed release) unpacks nothing."""
    tarball = tmp_path / "kokoro-js.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        payload = np.zeros((510, 256), np.float32).tobytes()
        info = tarfile.TarInfo("package/voices/af_heart.bin")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    target = tmp_path / "voices"
    with pytest.raises(RuntimeError, match="integrity"):
        fetch(target, url=tarball.as_uri())
    assert english_tables(target) == []


def test_fetch_with_every_table_in_place_downloads_nothing(tmp_path: Path) -> None:
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")
    names = [f"{accent}{sex}_{word}" for accent in "ab" for sex in "fm" for word in words]
    assert len(names) == ENGLISH_VOICE_COUNT
    for name in names:
        (tmp_path / f"{name}.bin").write_bytes(b"")
    (tmp_path / "jf_alpha.bin").write_bytes(b"")  # not English: never counted
    assert [path.stem for path in fetch(tmp_path, url="http://127.0.0.1:9/unreachable.tgz")] == sorted(names)


def test_phonemize_gives_each_clause_its_punctuation_back() -> None:
    phonemes = kokoro.phonemize("Well, it rained; we stayed home. Did you", "en-us")
    clauses = phonemes.split(" ")
    assert phonemes.count(",") == 1 and phonemes.count(";") == 1 and phonemes.count(".") == 2, phonemes
    assert clauses[0].endswith(",") and phonemes.endswith(".")  # the unpunctuated last clause ends a sentence
    assert kokoro.espeak_accent("bf_emma") == "en" and kokoro.espeak_accent("am_adam") == "en-us"


def test_token_ids_reject_empty_and_overlong_input() -> None:
    with pytest.raises(ValueError, match="no Kokoro token"):
        kokoro.token_ids("\u0329\u0329")
    with pytest.raises(ValueError, match="split the text"):
        kokoro.token_ids("a" * kokoro.MAX_TOKENS)


def test_kokoro_voices_are_understood_by_the_shipped_char_model() -> None:
    """Speech, not noise: one voice of each accent and sex, read by the shipped model within 45% CER
    (it reads Kokoro at ~20% greedy; a wrong style row or token map reads as gibberish, CER > 80%)."""
    voices = {voice.name.split(":")[1][:2]: voice for voice in available_voices(["kokoro"])}
    if not voices:
        pytest.skip("Kokoro is not installed (make install voices)")
    assert sorted(voices) == ["af", "am", "bf", "bm"]
    recognizer = Recognizer.from_checkpoint(SHIPPED_CHAR_MODEL)
    texts = ["the weather was cold and the river was frozen", "she bought three books at the market today"]
    counts = ErrorCounts()
    for voice in voices.values():
        params = [voice.sample_params(np.random.default_rng(seed)) for seed in range(len(texts))]
        for text, wave in zip(texts, voice.synthesize(texts, params), strict=True):
            counts += char_errors(text, recognizer.transcribe(wave, voice.sample_rate).text)
    assert counts.rate < 0.45, counts.rate


def test_kokoro_synthesis_is_deterministic() -> None:
    """What lets an interrupted corpus resume with the same audio (Piper, by contrast, is not)."""
    voices = available_voices(["kokoro"])
    if not voices:
        pytest.skip("Kokoro is not installed (make install voices)")
    params = [voices[0].sample_params(np.random.default_rng(0))] * 2
    first, second = voices[0].synthesize(["a short test of the voice"] * 2, params)
    assert len(first) > kokoro.SAMPLE_RATE // 2 and np.array_equal(first, second)
