"""Where speech is: the energy rules of live streams and whole recordings.

The shipped models were trained on utterances whose speech starts at once, and silence before the
speech costs them accuracy (models/HISTORY.md: 1 s of it, 2 points of CER). So both the stream
endpointer (:mod:`service.sessions`) and :class:`audiomodels.recognizer.Recognizer` hand the model
the audio from ``leading_silence_s`` before the first ``BLOCK_S`` block judged speech, on the same
block grid.

Offline, a block is speech when its RMS in the speech band (``SPEECH_BAND_HZ``) is above
``SILENCE_DBFS``, low enough for a quiet microphone (the char model still reads speech at -50 dBFS).
A live stream must also find the pauses in steady background noise louder than that, or it would
never end an utterance: there a block is speech only when it is also ``SPEECH_ABOVE_NOISE_DB``
above the stream's noise floor
(:class:`SpeechDetector`). Its threshold for a first speech block is never below the offline one,
so a streamed utterance (which starts ``leading_silence_s`` before its first speech block)
recognized offline starts at the same sample, and the final is the offline transcript of its span.
Once an utterance has started, the threshold holds ``SPEECH_HOLD_DB`` lower until it ends.
"""

from __future__ import annotations

from collections import deque

import numpy as np

BLOCK_S = 0.1  # decision granularity
# Levels are measured in the band that carries speech, so rumble (traffic, ventilation: noise whose
# power is mostly below 100 Hz) neither counts as speech nor hides the pauses.
SPEECH_BAND_HZ = (100.0, 4000.0)
SILENCE_DBFS = -60.0  # a block whose speech-band RMS is at or below this level is silence
# A live stream's noise floor is its quietest block of the last NOISE_WINDOW_S (short enough to follow
# a change of room, long enough to span the pauses between words); speech stands this far above it.
NOISE_WINDOW_S = 3.0
SPEECH_ABOVE_NOISE_DB = 10.0
# A floor above this is taken as this: a window can hold no pause (a talker speaking since the stream
# opened), and speech must not become its own floor; in louder noise the threshold stays at -25 dBFS.
MAX_NOISE_FLOOR_DBFS = -35.0
# Inside an utterance the offline threshold drops by this much (hysteresis): a quiet talker's weak
# syllables and the breaths between words dip below SILENCE_DBFS, and 0.8 s of such dips cut the
# utterance in two (talkers at -60 dBFS: 71 splits in 160 utterances without it, 12 at 3 dB, none at
# 6-15; benchmarks/endpointing.py). Steady noise is still judged by the noise floor, so pauses in it
# still end one; the cost is finals 6-30 ms later (trailing quiet blocks belong to the utterance).
SPEECH_HOLD_DB = 6.0
# How long a stream whose first block is above SILENCE_DBFS keeps its start while it is unknown
# whether that block was speech (a stream opened mid-sentence) or noise (one opened in a noisy room).
OPENING_S = 3.0
# Audio kept before the first block above the threshold (soft onsets fall below it). Each 0.1 s of
# it costs the shipped char model accuracy: streamed after 1 s of silence, 150 clean test
# utterances scored 12.2 / 12.3 / 12.9 / 13.3% CER with 0 / 0.1 / 0.2 / 0.3 s (11.9% without the
# silence; models/HISTORY.md).
LEADING_SILENCE_S = 0.1


def block_dbfs(samples: np.ndarray, sample_rate: int, band_hz: tuple[float, float] | None = SPEECH_BAND_HZ) -> float:
    """A block's RMS in dB re full scale, over ``band_hz`` only (None: the whole band); -200 for
    digital silence or no samples."""
    if not len(samples):
        return -200.0
    if band_hz is None:
        power = float(np.mean(np.square(samples, dtype=np.float64)))
    else:  # Parseval over the one-sided spectrum's bins inside the band
        spectrum = np.fft.rfft(samples.astype(np.float64))
        freqs = np.fft.rfftfreq(len(samples), 1.0 / sample_rate)
        inside = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
        power = 2.0 * float(np.sum(np.abs(spectrum[inside]) ** 2)) / len(samples) ** 2
    return 10.0 * np.log10(max(power, 1e-20))


def is_speech(samples: np.ndarray, sample_rate: int, silence_dbfs: float = SILENCE_DBFS) -> bool:
    """Whether a block is louder than silence in the speech band: the offline rule."""
    return block_dbfs(samples, sample_rate) > silence_dbfs


class SpeechDetector:
    """A live stream's speech decisions, block by block: louder than ``silence_dbfs`` (the offline
    rule) and ``above_noise_db`` louder than the quietest of the blocks before it in the last
    ``window_s`` (the noise floor, at most ``max_floor_dbfs``), so the pauses in steady noise are
    heard as pauses.

    A stream's first block only sets the floor: nothing before it tells noise from speech, and a
    stream opened in a noisy room would start with an utterance of noise. Whether it was speech
    shows later (:meth:`first_block_was_speech`).
    """

    def __init__(
        self,
        sample_rate: int,
        silence_dbfs: float = SILENCE_DBFS,
        above_noise_db: float = SPEECH_ABOVE_NOISE_DB,
        window_s: float = NOISE_WINDOW_S,
        max_floor_dbfs: float = MAX_NOISE_FLOOR_DBFS,
        band_hz: tuple[float, float] | None = SPEECH_BAND_HZ,
        hold_db: float = SPEECH_HOLD_DB,
    ) -> None:
        self.sample_rate = sample_rate
        self.hold_db = hold_db
        self.band_hz = band_hz
        self.max_floor_dbfs = max_floor_dbfs
        self.silence_dbfs = silence_dbfs
        self.above_noise_db = above_noise_db
        self._levels: deque[float] = deque(maxlen=max(1, round(window_s / BLOCK_S)))
        self._first_level: float | None = None
        self._later_floor = np.inf  # the quietest block after the first

    def __call__(self, samples: np.ndarray, in_utterance: bool = False) -> bool:
        """Whether this block (the next of the stream) is speech; ``in_utterance`` (speech heard
        and not yet ended) lowers the offline threshold by ``hold_db``."""
        level = block_dbfs(samples, self.sample_rate, self.band_hz)
        floor = min(min(self._levels, default=level), self.max_floor_dbfs)
        self._levels.append(level)
        if self._first_level is None:
            self._first_level = level
        else:
            self._later_floor = min(self._later_floor, level)
        silence = self.silence_dbfs - (self.hold_db if in_utterance else 0.0)
        return level > max(silence, floor + self.above_noise_db)

    def first_block_was_speech(self) -> bool | None:
        """Whether the stream's first block was speech: True once it stands ``above_noise_db`` above
        a later block, False if it or a later block is at or below the offline threshold, None
        while it cannot be told (every block since within ``above_noise_db`` of it: steady noise,
        or a talker who has not paused yet)."""
        if self._first_level is None:
            return None
        if self._first_level <= self.silence_dbfs:
            return False
        if self._first_level > self._later_floor + self.above_noise_db:
            return True
        return False if self._later_floor <= self.silence_dbfs else None


# Input level. The shipped models were trained on speech whose loudest block in its first LEVEL_WINDOW_S
# lay in SPEECH_LEVEL_DBFS for 92% of the utterances (median -19.9 dBFS; p4 -32, p96 -14 over 651
# training utterances), and far from it they falter: 200 test utterances at -10 / -20 / -40 / -50 /
# -60 dBFS RMS scored 20.4 / 16.4 / 17.4 / 19.4 / 25.7% CER (char, greedy). So an utterance whose
# start is outside the range is scaled to its nearer edge (benchmarks/levels.py has the result).
# Scaling every utterance to the median instead read quiet and loud speech a little better still,
# but cost the held-out test splits as recorded up to 0.6 points of CER (one voice's level, learnt).
# A raise stops where the window's quietest block (the noise before the speech) would pass
# MAX_RAISED_NOISE_DBFS: raised to speech level, noise alone makes the models spell out noise (2 s
# clips of white or pink noise: 166-196 characters in 10). Steady sound (a window whose blocks lie
# within MIN_RAISED_RANGE_DB) is not raised at all: pink noise at -55 dBFS raised to -50 gave a few.
# Nor is speech whose start is all at or below SILENCE_DBFS (-70 dBFS: still 37% CER).
# The window is the utterance's start, so a live stream knows its gain 0.6 s into an utterance,
# before its first model chunk at the default latency (0.9 s); a stream that asks for less latency
# gets a window as short as its latency (at least MIN_LEVEL_WINDOW_S), so its first result is not held.
LEVEL_WINDOW_S = 0.6
MIN_LEVEL_WINDOW_S = 0.3
SPEECH_LEVEL_DBFS = (-32.0, -14.0)
MAX_RAISED_NOISE_DBFS = -50.0
MIN_RAISED_RANGE_DB = 6.0


def level_window_s(latency_s: float | None) -> float:
    """The level window of a model run with this algorithmic latency (None: full context)."""
    return LEVEL_WINDOW_S if latency_s is None else min(LEVEL_WINDOW_S, max(MIN_LEVEL_WINDOW_S, latency_s))


def level_gain(
    samples: np.ndarray,
    sample_rate: int,
    level_dbfs: tuple[float, float] = SPEECH_LEVEL_DBFS,
    window_s: float = LEVEL_WINDOW_S,
) -> float:
    """Linear gain for an utterance that starts with ``samples``: its loudest speech-band block in
    the first ``window_s`` into the range ``level_dbfs``, raising no block above ``MAX_RAISED_NOISE_DBFS``
    that starts at or below it. Nothing is raised when no block is above ``SILENCE_DBFS`` or the
    window is steady (its blocks within ``MIN_RAISED_RANGE_DB``: noise, a hum)."""
    block = max(1, round(BLOCK_S * sample_rate))
    window = samples[: round(window_s * sample_rate)]
    levels = [block_dbfs(window[i : i + block], sample_rate) for i in range(0, max(len(window), 1), block)]
    loudest, quietest = max(levels), min(levels)
    if loudest <= SILENCE_DBFS:
        return 1.0
    low, high = level_dbfs
    gain_db = min(max(loudest, low), high) - loudest
    if gain_db > 0:
        steady = loudest - quietest < MIN_RAISED_RANGE_DB
        gain_db = 0.0 if steady else max(0.0, min(gain_db, MAX_RAISED_NOISE_DBFS - quietest))
    return float(10.0 ** (gain_db / 20.0))


def speech_start(
    samples: np.ndarray, sample_rate: int, leading_silence_s: float = LEADING_SILENCE_S, align: int = 1
) -> int:
    """First sample worth recognizing: ``leading_silence_s`` (whole blocks) before the first block
    above the threshold, rounded down to a multiple of ``align`` (a model frame, so frame times stay
    on the grid); 0 when no block is (nothing to skip, the model decides)."""
    block = max(1, round(BLOCK_S * sample_rate))
    for index in range(len(samples) // block + 1):
        if is_speech(samples[index * block : (index + 1) * block], sample_rate):
            first = max(0, index * block - round(leading_silence_s / BLOCK_S) * block)
            return first - first % align
    return 0
