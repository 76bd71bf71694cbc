"""Micro-batching of concurrent Recognize requests: one padded model call instead of many small ones.

Requests for the same model and beam size that arrive within ``wait_s`` of the first one run as
one ``Recognizer.transcribe_batch`` call, up to ``max_items`` requests and ``max_audio_s`` of
padded audio (requests x longest). Requests come in already decoded and prepared, so bad audio
fails its own request before it joins a batch; only a fault in the model call itself fails the
whole batch. The model packs its padded input, so a transcript does not depend on its batch-mates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
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


_Key = tuple[str, int, int, PhraseBias | None]  # model, beam size, alternatives, phrase hints


class Batched(NamedTuple):
    transcript: Transcript
    compute_s: float  # this request's share of the model call, by audio length


@dataclass
class _Batch:
    model: str
    recognizer: Recognizer
    beam_size: int
    alternatives: int
    bias: PhraseBias | None
    timer: asyncio.TimerHandle
    waveforms: list[np.ndarray] = field(default_factory=list)
    futures: list[asyncio.Future[Batched]] = field(default_factory=list)

    def padded_samples_with(self, waveform: np.ndarray) -> int:
        return (len(self.waveforms) + 1) * max(len(w) for w in [*self.waveforms, waveform])


class Batcher:
    """Collects requests per (model, beam size, alternatives, phrase hints) and runs each batch with ``run`` (the model executor).

    ``on_batch(model, size)`` is told the size of every model call (the batch-size metric).
    """

    def __init__(self, run: TimedRunner, settings: BatchSettings, on_batch: Callable[[str, int], None]) -> None:
        self._run = run
        self._settings = settings
        self._on_batch = on_batch
        self._pending: dict[_Key, _Batch] = {}
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    async def transcribe(
        self,
        entry: ModelEntry,
        waveform: np.ndarray,
        beam_size: int,
        alternatives: int = 1,
        bias: PhraseBias | None = None,
    ) -> Batched:
        """Recognize one waveform that ``entry.recognizer.prepare`` returned (validated, at the model's rate)."""
        key = (entry.name, beam_size, alternatives, bias)
        batch = self._pending.get(key)
        budget = self._settings.max_audio_s * entry.recognizer.sample_rate
        if batch is not None and batch.padded_samples_with(waveform) > budget:
            self._flush(key)
            batch = None
        loop = asyncio.get_running_loop()
        if batch is None:
            timer = loop.call_later(self._settings.wait_s, self._flush, key)
            batch = self._pending[key] = _Batch(entry.name, entry.recognizer, beam_size, alternatives, bias, timer)
        future: asyncio.Future[Batched] = loop.create_future()
        batch.waveforms.append(waveform)
        batch.futures.append(future)
        if len(batch.futures) >= self._settings.max_items:
            self._flush(key)
        return await future

    def _flush(self, key: _Key) -> None:
        batch = self._pending.pop(key)
        batch.timer.cancel()
        task = asyncio.create_task(self._compute(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _compute(self, batch: _Batch) -> None:
        waiting = [(w, f) for w, f in zip(batch.waveforms, batch.futures) if not f.done()]  # not cancelled meanwhile
        if not waiting:
            return
        self._on_batch(batch.model, len(waiting))
        rate = batch.recognizer.sample_rate
        work = partial(
            batch.recognizer.transcribe_batch,
            [(waveform, rate) for waveform, _ in waiting],
            beam_size=batch.beam_size,
            alternatives=batch.alternatives,
            bias=batch.bias,
            max_batch_seconds=self._settings.max_audio_s,
        )
        try:
            transcripts, seconds = await self._run(work)
            total = sum(len(waveform) for waveform, _ in waiting)
            for (waveform, future), transcript in zip(waiting, transcripts):
                if not future.done():
                    future.set_result(Batched(transcript, seconds * len(waveform) / total))
        except Exception as error:
            for _, future in waiting:
                if not future.done():
                    future.set_exception(error)
        finally:  # cancelled itself (executor shut down): nobody may wait forever
            for _, future in waiting:
                if not future.done():
                    future.cancel()
