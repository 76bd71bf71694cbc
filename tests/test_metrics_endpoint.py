"""Observability of the real server: Prometheus metrics scraped over HTTP, and one JSON log line per call.

Each test gets its own server, so every counter starts at zero and can be asserted exactly.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import pytest
import soundfile as sf
from prometheus_client.parser import text_string_to_metric_families

from service.client import Connection, recognize_file
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.gen.speechlabel.v1 import speech_pb2_grpc as pb_grpc
from service.logs import JsonFormatter
from service.registry import ModelRegistry
from tests.grpc_harness import LoopbackServer

pytestmark = pytest.mark.slow
Code = grpc.StatusCode
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
WAV = pb.RecognitionConfig(encoding=pb.WAV)
CALL_FIELDS = {"method", "peer", "model", "code", "duration_ms", "audio_s", "rtf", "request_id"}


@pytest.fixture
def server(model_dir: Path) -> Iterator[LoopbackServer]:
    """A fresh server per test, so that every counter starts at zero."""
    server = LoopbackServer(ModelRegistry.load_dir(model_dir), workers=1, metrics_port=0)
    yield server
    server.close()


@pytest.fixture
def stub(server: LoopbackServer) -> Iterator[pb_grpc.SpeechLabelerStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.SpeechLabelerStub(channel)


def scrape(port: int) -> Samples:
    """``/metrics`` over HTTP: (sample name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def counted(port: int, method: str, code: str) -> float | None:
    return value(scrape(port), "speechlabel_requests_total", method=method, code=code)


def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_scraped_metrics_count_calls_errors_audio_and_streams(
    server: LoopbackServer, stub: pb_grpc.SpeechLabelerStub, speech_files: dict[str, Path]
) -> None:
    port = server.running.metrics_endpoint.port
    path = speech_files["hello world"]
    audio = path.read_bytes()
    stub.ListModels(pb.ListModelsRequest())
    assert stub.Recognize(pb.RecognizeRequest(config=WAV, audio=audio)).results[0].alternatives[0].transcript
    unknown_model = pb.RecognizeRequest(config=pb.RecognitionConfig(encoding=pb.WAV, model="nope"), audio=audio)
    for request, code in ((unknown_model, Code.NOT_FOUND), (pb.RecognizeRequest(config=WAV), Code.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Recognize(request)
        assert caught.value.code() == code
    requests: queue.Queue[pb.StreamingRecognizeRequest | None] = queue.Queue()
    requests.put(pb.StreamingRecognizeRequest(config=pb.RecognitionConfig(encoding=pb.LINEAR16, sample_rate_hz=16000)))
    open_stream = stub.StreamingRecognize(iter(requests.get, None))
    wait_until(lambda: value(scrape(port), "speechlabel_active_streams") == 1)
    requests.put(None)
    assert list(open_stream) == []
    wait_until(partial(counted, port, "StreamingRecognize", "OK"))  # calls are counted as they end,
    wait_until(partial(counted, port, "Recognize", "INVALID_ARGUMENT"))  # just after their status went out

    samples = scrape(port)
    assert value(samples, "speechlabel_active_streams") == 0
    for method, code in (("ListModels", "OK"), ("Recognize", "OK"), ("Recognize", "NOT_FOUND"),
                         ("Recognize", "INVALID_ARGUMENT"), ("StreamingRecognize", "OK")):  # fmt: skip
        assert value(samples, "speechlabel_requests_total", method=method, code=code) == 1, (method, code)
    errors = {labels: v for (name, labels), v in samples.items() if name == "speechlabel_errors_total"}
    assert errors == {
        frozenset({("method", "Recognize"), ("code", "NOT_FOUND")}): 1,
        frozenset({("method", "Recognize"), ("code", "INVALID_ARGUMENT")}): 1,
    }
    assert value(samples, "speechlabel_request_duration_seconds_count", method="Recognize") == 3
    recognized = {"method": "Recognize", "model": "tiny"}
    audio_s = value(samples, "speechlabel_audio_seconds_total", **recognized)
    assert audio_s == pytest.approx(sf.info(str(path)).duration, abs=1e-3)
    assert value(samples, "speechlabel_real_time_factor_count", **recognized) == 1
    assert 0 < value(samples, "speechlabel_real_time_factor_sum", **recognized) < 5
    assert value(samples, "speechlabel_batch_size_count", model="tiny") == 1


def test_each_call_logs_one_json_line_with_its_fields(
    stub: pb_grpc.SpeechLabelerStub, speech_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="speechlabel.server")
    audio = speech_files["open the door"].read_bytes()
    stub.Recognize(pb.RecognizeRequest(config=WAV, audio=audio), metadata=[("x-request-id", "req-42")])
    with pytest.raises(grpc.RpcError):
        stub.Recognize(pb.RecognizeRequest(config=pb.RecognitionConfig(encoding=pb.WAV, model="nope"), audio=audio))

    def call_records() -> list[logging.LogRecord]:
        return [record for record in caplog.records if hasattr(record, "call")]

    wait_until(lambda: len(call_records()) == 2)  # an aborted call is logged just after its status went out
    lines = [JsonFormatter().format(record) for record in call_records()]
    assert all("\n" not in line for line in lines)
    ok, failed = [json.loads(line) for line in lines]
    assert CALL_FIELDS <= ok.keys() and ok["message"].startswith("rpc=Recognize ")
    assert ok["method"] == "Recognize" and ok["model"] == "tiny" and ok["code"] == "OK"
    assert ok["request_id"] == "req-42" and ok["peer"].startswith("ipv4:127.0.0.1:")
    assert ok["audio_s"] == pytest.approx(sf.info(str(speech_files["open the door"])).duration, abs=1e-3)
    assert ok["rtf"] > 0 and ok["duration_ms"] > 0 and ok["level"] == "INFO"
    assert failed["code"] == "NOT_FOUND" and failed["model"] == "" and failed["audio_s"] == 0 and failed["rtf"] is None
    assert len(failed["request_id"]) == 32  # none given: a fresh one


def test_serve_command_with_metrics_port_and_json_logs(model_dir: Path, speech_files: dict[str, Path]) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    grpc_port, metrics_port = ports
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(grpc_port), "--models", str(model_dir),
         "--workers", "1", "--torch-threads", "1", "--grace-s", "1",
         "--metrics-port", str(metrics_port), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:  # the metrics endpoint answers once the server has started
            assert server.poll() is None, server.communicate()[0]
            try:
                scrape(metrics_port)
                break
            except OSError:
                assert time.monotonic() < deadline, "metrics endpoint did not come up"
                time.sleep(0.3)
        connection = Connection(f"127.0.0.1:{grpc_port}", timeout_s=10)
        assert recognize_file(speech_files["hello world"], connection).results[0].alternatives[0].transcript
        assert counted(metrics_port, "Recognize", "OK") == 1
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        entries = [json.loads(line) for line in server.communicate()[0].splitlines()]
        (call,) = [entry for entry in entries if entry.get("method") == "Recognize"]
        assert call["code"] == "OK" and call["model"] == "tiny"
        assert any(entry["message"].startswith("metrics on http://") for entry in entries)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
