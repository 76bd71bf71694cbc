"""Client for the SpeechLabeler service: importable functions and the ``speechlabel stream``,
``recognize``, ``align`` and ``health`` commands.

Files are read with soundfile, MP4/M4A and WebM with :mod:`audiomodels.media` (FFmpeg), as the
server reads them. ``recognize``/``align`` send WAV, FLAC, MP3, Ogg, MP4 and WebM files as they
are (the server reads their headers; compressed files stay small on the wire) and anything else
as FLOAT32 samples; ``stream`` sends a file as FLOAT32 samples at its own rate (lossless for any
source format) in ``chunk_ms`` pieces, or as Opus packets (``opus_kbps``: a twelfth of the bytes at
24 kbps), paced in real time unless ``realtime=False``, and live raw
audio from standard input (``stream -``: a microphone through ``arecord``, ``sox`` or ``ffmpeg``)
as it arrives, or encoded to Opus packets as it arrives (``stream - --opus-kbps``, :func:`live_opus`).
``stream --as-recorded`` sends a WebM or Ogg Opus recording's, or a fragmented MP4's, bytes, from
a file or standard input, as they are (:func:`stream_recording`: what a browser's MediaRecorder sends).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import BinaryIO

import grpc
import numpy as np
import soundfile as sf
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audiomodels.media import OPUS_FRAME_S, MediaError, MediaFile, OpusEncoder, opus_packets
from audiomodels.raw_samples import RawSampleReader
from service.auth import bearer_metadata, token_from
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.gen.speechlabel.v1 import speech_pb2_grpc as pb_grpc

MAX_RESPONSE_BYTES = 256 * 1024 * 1024  # frame labels of long audio make big responses
RAW_ENCODINGS = {"pcm16": (pb.LINEAR16, 2), "float32": (pb.FLOAT32, 4)}  # name -> (proto encoding, bytes per sample)
_CONTAINERS = {
    "WAV": pb.WAV, "WAVEX": pb.WAV, "RF64": pb.WAV, "FLAC": pb.FLAC, "MP3": pb.MP3, "OGG": pb.OGG,
    "MP4": pb.MP4, "WEBM": pb.WEBM,
}  # fmt: skip
RECORDING_HEAD_BYTES = 8  # enough to tell the containers recording_encoding knows


@dataclass(frozen=True)
class Connection:
    """Where the server is and how to reach it."""

    server: str = "localhost:50051"
    auth_token: str | None = None
    tls_ca: Path | None = None  # PEM roots; set to use TLS
    timeout_s: float | None = None  # per call (streams included)
    tls_client_cert: Path | None = None  # PEM chain + key presented when the server verifies clients
    tls_client_key: Path | None = None

    def channel(self) -> grpc.Channel:
        options = [("grpc.max_receive_message_length", MAX_RESPONSE_BYTES)]
        if self.tls_ca is None:
            return grpc.insecure_channel(self.server, options=options)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.tls_ca.read_bytes(),
            private_key=self.tls_client_key.read_bytes() if self.tls_client_key else None,
            certificate_chain=self.tls_client_cert.read_bytes() if self.tls_client_cert else None,
        )
        return grpc.secure_channel(self.server, credentials, options=options)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer_metadata(self.auth_token)


def open_audio(path: str | Path) -> sf.SoundFile | MediaFile:
    """A reader of the file: libsndfile's, or FFmpeg's for MP4 and WebM (raises ``MediaError``
    naming both readers' complaints when neither can read it)."""
    try:
        return sf.SoundFile(str(path))
    except sf.LibsndfileError as error:
        try:
            return MediaFile(io.BytesIO(Path(path).read_bytes()))
        except MediaError as media_error:
            raise MediaError(f"{path}: not a readable audio file ({error}; as MP4/WebM: {media_error})") from error


def read_samples(path: str | Path) -> tuple[np.ndarray, int]:
    """A file's samples as float32 mono (channels averaged) and its rate."""
    with open_audio(path) as audio:
        samples = audio.read(dtype="float32", always_2d=True)
        return np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)), audio.samplerate


def file_request(path: str | Path, config: pb.RecognitionConfig) -> tuple[pb.RecognitionConfig, bytes]:
    """Config + audio bytes for a unary call: the server's file encodings unchanged, others as FLOAT32."""
    with open_audio(path) as audio:
        container = audio.format
    if container in _CONTAINERS:
        sent = pb.RecognitionConfig()
        sent.CopyFrom(config)
        sent.encoding = _CONTAINERS[container]
        return sent, Path(path).read_bytes()
    samples, rate = read_samples(path)
    return _raw_config(config, rate), samples.astype("<f4").tobytes()


def _raw_config(config: pb.RecognitionConfig, rate: int, encoding: str = "float32") -> pb.RecognitionConfig:
    sent = pb.RecognitionConfig()
    sent.CopyFrom(config)
    sent.encoding, sent.sample_rate_hz = RAW_ENCODINGS[encoding][0], rate
    return sent


def recognize_file(
    path: str | Path, connection: Connection = Connection(), config: pb.RecognitionConfig | None = None
) -> pb.RecognizeResponse:
    """One Recognize call for a whole file (raises ``grpc.RpcError`` with the server's status)."""
    config, audio = file_request(path, config or pb.RecognitionConfig(word_time_offsets=True))
    with connection.channel() as channel:
        stub = pb_grpc.SpeechLabelerStub(channel)
        return stub.Recognize(
            pb.RecognizeRequest(config=config, audio=audio), timeout=connection.timeout_s, metadata=connection.metadata
        )


def align_file(
    path: str | Path, transcript: str, connection: Connection = Connection(), config: pb.RecognitionConfig | None = None
) -> pb.AlignResponse:
    """Force-align ``transcript`` to a file: words and labels with times."""
    config, audio = file_request(path, config or pb.RecognitionConfig())
    with connection.channel() as channel:
        stub = pb_grpc.SpeechLabelerStub(channel)
        request = pb.AlignRequest(config=config, audio=audio, transcript=transcript)
        return stub.Align(request, timeout=connection.timeout_s, metadata=connection.metadata)


def paced_chunks(
    samples: np.ndarray, rate: int, *, chunk_ms: float = 100.0, realtime: bool = True
) -> Iterator[bytes]:
    """FLOAT32 chunks of ``samples``; with ``realtime`` each waits until its audio has 'happened'."""
    step = max(1, round(rate * chunk_ms / 1000))
    chunks = ((offset / rate, samples[offset : offset + step].astype("<f4").tobytes()) for offset in range(0, len(samples), step))
    return _paced(chunks, realtime)


def _paced(timed: Iterable[tuple[float, bytes]], realtime: bool) -> Iterator[bytes]:
    """Each message of ``(audio time of its start, bytes)``; with ``realtime`` not before that time."""
    started = time.monotonic()
    for at_s, message in timed:
        if realtime:
            time.sleep(max(0.0, started + at_s - time.monotonic()))
        yield message


def live_chunks(source: BinaryIO, max_bytes: int) -> Iterator[bytes]:
    """What a live source (a pipe from a recorder) has written, as soon as it has, up to
    ``max_bytes`` at a time, until it closes; any cut between samples is fine for the server."""
    read = getattr(source, "read1", source.read)  # read1: return what is there rather than wait for max_bytes
    while chunk := read(max_bytes):
        yield chunk


def stream_audio(
    chunks: Iterable[bytes],
    encoding: str,
    rate: int,
    connection: Connection = Connection(),
    config: pb.RecognitionConfig | None = None,
) -> Iterator[pb.Result]:
    """Stream raw audio (``"pcm16"`` or ``"float32"`` little-endian chunks at ``rate``) and yield
    the server's results (interims too, if the config asks) as they arrive."""
    sent = _raw_config(config or pb.RecognitionConfig(word_time_offsets=True), rate, encoding)
    yield from _stream(sent, chunks, connection)


def _stream(config: pb.RecognitionConfig, chunks: Iterable[bytes], connection: Connection) -> Iterator[pb.Result]:
    with connection.channel() as channel:
        stub = pb_grpc.SpeechLabelerStub(channel)
        messages = _stream_messages(config, chunks)
        for response in stub.StreamingRecognize(messages, timeout=connection.timeout_s, metadata=connection.metadata):
            yield from response.results


def _stream_messages(config: pb.RecognitionConfig, chunks: Iterable[bytes]) -> Iterator[pb.StreamingRecognizeRequest]:
    yield pb.StreamingRecognizeRequest(config=config)
    for chunk in chunks:
        yield pb.StreamingRecognizeRequest(audio=chunk)


def stream_file(
    path: str | Path,
    connection: Connection = Connection(),
    config: pb.RecognitionConfig | None = None,
    *,
    chunk_ms: float = 100.0,
    realtime: bool = True,
    opus_kbps: float | None = None,
    as_recorded: bool = False,
) -> Iterator[pb.Result]:
    """Stream a file and yield the server's results (interims too, if the config asks) as they arrive.

    With ``opus_kbps`` the audio goes as Opus packets at that bitrate (one per message, every
    20 ms; 24 kbps is about a twelfth of LINEAR16 at 16 kHz); with ``as_recorded`` a WebM or Ogg
    Opus recording's or an MP4's bytes go as they are, ``chunk_ms`` of its duration per message
    (as a browser's MediaRecorder sends a recording); else FLOAT32 chunks of ``chunk_ms``."""
    if as_recorded:
        data = Path(path).read_bytes()
        seconds, rate = _recording_length(data, path)
        count = max(1, math.ceil(seconds * 1000 / chunk_ms))
        step = math.ceil(len(data) / count)
        timed = ((index * chunk_ms / 1000, data[index * step : (index + 1) * step]) for index in range(count))
        # an MP4's rate is stated, so the server need not resample audio that is not at 48 kHz
        stated = rate if recording_encoding(data) == pb.MP4 else 0
        yield from stream_recording(_paced(timed, realtime), connection, config, sample_rate_hz=stated)
        return
    samples, rate = read_samples(path)
    if opus_kbps is None:
        chunks = paced_chunks(samples, rate, chunk_ms=chunk_ms, realtime=realtime)
        yield from stream_audio(chunks, "float32", rate, connection, config)
        return
    packets = enumerate(opus_packets(samples, rate, opus_kbps))
    yield from stream_opus(_paced(((index * OPUS_FRAME_S, packet) for index, packet in packets), realtime), connection, config)


def stream_opus(
    packets: Iterable[bytes], connection: Connection = Connection(), config: pb.RecognitionConfig | None = None
) -> Iterator[pb.Result]:
    """Stream raw Opus packets (one per message, as :class:`audiomodels.media.OpusEncoder` makes
    them at 16 kHz) and yield the server's results as they arrive."""
    yield from _stream(_compressed_config(config, pb.OPUS, 16000), packets, connection)


def stream_recording(
    pieces: Iterable[bytes],
    connection: Connection = Connection(),
    config: pb.RecognitionConfig | None = None,
    *,
    sample_rate_hz: int = 0,
) -> Iterator[pb.Result]:
    """Stream a recording as its bytes come, in pieces cut anywhere, and yield the server's results
    as they arrive: WebM or Ogg with Opus audio (Chrome's and Firefox's MediaRecorder, ``ffmpeg -f
    webm -`` or ``-f ogg -``) or fragmented MP4 with AAC or Opus (Safari's MediaRecorder, ``ffmpeg
    -f mp4 -movflags frag_keyframe+empty_moov -``), the container told by its first bytes. An MP4's
    audio is resampled to 48 kHz by the server unless ``sample_rate_hz`` states its own rate."""
    pieces, head = iter(pieces), b""
    while len(head) < RECORDING_HEAD_BYTES and (piece := next(pieces, None)) is not None:
        head += piece
    encoding = recording_encoding(head)
    if encoding is None:
        raise MediaError(f"not a WebM, Ogg or MP4 recording: it begins with {head[:RECORDING_HEAD_BYTES]!r}")
    yield from _stream(_compressed_config(config, encoding, sample_rate_hz), chain([head], pieces), connection)


def recording_encoding(head: bytes) -> int | None:
    """The stream encoding of a recording that begins with ``head``: EBML's magic (WebM), Ogg's
    capture pattern, or an MP4's leading ftyp box; None for anything else."""
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return pb.WEBM
    if head.startswith(b"OggS"):
        return pb.OGG
    return pb.MP4 if head[4:8] == b"ftyp" else None


def _recording_length(data: bytes, path: str | Path) -> tuple[float, int]:
    """A recording's duration (it paces the messages) and rate."""
    if recording_encoding(data) is None:
        raise MediaError(f"{path} is not a WebM, Ogg or MP4 recording; stream it without --as-recorded")
    with open_audio(path) as audio:
        return audio.frames / audio.samplerate, audio.samplerate


def _compressed_config(config: pb.RecognitionConfig | None, encoding: int, rate: int) -> pb.RecognitionConfig:
    sent = pb.RecognitionConfig()
    sent.CopyFrom(config or pb.RecognitionConfig(word_time_offsets=True))
    sent.encoding, sent.sample_rate_hz = encoding, rate
    return sent


def live_opus(chunks: Iterable[bytes], encoding: str, rate: int, kbps: float) -> Iterator[bytes]:
    """Raw little-endian chunks (``"pcm16"`` or ``"float32"``, cut anywhere, as a recorder's pipe
    gives them) as Opus packets, each sent as soon as its 20 ms are in."""
    encoder, reader = OpusEncoder(rate, kbps), RawSampleReader(encoding)
    for chunk in chunks:
        yield from encoder.encode(reader.push(chunk))
    yield from encoder.finish()


def check_health(connection: Connection = Connection(), service: str = "") -> str:
    """The server's serving status name for ``service`` ("" = the whole server), e.g. ``SERVING``."""
    with connection.channel() as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=connection.timeout_s or 5.0
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


# --------------------------------------------------------------------------- commands


def _as_dict(message: object) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True)  # type: ignore[arg-type]


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default="localhost:50051", help="HOST:PORT of a speechlabel server")
    parser.add_argument("--auth-token", help="bearer token (default: $SPEECHLABEL_AUTH_TOKEN)")
    parser.add_argument("--tls-ca", type=Path, help="PEM root certificates: connect with TLS")
    parser.add_argument("--tls-client-cert", type=Path, help="PEM client certificate (servers that verify clients)")
    parser.add_argument("--tls-client-key", type=Path, help="PEM key of --tls-client-cert")
    parser.add_argument("--timeout", type=float, help="seconds before the call is abandoned")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="model name (default: the server's default)")
    parser.add_argument("--labels", action="store_true", help="also return label segments and frame labels")
    parser.add_argument("--json", action="store_true", help="print whole results as JSON lines")


def _connection(args: argparse.Namespace) -> Connection:
    return Connection(
        args.server, token_from(args.auth_token), args.tls_ca, args.timeout, args.tls_client_cert, args.tls_client_key
    )


def _config(args: argparse.Namespace, **fields: object) -> pb.RecognitionConfig:
    return pb.RecognitionConfig(model=args.model, word_time_offsets=True, frame_labels=args.labels, **fields)


def _reporting_errors(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Exit status 1 with the server's status and message (or the local error) on stderr."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except grpc.RpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        except (OSError, sf.LibsndfileError, MediaError) as error:
            print(f"error: {error}", file=sys.stderr)
        return 1

    return wrapped


def _add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--beam-size", type=int, default=0)
    parser.add_argument(
        "--alternatives", type=int, default=0, help="hypotheses per result, best first (needs --beam-size at least this)"
    )
    parser.add_argument("--phrase", action="append", default=[], help="a word or phrase to favour (repeatable)")
    parser.add_argument("--phrase-boost", type=float, default=0.0, help="reward per matched label (0 = server default)")


def _decoding(args: argparse.Namespace) -> dict[str, object]:
    """The config fields of :func:`_add_decoding_arguments`."""
    return {
        "beam_size": args.beam_size,
        "max_alternatives": args.alternatives,
        "phrases": args.phrase,
        "phrase_boost": args.phrase_boost,
    }


def _add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        type=Path,
        help="audio file (WAV, FLAC, MP3, OGG, MP4/M4A, WebM; any rate, mono or not), or - for live raw mono audio on "
        "standard input (e.g. arecord -q -f S16_LE -r 16000 -c 1 -t raw | speechlabel stream -)",
    )
    _add_connection_arguments(parser)
    _add_model_arguments(parser)
    parser.add_argument("--raw-rate", type=int, default=16000, help="sample rate of the audio on standard input")
    parser.add_argument(
        "--raw-encoding", choices=list(RAW_ENCODINGS), default="pcm16", help="little-endian samples on standard input"
    )
    parser.add_argument("--fast", action="store_true", help="send a file as fast as possible instead of in real time")
    parser.add_argument("--interim", action="store_true", help="show partial results while audio streams")
    parser.add_argument("--chunk-ms", type=float, default=100.0, help="audio per message")
    encoded = parser.add_mutually_exclusive_group()
    encoded.add_argument(
        "--opus-kbps", type=float, help="send the audio as Opus packets at this bitrate (24: about 1/12 of LINEAR16's bytes)"
    )
    encoded.add_argument(
        "--as-recorded",
        action="store_true",
        help="send a recording's bytes as they are (WebM or Ogg with Opus, fragmented MP4 with AAC or Opus), from "
        "the file or as standard input gives them (e.g. ffmpeg -f alsa -i default -c:a libopus -f webm - | "
        "speechlabel stream - --as-recorded)",
    )
    _add_decoding_arguments(parser)
    parser.add_argument("--endpoint-silence-ms", type=int, default=0, help="0 = server default")
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="algorithmic latency of the streaming model (0 = the model's default)"
    )
    parser.add_argument(
        "--full-context-finals",
        action="store_true",
        help="each final decoded again from its whole utterance by the full-context model (and the server's phone "
        "check with --beam-size): fewer errors, each final later by that decode",
    )


@_reporting_errors
def _run_stream(args: argparse.Namespace) -> int:
    """Finals on their own lines; partials on one line that refreshes (on a terminal), their
    unsettled end dimmed."""
    config = _config(
        args,
        interim_results=args.interim,
        **_decoding(args),
        endpoint_silence_ms=args.endpoint_silence_ms,
        stream_latency_ms=args.latency_ms,
        full_context_finals=args.full_context_finals,
    )
    refresh = sys.stdout.isatty() and not args.json
    pending_line = False
    if str(args.file) == "-":  # live: sent as the recorder writes it, so it paces itself
        chunk_bytes = max(1, round(args.raw_rate * args.chunk_ms / 1000)) * RAW_ENCODINGS[args.raw_encoding][1]
        chunks = live_chunks(sys.stdin.buffer, chunk_bytes)
        if args.as_recorded:
            results = stream_recording(chunks, _connection(args), config)
        elif args.opus_kbps is None:
            results = stream_audio(chunks, args.raw_encoding, args.raw_rate, _connection(args), config)
        else:
            packets = live_opus(chunks, args.raw_encoding, args.raw_rate, args.opus_kbps)
            results = stream_opus(packets, _connection(args), config)
    else:
        results = stream_file(
            args.file,
            _connection(args),
            config,
            chunk_ms=args.chunk_ms,
            realtime=not args.fast,
            opus_kbps=args.opus_kbps,
            as_recorded=args.as_recorded,
        )
    for result in results:
        text = result.alternatives[0].transcript if result.alternatives else ""
        if args.json:
            print(json.dumps(_as_dict(result), ensure_ascii=False), flush=True)
        elif not result.is_final:
            if refresh:  # the part the server may still change is dimmed
                stable = result.stable_transcript if text.startswith(result.stable_transcript) else ""
                print(f"\r{stable}\x1b[2m{text[len(stable):]}\x1b[0m\x1b[K", end="", flush=True)
                pending_line = True
        else:
            clear = "\r\x1b[K" if pending_line else ""
            print(f"{clear}[{result.start_s:7.2f} - {result.end_s:7.2f}] {text}", flush=True)
            pending_line = False
    if pending_line:
        print()
    return 0


def _add_recognize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="audio file (WAV, FLAC, MP3, OGG, MP4/M4A, WebM)")
    _add_connection_arguments(parser)
    _add_model_arguments(parser)
    _add_decoding_arguments(parser)


@_reporting_errors
def _run_recognize(args: argparse.Namespace) -> int:
    """The transcript; with several alternatives, one numbered line each with its confidence."""
    config = _config(args, **_decoding(args))
    response = recognize_file(args.file, _connection(args), config)
    alternatives = response.results[0].alternatives
    if args.json:
        print(json.dumps(_as_dict(response), ensure_ascii=False))
    elif len(alternatives) == 1:
        print(alternatives[0].transcript)
    else:
        for rank, alternative in enumerate(alternatives, 1):
            print(f"{rank}. {alternative.transcript}\t({alternative.confidence:.2f})")
    return 0


def _add_align_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="audio file (WAV, FLAC, MP3, OGG, MP4/M4A, WebM)")
    parser.add_argument("transcript", help="the text spoken in the file")
    _add_connection_arguments(parser)
    _add_model_arguments(parser)


@_reporting_errors
def _run_align(args: argparse.Namespace) -> int:
    """One line per word, ``start end word``, or the whole response with --json."""
    response = align_file(args.file, args.transcript, _connection(args), _config(args))
    if args.json:
        print(json.dumps(_as_dict(response), ensure_ascii=False))
    else:
        for word in response.words:
            print(f"{word.start_s:.3f}\t{word.end_s:.3f}\t{word.word}")
    return 0


def _add_health_arguments(parser: argparse.ArgumentParser) -> None:
    _add_connection_arguments(parser)
    parser.add_argument("--service", default="", help="service name ('' = the whole server)")


@_reporting_errors
def _run_health(args: argparse.Namespace) -> int:
    """Exit 0 only when the server answers SERVING (a container healthcheck)."""
    status = check_health(_connection(args), args.service)
    print(status)
    return 0 if status == "SERVING" else 1


@dataclass(frozen=True)
class Command:
    """A subcommand for ``service.cli`` (registered as ``service.client:NAME``)."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


STREAM = Command(_add_stream_arguments, _run_stream)
RECOGNIZE = Command(_add_recognize_arguments, _run_recognize)
ALIGN = Command(_add_align_arguments, _run_align)
HEALTH = Command(_add_health_arguments, _run_health)
