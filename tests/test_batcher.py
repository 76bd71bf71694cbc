"""Batching of concurrent Recognize calls: the Batcher with a fake model, then through the real server.

The fake shows how requests are grouped (wait, item cap, padded-audio budget; any decoding) and how
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
from service.batcher import Batched, Batcher, BatchSettings, Decoding
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.gen.speechlabel.v1 import speech_pb2_grpc as pb_grpc
from service.limits import Limits
from service.registry import ModelEntry, ModelRegistry
from tests.grpc_harness import LoopbackServer

T = TypeVar("T")
RATE = 100  # the fake model's rate: a waveform of n samples is n/100 s


class FakeRecognizer:
    """Records each model call's item lengths and each decoding; fails a call that holds a negative first sample.

    Its "log-probs" are the waveform itself and a transcript is the item's length plus the
    decoding it got, so a test sees which request got which."""

    sample_rate = RATE

    def __init__(self) -> None:
        self.calls: list[list[int]] = []  # item lengths per model call
        self.checks: list[bool] = []  # per model call: whether it asked for a check's model pass (phone or char)

    def decodable_batch(
        self, items: list[tuple[np.ndarray, int]], max_batch_seconds: float, check: bool
    ) -> list[tuple]:
        self.calls.append([len(w) for w, _ in items])
        self.checks.append(check)
        if any(w[0] < 0 for w, _ in items):
            raise RuntimeError("model fault")
        return [(w, len(w) / RATE) for w, _ in items]

    def decode(self, log_probs: np.ndarray, duration: float, *, beam_size: int, alternatives: int, bias: object):
        text = f"{len(log_probs)}" + (f"/b{beam_size}" if beam_size > 1 else "") + (f"/a{alternatives}" if alternatives > 1 else "")
        return Transcript(text, (), (), (), duration, 0.01)


async def one_second_run(work: Callable[[], T]) -> tuple[T, float]:
    return work(), 1.0  # every model call "takes" one second


def run_batcher(settings: BatchSettings, requests: list[tuple[int, Decoding]]) -> tuple[FakeRecognizer, list, list[int]]:
    """Submit (length, decoding) requests at once (a negative length: a waveform the model fails on);
    return the fake, each request's outcome and the batch sizes."""
    fake = FakeRecognizer()
    entry = ModelEntry("fake", fake, size_bytes=0)  # type: ignore[arg-type]
    sizes: list[int] = []

    async def main() -> list:
        batcher = Batcher(one_second_run, settings, lambda model, size: sizes.append(size))
        calls = [batcher.transcribe(entry, np.full(abs(n), np.sign(n)), decoding) for n, decoding in requests]
        return await asyncio.gather(*calls, return_exceptions=True)

    return fake, asyncio.run(main()), sizes


GREEDY = Decoding()


def test_concurrent_requests_share_one_call_and_split_its_compute_by_length() -> None:
    fake, outcomes, sizes = run_batcher(BatchSettings(wait_s=0.01), [(100, GREEDY), (300, GREEDY), (200, GREEDY)])
    assert fake.calls == [[100, 300, 200]] and sizes == [3]
    assert [o.transcript.text for o in outcomes] == ["100", "300", "200"]
    assert [o.compute_s for o in outcomes] == pytest.approx([1 / 6, 3 / 6, 2 / 6])


def test_batches_respect_the_item_cap_and_the_audio_budget() -> None:
    fake, _, sizes = run_batcher(BatchSettings(wait_s=0.01, max_items=2), [(10, GREEDY)] * 5)
    assert sizes == [2, 2, 1]
    # budget 5 s padded: 2 x 2 s fits, a third 2 s item (3 x 2 s) starts a new batch
    fake, _, _ = run_batcher(BatchSettings(wait_s=0.01, max_audio_s=5.0), [(200, GREEDY)] * 3)
    assert fake.calls == [[200, 200], [200]]


def test_requests_that_decode_differently_share_the_model_call_and_keep_their_decoding() -> None:
    requests = [(10, GREEDY), (20, Decoding(beam_size=4)), (30, Decoding(beam_size=8, alternatives=3))]
    fake, outcomes, sizes = run_batcher(BatchSettings(wait_s=0.01), requests)
    assert fake.calls == [[10, 20, 30]] and sizes == [3]
    assert [o.transcript.text for o in outcomes] == ["10", "20/b4", "30/b8/a3"]
    assert fake.checks == [True]  # a beam among them: the check's model pass is asked for


def test_a_batch_of_greedy_requests_skips_the_checks_model_pass() -> None:
    fake, _, _ = run_batcher(BatchSettings(wait_s=0.01), [(10, GREEDY), (20, GREEDY)])
    assert fake.checks == [False]


def test_a_model_fault_fails_its_batch_only() -> None:
    settings = BatchSettings(wait_s=0.01, max_items=2)
    fake, outcomes, _ = run_batcher(settings, [(-10, GREEDY), (10, GREEDY), (10, GREEDY)])
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError, Batched]
    assert len(fake.calls) == 2


def test_a_cancelled_request_leaves_its_batch() -> None:
    fake = FakeRecognizer()
    entry = ModelEntry("fake", fake, size_bytes=0)  # type: ignore[arg-type]

    async def main() -> str:
        batcher = Batcher(one_second_run, BatchSettings(wait_s=0.05), lambda model, size: None)
        gone = asyncio.ensure_future(batcher.transcribe(entry, np.ones(10)))
        kept = asyncio.ensure_future(batcher.transcribe(entry, np.ones(20)))
        await asyncio.sleep(0)
        gone.cancel()
        return (await kept).transcript.text

    assert asyncio.run(main()) == "20" and fake.calls == [[20]]


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
    hello = speech_files["hello world"]
    good.append((pb.RecognizeRequest(config=beam, audio=hello.read_bytes()), hello))
    hinted = pb.RecognitionConfig(encoding=pb.WAV, beam_size=8, max_alternatives=2, phrases=["hello word"], phrase_boost=10)
    good.append((pb.RecognizeRequest(config=hinted, audio=hello.read_bytes()), hello))
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
        config, limits = request.config, Limits()
        samples, rate = mapping.request_waveform(config, path.read_bytes(), limits)
        expected = recognizer.transcribe(
            samples,
            rate,
            beam_size=mapping.beam_size(config, limits),
            alternatives=mapping.alternatives(config, limits),
            bias=mapping.phrase_bias(config, recognizer.labels, limits),
        )
        assert response == mapping.recognize_response(expected, request.config, "tiny"), path.name
    registry = batching_server.running.metrics.registry
    batched = registry.get_sample_value("speechlabel_batch_size_sum", {"model": "tiny"})
    batches = registry.get_sample_value("speechlabel_batch_size_count", {"model": "tiny"})
    assert batched == len(good) and batches < batched  # the NaN request never joined; some batch held several
    assert responses[-1].results[0].alternatives[0].transcript == "hello word"  # its own decoding, in a shared batch
