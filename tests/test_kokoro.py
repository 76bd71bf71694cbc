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
from tests.conftest import ENGLISH_KOKORO_NAMES
from training.voices import KOKORO_BLENDS, _kokoro_blend_voices, available_voices

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
    names = ENGLISH_KOKORO_NAMES
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


def test_a_style_mixes_its_tables_by_weight_and_speaks_its_heaviest_accent(fake_kokoro_tables: list[Path]) -> None:
    us, uk = fake_kokoro_tables[0], fake_kokoro_tables[-1]  # af_alpha (value 0), bm_golf (value 27)
    assert np.array_equal(kokoro.mixed_table(((uk, 1.0),)), np.fromfile(uk, np.float32).reshape(-1, kokoro.STYLE_DIM))
    blend = kokoro.mixed_table(((us, 0.25), (uk, 0.75)))
    assert blend.dtype == np.float32 and np.allclose(blend, 0.75 * 27)
    assert kokoro.style_accent(((us, 0.25), (uk, 0.75))) == "en" and kokoro.style_accent(((us, 1.4), (uk, -0.4))) == "en-us"
    assert np.allclose(kokoro.mixed_table(((uk, 1.5), (us, -0.5))), 1.5 * 27)
    with pytest.raises(ValueError, match="sum to 1"):
        kokoro.mixed_table(((us, 0.5), (uk, 0.4)))


def test_blended_voices_are_fixed_distinct_voices_pushed_from_others(fake_kokoro_tables: list[Path]) -> None:
    """The same blends on every machine (a corpus is reproducible), none a plain voice or another blend again."""
    blends = _kokoro_blend_voices()
    assert blends == _kokoro_blend_voices() and len({voice.speaker for voice in blends}) == KOKORO_BLENDS
    for voice in blends:
        (first, first_weight), (second, second_weight) = voice.style
        assert first != second and 1.3 <= first_weight <= 1.6 and abs(first_weight + second_weight - 1) < 1e-9
        assert voice.sources() == {f"kokoro-{first.stem}", f"kokoro-{second.stem}"}
    assert len({voice.sources() for voice in blends}) > KOKORO_BLENDS * 0.8  # most pairs differ, not one mix re-weighted


@pytest.mark.parametrize("engine", ["kokoro", "kokoro-blend"])
def test_kokoro_voices_are_understood_by_the_shipped_char_model(engine: str) -> None:
    """Speech, not noise: one voice of each accent and sex (of a blend's first part), read by the shipped model
    within 45% CER (it reads Kokoro at ~20% greedy; a wrong style row or token map reads as gibberish, CER > 80%)."""
    voices = {voice.name.split(":")[1][:2]: voice for voice in available_voices([engine])}
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
