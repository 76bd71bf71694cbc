"""Per-stream state for StreamingRecognize, outside the servicer and free of protobuf.

A :class:`Segmenter` turns raw bytes into utterances. Every decision it makes -- speech or
silence, where an utterance ends, when an interim result is due -- is taken on fixed blocks of
the *sample stream* (``BLOCK_S`` of input samples, counted from the stream start), never on
message boundaries, and a byte remainder is carried across messages. Utterances are handed to
the recognizer whole, at the input rate, so resampling happens per utterance as it does offline.
Together this makes the final transcripts independent of how the client chunked its bytes.

Endpointing is energy based: ``endpoint_silence_s`` of blocks below ``silence_dbfs`` after speech
ends an utterance, and ``max_utterance_s`` cuts one that never pauses, so no utterance (and no
interim re-recognition) grows without bound. Silence before an utterance's speech is dropped
but for ``leading_silence_s``, so a long quiet stretch costs no memory either.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np

from audiomodels.audio import AudioError, decode_raw
from audiomodels.recognizer import Recognizer, Transcript
from service.limits import IdleTimeout, LimitExceeded, ShuttingDown

BLOCK_S = 0.05  # decision granularity: speech/silence, endpoints and interim timing
INTERIM_INTERVAL_S = 0.3  # at most one interim result per this much audio
MIN_UTTERANCE_S = 0.1  # shorter tails are not worth (and too short for) recognition
_BYTES_PER_SAMPLE = {"pcm16": 2, "float32": 4}

Request = TypeVar("Request")
Runner = Callable[[Callable[[], Transcript]], Awaitable[Transcript]]


@dataclass(frozen=True)
class StreamSettings:
    """How one stream is cut and recognized (filled from the client's config within server limits)."""

    encoding: str  # "pcm16" or "float32" (headerless little-endian mono)
    sample_rate: int  # Hz of the incoming samples
    interim_results: bool = False
    beam_size: int = 1  # finals only; interims are greedy (cheap and re-run often)
    endpoint_silence_s: float = 0.8  # this much silence after speech ends an utterance
    leading_silence_s: float = 0.3  # silence kept before speech (soft onsets fall below the energy threshold)
    max_utterance_s: float = 30.0
    max_stream_s: float = 3600.0
    silence_dbfs: float = -45.0  # block RMS at or below this level counts as silence


@dataclass(frozen=True)
class Utterance:
    """Audio to recognize: the utterance so far (interim) or all of it (final)."""

    samples: np.ndarray  # float32 at the input rate
    start_sample: int  # from the start of the stream
    is_final: bool


class Segmenter:
    """Raw bytes in any pieces -> utterances, decided on fixed sample blocks."""

    def __init__(self, settings: StreamSettings) -> None:
        decode_raw(b"", settings.encoding, settings.sample_rate)  # validates encoding and rate now
        self.settings = settings
        rate = settings.sample_rate
        self._bytes_per_sample = _BYTES_PER_SAMPLE[settings.encoding]
        self._block = max(1, round(BLOCK_S * rate))
        self._endpoint_blocks = max(1, round(settings.endpoint_silence_s / BLOCK_S))
        self._leading_blocks = round(settings.leading_silence_s / BLOCK_S)
        self._interim_samples = round(INTERIM_INTERVAL_S * rate)
        self._max_utterance = round(settings.max_utterance_s * rate)
        self._max_stream = round(settings.max_stream_s * rate)
        self._remainder = b""  # bytes of an incomplete sample
        self._pending: list[np.ndarray] = []  # samples not yet filling a block
        self._num_pending = 0
        self.num_samples = 0  # decoded so far
        self._blocks: deque[np.ndarray] = deque()  # the current utterance
        self._utterance_start = 0
        self._utterance_length = 0
        self._has_speech = False
        self._silence_run = 0  # silent blocks since the last speech block
        self._since_interim = 0  # samples since the last interim

    def push(self, data: bytes) -> list[Utterance]:
        """Add bytes; return the utterances (interim or final) that became due.

        When several interims fall due in one call only the newest is returned (the older ones
        are already stale), and none that a final in the same call supersedes.
        """
        data = self._remainder + data
        whole = len(data) - len(data) % self._bytes_per_sample
        self._remainder = data[whole:]
        if not whole:
            return []
        samples = decode_raw(data[:whole], self.settings.encoding, self.settings.sample_rate)
        if not np.isfinite(samples).all():
            raise AudioError("audio contains NaN or Inf samples")
        self.num_samples += len(samples)
        if self.num_samples > self._max_stream:
            raise LimitExceeded(f"stream is longer than the server's {self.settings.max_stream_s:g} s limit")
        self._pending.append(samples)
        self._num_pending += len(samples)
        if self._num_pending < self._block:
            return []
        flat = np.concatenate(self._pending)
        num_blocks = len(flat) // self._block
        rest = flat[num_blocks * self._block :]
        self._pending, self._num_pending = [rest], len(rest)
        events = [u for i in range(num_blocks) for u in self._on_block(flat[i * self._block : (i + 1) * self._block])]
        return [u for i, u in enumerate(events) if u.is_final or i == len(events) - 1]

    def finish(self) -> list[Utterance]:
        """End of stream: the last utterance, including the incomplete final block."""
        if self._remainder:
            raise AudioError(
                f"stream ended inside a sample: {len(self._remainder)} trailing byte(s) of a "
                f"{self._bytes_per_sample}-byte {self.settings.encoding} sample"
            )
        if self._num_pending:
            tail = np.concatenate(self._pending)
            self._pending, self._num_pending = [], 0
            self._append(tail, _is_speech(tail, self.settings.silence_dbfs))
        if self._has_speech and self._utterance_length >= MIN_UTTERANCE_S * self.settings.sample_rate:
            return [self._cut()]
        return []

    def _on_block(self, block: np.ndarray) -> list[Utterance]:
        speech = _is_speech(block, self.settings.silence_dbfs)
        self._append(block, speech)
        if not self._has_speech:
            while len(self._blocks) > self._leading_blocks:
                dropped = self._blocks.popleft()
                self._utterance_start += len(dropped)
                self._utterance_length -= len(dropped)
            return []
        if self._silence_run >= self._endpoint_blocks or self._utterance_length + self._block > self._max_utterance:
            return [self._cut()]
        if self.settings.interim_results and self._since_interim >= self._interim_samples:
            self._since_interim = 0
            return [Utterance(np.concatenate(self._blocks), self._utterance_start, is_final=False)]
        return []

    def _append(self, samples: np.ndarray, speech: bool) -> None:
        self._blocks.append(samples)
        self._utterance_length += len(samples)
        self._since_interim += len(samples)
        self._has_speech |= speech
        self._silence_run = 0 if speech else self._silence_run + 1

    def _cut(self) -> Utterance:
        utterance = Utterance(np.concatenate(self._blocks), self._utterance_start, is_final=True)
        self._utterance_start += self._utterance_length
        self._blocks.clear()
        self._utterance_length = self._silence_run = self._since_interim = 0
        self._has_speech = False
        return utterance


def _is_speech(samples: np.ndarray, silence_dbfs: float) -> bool:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * np.log10(max(rms, 1e-10)) > silence_dbfs


@dataclass(frozen=True)
class StreamResult:
    """A recognized utterance; the transcript's times are relative to ``start_s``."""

    transcript: Transcript
    start_s: float  # seconds from the start of the stream
    end_s: float
    is_final: bool


class StreamingSession:
    """One stream: a segmenter plus the recognizer calls its utterances need.

    ``run`` executes a recognizer call off the event loop (the server's one executor).
    Interims whose text did not change since the previous interim are not repeated.
    """

    def __init__(self, recognizer: Recognizer, settings: StreamSettings, run: Runner) -> None:
        self.recognizer = recognizer
        self.settings = settings
        self.segmenter = Segmenter(settings)
        self._run = run
        self._last_interim = ""

    async def accept(self, data: bytes) -> list[StreamResult]:
        return await self._recognize(self.segmenter.push(data))

    async def finish(self) -> list[StreamResult]:
        return await self._recognize(self.segmenter.finish())

    async def _recognize(self, utterances: list[Utterance]) -> list[StreamResult]:
        results = []
        rate = self.settings.sample_rate
        for utterance in utterances:
            beam_size = self.settings.beam_size if utterance.is_final else 1
            transcript = await self._run(
                partial(self.recognizer.transcribe, utterance.samples, rate, beam_size=beam_size)
            )
            if not utterance.is_final and transcript.text == self._last_interim:
                continue
            self._last_interim = "" if utterance.is_final else transcript.text
            start_s = utterance.start_sample / rate
            results.append(
                StreamResult(transcript, start_s, start_s + len(utterance.samples) / rate, utterance.is_final)
            )
        return results


class StreamSlots:
    """Counts open streams: refuses new ones past the cap or while the server drains."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.draining = asyncio.Event()  # set on shutdown: open streams finish early

    @contextmanager
    def hold(self) -> Iterator[None]:
        """One slot for the duration of a stream; freed however the stream ends (cancel included)."""
        if self.draining.is_set():
            raise ShuttingDown("server is shutting down; retry on another instance")
        if self.active >= self.limit:
            raise LimitExceeded(f"{self.limit} streams are already open on this server; retry later")
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


async def read_requests(
    requests: AsyncIterator[Request], idle_timeout_s: float, stop: asyncio.Event
) -> AsyncIterator[Request]:
    """Yield a stream's requests until it ends or ``stop`` is set; raise :class:`IdleTimeout`
    when the client sends nothing for ``idle_timeout_s``."""
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            read = asyncio.ensure_future(anext(requests, None))
            try:
                done, _ = await asyncio.wait(
                    {read, stopped}, timeout=idle_timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                if not read.done():
                    read.cancel()
            if read in done:
                request = read.result()
                if request is None:
                    return
                yield request
            elif stopped in done:
                return
            else:
                raise IdleTimeout(f"no audio for {idle_timeout_s:g} s; the stream was closed")
    finally:
        stopped.cancel()
