"""Streaming server under load: N concurrent real-time streams, with and without stream batching.

Usage:
    python benchmarks/stream_load.py [--streams 10,25,50,100,150] [--modes on,off]
        [--manifest data/corpus/test.jsonl] [--model char] [--chunk-ms 100] [--server-threads 2]
        [--latency-budget-ms 250] [--max-duration S] [--leading-silence S] [--warps W1,W2,...] [--beam-size 8]
        [--out benchmarks/results/stream_load.json]

For every N and batching mode a fresh ``speechlabel serve`` runs in its own process on loopback
(``--max-streams N``, ``--torch-threads`` and ``OMP_NUM_THREADS`` from ``--server-threads``);
the clients run in ``--client-procs`` other processes, each an asyncio loop driving its share of
the streams over grpc.aio with one connection per stream, so neither side shares a GIL with the
other. Stream i sends utterance i of the manifest (cycling; after ``--leading-silence`` seconds of
digital silence, a talker who starts a while after the microphone opens) as LINEAR16 in
``--chunk-ms`` pieces at real-time pace (chunk k at the stream's start + k x chunk), with interim results on, then
half-closes and reads until the server ends the call. Streams start at random offsets within
the first second (the same offsets for both modes). With ``--beam-size`` N > 1 every stream asks
for beam search (the server searches each chunk with the model's own LM, for interims and finals),
and the reference finals are decoded the same way.

What is measured, and why:

- chunk latency: for each chunk, the time from just before it is written to the arrival of the
  first result (interim or final) whose span, ``start_s`` to ``end_s``, holds the chunk's audio
  end, so that some of the chunk's audio is in the result (1 ms slack for the 3-decimal times). It is how long the words in that chunk take to show
  up, so it includes the server's interim cadence (one interim per model chunk). Chunks in no
  result's span (the silence the endpointer leaves out of every utterance: before, between and
  after them; failed streams) have no words to show: they are counted as uncovered and left out
  of the percentiles.
- final latency: from the half-close to the arrival of the stream's last final result (0 when
  that final came before the audio ended), over streams without errors.
- streams at real time: no error and the p99 of the stream's own chunk latencies at most
  the algorithmic latency plus ``--latency-budget-ms``: the ones a user would call live.
- errors: calls that ended with a non-OK gRPC status, by code (RESOURCE_EXHAUSTED when the server
  refuses a stream).
- server CPU: user + system CPU seconds of the server process over the load (from the start of
  the streams to the last one ending) per wall second, in percent of one core.
- mismatched finals: streams without errors whose final texts, joined, differ (whitespace
  aside) from the offline transcripts of the same spans of samples (each final is one utterance
  the server recognized on its own) by the recognizer in the mode the server streams with (the
  model config's ``streaming`` chunking; full context for configs without one, noted in the
  output).
- chunks per model call: live-stream chunks per streaming model call over the run (the server's
  ``speechlabel_stream_batch_size`` histogram, scraped from its ``--metrics-port``): how much the
  stream batcher amortizes each call.
- send lag p99: how late clients wrote chunks against their schedule; large values mean the
  client side, not the server, was the bottleneck.

The algorithmic latency printed with the table is the model's look-ahead: (chunk + right context
frames) x frame shift, a floor no server implementation can go below.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import IO, Any

import grpc
import numpy as np
import soundfile as sf
import torch

from audiomodels.audio import decode_raw
from audiomodels.checkpoint import load_checkpoint
from audiomodels.lm import own_fusion
from audiomodels.recognizer import Recognizer
from audiomodels.silence import BLOCK_S
from audiomodels.warp import add_warps_argument, format_warps
from service.client import Connection, check_health
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.gen.speechlabel.v1 import speech_pb2_grpc as pb_grpc
from training.manifest import Utterance, read_manifest

from report import write_report  # beside this script in benchmarks/

# Extra `speechlabel serve` flags per batching mode ("off" = at most one stream per model call).
BATCHING_FLAGS: dict[str, tuple[str, ...]] = {"on": (), "off": ("--stream-batch-max", "1")}
SERVER_COMMAND = (sys.executable, "-m", "service.cli", "serve")
CORPUS_COMMAND = (
    ".venv/bin/speechlabel corpus synth --out data/corpus --hours 12 --seed 0 --engines espeak-ng,flite,festival,piper"
)
HOST = "127.0.0.1"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpeechLabeler"].full_name  # its health status
STAGGER_S = 1.0  # streams start at random offsets within this window
COVER_SLACK_S = 0.001  # result times are rounded to 1 ms
SETUP_TIMEOUT_S = 120.0  # server start (model load) and client start (imports, connections)
STREAM_SLACK_S = 60.0  # a stream's deadline: its audio plus this
STOP_TIMEOUT_S = 20.0  # SIGTERM, then SIGKILL after this (the server's grace period is 10 s)


@dataclass(frozen=True)
class StreamSpec:
    """What one client streams, and when it starts within the stagger window."""

    index: int
    path: str
    duration_s: float  # from the manifest
    delay_s: float


@dataclass(frozen=True)
class StreamedResult:
    """One result as a client received it."""

    arrived: float  # time.monotonic()
    start_s: float  # the result's span of the stream
    end_s: float
    is_final: bool
    text: str


@dataclass
class StreamRecord:
    """What one client saw; times are ``time.monotonic()`` (system-wide on Linux)."""

    index: int
    path: str
    chunks: list[tuple[float, float, float]] = field(default_factory=list)  # (audio end s, scheduled, sent)
    results: list[StreamedResult] = field(default_factory=list)
    half_closed_at: float | None = None
    error: str | None = None  # gRPC status code name of a failed call


# --------------------------------------------------------------------------- audio and reference


@dataclass(frozen=True)
class StreamAudio:
    """What a stream sends of its file: ``leading_silence_s`` of digital silence (a talker who starts
    a while after the microphone opens), then the file cut to ``max_duration_s``."""

    max_duration_s: float | None = None
    leading_silence_s: float = 0.0

    def load(self, path: str) -> tuple[np.ndarray, int]:
        """The samples as little-endian int16, and their rate."""
        samples, rate = sf.read(path, dtype="int16")
        if samples.ndim != 1:
            raise ValueError(f"{path}: expected mono audio, got {samples.shape[1]} channels")
        limit = len(samples) if self.max_duration_s is None else round(self.max_duration_s * rate)
        silence = np.zeros(round(self.leading_silence_s * rate), np.int16)
        return np.concatenate([silence, samples[:limit]]).astype("<i2"), rate

    def duration_s(self, file_duration_s: float) -> float:
        return self.leading_silence_s + min(file_duration_s, self.max_duration_s or np.inf)


def stream_audio(args: argparse.Namespace) -> StreamAudio:
    return StreamAudio(args.max_duration, args.leading_silence)


def streaming_reference(
    checkpoint: Path, warps: tuple[float, ...] = (), beam_size: int = 1
) -> tuple[Recognizer, str, float]:
    """The recognizer in the server's streaming mode (with the model's own LM for beam search), its
    description and algorithmic latency (s)."""
    loaded = load_checkpoint(checkpoint)
    config = loaded.config
    chunking = config.model.streaming
    fusion = own_fusion(checkpoint) if beam_size > 1 else None
    recognizer = Recognizer(config, loaded.build_model(), chunking=chunking, warps=warps, fusion=fusion)
    description = f"chunked: {chunking.chunk} frames + {chunking.right_context} right context"
    if warps:
        description += f", warp ensemble {format_warps(warps)}"
    if beam_size > 1:
        description += f", beam {beam_size}" + (" + LM" if fusion else "")
    return recognizer, description, round(chunking.latency_frames * config.features.frame_shift_s, 6)


class SpanReferences:
    """Offline transcripts of spans of what each stream sends (decoded as the server decodes it).

    The server's finals are utterances it recognized on their own, so each is compared with the
    offline transcript of exactly its span: on the endpointer's 100 ms block grid, or up to the
    end of the stream.
    """

    def __init__(self, recognizer: Recognizer, audio: StreamAudio, beam_size: int = 1) -> None:
        self._recognizer = recognizer
        self._audio = audio
        self._beam_size = beam_size
        self._texts: dict[tuple[str, float, float], str] = {}

    def text(self, path: str, start_s: float, end_s: float) -> str:
        key = (path, start_s, end_s)
        if key not in self._texts:
            samples, rate = self._audio.load(path)
            waveform = decode_raw(samples.tobytes(), "pcm16", rate)
            start, end = (self._sample(t, len(waveform), rate) for t in (start_s, end_s))
            self._texts[key] = self._recognizer.transcribe(waveform[start:end], rate, beam_size=self._beam_size).text
        return self._texts[key]

    @staticmethod
    def _sample(time_s: float, length: int, rate: int) -> int:
        if abs(time_s - length / rate) <= COVER_SLACK_S:  # the stream's end, whatever its grid
            return length
        block = round(BLOCK_S * rate)
        return min(round(time_s * rate / block) * block, length)


# --------------------------------------------------------------------------- server process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (psutil if installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _log_tail(log: IO[bytes], chars: int = 3000) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-chars:]


def wait_serving(process: subprocess.Popen, address: str, log: IO[bytes]) -> None:
    """Poll gRPC health until the SpeechLabeler service is SERVING; fail if the server exits first."""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}:\n{_log_tail(log)}")
        try:
            if check_health(Connection(address, timeout_s=1.0), SERVICE_NAME) == "SERVING":
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not SERVING after {SETUP_TIMEOUT_S:g} s:\n{_log_tail(log)}")


@contextmanager
def running_server(
    args: argparse.Namespace, mode: str, max_streams: int, port: int, metrics_port: int
) -> Iterator[int]:
    """A fresh server process for one run; yields its pid and always stops it (SIGTERM, then SIGKILL)."""
    threads = str(args.server_threads)
    command = [
        *SERVER_COMMAND,
        *("--host", HOST, "--port", str(port), "--models", str(args.models_dir), "--default-model", args.model),
        *("--metrics-port", str(metrics_port)),
        *("--torch-threads", threads, "--max-streams", str(max_streams)),
        *(("--warps", format_warps(args.warps)) if args.warps else ()),
        *BATCHING_FLAGS[mode],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_serving(process, f"{HOST}:{port}", log)
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --------------------------------------------------------------------------- client processes


async def send_audio(
    call: grpc.aio.StreamStreamCall, record: StreamRecord, config: pb.RecognitionConfig,
    samples: np.ndarray, start_at: float, chunk_ms: float,
) -> None:  # fmt: skip
    """Config, then chunk k at ``start_at + k x chunk``; half-close at the end."""
    rate = config.sample_rate_hz
    step = max(1, round(rate * chunk_ms / 1000))
    await call.write(pb.StreamingRecognizeRequest(config=config))
    for offset in range(0, len(samples), step):
        scheduled = start_at + offset / rate
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        chunk = samples[offset : offset + step]
        record.chunks.append(((offset + len(chunk)) / rate, scheduled, time.monotonic()))
        await call.write(pb.StreamingRecognizeRequest(audio=chunk.tobytes()))
    await call.done_writing()
    record.half_closed_at = time.monotonic()


async def receive_results(call: grpc.aio.StreamStreamCall, record: StreamRecord) -> None:
    while (response := await call.read()) is not grpc.aio.EOF:
        arrived = time.monotonic()
        for result in response.results:
            text = result.alternatives[0].transcript if result.alternatives else ""
            record.results.append(StreamedResult(arrived, result.start_s, result.end_s, result.is_final, text))


async def run_stream(
    channel: grpc.aio.Channel, spec: StreamSpec, audio: tuple[np.ndarray, int], start_at: float,
    template: bytes, chunk_ms: float,
) -> StreamRecord:  # fmt: skip
    """One client: wait for its start, stream in real time, record every chunk and result."""
    samples, rate = audio
    record = StreamRecord(spec.index, spec.path)
    config = pb.RecognitionConfig.FromString(template)
    config.sample_rate_hz = rate
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    call = pb_grpc.SpeechLabelerStub(channel).StreamingRecognize(timeout=len(samples) / rate + STREAM_SLACK_S)
    outcomes = await asyncio.gather(
        send_audio(call, record, config, samples, start_at, chunk_ms),
        receive_results(call, record),
        return_exceptions=True,
    )
    code = await call.code()
    if code != grpc.StatusCode.OK:
        record.error = code.name  # the failed side's exception is this status
    else:
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    return record


async def run_clients(
    address: str, specs: list[StreamSpec], template: bytes, chunk_ms: float, stream_audio: StreamAudio,
    ready: Barrier,
) -> list[StreamRecord]:  # fmt: skip
    """Load audio and connect, meet the other processes at ``ready``, then run every stream."""
    audio = {path: stream_audio.load(path) for path in {spec.path for spec in specs}}
    options = [("grpc.use_local_subchannel_pool", 1)]  # one connection per stream, as separate clients have
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in specs]
    try:
        await asyncio.wait_for(asyncio.gather(*(channel.channel_ready() for channel in channels)), SETUP_TIMEOUT_S)
        await asyncio.to_thread(ready.wait, SETUP_TIMEOUT_S)
        started = time.monotonic()
        return await asyncio.gather(
            *(
                run_stream(channel, spec, audio[spec.path], started + spec.delay_s, template, chunk_ms)
                for channel, spec in zip(channels, specs)
            )
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


def client_process(
    address: str, specs: list[StreamSpec], template: bytes, chunk_ms: float, stream_audio: StreamAudio,
    ready: Barrier, results: multiprocessing.Queue,
) -> None:  # fmt: skip
    results.put(asyncio.run(run_clients(address, specs, template, chunk_ms, stream_audio, ready)))


def request_config(args: argparse.Namespace) -> bytes:
    """Every stream's config but its sample rate, serialized (the generated messages do not pickle
    into the client processes)."""
    config = pb.RecognitionConfig(
        encoding=pb.LINEAR16, model=args.model, interim_results=True, beam_size=args.beam_size
    )
    return config.SerializeToString()


def run_load(
    args: argparse.Namespace, address: str, server_pid: int, specs: list[StreamSpec]
) -> tuple[list[StreamRecord], float, float]:
    """All streams from ``--client-procs`` processes; returns records, wall seconds and server CPU seconds."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that has used gRPC
    procs = min(args.client_procs, len(specs))
    ready = context.Barrier(procs + 1)
    queue = context.Queue()
    clients = [
        context.Process(
            target=client_process,
            args=(address, specs[i::procs], request_config(args), args.chunk_ms, stream_audio(args), ready, queue),
        )
        for i in range(procs)
    ]
    for client in clients:
        client.start()
    try:
        ready.wait(SETUP_TIMEOUT_S)
        started, cpu_started = time.monotonic(), process_cpu_s(server_pid)
        last_end = max(spec.delay_s + stream_audio(args).duration_s(spec.duration_s) for spec in specs)
        records = [record for _ in clients for record in queue.get(timeout=last_end + STREAM_SLACK_S)]
        return records, time.monotonic() - started, process_cpu_s(server_pid) - cpu_started
    finally:
        for client in clients:
            client.join(5.0)
            if client.is_alive():
                client.kill()
                client.join()


# --------------------------------------------------------------------------- metrics


def chunks_per_call(metrics_port: int, model: str) -> float | None:
    """Mean live-stream chunks per model call, from the fresh server's own Prometheus histogram."""
    with urllib.request.urlopen(f"http://{HOST}:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals = {}
    for line in text.splitlines():
        for key in ("sum", "count"):
            if line.startswith(f'speechlabel_stream_batch_size_{key}{{model="{model}"}}'):
                totals[key] = float(line.split()[-1])
    return round(totals["sum"] / totals["count"], 2) if totals.get("count") else None


def chunk_latencies(record: StreamRecord) -> list[float | None]:
    """Per chunk: seconds from its send to the first result whose span holds its audio end (None: none does)."""
    latencies = []
    for audio_end_s, _, sent in record.chunks:
        covering = (
            r.arrived for r in record.results if r.start_s + COVER_SLACK_S < audio_end_s <= r.end_s + COVER_SLACK_S
        )
        arrived = next(covering, None)
        latencies.append(None if arrived is None else arrived - sent)
    return latencies


def final_latency(record: StreamRecord) -> float | None:
    """Half-close to the last final (0 if it came before the audio ended); None without a final."""
    finals = [r.arrived for r in record.results if r.is_final]
    if record.half_closed_at is None or not finals:
        return None
    return max(0.0, finals[-1] - record.half_closed_at)


def final_text(record: StreamRecord) -> str:
    return " ".join(" ".join(r.text for r in record.results if r.is_final).split())


def reference_text(record: StreamRecord, references: SpanReferences) -> str:
    """The offline transcripts of the spans of the stream's finals, joined as ``final_text`` joins them."""
    return " ".join(
        " ".join(references.text(record.path, r.start_s, r.end_s) for r in record.results if r.is_final).split()
    )


def percentiles_ms(values: list[float], *quantiles: int) -> dict[str, float | None]:
    return {f"p{q}": round(float(np.percentile(values, q)) * 1000, 1) if values else None for q in quantiles}


def summarize(
    records: list[StreamRecord], references: SpanReferences, bound_s: float, wall_s: float, cpu_s: float
) -> dict[str, Any]:
    per_stream = {record.index: chunk_latencies(record) for record in records}
    covered = [latency for latencies in per_stream.values() for latency in latencies if latency is not None]
    ok = [record for record in records if record.error is None]
    realtime = 0
    for record in ok:
        own = [latency for latency in per_stream[record.index] if latency is not None]
        realtime += bool(own) and float(np.percentile(own, 99)) <= bound_s
    finals = [latency for latency in map(final_latency, ok) if latency is not None]
    lags = [sent - scheduled for record in records for _, scheduled, sent in record.chunks]
    errors = Counter(record.error for record in records if record.error)
    return {
        "streams": len(records),
        "realtime_streams": realtime,
        "errors": sum(errors.values()),
        "error_codes": dict(errors),
        "chunks": sum(len(latencies) for latencies in per_stream.values()),
        "uncovered_chunks": sum(latency is None for latencies in per_stream.values() for latency in latencies),
        "chunk_latency_ms": percentiles_ms(covered, 50, 95, 99, 100),
        "final_latency_ms": percentiles_ms(finals, 50, 99),
        "mismatched_finals": sum(final_text(record) != reference_text(record, references) for record in ok),
        "server_cpu_percent": round(100 * cpu_s / wall_s, 1),
        "wall_s": round(wall_s, 2),
        "send_lag_ms": percentiles_ms(lags, 99),
    }


# --------------------------------------------------------------------------- report


COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("real time", lambda r: r["realtime_streams"]),
    ("chunk p50 ms", lambda r: r["chunk_latency_ms"]["p50"]),
    ("chunk p95 ms", lambda r: r["chunk_latency_ms"]["p95"]),
    ("chunk p99 ms", lambda r: r["chunk_latency_ms"]["p99"]),
    ("uncovered", lambda r: r["uncovered_chunks"]),
    ("final p50 ms", lambda r: r["final_latency_ms"]["p50"]),
    ("final p99 ms", lambda r: r["final_latency_ms"]["p99"]),
    ("server CPU %", lambda r: r["server_cpu_percent"]),
    (
        "chunks per call",
        lambda r: None if r.get("chunks_per_model_call") is None else f"{r['chunks_per_model_call']:.1f}",
    ),
    ("errors", lambda r: r["errors"]),
    ("mismatched", lambda r: r["mismatched_finals"]),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if isinstance(value, float) else str(value)


def print_table(runs: dict[str, dict[int, dict[str, Any]]], counts: list[int], modes: list[str]) -> None:
    """One row per N; each cell holds the modes' values side by side."""
    header = ["N", *(name for name, _ in COLUMNS)]
    rows = [
        [str(n), *(" / ".join(_cell(pick(runs[mode][n])) for mode in modes) for _, pick in COLUMNS)] for n in counts
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"cells: {' / '.join(f'batching {mode}' for mode in modes)}")
    for row in [header, *rows]:
        print(" | ".join(text.rjust(width) for text, width in zip(row, widths)))


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def _mode_list(text: str) -> list[str]:
    modes = text.split(",")
    unknown = set(modes) - set(BATCHING_FLAGS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {', '.join(sorted(unknown))}; choose from on, off")
    return modes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=_int_list, default=[10, 25, 50, 100, 150], help="concurrent stream counts")
    parser.add_argument("--modes", type=_mode_list, default=["on", "off"], help="stream batching modes")
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="directory the server serves")
    parser.add_argument("--model", default="char", help="model name (checkpoint MODELS_DIR/MODEL.ckpt)")
    parser.add_argument("--chunk-ms", type=float, default=100.0, help="audio per message")
    parser.add_argument("--beam-size", type=int, default=1, help="beam search with the model's own LM (1 = greedy)")
    parser.add_argument("--port", type=int, default=0, help="server port (0 = a free one per run)")
    parser.add_argument("--server-threads", type=int, default=2, help="torch/OMP threads of the server")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes sharing the streams")
    parser.add_argument(
        "--latency-budget-ms", type=float, default=250.0,
        help="a live stream's p99 chunk latency may exceed the algorithmic latency by this much",
    )  # fmt: skip
    parser.add_argument("--max-duration", type=float, help="cut each stream's audio to this many seconds")
    parser.add_argument(
        "--leading-silence",
        type=float,
        default=0.0,
        help="seconds of digital silence each stream sends before its audio",
    )
    parser.add_argument("--seed", type=int, default=0, help="stream start offsets")
    add_warps_argument(parser)  # passed to the server; the reference finals use the same ensemble
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stream_load.json"))
    args = parser.parse_args()
    if not args.manifest.exists():
        parser.exit(2, f"{args.manifest} does not exist; make the corpus with:\n  {CORPUS_COMMAND}\n")
    torch.set_num_threads(args.server_threads)

    utterances: list[Utterance] = read_manifest(args.manifest)
    cycled = [utterances[i % len(utterances)] for i in range(max(args.streams))]
    paths = [str(utterance.audio_filepath) for utterance in cycled]
    recognizer, reference_mode, algorithmic_s = streaming_reference(
        args.models_dir / f"{args.model}.ckpt", args.warps, args.beam_size
    )
    references = SpanReferences(recognizer, stream_audio(args), args.beam_size)
    print(
        f"reference finals: {reference_mode}; algorithmic latency {1000 * algorithmic_s:.0f} ms; a stream is live "
        f"when its p99 chunk latency is at most {1000 * algorithmic_s + args.latency_budget_ms:.0f} ms"
    )
    load_average = os.getloadavg()

    runs: dict[str, dict[int, dict[str, Any]]] = {mode: {} for mode in args.modes}
    for n in args.streams:
        rng = random.Random(args.seed * 1_000_003 + n)
        specs = [StreamSpec(i, paths[i], cycled[i].duration, rng.uniform(0.0, STAGGER_S)) for i in range(n)]
        for mode in args.modes:
            port, metrics_port = args.port or free_port(), free_port()
            with running_server(args, mode, n, port, metrics_port) as pid:
                records, wall_s, cpu_s = run_load(args, f"{HOST}:{port}", pid, specs)
                per_call = chunks_per_call(metrics_port, args.model)
            bound_s = algorithmic_s + args.latency_budget_ms / 1000
            runs[mode][n] = summary = summarize(records, references, bound_s, wall_s, cpu_s)
            summary["chunks_per_model_call"] = per_call
            print(
                f"N={n} batching {mode}: {summary['realtime_streams']} live, p99 "
                f"{summary['chunk_latency_ms']['p99']} ms, {summary['errors']} errors",
                flush=True,
            )
    print_table(runs, args.streams, args.modes)

    results = {
        "args": {name: str(value) if isinstance(value, Path) else value for name, value in vars(args).items()},
        "reference_finals": reference_mode,
        "algorithmic_latency_s": algorithmic_s,
        "server_flags": {mode: list(BATCHING_FLAGS[mode]) for mode in args.modes},
        "runs": {mode: {str(n): summary for n, summary in by_n.items()} for mode, by_n in runs.items()},
    }
    write_report(args.out, results, load_average_at_start=load_average)


if __name__ == "__main__":
    main()
