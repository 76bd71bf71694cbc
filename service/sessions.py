"""Per-stream state for StreamingRecognize, outside the servicer and free of protobuf.

Audio flows through a stream once: bytes are decoded (a partial sample is carried to the next
message) and cut into fixed blocks (``BLOCK_S`` of input samples from the stream start), never on
message boundaries. An :class:`Endpointer` decides on those blocks where utterances start and
end: the first speech block (above ``silence_dbfs`` and above the stream's noise floor,
:class:`audiomodels.silence.SpeechDetector`) starts one ``leading_silence_s`` earlier,
``endpoint_silence_s`` of blocks that are not speech after it ends it, and ``max_utterance_s``
cuts one that never pauses.

Only utterances reach the model. Each gets its own :class:`UtteranceModel`, fresh from its first
sample: a streaming resampler to the model's rate, features and the latency-controlled model
chunk by chunk (:mod:`audiomodels.streaming`), batched with every other live stream by the
server's stream batcher. Each model chunk yields an interim result covering the utterance up to
its last frame; nothing is ever recomputed, and the silence between utterances costs no model
compute. The utterance's search (greedy, or beam search with the LM and phrase hints) also
advances chunk by chunk, so an interim is its leading hypothesis so far, with the part every
hypothesis still in the search begins with marked stable (no later result changes it). At the cut the
utterance's last frames run without waiting for look-ahead, the search takes them, and the final
is its result, aligned for word and label times. A final is therefore the offline chunked
transcript of exactly its own samples: it depends neither on how the client chunked its bytes
nor on what the stream held before the utterance (a model state carried through seconds of
silence costs accuracy; models/HISTORY.md).

With ``full_context_finals`` the utterance's samples are kept and its final is instead what
Recognize makes of them: the full-context model over the whole utterance, and the server's phone
check with beam search. That costs the final a whole-utterance decode at the cut (README,
Full-context finals); without interims the chunked model never runs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import torch

from audiomodels.audio import AudioError, decode_raw
from audiomodels.config import Chunking
from audiomodels.context import PhraseBias
from audiomodels.media import MediaError, OpusPackets
from audiomodels.mp4_stream import Mp4AudioStream
from audiomodels.ogg_stream import OggOpusStream
from audiomodels.raw_samples import RawSampleReader
from audiomodels.recognizer import Recognizer, Transcript
from audiomodels.resampling import StreamingResampler
from audiomodels.silence import (
    BLOCK_S,
    LEADING_SILENCE_S,
    OPENING_S,
    SILENCE_DBFS,
    SPEECH_ABOVE_NOISE_DB,
    SPEECH_BAND_HZ,
    SPEECH_HOLD_DB,
    SpeechDetector,
)
from audiomodels.streaming import ChunkedStream, ChunkInput, step_streams
from audiomodels.webm_stream import WebmOpusStream
from service.limits import IdleTimeout, LimitExceeded, RequestError, ShuttingDown

MIN_UTTERANCE_S = 0.1  # shorter tails are not worth (and too short for) recognition

Request = TypeVar("Request")
Runner = Callable[[Callable[[], Any]], Awaitable[Any]]  # runs work off the event loop
Stepper = Callable[[ChunkInput], Awaitable[tuple[torch.Tensor, torch.Tensor]]]  # -> (log_probs, state)
# A whole utterance's model-rate samples -> its transcript, decoded as the stream's settings ask
# (beam size, alternatives, hints) and as Recognize decodes it: full_context_finals
UtteranceRecognizer = Callable[[np.ndarray], Awaitable[Transcript]]


@dataclass(frozen=True)
class StreamSettings:
    """How one stream is cut and recognized (filled from the client's config within server limits)."""

    # "pcm16" or "float32" (headerless little-endian mono), "opus" (a packet per message), "webm" or
    # "ogg" (a WebM or Ogg byte stream with Opus audio, in any pieces), or "mp4" (a fragmented or
    # faststart MP4 byte stream with AAC or Opus audio)
    encoding: str
    # Hz of the incoming samples (for the Opus ones: the decoder's, OPUS_RATE; for MP4: the rate the
    # client stated, or OPUS_RATE, which the stream's audio is resampled to if its own differs)
    sample_rate: int
    stated_rate: bool = True  # False: an MP4 stream's sample_rate is the default, not the client's
    interim_results: bool = False
    beam_size: int = 1  # interims show the search's leading hypothesis, finals its result
    alternatives: int = 1  # hypotheses per final (at most beam_size)
    bias: PhraseBias | None = None  # phrase hints for the beam search
    endpoint_silence_s: float = 0.8  # this much silence after speech ends an utterance
    # Kept before the first speech block (audiomodels/silence.py); as the Recognizer's, so that a final
    # is the offline transcript of its span.
    leading_silence_s: float = LEADING_SILENCE_S
    max_utterance_s: float = 30.0
    max_stream_s: float = 3600.0
    silence_dbfs: float = SILENCE_DBFS  # block RMS at or below this level counts as silence
    above_noise_db: float = SPEECH_ABOVE_NOISE_DB  # and speech stands this far above the noise floor
    speech_hold_db: float = SPEECH_HOLD_DB  # inside an utterance silence_dbfs is this much lower
    speech_band_hz: tuple[float, float] | None = SPEECH_BAND_HZ  # where levels are measured (None: all)
    latency_s: float = 0.0  # chunk + look-ahead of the model; 0 = the model's own streaming chunking
    full_context_finals: bool = False  # finals decoded again from the whole utterance by the full-context model


class SampleDecoder:
    """Stream messages -> float32 samples: raw bytes in any pieces (a partial sample waits for the
    next piece), one Opus packet per message (:class:`audiomodels.media.OpusPackets`), or a WebM,
    Ogg or MP4 stream's bytes in any pieces (:class:`audiomodels.webm_stream.WebmOpusStream`,
    :class:`audiomodels.ogg_stream.OggOpusStream`, :class:`audiomodels.mp4_stream.Mp4AudioStream`)."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self._raw: RawSampleReader | None = None
        self._container: WebmOpusStream | OggOpusStream | Mp4AudioStream | None = None
        if settings.encoding == "opus":
            self._decode: Callable[[bytes], np.ndarray] = OpusPackets().decode
        elif settings.encoding in ("webm", "ogg", "mp4"):
            if settings.encoding == "mp4":
                self._container = Mp4AudioStream(settings.sample_rate, required=settings.stated_rate)
            else:
                self._container = WebmOpusStream() if settings.encoding == "webm" else OggOpusStream()
            self._decode = self._container.push
        else:
            decode_raw(b"", settings.encoding, settings.sample_rate)  # validates encoding and rate now
            self._raw = RawSampleReader(settings.encoding)
            self._decode = self._raw.push
        self._max_samples = round(settings.max_stream_s * settings.sample_rate)
        self.num_samples = 0

    def decode(self, data: bytes) -> np.ndarray:
        with _as_audio_error():
            return self._counted(self._decode(data))

    def finish(self) -> np.ndarray:
        """The samples a container held back to the end (an MP4 stream's resampler tail)."""
        if self._raw is not None and self._raw.remainder:
            raise AudioError(
                f"stream ended inside a sample: {len(self._raw.remainder)} trailing byte(s) of a "
                f"{self._raw.bytes_per_sample}-byte {self.settings.encoding} sample"
            )
        if self._container is None:
            return np.zeros(0, np.float32)
        with _as_audio_error():
            return self._counted(self._container.finish())

    def _counted(self, samples: np.ndarray) -> np.ndarray:
        if not np.isfinite(samples).all():
            raise AudioError("audio contains NaN or Inf samples")
        self.num_samples += len(samples)
        if self.num_samples > self._max_samples:
            raise LimitExceeded(f"stream is longer than the server's {self.settings.max_stream_s:g} s limit")
        return samples


@contextmanager
def _as_audio_error() -> Iterator[None]:
    """Compressed-audio errors reach the client as bad audio (INVALID_ARGUMENT), as raw ones do."""
    try:
        yield
    except MediaError as error:
        raise AudioError(str(error)) from error


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
    been heard, so silence between utterances belongs to none of them. A stream that opens with a
    block above the offline threshold keeps its start (as far as ``max_utterance_s`` allows) for
    up to ``OPENING_S`` while that block cannot yet be told from noise (:class:`SpeechDetector`):
    a talker who was already speaking when the stream opened loses nothing, and a noisy room costs
    the first utterance some leading noise rather than an utterance of its own.
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
        self._is_speech = SpeechDetector(
            rate,
            settings.silence_dbfs,
            settings.above_noise_db,
            band_hz=settings.speech_band_hz,
            hold_db=settings.speech_hold_db,
        )
        self._opening_end = round(OPENING_S * rate)
        self._opening_keep = max(self._leading, self._max_utterance - block)  # an utterance still fits
        self._opening = True  # the stream's start is kept: its first block may prove to be speech

    def on_block(self, block: np.ndarray) -> Cut | None:
        """One full block; returns the utterance it ended, if any."""
        self._advance(block)
        if not self.has_speech:
            keep = self._opening_keep if self._opening else self._leading
            self.utterance_start = max(self.utterance_start, self.position - keep)
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
        self.has_speech |= self._opening  # sound above the offline threshold, never told from noise
        length = self.position - self.utterance_start
        if self.has_speech and length >= MIN_UTTERANCE_S * self.settings.sample_rate:
            return Cut(self.utterance_start, self.position)
        return None

    def _advance(self, samples: np.ndarray) -> None:
        speech = self._is_speech(samples, in_utterance=self.has_speech)
        self.position += len(samples)
        if self._opening:
            first_was_speech = self._is_speech.first_block_was_speech()
            speech |= first_was_speech is True
            self._opening = first_was_speech is None and not speech and self.position < self._opening_end
        self.has_speech |= speech
        self._silence_run = 0 if speech else self._silence_run + 1


@dataclass(frozen=True)
class StreamResult:
    """A recognized utterance; the transcript's times are relative to ``start_s``."""

    transcript: Transcript
    start_s: float  # seconds from the start of the stream
    end_s: float  # interims: the end of the audio the model has labelled so far
    is_final: bool
    # The start of the transcript's text that no later result of this utterance changes (finals: all of it).
    stable_text: str


def stream_chunking(recognizer: Recognizer, latency_s: float) -> Chunking:
    """The model's own streaming chunking, or the one a client's latency asks for (``RequestError`` if too small)."""
    if not latency_s:
        return recognizer.config.model.streaming
    try:
        return Chunking.for_latency(latency_s, recognizer.config.features.frame_shift_s)
    except ValueError as error:
        raise RequestError(f"stream_latency_ms: {error}") from None


class UtteranceModel:
    """One utterance's model computation, fed from its first sample: resampler, chunked model state,
    the log-probs emitted so far and the search over them.

    Each utterance starts from a fresh state, so its log-probs are exactly the offline chunked
    computation of its own samples, whatever the stream held before it. That includes the level
    gain (:meth:`Recognizer.level_gain`): the first :meth:`Recognizer.level_window_s` of model-rate
    samples wait until it is known, then everything is scaled by it.

    With ``full_context_finals`` it also keeps the utterance's model-rate samples (:attr:`audio`)
    for the final's whole-utterance decode, and runs the chunked model only for interims.
    """

    def __init__(self, recognizer: Recognizer, settings: StreamSettings, chunking: Chunking, start_sample: int) -> None:
        self.start_sample = start_sample  # input samples from the stream start
        rate, model_rate = settings.sample_rate, recognizer.sample_rate
        self._resampler = StreamingResampler(rate, model_rate) if rate != model_rate else None
        self.stream = ChunkedStream(recognizer.featurizer, chunking)
        self.log_probs: list[torch.Tensor] = []
        self.search = recognizer.search(settings.beam_size, settings.alternatives, settings.bias, chunking)
        self._recognizer, self._chunking = recognizer, chunking
        self._level_window = round(recognizer.level_window_s(chunking) * model_rate)
        self._gain: np.float32 | None = None
        self._held: list[np.ndarray] = []  # model-rate samples before the gain is known
        self.audio: list[np.ndarray] | None = [] if settings.full_context_finals else None
        self._chunked = settings.interim_results or not settings.full_context_finals

    def accept(self, block: np.ndarray) -> None:
        self._take(self._resampler.accept(block) if self._resampler else block)

    def end(self) -> None:
        """The utterance is over: its last frames are computed without waiting for look-ahead."""
        if self._resampler is not None:
            self._take(self._resampler.finish())
        if not self._chunked:
            return
        if self._gain is None:
            self._release()
        self.stream.end()

    def _take(self, samples: np.ndarray) -> None:
        if self.audio is not None:
            self.audio.append(samples)
        if self._chunked:
            self._feed(samples)

    def _feed(self, samples: np.ndarray) -> None:
        if self._gain is not None:
            self.stream.accept(samples * self._gain)
            return
        self._held.append(samples)
        if sum(len(held) for held in self._held) >= self._level_window:
            self._release()

    def _release(self) -> None:
        held = np.concatenate(self._held) if self._held else np.zeros(0, np.float32)
        self._gain = np.float32(self._recognizer.level_gain(held, self._chunking))
        self._held = []
        self.stream.accept(held * self._gain)

    def emissions(self, num_labels: int) -> torch.Tensor:
        self.log_probs = [torch.cat(self.log_probs) if self.log_probs else torch.zeros(0, num_labels)]
        return self.log_probs[0]


class StreamingSession:
    """One stream: decoder, endpointer and the model computation of the utterance in progress.

    Audio waits in a look-back of ``leading_silence_s`` while the endpointer hears no speech; when
    speech starts, a fresh :class:`UtteranceModel` takes the look-back and every block after it up
    to the endpointer's cut, so silence between utterances costs no model compute. ``step`` runs
    one model chunk (the server batches it with other streams' chunks), ``run`` executes
    decoding work off the event loop and ``recognize`` decodes a whole utterance for
    ``full_context_finals`` (the server batches it with Recognize calls).
    """

    def __init__(
        self,
        recognizer: Recognizer,
        settings: StreamSettings,
        step: Stepper,
        run: Runner,
        recognize: UtteranceRecognizer,
    ) -> None:
        self.recognizer = recognizer
        self.settings = settings
        self.decoder = SampleDecoder(settings)
        block = max(1, round(BLOCK_S * settings.sample_rate))
        self._blocks = BlockSplitter(block)
        self.endpointer = Endpointer(settings, block)
        self._chunking = stream_chunking(recognizer, settings.latency_s)
        self._frame_shift_s = recognizer.config.features.frame_shift_s
        self._step = step
        self._run = run
        self._recognize = recognize
        self._look_back: deque[tuple[int, np.ndarray]] = deque()  # (first sample, block) while no speech
        self._current: UtteranceModel | None = None
        self._ended: deque[tuple[UtteranceModel, Cut]] = deque()  # cut utterances whose final is not sent yet
        self.model_frames = 0  # frames the model computed for this stream (silence between utterances is skipped)

    @property
    def audio_s(self) -> float:
        """Audio received so far."""
        return self.decoder.num_samples / self.settings.sample_rate

    async def accept(self, data: bytes) -> list[StreamResult]:
        self._receive(self.decoder.decode(data))
        return await self._advance()

    async def finish(self) -> list[StreamResult]:
        self._receive(self.decoder.finish())
        tail = self._blocks.finish()
        first = self.endpointer.position
        last = self.endpointer.finish(tail)
        if last is not None:
            self._route(tail, first, last)
        self._current = None  # speech too short to be an utterance
        return await self._advance()

    def _receive(self, samples: np.ndarray) -> None:
        """Cut the stream's samples into blocks; endpoint them and route them to utterances."""
        for block in self._blocks.push(samples):
            first = self.endpointer.position
            self._route(block, first, self.endpointer.on_block(block))

    def _route(self, block: np.ndarray, first: int, cut: Cut | None) -> None:
        """Send a block to the utterance in progress, or keep it in the look-back until speech starts."""
        if self._current is None:
            self._look_back.append((first, block))
            start = cut.start_sample if cut is not None else self.endpointer.utterance_start
            while self._look_back and self._look_back[0][0] < start:
                self._look_back.popleft()
            if cut is None and not self.endpointer.has_speech:
                return
            self._current = UtteranceModel(self.recognizer, self.settings, self._chunking, start)
            while self._look_back:
                self._current.accept(self._look_back.popleft()[1])
        else:
            self._current.accept(block)
        if cut is not None:
            self._current.end()
            self._ended.append((self._current, cut))
            self._current = None

    async def _advance(self) -> list[StreamResult]:
        """Run every ready chunk; send the finals of ended utterances, then one interim."""
        results = []
        while self._ended:
            utterance, cut = self._ended.popleft()
            if utterance.audio is None:  # a full-context final needs none of the chunked model's last frames
                await self._run_ready(utterance)
            results.append(await self._final(utterance, cut))
        if self._current is not None and await self._run_ready(self._current) and self.settings.interim_results:
            results.append(self._interim(self._current))
        return results

    async def _run_ready(self, utterance: UtteranceModel) -> bool:
        """Step the utterance's ready chunks in order and search their frames; True if there were any."""
        emitted = []
        while (chunk := utterance.stream.ready()) is not None:
            log_probs, state = await self._step(chunk)
            utterance.stream.advance(chunk, state)
            emitted.append(log_probs)
            self.model_frames += len(log_probs)
        if not emitted:
            return False
        utterance.log_probs += emitted
        frames = torch.cat(emitted)
        if self.settings.beam_size > 1:  # milliseconds of Python per chunk: off the event loop
            await self._run(partial(utterance.search.advance, frames))
        else:
            utterance.search.advance(frames)
        return True

    async def _final(self, utterance: UtteranceModel, cut: Cut) -> StreamResult:
        start_s = cut.start_sample / self.settings.sample_rate
        duration_s = cut.end_sample / self.settings.sample_rate - start_s
        if utterance.audio is not None:
            transcript = await self._recognize(np.concatenate(utterance.audio))
            return StreamResult(transcript, start_s, start_s + duration_s, is_final=True, stable_text=transcript.text)
        log_probs = utterance.emissions(len(self.recognizer.labels))
        hypotheses = utterance.search.hypotheses(self.settings.alternatives)
        transcript = await self._run(
            partial(self.recognizer.transcript, log_probs, hypotheses, duration_s, beam_size=self.settings.beam_size)
        )
        return StreamResult(transcript, start_s, start_s + duration_s, is_final=True, stable_text=transcript.text)

    def _interim(self, utterance: UtteranceModel) -> StreamResult:
        """The search's leading hypothesis for the utterance in progress, up to its last emitted frame,
        and the part of it the search has settled."""
        labels, search = self.recognizer.labels, utterance.search
        text = labels.decode(search.best())
        shift = self._frame_shift_s
        duration_s = round(utterance.stream.frames_emitted * shift, 3)
        transcript = Transcript(text, (), (), (), duration_s, shift)
        start_s = utterance.start_sample / self.settings.sample_rate
        stable_text = labels.decode(search.stable())
        return StreamResult(transcript, start_s, start_s + duration_s, is_final=False, stable_text=stable_text)


def direct_session(recognizer: Recognizer, settings: StreamSettings) -> StreamingSession:
    """A session that does its model and decoding work in the calling thread, without a server (no
    batching, no executor): for tests and offline benchmarks (:func:`run_stream`)."""

    async def direct(call: Callable[[], Transcript]) -> Transcript:
        return call()

    async def step(chunk: ChunkInput) -> tuple[torch.Tensor, torch.Tensor]:
        ((log_probs, state),) = step_streams(recognizer.model, [chunk], recognizer.warp_matrices)
        return log_probs, state

    async def recognize(samples: np.ndarray) -> Transcript:
        decoding = {"beam_size": settings.beam_size, "alternatives": settings.alternatives, "bias": settings.bias}
        return recognizer.transcribe(samples, recognizer.sample_rate, **decoding)

    return StreamingSession(recognizer, settings, step, direct, recognize)


def run_stream(
    recognizer: Recognizer, settings: StreamSettings, pieces: Iterable[bytes]
) -> tuple[list[StreamResult], StreamingSession]:
    """A whole stream through a :func:`direct_session`: the results a client would get; (results, finished session)."""

    async def run() -> tuple[list[StreamResult], StreamingSession]:
        session = direct_session(recognizer, settings)
        return [r for piece in pieces for r in await session.accept(piece)] + await session.finish(), session

    return asyncio.run(run())


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
