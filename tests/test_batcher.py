"""Batching of concurrent Recognize calls: the Batcher with a fake model, then through the real server.

The fake shows how requests are grouped (wait, item cap, padded-audio budget, decoding) and how
failures and cancellations are confined; the server test shows that batched transcripts equal
the offline ones and that a bad request among good ones fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import pytest

from audiomodels.recognizer import Recognizer, Transcript
from service import mapping
from service.batcher import Batched, Batcher, BatchSettings
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.gen.speechlabel.v1 import speech_pb2_grpc as pb_grpc
from service.limits import Limits
from service.registry import ModelEntry, ModelRegistry
from tests.grpc_harness import LoopbackServer

T = TypeVar("T")
RATE = 100  # the fake model's rate: a waveform of n samples is n/100 s


class FakeRecognizer:
    """Records each model call's item lengths; fails a call that holds a negative first sample."""

    sample_rate = RATE

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], int, int]] = []  # (item lengths, beam size, alternatives)

    def transcribe_batch(
        self, items: list[tuple[np.ndarray, int]], *, beam_size: int, alternatives: int, bias: object, max_batch_seconds: float
    ) -> list[Transcript]:
        self.calls.append(([len(w) for w, _ in items], beam_size, alternatives))
        if any(w[0] < 0 for w, _ in items):
            raise RuntimeError("model fault")
        return [Transcript(f"{len(w)}", (), (), (), len(w) / RATE, 0.01) for w, _ in items]


async def one_second_run(work: Callable[[], T]) -> tuple[T, float]:
    return work(), 1.0  # every model call "takes" one second


def run_batcher(
    settings: BatchSettings, requests: list[tuple[int, int]] | list[tuple[int, int, int]]
) -> tuple[FakeRecognizer, list, list[int]]:
    """Submit (length, beam size[, alternatives]) requests at once (a negative length: a waveform the
    model fails on); return the fake, each request's outcome and the batch sizes."""
    fake = FakeRecognizer()
    entry = ModelEntry("fake", fake, size_bytes=0)  # type: ignore[arg-type]
    sizes: list[int] = []

    async def main() -> list:
        batcher = Batcher(one_second_run, settings, lambda model, size: sizes.append(size))
        calls = [batcher.transcribe(entry, np.full(abs(n), np.sign(n)), *decoding) for n, *decoding in requests]
        return await asyncio.gather(*calls, return_exceptions=True)

    return fake, asyncio.run(main()), sizes


def test_concurrent_requests_share_one_call_and_split_its_compute_by_length() -> None:
    fake, outcomes, sizes = run_batcher(BatchSettings(wait_s=0.01), [(100, 1), (300, 1), (200, 1)])
    assert fake.calls == [([100, 300, 200], 1, 1)] and sizes == [3]
    assert [o.transcript.text for o in outcomes] == ["100", "300", "200"]
    assert [o.compute_s for o in outcomes] == pytest.approx([1 / 6, 3 / 6, 2 / 6])


def test_batches_respect_the_item_cap_the_audio_budget_and_the_decoding() -> None:
    fake, _, sizes = run_batcher(BatchSettings(wait_s=0.01, max_items=2), [(10, 1)] * 5)
    assert sizes == [2, 2, 1]
    # budget 5 s padded: 2 x 2 s fits, a third 2 s item (3 x 2 s) starts a new batch
    fake, _, _ = run_batcher(BatchSettings(wait_s=0.01, max_audio_s=5.0), [(200, 1)] * 3)
    assert [lengths for lengths, *_ in fake.calls] == [[200, 200], [200]]
    fake, _, _ = run_batcher(BatchSettings(wait_s=0.01), [(10, 1), (10, 4), (10, 1), (10, 4, 3), (10, 4, 1)])
    assert fake.calls == [([10, 10], 1, 1), ([10, 10], 4, 1), ([10], 4, 3)]


def test_a_model_fault_fails_its_batch_only() -> None:
    settings = BatchSettings(wait_s=0.01, max_items=2)
    fake, outcomes, _ = run_batcher(settings, [(-10, 1), (10, 1), (10, 1)])
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError, Batched]
    assert len(fake.calls) == 2


def test_a_cancelled_request_leaves_its_batch() -> None:
    fake = FakeRecognizer()
    entry = ModelEntry("fake", fake, size_bytes=0)  # type: ignore[arg-type]

    async def main() -> str:
        batcher = Batcher(one_second_run, BatchSettings(wait_s=0.05), lambda model, size: None)
        gone = asyncio.ensure_future(batcher.transcribe(entry, np.ones(10), 1))
        kept = asyncio.ensure_future(batcher.transcribe(entry, np.ones(20), 1))
        await asyncio.sleep(0)
        gone.cancel()
        return (await kept).transcript.text

    assert asyncio.run(main()) == "20" and fake.calls == [([20], 1, 1)]


# --------------------------------------------------------------------------- through the server


@pytest.fixture(scope="module")
def batching_server(model_dir: Path) -> Iterator[LoopbackServer]:
    """One inference thread and a long wait, so that concurrent calls surely meet in a batch."""
    server = LoopbackServer(ModelRegistry.load_dir(model_dir), workers=1, batching=BatchSettings(wait_s=0.5))
    yield server
    server.close()


@pytest.mark.slow
def test_concurrent_recognize_calls_are_batched_and_equal_offline_ones(
    batching_server: LoopbackServer, model_dir: Path, speech_files: dict[str, Path]
) -> None:
    recognizer = Recognizer.from_checkpoint(model_dir / "tiny.ckpt")
    wav = pb.RecognitionConfig(encoding=pb.WAV, word_time_offsets=True, frame_labels=True)
    good = [(pb.RecognizeRequest(config=wav, audio=path.read_bytes()), path) for path in speech_files.values()]
    beam = pb.RecognitionConfig(encoding=pb.WAV, beam_size=4)
    good.append((pb.RecognizeRequest(config=beam, audio=speech_files["hello world"].read_bytes()), good[0][1]))
    nan_config = pb.RecognitionConfig(encoding=pb.FLOAT32, sample_rate_hz=16000)
    nan = pb.RecognizeRequest(config=nan_config, audio=np.full(8000, np.nan, "<f4").tobytes())
    with grpc.insecure_channel(batching_server.address) as channel:
        stub = pb_grpc.SpeechLabelerStub(channel)
        bad = stub.Recognize.future(nan)
        calls = [stub.Recognize.future(request) for request, _ in good]
        responses = [call.result(timeout=30) for call in calls]
        with pytest.raises(grpc.RpcError) as caught:
            bad.result(timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in caught.value.details()
    for (request, path), response in zip(good, responses):
        samples, rate = mapping.request_waveform(request.config, path.read_bytes(), Limits())
        expected = recognizer.transcribe(samples, rate, beam_size=max(1, request.config.beam_size))
        assert response == mapping.recognize_response(expected, request.config, "tiny"), path.name
    registry = batching_server.running.metrics.registry
    batched = registry.get_sample_value("speechlabel_batch_size_sum", {"model": "tiny"})
    batches = registry.get_sample_value("speechlabel_batch_size_count", {"model": "tiny"})
    assert batched == len(good) and batches < batched  # the NaN request never joined; some batch held several
