"""Where speech starts (audiomodels/silence.py), and transcription that skips the silence before it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiomodels.audio import load_audio
from audiomodels.recognizer import Recognizer
from audiomodels.silence import BLOCK_S, is_speech, speech_start

RATE = 16000


def tone(seconds: float, dbfs: float) -> np.ndarray:
    """A 440 Hz sine whose RMS is ``dbfs``."""
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sqrt(2) * 10 ** (dbfs / 20) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_a_block_is_speech_above_the_threshold_only() -> None:
    assert is_speech(tone(BLOCK_S, -40.0)) and not is_speech(tone(BLOCK_S, -50.0))
    assert not is_speech(np.zeros(1600, np.float32)) and not is_speech(np.zeros(0, np.float32))


def test_speech_starts_a_margin_before_the_first_loud_block() -> None:
    signal = np.concatenate([np.zeros(RATE, np.float32), tone(0.5, -50.0), tone(1.0, -20.0)])
    assert speech_start(signal, RATE) == round(1.4 * RATE)  # the -50 dBFS onset is silence; 0.1 s kept
    assert speech_start(signal, RATE, leading_silence_s=0.0) == round(1.5 * RATE)
    assert speech_start(signal, RATE, leading_silence_s=0.3) == round(1.2 * RATE)
    assert speech_start(signal, RATE, align=480) == 22080  # rounded down to a whole model frame
    assert speech_start(signal[round(1.4 * RATE) :], RATE) == 0  # the cut signal starts at the margin
    assert speech_start(tone(2.0, -20.0), RATE) == 0
    assert speech_start(np.zeros(3 * RATE, np.float32), RATE) == 0  # no speech: nothing is skipped


@pytest.fixture(scope="module")
def recognizer(trained: tuple[Path, list[float]]) -> Recognizer:
    return Recognizer.from_checkpoint(trained[0])


def test_transcription_skips_leading_silence_and_keeps_the_recording_times(
    recognizer: Recognizer, speech_files: dict[str, Path]
) -> None:
    speech = load_audio(speech_files["open the door"])
    padded = np.concatenate([np.zeros(2 * RATE, np.float32), speech])
    start = recognizer.speech_start(padded)
    assert 1.8 <= start / RATE <= 1.9 and start % 480 == 0
    for beam_size in (1, 4):
        skipped = recognizer.transcribe(padded, RATE, beam_size=beam_size)
        alone = recognizer.transcribe(padded[start:], RATE, beam_size=beam_size)
        assert (
            skipped.text == alone.text and len(alone.words) >= 2
        )  # the tiny model reads 0.1 s of zeros + speech its own way
        offset = start / RATE
        assert [(w.word, w.start_s, w.end_s) for w in skipped.words] == [
            (w.word, pytest.approx(w.start_s + offset, abs=1e-3), pytest.approx(w.end_s + offset, abs=1e-3))
            for w in alone.words
        ]
        skipped_frames = start // 480
        assert skipped.frame_labels == ("<blank>",) * skipped_frames + alone.frame_labels
        assert skipped.duration_s == pytest.approx(len(padded) / RATE, abs=1e-3)
    everything = Recognizer(recognizer.config, recognizer.model, leading_silence_s=None)
    assert len(everything.transcribe(padded, RATE).frame_labels) == len(skipped.frame_labels)
