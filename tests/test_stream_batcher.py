"""Dynamic batching of live streams: many streams stepped together equal each stream offline,
batches form by themselves, cancelled streams drop out, and a lagging model refuses new streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import pytest
import torch

from audiomodels.config import AcousticConfig, Chunking, ModelConfig
from audiomodels.model import AcousticModel
from audiomodels.recognizer import Recognizer
from audiomodels.streaming import ChunkedStream
from service.calls import run_timed
from service.limits import LimitExceeded
from service.registry import ModelEntry
from service.sessions import StreamSlots
from service.stream_batcher import StreamBatcher, StreamBatchSettings
from tests.test_features import chirp_with_noise

T = TypeVar("T")
CHUNKING = Chunking(6, 3)


@pytest.fixture(scope="module")
def entry() -> ModelEntry:
    torch.manual_seed(2)
    config = AcousticConfig(model=ModelConfig(proj_dim=32, hidden_size=16, num_layers=2, stream_chunk=6, stream_right_context=3))
    return ModelEntry("small", Recognizer(config, AcousticModel(config.model)), size_bytes=0)


async def stream_through(batcher: StreamBatcher, entry: ModelEntry, audio, piece: int) -> torch.Tensor:
    """Feed audio in pieces at 'real time' (yielding between pieces) and collect every emitted frame."""
    stream = ChunkedStream(entry.recognizer.featurizer, CHUNKING)
    emitted = []

    async def drain() -> None:
        while (ready := stream.ready()) is not None:
            step = await batcher.step(entry, ready)
            stream.advance(ready, step.state)
            emitted.append(step.log_probs)

    for start in range(0, len(audio), piece):
        stream.accept(audio[start : start + piece])
        await drain()
        await asyncio.sleep(0.001)
    stream.end()
    await drain()
    return torch.cat(emitted)


def run_streams(entry: ModelEntry, settings: StreamBatchSettings, audios: list) -> tuple[list[torch.Tensor], list[int]]:
    sizes: list[int] = []

    async def main() -> list[torch.Tensor]:
        with ThreadPoolExecutor(1) as executor:
            batcher = StreamBatcher(partial(run_timed, executor), settings, lambda _, size: sizes.append(size))
            try:
                return await asyncio.gather(*(stream_through(batcher, entry, a, 1600) for a in audios))
            finally:
                await batcher.close()

    return asyncio.run(main()), sizes


def test_streams_batched_together_equal_each_stream_offline(entry: ModelEntry) -> None:
    audios = [chirp_with_noise(0.8 + 0.3 * i, seed=i) for i in range(6)]
    outputs, sizes = run_streams(entry, StreamBatchSettings(max_streams=16, wait_s=0.005), audios)
    offline = Recognizer(entry.recognizer.config, entry.recognizer.model, chunking=CHUNKING)
    for audio, streamed in zip(audios, outputs):
        expected, lengths = offline.emissions([audio])
        assert streamed.shape[0] == int(lengths[0])
        assert torch.allclose(streamed, expected[0, : lengths[0]], atol=1e-5)
    assert max(sizes) > 1 and sum(sizes) == sum(-(-len(o) // CHUNKING.chunk) for o in outputs)


def test_batching_off_runs_one_chunk_per_call(entry: ModelEntry) -> None:
    audios = [chirp_with_noise(0.6, seed=i) for i in range(3)]
    _, sizes = run_streams(entry, StreamBatchSettings(max_streams=1), audios)
    assert set(sizes) == {1}


def test_a_lagging_model_refuses_new_streams_but_keeps_serving_open_ones(entry: ModelEntry) -> None:
    async def slow_run(work: Callable[[], T]) -> tuple[T, float]:
        await asyncio.sleep(0.2)  # a model far slower than real time
        return work(), 0.2

    async def main() -> None:
        batcher = StreamBatcher(slow_run, StreamBatchSettings(max_streams=1, wait_s=0, max_lag_s=0.1), lambda *_: None)
        slots = StreamSlots(limit=100, overloaded=batcher.overloaded)
        with slots.hold():  # before any lag: accepted
            pass
        streams = [asyncio.create_task(stream_through(batcher, entry, chirp_with_noise(0.6, seed=i), 9600)) for i in range(3)]
        deadline = time.monotonic() + 5
        while not batcher.overloaded():
            assert time.monotonic() < deadline, "the queue never lagged"
            await asyncio.sleep(0.01)
        with pytest.raises(LimitExceeded, match="capacity"), slots.hold():
            pass
        outputs = await asyncio.gather(*streams)  # the open streams still finish
        assert all(len(o) for o in outputs)
        assert not batcher.overloaded()
        await batcher.close()

    asyncio.run(main())


def test_a_cancelled_stream_leaves_the_batch_without_harming_others(entry: ModelEntry) -> None:
    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            batcher = StreamBatcher(partial(run_timed, executor), StreamBatchSettings(wait_s=0.05), lambda *_: None)
            victim = asyncio.create_task(stream_through(batcher, entry, chirp_with_noise(1.0, seed=5), 16000))
            survivor = asyncio.create_task(stream_through(batcher, entry, chirp_with_noise(1.0, seed=6), 16000))
            await asyncio.sleep(0.01)
            victim.cancel()
            assert len(await survivor) > 0
            with pytest.raises(asyncio.CancelledError):
                await victim
            await batcher.close()

    asyncio.run(main())
