"""``speechlabel serve``: the grpc.aio server for the SpeechLabeler service.

Every ``*.ckpt`` in the models directory is served under its file stem. Model work runs on one
thread-pool executor, never on the event loop, so health checks, ListModels and stream I/O stay
responsive while a model computes. The server also offers standard gRPC health checking
(``grpc.health.v1``) and server reflection. On SIGTERM/SIGINT it reports NOT_SERVING, stops
taking calls, lets open streams emit their last finals and waits up to ``--grace-s``.

Concurrent Recognize calls are batched into one model call (``service.batcher``); every call is
counted in Prometheus metrics (``service.metrics``, ``--metrics-port``) and logged once
(``service.logs``, ``--log-format``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from audiomodels.checkpoint import CheckpointError
from audiomodels.char_check import CharCheckError, add_char_check_arguments, char_check_from_args
from audiomodels.lm import LMError
from audiomodels.phone_check import PhoneCheckError, add_phone_check_arguments, phone_check_from_args
from audiomodels.recognizer import Transcript
from audiomodels.streaming import ChunkInput
from audiomodels.warp import add_warps_argument
from service import logs, mapping
from service.auth import BearerTokenInterceptor, token_from
from service.batcher import Batcher, BatchSettings, Decoding
from service.calls import CallRecord, request_id, run_timed
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.gen.speechlabel.v1 import speech_pb2_grpc as pb_grpc
from service.limits import LimitExceeded, Limits, RequestError
from service.metrics import MetricsEndpoint, ServerMetrics
from service.registry import ModelEntry, ModelRegistry
from service.sessions import StreamingSession, StreamSlots, read_requests
from service.stream_batcher import StreamBatcher, StreamBatchSettings
from service.transcribe import DEFAULT_CHECKPOINT

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpeechLabeler"].full_name
DEFAULT_MODELS_DIR = DEFAULT_CHECKPOINT.parent
log = logging.getLogger("speechlabel.server")
T = TypeVar("T")


class SpeechLabelerServicer(pb_grpc.SpeechLabelerServicer):
    """Translates protobuf <-> domain; models, limits, executor, batcher, stream slots and metrics are injected."""

    def __init__(
        self,
        models: ModelRegistry,
        limits: Limits,
        executor: ThreadPoolExecutor,
        streams: StreamSlots,
        batcher: Batcher,
        stream_batcher: StreamBatcher,
        metrics: ServerMetrics,
    ) -> None:
        self._models = models
        self._limits = limits
        self._executor = executor
        self._streams = streams
        self._batcher = batcher
        self._stream_batcher = stream_batcher
        self._metrics = metrics

    @asynccontextmanager
    async def _observed(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[CallRecord]:
        """Turn request errors into their status codes; count, time and log every call once.

        The handler fills in the yielded record (model, audio, compute). Anything unexpected is
        logged with its traceback and reported as INTERNAL without details.
        """
        call = CallRecord(method, context.peer(), request_id(context.invocation_metadata()))
        started = time.monotonic()
        try:
            yield call
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            call.code = mapping.status_code(error) or grpc.StatusCode.INTERNAL
            internal = call.code is grpc.StatusCode.INTERNAL
            if internal:
                log.exception("%s failed (request_id=%s)", method, call.request_id)
            await context.abort(call.code, "internal server error" if internal else str(error))
        except asyncio.CancelledError:
            call.code = grpc.StatusCode.CANCELLED
            raise
        finally:
            call.duration_s = time.monotonic() - started
            self._metrics.observe(call)
            logs.log_call(log, call)

    async def _run(self, call: CallRecord, work: Callable[[], T]) -> T:
        """Run ``work`` on the model executor; its time there is the call's compute."""
        result, seconds = await run_timed(self._executor, work)
        call.compute_s += seconds
        return result

    async def _stream_step(self, call: CallRecord, entry: ModelEntry, chunk: ChunkInput) -> tuple[torch.Tensor, torch.Tensor]:
        """One model chunk of a stream, batched with the other streams' chunks."""
        step = await self._stream_batcher.step(entry, chunk)
        call.compute_s += step.compute_s
        return step.log_probs, step.state

    async def _recognize(
        self, call: CallRecord, entry: ModelEntry, decoding: Decoding, waveform: np.ndarray
    ) -> Transcript:
        """One prepared waveform (the model's rate) decoded whole, batched with concurrent Recognize calls."""
        batched = await self._batcher.transcribe(entry, waveform, decoding)
        call.compute_s += batched.compute_s
        return batched.transcript

    def _model(self, call: CallRecord, name: str) -> ModelEntry:
        entry = self._models.get(name)
        call.model = entry.name
        return entry

    async def _waveform(
        self, call: CallRecord, entry: ModelEntry, config: pb.RecognitionConfig, audio: bytes
    ) -> np.ndarray:
        """Request audio decoded, validated and resampled to the model's rate (on the executor)."""
        recognizer = entry.recognizer
        waveform = await self._run(
            call, lambda: recognizer.prepare(*mapping.request_waveform(config, audio, self._limits))
        )
        call.audio_s = len(waveform) / recognizer.sample_rate
        return waveform

    async def Recognize(self, request: pb.RecognizeRequest, context: grpc.aio.ServicerContext) -> pb.RecognizeResponse:
        async with self._observed(context, "Recognize") as call:
            config = request.config
            entry = self._model(call, config.model)
            beam_size = mapping.beam_size(config, self._limits)
            alternatives = mapping.alternatives(config, self._limits)
            bias = mapping.phrase_bias(config, entry.recognizer.labels, self._limits)
            waveform = await self._waveform(call, entry, config, request.audio)
            transcript = await self._recognize(call, entry, Decoding(beam_size, alternatives, bias), waveform)
            return mapping.recognize_response(transcript, config, entry.name)

    async def Align(self, request: pb.AlignRequest, context: grpc.aio.ServicerContext) -> pb.AlignResponse:
        async with self._observed(context, "Align") as call:
            entry = self._model(call, request.config.model)
            if not request.transcript.strip():
                raise RequestError("transcript is empty; Align needs the text spoken in the audio")
            waveform = await self._waveform(call, entry, request.config, request.audio)
            recognizer = entry.recognizer
            aligned = await self._run(
                call, partial(recognizer.align, waveform, recognizer.sample_rate, request.transcript)
            )
            return mapping.align_response(aligned, entry.name)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        async with self._observed(context, "ListModels"):
            return mapping.list_models_response(self._models)

    async def StreamingRecognize(
        self, request_iterator: AsyncIterator[pb.StreamingRecognizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamingRecognizeResponse]:
        limits = self._limits
        async with self._observed(context, "StreamingRecognize") as call:
            with self._streams.hold():
                reader = read_requests(request_iterator, limits.stream_idle_timeout_s, self._streams.draining)
                async with aclosing(reader) as requests:
                    first = await anext(requests, None)
                    if first is None:
                        return
                    if first.WhichOneof("request") != "config":
                        raise RequestError("the first message of a stream must carry config, not audio")
                    config = first.config
                    entry = self._model(call, config.model)
                    settings = mapping.stream_settings(config, entry.recognizer.labels, limits)
                    decoding = Decoding(settings.beam_size, settings.alternatives, settings.bias)
                    session = StreamingSession(
                        entry.recognizer,
                        settings,
                        partial(self._stream_step, call, entry),
                        partial(self._run, call),
                        partial(self._recognize, call, entry, decoding),
                    )
                    open_for_s = limits.max_stream_s + limits.stream_idle_timeout_s
                    deadline = time.monotonic() + open_for_s
                    try:
                        async for request in requests:
                            if time.monotonic() > deadline:  # messages that bring no audio cannot hold a stream open
                                raise LimitExceeded(
                                    f"stream open for over {open_for_s:g} s (the server's {limits.max_stream_s:g} s "
                                    f"of audio per stream and {limits.stream_idle_timeout_s:g} s of idle time)"
                                )
                            if request.WhichOneof("request") != "audio":
                                raise RequestError("only the first message of a stream may carry config; send audio")
                            if len(request.audio) > limits.max_chunk_bytes:
                                raise LimitExceeded(
                                    f"audio message of {len(request.audio)} bytes is over the "
                                    f"{limits.max_chunk_bytes}-byte limit; send smaller chunks"
                                )
                            results = await session.accept(request.audio)
                            if results:
                                yield mapping.streaming_response(results, config)
                        results = await session.finish()
                        if results:
                            yield mapping.streaming_response(results, config)
                    finally:
                        call.audio_s = session.audio_s


@dataclass
class RunningServer:
    """A started server and the handles tests and shutdown need."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    streams: StreamSlots
    stream_batcher: StreamBatcher
    executor: ThreadPoolExecutor
    metrics: ServerMetrics
    metrics_endpoint: MetricsEndpoint | None

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING first (load balancers stop sending), then open streams finish their finals."""
        await self.health.enter_graceful_shutdown()
        self.streams.draining.set()
        await self.server.stop(grace_s)
        await self.stream_batcher.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.metrics_endpoint:
            await self.metrics_endpoint.close()


async def start_server(
    models: ModelRegistry,
    *,
    host: str = "127.0.0.1",
    port: int = 50051,
    limits: Limits | None = None,
    workers: int = 2,
    auth_token: str | None = None,
    credentials: grpc.ServerCredentials | None = None,
    batching: BatchSettings = BatchSettings(),
    stream_batching: StreamBatchSettings = StreamBatchSettings(),
    metrics_port: int | None = None,
) -> RunningServer:
    """Build, bind (port 0 picks a free one) and start the server on the running loop.

    ``metrics_port`` serves Prometheus metrics on ``host`` (``None``: not served; 0: a free port).
    """
    limits = limits or Limits()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
    metrics = ServerMetrics(active_streams=lambda: streams.active)
    batcher = Batcher(partial(run_timed, executor), batching, metrics.observe_batch)
    stream_batcher = StreamBatcher(partial(run_timed, executor), stream_batching, metrics.observe_stream_batch)
    streams = StreamSlots(limits.max_streams, stream_batcher.overloaded)
    server = grpc.aio.server(
        interceptors=[BearerTokenInterceptor(auth_token)] if auth_token else [],
        options=[("grpc.max_receive_message_length", limits.max_message_bytes), *KEEPALIVE_OPTIONS],
    )
    servicer = SpeechLabelerServicer(models, limits, executor, streams, batcher, stream_batcher, metrics)
    pb_grpc.add_SpeechLabelerServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection((SERVICE_NAME, health_name, reflection.SERVICE_NAME), server)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if not bound:
        raise OSError(f"could not bind {address}")
    endpoint = None if metrics_port is None else MetricsEndpoint(metrics, host, metrics_port)
    await server.start()
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, bound, health_servicer, streams, stream_batcher, executor, metrics, endpoint)


# Ping idle connections so dead peers (and their streams) are noticed behind NATs and load
# balancers, and accept client keepalive pings down to every 10 s instead of answering GOAWAY.
KEEPALIVE_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
)


def server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """TLS credentials; with ``client_ca`` every client must present a certificate it signed (mTLS)."""
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in containers)")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="directory of *.ckpt files")
    parser.add_argument("--default-model", help="model for requests that name none (default: char, else the first)")
    parser.add_argument("--workers", type=int, default=2, help="inference threads")
    parser.add_argument("--torch-threads", type=int, default=0, help="intra-op threads per model call (0 = torch default)")
    add_warps_argument(parser)  # every call: Recognize, Align and live streams (one state per warp)
    add_phone_check_arguments(parser)  # char models' beam search: Recognize, and full_context_finals of streams
    add_char_check_arguments(parser)  # phone models' beam search, likewise
    parser.add_argument("--grace-s", type=float, default=10.0, help="shutdown grace period for open calls")
    parser.add_argument("--auth-token", help="require 'authorization: Bearer TOKEN' (default: $SPEECHLABEL_AUTH_TOKEN)")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key: serve TLS)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key")
    parser.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates it signed (mTLS)")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics on this port (0 = off)")
    parser.add_argument("--log-format", choices=logs.LOG_FORMATS, default="text", help="json: one object per line")
    batching = parser.add_argument_group("batching of concurrent Recognize calls")
    batch_defaults = BatchSettings()
    batching.add_argument("--batch-wait-ms", type=float, default=1000 * batch_defaults.wait_s,
                          help="how long a request waits for others to share its model call")  # fmt: skip
    batching.add_argument("--max-batch", type=int, default=batch_defaults.max_items, help="requests per call (1 = off)")
    batching.add_argument("--max-batch-audio-s", type=float, default=batch_defaults.max_audio_s,
                          help="padded audio per call: requests x the longest one")  # fmt: skip
    stream_batching = parser.add_argument_group("batching of live streams (one model call per tick)")
    stream_defaults = StreamBatchSettings()
    stream_batching.add_argument("--stream-batch-max", type=int, default=stream_defaults.max_streams,
                                 help="stream chunks per model call (1 = off)")  # fmt: skip
    stream_batching.add_argument("--stream-batch-wait-ms", type=float, default=1000 * stream_defaults.wait_s,
                                 help="how long a chunk waits for others to share its model call")  # fmt: skip
    stream_batching.add_argument("--stream-max-lag-ms", type=float, default=1000 * stream_defaults.max_lag_s,
                                 help="refuse new streams while queued chunks wait longer than this")  # fmt: skip
    limits = parser.add_argument_group("limits")
    for name, value in vars(defaults).items():
        limits.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"(default {value})")


def run(args: argparse.Namespace) -> int:
    logs.configure(args.log_format)
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_client_ca and not args.tls_cert):
        log.error("--tls-cert and --tls-key go together, and --tls-client-ca needs them")
        return 2
    limits = Limits(**{name: getattr(args, name) for name in vars(Limits())})
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    try:
        models = ModelRegistry.load_dir(
            args.models,
            default=args.default_model,
            warps=args.warps,
            phone_check=phone_check_from_args(args),
            char_check=char_check_from_args(args),
        )
    except (CheckpointError, PhoneCheckError, CharCheckError, LMError) as error:
        log.error("cannot serve: %s", error)
        return 2
    credentials = server_credentials(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    asyncio.run(_serve(models, args, limits, credentials))
    return 0


async def _serve(
    models: ModelRegistry, args: argparse.Namespace, limits: Limits, credentials: grpc.ServerCredentials | None
) -> None:
    running = await start_server(
        models,
        host=args.host,
        port=args.port,
        limits=limits,
        workers=args.workers,
        auth_token=token_from(args.auth_token),
        credentials=credentials,
        batching=BatchSettings(args.batch_wait_ms / 1000, args.max_batch, args.max_batch_audio_s),
        stream_batching=StreamBatchSettings(
            args.stream_batch_max, args.stream_batch_wait_ms / 1000, args.stream_max_lag_ms / 1000
        ),
        metrics_port=args.metrics_port or None,
    )
    log.info(
        "serving %s on %s:%d (models: %s; default %s)",
        SERVICE_NAME,
        args.host,
        running.port,
        ", ".join(models.names),
        models.default_name,
    )
    if running.metrics_endpoint:
        log.info("metrics on http://%s:%d/metrics", args.host, running.metrics_endpoint.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down (grace %.1f s)", args.grace_s)
    await running.stop(args.grace_s)
