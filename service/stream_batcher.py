"""Dynamic batching of live streams: one model call per tick for the ready chunks of all streams.

Each stream has at most one chunk in flight (its next chunk needs the state this one produces).
Per model and chunking (streams may ask for their own latency), a single worker loop takes up to ``max_streams`` queued chunks -- waiting at most
``wait_s`` for more after the first arrives -- and runs them as one padded
``audiomodels.streaming.step_streams`` call on the model executor; the carried GRU states are
gathered into the batch and scattered back. While a call runs, new chunks queue up, so the batch
grows by itself when the model is busy: that is where the throughput comes from.

Back-pressure: :meth:`StreamBatcher.overloaded` reports when the oldest queued chunk has waited
longer than ``max_lag_s``; the server then refuses new streams (RESOURCE_EXHAUSTED) instead of
letting every open stream fall further behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import torch

from audiomodels.config import Chunking
from audiomodels.streaming import ChunkInput, step_streams
from service.batcher import TimedRunner
from service.registry import ModelEntry


@dataclass(frozen=True)
class StreamBatchSettings:
    """Batch shape of streaming model calls; ``max_streams`` 1 turns batching off."""

    max_streams: int = 128  # chunks per model call
    wait_s: float = 0.005  # how long the first queued chunk waits for company
    max_lag_s: float = 0.5  # queueing delay beyond which new streams are refused


_Key = tuple[str, Chunking]  # (model name, chunking): the chunks one model call can take together


class StepResult(NamedTuple):
    log_probs: torch.Tensor  # (m, V) for the chunk's main frames
    state: torch.Tensor  # (num_layers, H) forward states to carry to the stream's next chunk
    compute_s: float  # this chunk's share of the model call


@dataclass
class _Queued:
    chunk: ChunkInput
    future: asyncio.Future[StepResult]
    queued_at: float = field(default_factory=time.monotonic)


class StreamBatcher:
    """Queues chunks per model and steps them in batches; ``on_batch(model, size)`` sees every call."""

    def __init__(self, run: TimedRunner, settings: StreamBatchSettings, on_batch: Callable[[str, int], None]) -> None:
        self._run = run
        self._settings = settings
        self._on_batch = on_batch
        self._queues: dict[_Key, list[_Queued]] = {}
        self._wakeups: dict[_Key, asyncio.Event] = {}
        self._workers: dict[_Key, asyncio.Task[None]] = {}

    async def step(self, entry: ModelEntry, chunk: ChunkInput) -> StepResult:
        """Compute one chunk of one stream: its log-probs (m, V), the state to carry, its compute share."""
        key = (entry.name, chunk.chunking)
        if key not in self._workers:
            self._queues[key] = []
            self._wakeups[key] = asyncio.Event()
            self._workers[key] = asyncio.create_task(self._work(entry, key))
        future: asyncio.Future[StepResult] = asyncio.get_running_loop().create_future()
        self._queues[key].append(_Queued(chunk, future))
        self._wakeups[key].set()
        return await future

    def overloaded(self) -> bool:
        """True while any model's oldest queued chunk has waited longer than ``max_lag_s``."""
        now = time.monotonic()
        return any(queue and now - queue[0].queued_at > self._settings.max_lag_s for queue in self._queues.values())

    async def close(self) -> None:
        for worker in self._workers.values():
            worker.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _work(self, entry: ModelEntry, key: _Key) -> None:
        queue, wakeup, settings = self._queues[key], self._wakeups[key], self._settings
        while True:
            await wakeup.wait()
            wakeup.clear()
            if len(queue) < settings.max_streams and settings.wait_s > 0:
                await asyncio.sleep(settings.wait_s)
            while queue:
                batch = [q for q in queue[: settings.max_streams] if not q.future.done()]  # skip cancelled streams
                del queue[: settings.max_streams]
                if batch:
                    await self._compute(entry, batch)

    async def _compute(self, entry: ModelEntry, batch: list[_Queued]) -> None:
        self._on_batch(entry.name, len(batch))
        try:
            chunks, warps = [q.chunk for q in batch], entry.recognizer.warp_matrices
            outputs, seconds = await self._run(partial(step_streams, entry.recognizer.model, chunks, warps))
        except Exception as error:  # a fault in the model call fails the streams in it, not the worker
            for queued in batch:
                if not queued.future.done():
                    queued.future.set_exception(error)
            return
        for queued, (log_probs, state) in zip(batch, outputs):
            if not queued.future.done():
                queued.future.set_result(StepResult(log_probs, state, seconds / len(batch)))
