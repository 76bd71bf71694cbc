"""Micro-batching of concurrent Recognize requests: one padded model call instead of many small ones.

Requests for the same model that arrive within ``wait_s`` of the first one share one model call
(``Recognizer.decodable_batch``), up to ``max_items`` requests and ``max_audio_s`` of padded
audio (requests x longest); each is then decoded with its own options (beam size, alternatives,
phrase hints), so clients that decode differently still share the model. Requests come in
already decoded and prepared, so bad audio fails its own request before it joins a batch; only a
fault in the batch's work fails the whole batch. The model packs its padded input, so a
transcript does not depend on its batch-mates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import numpy as np

from audiomodels.context import PhraseBias
from audiomodels.recognizer import Recognizer, Transcript
from service.registry import ModelEntry

T = TypeVar("T")
TimedRunner = Callable[[Callable[[], T]], Awaitable[tuple[T, float]]]  # runs work off the loop, returns (result, s)


@dataclass(frozen=True)
class BatchSettings:
    """How long the first request of a batch waits for company, and how big a batch may grow."""

    wait_s: float = 0.005
    max_items: int = 8  # 1 turns batching off
    max_audio_s: float = 120.0  # padded: requests x the longest one


class Decoding(NamedTuple):
    """How one request's model output is decoded (:meth:`Recognizer.decode`'s options)."""

    beam_size: int = 1
    alternatives: int = 1
    bias: PhraseBias | None = None


class Batched(NamedTuple):
    transcript: Transcript
    compute_s: float  # this request's share of the batch's work, by audio length


class _Request(NamedTuple):
    waveform: np.ndarray
    decoding: Decoding
    future: asyncio.Future[Batched]


@dataclass
class _Batch:
    model: str
    recognizer: Recognizer
    timer: asyncio.TimerHandle
    requests: list[_Request] = field(default_factory=list)

    def padded_samples_with(self, waveform: np.ndarray) -> int:
        return (len(self.requests) + 1) * max(len(w) for w in [*(r.waveform for r in self.requests), waveform])


class Batcher:
    """Collects requests per model and runs each batch with ``run`` (the model executor).

    ``on_batch(model, size)`` is told the size of every model call (the batch-size metric).
    """

    def __init__(self, run: TimedRunner, settings: BatchSettings, on_batch: Callable[[str, int], None]) -> None:
        self._run = run
        self._settings = settings
        self._on_batch = on_batch
        self._pending: dict[str, _Batch] = {}
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    async def transcribe(self, entry: ModelEntry, waveform: np.ndarray, decoding: Decoding = Decoding()) -> Batched:
        """Recognize one waveform that ``entry.recognizer.prepare`` returned (validated, at the model's rate)."""
        key = entry.name
        batch = self._pending.get(key)
        budget = self._settings.max_audio_s * entry.recognizer.sample_rate
        if batch is not None and batch.padded_samples_with(waveform) > budget:
            self._flush(key)
            batch = None
        loop = asyncio.get_running_loop()
        if batch is None:
            timer = loop.call_later(self._settings.wait_s, self._flush, key)
            batch = self._pending[key] = _Batch(entry.name, entry.recognizer, timer)
        future: asyncio.Future[Batched] = loop.create_future()
        batch.requests.append(_Request(waveform, decoding, future))
        if len(batch.requests) >= self._settings.max_items:
            self._flush(key)
        return await future

    def _flush(self, key: str) -> None:
        batch = self._pending.pop(key)
        batch.timer.cancel()
        task = asyncio.create_task(self._compute(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _compute(self, batch: _Batch) -> None:
        waiting = [r for r in batch.requests if not r.future.done()]  # not cancelled meanwhile
        if not waiting:
            return
        self._on_batch(batch.model, len(waiting))
        recognizer, rate = batch.recognizer, batch.recognizer.sample_rate

        def work() -> list[Transcript]:
            searched = any(r.decoding.beam_size > 1 for r in waiting)  # only beams take a phone check
            audio = [(r.waveform, rate) for r in waiting]
            outputs = recognizer.decodable_batch(audio, self._settings.max_audio_s, check=searched)
            return [recognizer.decode(*output, **r.decoding._asdict()) for output, r in zip(outputs, waiting, strict=True)]

        try:
            transcripts, seconds = await self._run(work)
            total = sum(len(r.waveform) for r in waiting)
            for request, transcript in zip(waiting, transcripts):
                if not request.future.done():
                    request.future.set_result(Batched(transcript, seconds * len(request.waveform) / total))
        except Exception as error:
            for request in waiting:
                if not request.future.done():
                    request.future.set_exception(error)
        finally:  # cancelled itself (executor shut down): nobody may wait forever
            for request in waiting:
                if not request.future.done():
                    request.future.cancel()
