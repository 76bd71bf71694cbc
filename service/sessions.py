"""Per-stream state for StreamingRecognize, outside the servicer and free of protobuf.

Audio flows through a stream once: bytes are decoded (a partial sample is carried to the next
message), resampled to the model's rate by a streaming resampler, featurized and run through the
latency-controlled model chunk by chunk (:mod:`audiomodels.streaming`), batched with every other
live stream by the server's stream batcher. Each model chunk yields an interim result covering the
audio up to its last frame; nothing is ever recomputed, so the cost of a stream grows linearly.

The sample stream is cut into fixed blocks (``BLOCK_S`` of input samples from the stream start)
before anything else sees it, never on message boundaries. An :class:`Endpointer` decides on
those blocks where utterances end:
``endpoint_silence_s`` of blocks below ``silence_dbfs`` after speech ends an utterance and
``max_utterance_s`` cuts one that never pauses. An utterance's final is decoded (greedy or beam,
with word and label times) from the log-probs of its frames once the model has emitted them.
Because the model runs over the whole stream and cuts are taken on the sample stream, finals do
not depend on how the client chunked its bytes, and equal the offline chunked computation.
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
import torch

from audiomodels.audio import AudioError, StreamingResampler, decode_raw
from audiomodels.config import Chunking
from audiomodels.decoding import greedy_decode
from audiomodels.recognizer import Recognizer, Transcript
from audiomodels.streaming import ChunkedStream, ChunkInput
from service.limits import IdleTimeout, LimitExceeded, RequestError, ShuttingDown

BLOCK_S = 0.1  # processing granularity: speech/silence decisions, cut positions, feature updates
MIN_UTTERANCE_S = 0.1  # shorter tails are not worth (and too short for) recognition
_BYTES_PER_SAMPLE = {"pcm16": 2, "float32": 4}

Request = TypeVar("Request")
Runner = Callable[[Callable[[], Transcript]], Awaitable[Transcript]]
Stepper = Callable[[ChunkInput], Awaitable[tuple[torch.Tensor, torch.Tensor]]]  # -> (log_probs, state)


@dataclass(frozen=True)
class StreamSettings:
    """How one stream is cut and recognized (filled from the client's config within server limits)."""

    encoding: str  # "pcm16" or "float32" (headerless little-endian mono)
    sample_rate: int  # Hz of the incoming samples
    interim_results: bool = False
    beam_size: int = 1  # finals only; interims are greedy
    endpoint_silence_s: float = 0.8  # this much silence after speech ends an utterance
    leading_silence_s: float = 0.3  # silence kept before speech (soft onsets fall below the energy threshold)
    max_utterance_s: float = 30.0
    max_stream_s: float = 3600.0
    silence_dbfs: float = -45.0  # block RMS at or below this level counts as silence
    latency_s: float = 0.0  # chunk + look-ahead of the model; 0 = the model's own streaming chunking


class SampleDecoder:
    """Raw bytes in any pieces -> float32 samples; a partial sample waits for the next piece."""

    def __init__(self, settings: StreamSettings) -> None:
        decode_raw(b"", settings.encoding, settings.sample_rate)  # validates encoding and rate now
        self.settings = settings
        self._bytes_per_sample = _BYTES_PER_SAMPLE[settings.encoding]
        self._max_samples = round(settings.max_stream_s * settings.sample_rate)
        self._remainder = b""
        self.num_samples = 0

    def decode(self, data: bytes) -> np.ndarray:
        data = self._remainder + data
        whole = len(data) - len(data) % self._bytes_per_sample
        self._remainder = data[whole:]
        samples = decode_raw(data[:whole], self.settings.encoding, self.settings.sample_rate)
        if not np.isfinite(samples).all():
            raise AudioError("audio contains NaN or Inf samples")
        self.num_samples += len(samples)
        if self.num_samples > self._max_samples:
            raise LimitExceeded(f"stream is longer than the server's {self.settings.max_stream_s:g} s limit")
        return samples

    def finish(self) -> None:
        if self._remainder:
            raise AudioError(
                f"stream ended inside a sample: {len(self._remainder)} trailing byte(s) of a "
                f"{self._bytes_per_sample}-byte {self.settings.encoding} sample"
            )


@dataclass(frozen=True)
class Cut:
    """An utterance ended by the endpointer, in input samples from the stream start."""

    start_sample: int
    end_sample: int


class BlockSplitter:
    """Cuts the sample stream into fixed blocks counted from its start, carrying the remainder.

    Everything downstream (endpointing, resampling, features, model chunks) sees the same blocks
    however the client sized its messages, so results are identical bit for bit across chunkings.
    """

    def __init__(self, block: int) -> None:
        self.block = block
        self._pending = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        flat = np.concatenate([self._pending, samples])
        count = len(flat) // self.block
        self._pending = flat[count * self.block :]
        return [flat[i * self.block : (i + 1) * self.block] for i in range(count)]

    def finish(self) -> np.ndarray:
        tail, self._pending = self._pending, np.zeros(0, np.float32)
        return tail


class Endpointer:
    """Energy endpointing, one block at a time -> utterance boundaries.

    ``utterance_start`` trails the current position by ``leading_silence_s`` while no speech has
    been heard, so silence between utterances belongs to none of them.
    """

    def __init__(self, settings: StreamSettings, block: int) -> None:
        rate = settings.sample_rate
        self.settings = settings
        self._block = block
        self._endpoint_blocks = max(1, round(settings.endpoint_silence_s / BLOCK_S))
        self._leading = round(settings.leading_silence_s / BLOCK_S) * block
        self._max_utterance = round(settings.max_utterance_s * rate)
        self.position = 0  # samples decided so far
        self.utterance_start = 0
        self.has_speech = False
        self._silence_run = 0  # silent blocks since the last speech block

    def on_block(self, block: np.ndarray) -> Cut | None:
        """One full block; returns the utterance it ended, if any."""
        self._advance(block)
        if not self.has_speech:
            self.utterance_start = max(self.utterance_start, self.position - self._leading)
            return None
        long = self.position - self.utterance_start + self._block > self._max_utterance
        if self._silence_run < self._endpoint_blocks and not long:
            return None
        cut = Cut(self.utterance_start, self.position)
        self.utterance_start = self.position
        self.has_speech, self._silence_run = False, 0
        return cut

    def finish(self, tail: np.ndarray) -> Cut | None:
        """End of stream with the incomplete last block: the last utterance, if it holds speech."""
        if len(tail):
            self._advance(tail)
        length = self.position - self.utterance_start
        if self.has_speech and length >= MIN_UTTERANCE_S * self.settings.sample_rate:
            return Cut(self.utterance_start, self.position)
        return None

    def _advance(self, samples: np.ndarray) -> None:
        speech = _is_speech(samples, self.settings.silence_dbfs)
        self.position += len(samples)
        self.has_speech |= speech
        self._silence_run = 0 if speech else self._silence_run + 1


def _is_speech(samples: np.ndarray, silence_dbfs: float) -> bool:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * np.log10(max(rms, 1e-10)) > silence_dbfs


@dataclass(frozen=True)
class StreamResult:
    """A recognized utterance; the transcript's times are relative to ``start_s``."""

    transcript: Transcript
    start_s: float  # seconds from the start of the stream
    end_s: float  # interims: the end of the audio the model has labelled so far
    is_final: bool


def stream_chunking(recognizer: Recognizer, latency_s: float) -> Chunking:
    """The model's own streaming chunking, or the one a client's latency asks for (``RequestError`` if too small)."""
    if not latency_s:
        return recognizer.config.model.streaming
    try:
        return Chunking.for_latency(latency_s, recognizer.config.features.frame_shift_s)
    except ValueError as error:
        raise RequestError(f"stream_latency_ms: {error}") from None


class StreamingSession:
    """One stream: decoder, resampler, endpointer and the chunked model state.

    ``step`` runs one model chunk (the server batches it with other streams' chunks) and ``run``
    executes decoding work off the event loop.
    """

    def __init__(self, recognizer: Recognizer, settings: StreamSettings, step: Stepper, run: Runner) -> None:
        self.recognizer = recognizer
        self.settings = settings
        self.decoder = SampleDecoder(settings)
        block = max(1, round(BLOCK_S * settings.sample_rate))
        self._blocks = BlockSplitter(block)
        self.endpointer = Endpointer(settings, block)
        rate, model_rate = settings.sample_rate, recognizer.sample_rate
        self._resampler = StreamingResampler(rate, model_rate) if rate != model_rate else None
        self._model_stream = ChunkedStream(recognizer.featurizer, stream_chunking(recognizer, settings.latency_s))
        self._frame_shift_s = recognizer.config.features.frame_shift_s
        self._step = step
        self._run = run
        self._cuts: deque[Cut] = deque()  # utterances ended whose frames are not all emitted yet
        self._log_probs: list[torch.Tensor] = []  # emitted frames from _first_frame on
        self._first_frame = 0

    @property
    def audio_s(self) -> float:
        """Audio received so far."""
        return self.decoder.num_samples / self.settings.sample_rate

    async def accept(self, data: bytes) -> list[StreamResult]:
        for block in self._blocks.push(self.decoder.decode(data)):
            cut = self.endpointer.on_block(block)
            if cut is not None:
                self._cuts.append(cut)
            self._model_stream.accept(self._resampler.accept(block) if self._resampler else block)
        return await self._advance()

    async def finish(self) -> list[StreamResult]:
        self.decoder.finish()
        tail = self._blocks.finish()
        last = self.endpointer.finish(tail)
        if last is not None:
            self._cuts.append(last)
        if self._resampler is not None:
            tail = np.concatenate([self._resampler.accept(tail), self._resampler.finish()])
        self._model_stream.accept(tail)
        self._model_stream.end()
        return await self._advance()

    async def _advance(self) -> list[StreamResult]:
        """Run every chunk that is ready, then report finals that became complete and one interim."""
        stepped = False
        while (chunk := self._model_stream.ready()) is not None:
            log_probs, state = await self._step(chunk)
            self._model_stream.advance(chunk, state)
            self._log_probs.append(log_probs)
            stepped = True
        results = []
        emitted = self._model_stream.frames_emitted
        while self._cuts and (self._frame(self._cuts[0].end_sample) <= emitted or self._model_stream.ended):
            results.append(await self._final(self._cuts.popleft()))
        if not self._cuts and not self.endpointer.has_speech:  # drop frames of silence no utterance needs
            self._keep_from(self._frame(self.endpointer.utterance_start))
        if stepped and self.settings.interim_results and not self._model_stream.ended:
            results.append(self._interim())
        return results

    def _frame(self, sample: int) -> int:
        return round(sample / self.settings.sample_rate / self._frame_shift_s)

    def _frames(self, start: int, end: int) -> torch.Tensor:
        frames = torch.cat(self._log_probs) if self._log_probs else torch.zeros(0, len(self.recognizer.labels))
        self._log_probs = [frames]
        return frames[max(start - self._first_frame, 0) : max(end - self._first_frame, 0)]

    def _keep_from(self, frame: int) -> None:
        frame = min(frame, self._model_stream.frames_emitted)  # only frames already emitted can go
        if frame > self._first_frame:
            self._log_probs = [self._frames(frame, self._model_stream.frames_emitted)]
            self._first_frame = frame

    async def _final(self, cut: Cut) -> StreamResult:
        start, end = self._frame(cut.start_sample), min(self._frame(cut.end_sample), self._model_stream.frames_emitted)
        log_probs = self._frames(start, end)
        start_s = cut.start_sample / self.settings.sample_rate
        duration_s = cut.end_sample / self.settings.sample_rate - start_s
        transcript = await self._run(
            partial(self.recognizer.decode, log_probs, duration_s, beam_size=self.settings.beam_size)
        )
        self._keep_from(end)
        return StreamResult(transcript, start_s, start_s + duration_s, is_final=True)

    def _interim(self) -> StreamResult:
        """Greedy text of the utterance in progress, up to the last emitted frame."""
        emitted = self._model_stream.frames_emitted
        start = self._frame(self._cuts[0].start_sample if self._cuts else self.endpointer.utterance_start)
        start = min(start, emitted)  # in silence the endpointer runs ahead of the model's output
        labels = self.recognizer.labels
        text = labels.decode(greedy_decode(self._frames(start, emitted), blank=labels.blank_id))
        shift = self._frame_shift_s
        transcript = Transcript(text, (), (), (), round((emitted - start) * shift, 3), shift)
        return StreamResult(transcript, start * shift, emitted * shift, is_final=False)


class StreamSlots:
    """Counts open streams: refuses new ones past the cap, while the model lags, or while the server drains."""

    def __init__(self, limit: int, overloaded: Callable[[], bool] = lambda: False) -> None:
        self.limit = limit
        self._overloaded = overloaded
        self.active = 0
        self.draining = asyncio.Event()  # set on shutdown: open streams finish early

    @contextmanager
    def hold(self) -> Iterator[None]:
        """One slot for the duration of a stream; freed however the stream ends (cancel included)."""
        if self.draining.is_set():
            raise ShuttingDown("server is shutting down; retry on another instance")
        if self.active >= self.limit:
            raise LimitExceeded(f"{self.limit} streams are already open on this server; retry later")
        if self._overloaded():
            raise LimitExceeded("the server is at its streaming capacity (the model is falling behind); retry later")
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
