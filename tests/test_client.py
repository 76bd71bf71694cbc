"""The client library and the ``speechlabel stream/recognize/align/health`` commands against the real server."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf

from audiomodels.audio import decode_audio, encode_pcm16, load_audio, quantize_pcm16
from audiomodels.media import MediaError, opus_packets
from audiomodels.recognizer import Recognizer
from service.cli import main as cli_main
from service.client import (
    Connection,
    align_file,
    check_health,
    file_request,
    live_opus,
    read_samples,
    recognize_file,
    stream_file,
    stream_recording,
)
from service.gen.speechlabel.v1 import speech_pb2 as pb
from tests.test_mp4_stream import mp4 as mp4_recording
from tests.grpc_harness import LoopbackServer
from tests.media_files import write_media
from training.codecs import encode_audio

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recognizer(model_dir: Path) -> Recognizer:
    return Recognizer.from_checkpoint(model_dir / "tiny.ckpt")


def offline_text(recognizer: Recognizer, path: Path) -> str:
    samples, rate = sf.read(path, dtype="float32")
    return recognizer.transcribe(samples, rate).text


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_stream_command_prints_finals_as_json(grpc_server: LoopbackServer, speech_files, recognizer, capsys) -> None:
    path = speech_files["the quick brown fox"]
    status = cli_main(["stream", str(path), "--server", grpc_server.address, "--fast", "--json", "--chunk-ms", "37"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    (final,) = lines
    assert final["is_final"] and final["alternatives"][0]["transcript"] == offline_text(recognizer, path)
    assert [w["word"] for w in final["alternatives"][0]["words"]] == ["the", "quick", "brown", "fox"]


def test_stream_command_sends_a_file_or_live_input_as_opus_packets(
    grpc_server: LoopbackServer, speech_files, capsys, monkeypatch
) -> None:
    path = str(speech_files["the quick brown fox"])
    status = cli_main(["stream", path, "--server", grpc_server.address, "--fast", "--json", "--opus-kbps", "24"])
    (from_file,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and from_file["is_final"] and from_file["alternatives"][0]["words"]  # heard through Opus

    samples = load_audio(path)
    monkeypatch.setattr(sys, "stdin", LiveRecorder(samples, 16000))  # a microphone's pipe, encoded as it comes
    status = cli_main(["stream", "-", "--server", grpc_server.address, "--json", "--opus-kbps", "24"])
    (live,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and live["alternatives"][0]["words"]
    # pieces cut anywhere, even inside a sample, make the packets of the whole signal
    data = encode_pcm16(samples)
    pieces = [data[offset : offset + 999] for offset in range(0, len(data), 999)]
    assert list(live_opus(pieces, "pcm16", 16000, 24)) == opus_packets(quantize_pcm16(samples), 16000, 24)


@pytest.mark.parametrize("fmt", ["webm", "ogg", "mp4"])
def test_stream_command_sends_a_recording_as_it_is(
    grpc_server: LoopbackServer, speech_files, capsys, monkeypatch, tmp_path, fmt
) -> None:
    """``--as-recorded``: a browser recording's bytes (WebM from Chrome, Ogg from Firefox,
    fragmented MP4 from Safari) go as they are (a file in 37 ms pieces, or standard input's stream
    as it comes), and the server's finals are those of the samples they decode to, sent as
    FLOAT32: the same words at the same times."""
    recording = tmp_path / f"recording.{fmt}"
    samples = load_audio(speech_files["the quick brown fox"])
    if fmt == "mp4":  # the file's rate (16 kHz) is stated; from standard input it is resampled to 48 kHz
        recording.write_bytes(mp4_recording(samples, 16000))
    else:
        recording.write_bytes(encode_audio(samples, 16000, fmt, "libopus", seekable=False))
    common = ["--server", grpc_server.address, "--fast", "--json", "--chunk-ms", "37"]

    def finals(*args: str) -> list[dict]:
        assert cli_main(["stream", *args, *common]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    as_samples = finals(str(recording))  # decoded here, sent as FLOAT32 at 48 kHz
    assert as_samples and as_samples[0]["alternatives"][0]["words"]
    if fmt != "ogg":  # the same decoder on both sides; this Ogg states 16 kHz, so the file is read resampled to it
        assert finals(str(recording), "--as-recorded") == as_samples
    else:
        assert [f["alternatives"][0]["transcript"] for f in finals(str(recording), "--as-recorded")] == [
            f["alternatives"][0]["transcript"] for f in as_samples
        ]
    piped = io.BufferedReader(io.BytesIO(recording.read_bytes()), buffer_size=500)  # read1 gives at most 500 bytes
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(piped))
    live = finals("-", "--as-recorded")
    assert [f["alternatives"][0]["transcript"] for f in live] == [f["alternatives"][0]["transcript"] for f in as_samples]

    # the container is told from the first bytes, however the first pieces cut them
    data = recording.read_bytes()
    results = stream_recording([data[:1], data[1:3], data[3:6], data[6:]], Connection(grpc_server.address))
    assert [r.alternatives[0].transcript for r in results if r.is_final] == [
        f["alternatives"][0]["transcript"] for f in as_samples
    ]
    with pytest.raises(MediaError, match=r"not a WebM, Ogg or MP4 recording: it begins with b'RIFF\.\.\.\.'"):
        next(stream_recording([b"RI", b"FF", b"....WAVE"], Connection(grpc_server.address)))

    assert cli_main(["stream", str(speech_files["the quick brown fox"]), "--as-recorded", *common]) == 1
    assert "is not a WebM, Ogg or MP4 recording; stream it without --as-recorded" in capsys.readouterr().err


def test_stream_command_asks_for_full_context_finals(
    grpc_server: LoopbackServer, speech_files, recognizer, capsys
) -> None:
    """``--full-context-finals``: the final is the full-context model's beam search over the whole
    file, its word confidences included (the chunked model's posteriors would give others)."""
    path = speech_files["seven green apples"]
    args = ["stream", str(path), "--server", grpc_server.address, "--fast", "--json", "--beam-size", "4"]
    status = cli_main([*args, "--full-context-finals"])
    (final,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    samples, rate = sf.read(path, dtype="float32")
    expected = recognizer.transcribe(samples, rate, beam_size=4)
    assert status == 0 and final["is_final"] and final["alternatives"][0]["transcript"] == expected.text
    confidences = [w["confidence"] for w in final["alternatives"][0]["words"]]
    assert confidences == pytest.approx([w.confidence for w in expected.words], abs=2e-3)
    chunked = Recognizer(recognizer.config, recognizer.model, chunking=recognizer.config.model.streaming)
    chunked_words = chunked.transcribe(samples, rate, beam_size=4).words
    assert confidences != pytest.approx([w.confidence for w in chunked_words], abs=2e-3)


def test_stream_file_paces_in_real_time_with_interims_first(grpc_server: LoopbackServer, speech_files) -> None:
    path = speech_files["hello world"]
    duration = sf.info(str(path)).duration
    started = time.monotonic()
    config = pb.RecognitionConfig(interim_results=True)
    results = list(stream_file(path, Connection(grpc_server.address), config, chunk_ms=100))
    assert time.monotonic() - started >= 0.9 * duration
    *interims, final = results
    assert interims and not any(r.is_final for r in interims)
    assert final.is_final and final.alternatives[0].transcript == "hello world"


class LiveRecorder:
    """Standard input fed like a recorder's pipe: 16-bit samples written in 50 ms pieces as they 'happen'."""

    def __init__(self, samples: np.ndarray, rate: int) -> None:
        read_fd, self._write_fd = os.pipe()
        self.buffer = io.BufferedReader(io.FileIO(read_fd, "rb"))
        self.written_at: list[float] = []
        self._thread = threading.Thread(target=self._record, args=(encode_pcm16(samples), rate), daemon=True)
        self._thread.start()

    def _record(self, data: bytes, rate: int) -> None:
        piece = rate // 20 * 2
        with os.fdopen(self._write_fd, "wb", buffering=0) as pipe:
            for offset in range(0, len(data), piece):
                time.sleep(0.05)
                pipe.write(data[offset : offset + piece])
                self.written_at.append(time.monotonic())


def test_stream_command_takes_live_raw_audio_on_standard_input(
    grpc_server: LoopbackServer, speech_files, recognizer, capsys, monkeypatch
) -> None:
    path = speech_files["the quick brown fox"]
    samples = load_audio(path)  # 16 kHz
    recorder = LiveRecorder(samples, 16000)
    monkeypatch.setattr(sys, "stdin", recorder)
    status = cli_main(["stream", "-", "--server", grpc_server.address, "--json", "--interim"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    *interims, final = lines
    assert interims and final["is_final"] and not any(line.get("is_final") for line in interims)
    assert final["alternatives"][0]["transcript"] == offline_text(recognizer, path) == "the quick brown fox"
    assert len(recorder.written_at) == -(-len(samples) * 2 // 1600)  # every piece went through the pipe

    monkeypatch.setattr(sys, "stdin", LiveRecorder(samples[:1600], 16000))
    assert cli_main(["stream", "-", "--server", grpc_server.address, "--raw-rate", "1000"]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err  # a rate the server refuses


def test_stream_command_text_output(grpc_server: LoopbackServer, speech_files, capsys) -> None:
    status = cli_main(
        ["stream", str(speech_files["open the door"]), "--server", grpc_server.address, "--fast", "--interim"]
    )
    out = capsys.readouterr().out
    assert status == 0 and out.endswith("open the door\n") and out.count("\n") == 1  # interims only on a terminal
    assert out.startswith("[   0.00 - ")


def test_recognize_and_align_commands(grpc_server: LoopbackServer, speech_files, capsys) -> None:
    path = str(speech_files["seven green apples"])
    assert cli_main(["recognize", path, "--server", grpc_server.address]) == 0
    assert capsys.readouterr().out == "seven green apples\n"
    assert cli_main(["align", path, "Seven green apples.", "--server", grpc_server.address]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [word for _, _, word in rows] == ["seven", "green", "apples"]
    assert all(float(start) < float(end) for start, end, _ in rows)
    assert cli_main(["recognize", path, "--server", grpc_server.address, "--json", "--labels"]) == 0
    response = json.loads(capsys.readouterr().out)
    assert response["model"] == "tiny" and response["results"][0]["segments"]
    assert cli_main(["recognize", path, "--server", grpc_server.address, "--beam-size", "8", "--alternatives", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("1. seven green apples\t(")
    assert [line.split(". ", 1)[0] for line in lines] == ["1", "2", "3"]
    hello = str(speech_files["hello world"])
    hinted = ["--beam-size", "8", "--phrase", "hello word", "--phrase-boost", "10"]
    assert cli_main(["recognize", hello, "--server", grpc_server.address, *hinted]) == 0
    assert capsys.readouterr().out == "hello word\n"


def test_library_calls_send_containers_as_they_are(grpc_server: LoopbackServer, speech_files, tmp_path) -> None:
    wav = speech_files["hello world"]
    files = [(pb.WAV, wav)]
    for encoding, name, fmt, subtype, rate in (
        (pb.FLAC, "hello.flac", "FLAC", "PCM_16", 22050),
        (pb.MP3, "hello.mp3", "MP3", "MPEG_LAYER_III", 22050),
        (pb.OGG, "hello.ogg", "OGG", "VORBIS", 22050),
        (pb.OGG, "hello.opus", "OGG", "OPUS", 24000),  # Opus takes 8, 12, 16, 24 or 48 kHz
        (pb.FLOAT32, "hello.aiff", "AIFF", "PCM_16", 22050),  # read here, not taken by the server
    ):
        files.append((encoding, tmp_path / name))
        sf.write(tmp_path / name, load_audio(wav, target_rate=rate), rate, format=fmt, subtype=subtype)
    for encoding, name, rate in ((pb.MP4, "hello.m4a", 44100), (pb.WEBM, "hello.webm", 48000)):  # phones, browsers
        files.append((encoding, write_media(tmp_path / name, load_audio(wav, target_rate=rate), rate)))
    connection = Connection(grpc_server.address)
    for encoding, path in files:
        config, audio = file_request(path, pb.RecognitionConfig())
        assert config.encoding == encoding, path.name
        if encoding == pb.FLOAT32:
            assert config.sample_rate_hz == 22050 and len(audio) == 4 * sf.info(str(path)).frames
        else:
            assert audio == path.read_bytes()
        assert recognize_file(path, connection).results[0].alternatives[0].transcript == "hello world", path.name
    flac = tmp_path / "hello.flac"
    assert [w.word for w in align_file(flac, "hello world", connection).words] == ["hello", "world"]
    samples, rate = read_samples(tmp_path / "hello.m4a")  # what `stream` sends: the server's own decoding
    assert rate == 44100 and np.array_equal(samples, decode_audio(tmp_path / "hello.m4a")[0])


def test_errors_exit_nonzero_with_the_servers_message(
    grpc_server: LoopbackServer, speech_files, closed_port, capsys
) -> None:
    path = str(speech_files["hello world"])
    for argv in (["recognize", path], ["stream", path, "--fast"]):
        assert cli_main([*argv, "--server", grpc_server.address, "--model", "nope"]) == 1
        assert "NOT_FOUND: model 'nope' is not loaded; available: tiny" in capsys.readouterr().err
    assert cli_main(["recognize", path, "--server", grpc_server.address, "--alternatives", "2"]) == 1
    assert "INVALID_ARGUMENT: max_alternatives must be 0-1" in capsys.readouterr().err
    assert cli_main(["align", path, "hello 世界", "--server", grpc_server.address]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert cli_main(["recognize", path, "--server", closed_port, "--timeout", "5"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err
    assert cli_main(["recognize", str(Path(path).with_name("missing.wav")), "--server", grpc_server.address]) == 1
    assert "missing.wav" in capsys.readouterr().err


def test_health_command(grpc_server: LoopbackServer, closed_port, capsys) -> None:
    assert cli_main(["health", "--server", grpc_server.address]) == 0
    assert capsys.readouterr().out == "SERVING\n"
    assert cli_main(["health", "--server", grpc_server.address, "--service", "speechlabel.v1.SpeechLabeler"]) == 0
    assert cli_main(["health", "--server", closed_port, "--timeout", "2"]) == 1


def test_serve_command_serves_until_sigterm(model_dir: Path, speech_files, closed_port) -> None:
    """The real ``speechlabel serve`` process: healthy, answers, and exits 0 on SIGTERM."""
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", closed_port.split(":")[1], "--models", str(model_dir),
         "--workers", "1", "--torch-threads", "1", "--grace-s", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        connection = Connection(closed_port, timeout_s=2)
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                if check_health(connection) == "SERVING":
                    break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "server did not become healthy"
                time.sleep(0.3)
        assert recognize_file(speech_files["hello world"], connection).results[0].alternatives[0].transcript
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        log = server.communicate()[0]
        assert "rpc=Recognize" in log and "status=OK" in log and "shutting down" in log
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_serve_command_refuses_a_directory_without_models(tmp_path: Path) -> None:
    assert cli_main(["serve", "--models", str(tmp_path)]) == 2
