"""``speechlabel serve``: the grpc.aio server for the SpeechLabeler service.

Every ``*.ckpt`` in the models directory is served under its file stem. Model work runs on one
thread-pool executor, never on the event loop, so health checks, ListModels and stream I/O stay
responsive while a model computes. The server also offers standard gRPC health checking
(``grpc.health.v1``) and server reflection. On SIGTERM/SIGINT it reports NOT_SERVING, stops
taking calls, lets open streams emit their last finals and waits up to ``--grace-s``.
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
from pathlib import Path
from typing import TypeVar

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from audiomodels.checkpoint import CheckpointError
from service import mapping
from service.auth import BearerTokenInterceptor, token_from
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.gen.speechlabel.v1 import speech_pb2_grpc as pb_grpc
from service.limits import LimitExceeded, Limits, RequestError
from service.registry import ModelRegistry
from service.sessions import StreamingSession, StreamSlots, read_requests
from service.transcribe import DEFAULT_CHECKPOINT

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpeechLabeler"].full_name
DEFAULT_MODELS_DIR = DEFAULT_CHECKPOINT.parent
log = logging.getLogger("speechlabel.server")
T = TypeVar("T")


@asynccontextmanager
async def _statuses(context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
    """Turn request errors into their status codes and log one line per call.

    Anything unexpected is logged with its traceback and reported as INTERNAL without details.
    """
    started = time.monotonic()
    code = grpc.StatusCode.OK
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except Exception as error:
        code = mapping.status_code(error) or grpc.StatusCode.INTERNAL
        if code is grpc.StatusCode.INTERNAL:
            log.exception("%s failed", method)
        await context.abort(code, str(error) if code is not grpc.StatusCode.INTERNAL else "internal server error")
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    finally:
        log.info(
            "rpc=%s peer=%s status=%s duration_ms=%.0f",
            method,
            context.peer(),
            code.name,
            1000 * (time.monotonic() - started),
        )


class SpeechLabelerServicer(pb_grpc.SpeechLabelerServicer):
    """Translates protobuf <-> domain; models, limits, executor and stream slots are injected."""

    def __init__(
        self, models: ModelRegistry, limits: Limits, executor: ThreadPoolExecutor, streams: StreamSlots
    ) -> None:
        self._models = models
        self._limits = limits
        self._executor = executor
        self._streams = streams

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def Recognize(self, request: pb.RecognizeRequest, context: grpc.aio.ServicerContext) -> pb.RecognizeResponse:
        async with _statuses(context, "Recognize"):
            config = request.config
            entry = self._models.get(config.model)
            beam_size = mapping.beam_size(config, self._limits)

            def recognize():
                waveform, rate = mapping.request_waveform(config, request.audio, self._limits)
                return entry.recognizer.transcribe(waveform, rate, beam_size=beam_size)

            return mapping.recognize_response(await self._run(recognize), config, entry.name)

    async def Align(self, request: pb.AlignRequest, context: grpc.aio.ServicerContext) -> pb.AlignResponse:
        async with _statuses(context, "Align"):
            entry = self._models.get(request.config.model)
            if not request.transcript.strip():
                raise RequestError("transcript is empty; Align needs the text spoken in the audio")

            def align():
                waveform, rate = mapping.request_waveform(request.config, request.audio, self._limits)
                return entry.recognizer.align(waveform, rate, request.transcript)

            return mapping.align_response(await self._run(align), entry.name)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        async with _statuses(context, "ListModels"):
            return mapping.list_models_response(self._models)

    async def StreamingRecognize(
        self, request_iterator: AsyncIterator[pb.StreamingRecognizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamingRecognizeResponse]:
        limits = self._limits
        async with _statuses(context, "StreamingRecognize"):
            with self._streams.hold():
                reader = read_requests(request_iterator, limits.stream_idle_timeout_s, self._streams.draining)
                async with aclosing(reader) as requests:
                    first = await anext(requests, None)
                    if first is None:
                        return
                    if first.WhichOneof("request") != "config":
                        raise RequestError("the first message of a stream must carry config, not audio")
                    config = first.config
                    entry = self._models.get(config.model)
                    session = StreamingSession(entry.recognizer, mapping.stream_settings(config, limits), self._run)
                    async for request in requests:
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


@dataclass
class RunningServer:
    """A started server and the handles tests and shutdown need."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    streams: StreamSlots
    executor: ThreadPoolExecutor

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING first (load balancers stop sending), then open streams finish their finals."""
        await self.health.enter_graceful_shutdown()
        self.streams.draining.set()
        await self.server.stop(grace_s)
        self.executor.shutdown(wait=False, cancel_futures=True)


async def start_server(
    models: ModelRegistry,
    *,
    host: str = "127.0.0.1",
    port: int = 50051,
    limits: Limits | None = None,
    workers: int = 2,
    auth_token: str | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> RunningServer:
    """Build, bind (port 0 picks a free one) and start the server on the running loop."""
    limits = limits or Limits()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
    streams = StreamSlots(limits.max_streams)
    server = grpc.aio.server(
        interceptors=[BearerTokenInterceptor(auth_token)] if auth_token else [],
        options=[("grpc.max_receive_message_length", limits.max_message_bytes)],
    )
    pb_grpc.add_SpeechLabelerServicer_to_server(SpeechLabelerServicer(models, limits, executor, streams), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection((SERVICE_NAME, health_name, reflection.SERVICE_NAME), server)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if not bound:
        raise OSError(f"could not bind {address}")
    await server.start()
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, bound, health_servicer, streams, executor)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in containers)")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="directory of *.ckpt files")
    parser.add_argument("--default-model", help="model for requests that name none (default: char, else the first)")
    parser.add_argument("--workers", type=int, default=2, help="inference threads")
    parser.add_argument("--torch-threads", type=int, default=0, help="intra-op threads per model call (0 = torch default)")
    parser.add_argument("--grace-s", type=float, default=10.0, help="shutdown grace period for open calls")
    parser.add_argument("--auth-token", help="require 'authorization: Bearer TOKEN' (default: $SPEECHLABEL_AUTH_TOKEN)")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key: serve TLS)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key")
    limits = parser.add_argument_group("limits")
    for name, value in vars(defaults).items():
        limits.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"(default {value})")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if (args.tls_cert is None) != (args.tls_key is None):
        log.error("--tls-cert and --tls-key go together")
        return 2
    limits = Limits(**{name: getattr(args, name) for name in vars(Limits())})
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    try:
        models = ModelRegistry.load_dir(args.models, default=args.default_model)
    except CheckpointError as error:
        log.error("cannot serve: %s", error)
        return 2
    credentials = (
        grpc.ssl_server_credentials([(args.tls_key.read_bytes(), args.tls_cert.read_bytes())])
        if args.tls_cert
        else None
    )
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
    )
    log.info(
        "serving %s on %s:%d (models: %s; default %s)",
        SERVICE_NAME,
        args.host,
        running.port,
        ", ".join(models.names),
        models.default_name,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down (grace %.1f s)", args.grace_s)
    await running.stop(args.grace_s)
