"""Where speech starts (audiomodels/silence.py), and transcription that skips the silence before it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiomodels.audio import load_audio
from audiomodels.recognizer import Recognizer
from audiomodels.silence import BLOCK_S, SpeechDetector, is_speech, speech_start
from training.augment import colored_noise

RATE = 16000


def tone(seconds: float, dbfs: float) -> np.ndarray:
    """A 440 Hz sine whose RMS is ``dbfs``."""
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sqrt(2) * 10 ** (dbfs / 20) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_a_block_is_speech_above_the_threshold_only() -> None:
    assert is_speech(tone(BLOCK_S, -55.0), RATE) and not is_speech(tone(BLOCK_S, -65.0), RATE)
    assert not is_speech(np.zeros(1600, np.float32), RATE) and not is_speech(np.zeros(0, np.float32), RATE)


def test_speech_starts_a_margin_before_the_first_loud_block() -> None:
    signal = np.concatenate([np.zeros(RATE, np.float32), tone(0.5, -65.0), tone(1.0, -20.0)])
    assert speech_start(signal, RATE) == round(1.4 * RATE)  # the -65 dBFS onset is silence; 0.1 s kept
    assert speech_start(signal, RATE, leading_silence_s=0.0) == round(1.5 * RATE)
    assert speech_start(signal, RATE, leading_silence_s=0.3) == round(1.2 * RATE)
    assert speech_start(signal, RATE, align=480) == 22080  # rounded down to a whole model frame
    assert speech_start(signal[round(1.4 * RATE) :], RATE) == 0  # the cut signal starts at the margin
    assert speech_start(tone(2.0, -20.0), RATE) == 0
    assert speech_start(np.zeros(3 * RATE, np.float32), RATE) == 0  # no speech: nothing is skipped


def pink(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """Steady pink noise whose RMS is ``dbfs``."""
    return 10 ** (dbfs / 20) * colored_noise(round(seconds * RATE), "pink", np.random.default_rng(seed))


def decisions(detect: SpeechDetector, signal: np.ndarray) -> list[bool]:
    block = round(BLOCK_S * RATE)
    return [detect(signal[i : i + block]) for i in range(0, len(signal) - block + 1, block)]


def test_in_steady_noise_only_what_stands_above_it_is_speech() -> None:
    noise = pink(4.0, -40.0)
    noise[20 * 1600 : 25 * 1600] += tone(0.5, -20.0)  # blocks 20-24
    heard = decisions(SpeechDetector(RATE), noise)
    assert heard == [i in range(20, 25) for i in range(40)]  # the first block too: it only sets the floor
    assert all(decisions(SpeechDetector(RATE, above_noise_db=-100.0), noise))  # the offline rule: all "speech"


def test_the_stream_threshold_is_never_below_the_offline_one() -> None:
    detect = SpeechDetector(RATE)
    quiet = np.concatenate([np.zeros(RATE, np.float32), tone(0.5, -65.0), tone(0.5, -55.0)])
    assert decisions(detect, quiet) == [False] * 15 + [True] * 5  # a quiet microphone is heard above -60 dBFS


def test_the_noise_floor_follows_a_quieter_room_and_is_capped() -> None:
    louder_then_quieter = np.concatenate([pink(2.0, -40.0), pink(4.0, -55.0, seed=1), tone(0.3, -42.0)])
    heard = decisions(SpeechDetector(RATE), louder_then_quieter)
    assert heard[-3:] == [True] * 3 and not any(heard[:-3])  # -42 dBFS is speech once the floor fell
    blaring = np.concatenate([pink(3.0, -10.0), pink(1.0, -10.0, seed=1) + tone(1.0, -20.0)])
    heard = decisions(SpeechDetector(RATE), blaring)
    assert all(heard[1:])  # floor capped at -35 dBFS: above -25 dBFS is speech, however loud the room


def test_a_first_block_proves_to_be_speech_only_against_a_quieter_one() -> None:
    cases = {
        "a noisy room": (pink(1.0, -30.0), None),
        "a stream opened mid-sentence": (np.concatenate([tone(0.5, -20.0), pink(0.2, -45.0)]), True),
        "below the offline threshold": (np.concatenate([tone(0.1, -65.0), np.zeros(RATE, np.float32)]), False),
        "a later block below it": (np.concatenate([tone(0.1, -55.0), tone(0.1, -62.0)]), False),
    }
    for name, (signal, expected) in cases.items():
        detect = SpeechDetector(RATE)
        decisions(detect, signal)
        assert detect.first_block_was_speech() is expected, name


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
