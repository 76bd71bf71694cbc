"""Prometheus metrics for one server, and the HTTP endpoint that exposes them (``--metrics-port``).

Every server gets its own ``CollectorRegistry``, so several servers in one process (tests) never
clash over metric names. Calls are counted when they end, from their :class:`CallRecord`; calls
refused by the auth interceptor and health checks never reach the servicer and are not counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from service.calls import CallRecord

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)  # streams run long
RTF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
STREAM_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """The server's collectors; ``observe`` takes a finished call, ``observe_batch`` a model call."""

    def __init__(self, active_streams: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter("speechlabel_requests", "Finished calls", ["method", "code"], registry=registry)
        self.errors = Counter(
            "speechlabel_errors", "Calls that ended with a status other than OK", ["method", "code"], registry=registry
        )
        self.latency = Histogram(
            "speechlabel_request_duration_seconds", "Call duration", ["method"],
            buckets=LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.audio = Counter(
            "speechlabel_audio_seconds", "Seconds of audio taken in", ["method", "model"], registry=registry
        )
        self.rtf = Histogram(
            "speechlabel_real_time_factor", "Compute seconds per audio second, per call", ["method", "model"],
            buckets=RTF_BUCKETS, registry=registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "speechlabel_batch_size", "Recognize requests per model call", ["model"],
            buckets=BATCH_SIZE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.stream_batch_size = Histogram(
            "speechlabel_stream_batch_size", "Live-stream chunks per model call", ["model"],
            buckets=STREAM_BATCH_SIZE_BUCKETS, registry=registry,
        )  # fmt: skip
        Gauge("speechlabel_active_streams", "Open StreamingRecognize calls", registry=registry).set_function(
            active_streams
        )

    def observe(self, call: CallRecord) -> None:
        code = call.code.name
        self.requests.labels(call.method, code).inc()
        if code != "OK":
            self.errors.labels(call.method, code).inc()
        self.latency.labels(call.method).observe(call.duration_s)
        if call.audio_s > 0:
            self.audio.labels(call.method, call.model).inc(call.audio_s)
        rtf = call.rtf
        if rtf is not None and code == "OK":  # a failed call's compute says nothing about speed
            self.rtf.labels(call.method, call.model).observe(rtf)

    def observe_batch(self, model: str, size: int) -> None:
        self.batch_size.labels(model).observe(size)

    def observe_stream_batch(self, model: str, size: int) -> None:
        self.stream_batch_size.labels(model).observe(size)


class MetricsEndpoint:
    """``/metrics`` over plain HTTP on its own daemon thread (prometheus-client's server)."""

    def __init__(self, metrics: ServerMetrics, host: str, port: int) -> None:
        self._httpd, self._thread = start_http_server(port, addr=host, registry=metrics.registry)
        self.port = self._httpd.server_port  # the bound one when ``port`` was 0

    async def close(self) -> None:
        """Stop serving and free the port (``shutdown`` blocks for up to a poll interval: off the loop)."""
        await asyncio.to_thread(self._httpd.shutdown)
        self._httpd.server_close()
        self._thread.join()
