"""Where speech starts: one energy rule for live streams and whole recordings.

The shipped models were trained on utterances whose speech starts at once, and silence before the
speech costs them accuracy (models/HISTORY.md: 1 s of it, 2 points of CER). So both the stream
endpointer (:mod:`service.sessions`) and :class:`audiomodels.recognizer.Recognizer` hand the model
the audio from ``leading_silence_s`` before the first ``BLOCK_S`` block whose RMS is above
``SILENCE_DBFS``, decided on the same block grid, so a streamed utterance and the same samples
recognized offline start at the same place.
"""

from __future__ import annotations

import numpy as np

BLOCK_S = 0.1  # decision granularity
SILENCE_DBFS = -45.0  # block RMS at or below this level counts as silence
# Audio kept before the first block above the threshold (soft onsets fall below it). Each 0.1 s of
# it costs the shipped char model accuracy: streamed after 1 s of silence, 150 clean test
# utterances scored 12.2 / 12.3 / 12.9 / 13.3% CER with 0 / 0.1 / 0.2 / 0.3 s (11.9% without the
# silence; models/HISTORY.md).
LEADING_SILENCE_S = 0.1


def is_speech(samples: np.ndarray, silence_dbfs: float = SILENCE_DBFS) -> bool:
    """Whether a block is louder than silence (RMS in dB re full scale)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return 20.0 * np.log10(max(rms, 1e-10)) > silence_dbfs


def speech_start(
    samples: np.ndarray, sample_rate: int, leading_silence_s: float = LEADING_SILENCE_S, align: int = 1
) -> int:
    """First sample worth recognizing: ``leading_silence_s`` (whole blocks) before the first block
    above the threshold, rounded down to a multiple of ``align`` (a model frame, so frame times stay
    on the grid); 0 when no block is (nothing to skip, the model decides)."""
    block = max(1, round(BLOCK_S * sample_rate))
    for index in range(len(samples) // block + 1):
        if is_speech(samples[index * block : (index + 1) * block]):
            first = max(0, index * block - round(leading_silence_s / BLOCK_S) * block)
            return first - first % align
    return 0
