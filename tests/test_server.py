"""The real gRPC server on a loopback port, serving the tiny trained model, spoken to with the generated stubs.

Covers the contract (health, reflection, ListModels, Recognize, Align, StreamingRecognize), that
served transcripts equal the Recognizer's offline ones, that streamed finals do not depend on how
the bytes were chunked, every bad input with its exact status code, limits, cancellation and auth.
"""

from __future__ import annotations

import io
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audiomodels.audio import decode_raw, encode_pcm16, prepare_waveform
from audiomodels.context import PhraseBias
from audiomodels.media import OPUS_RATE, OpusPackets, opus_packets
from audiomodels.checkpoint import load_checkpoint
from audiomodels.config import Chunking
from audiomodels.char_check import CharCheck
from audiomodels.labels import phonemize_normalized
from audiomodels.lm import own_fusion
from audiomodels.phone_check import PhoneCheck
from audiomodels.recognizer import Recognizer, Transcript
from audiomodels.silence import SILENCE_DBFS, speech_start
from service import mapping
from service.client import Connection, check_health
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.gen.speechlabel.v1 import speech_pb2_grpc as pb_grpc
from service.proto_gen import check_current
from service.limits import Limits
from service.registry import ModelRegistry
from service.server import SERVICE_NAME, server_credentials
from service.sessions import BLOCK_S, StreamSettings, run_stream, stream_chunking
from training.augment import colored_noise
from tests.test_mp4_stream import mp4 as mp4_recording
from tests.test_ogg_stream import whole_file
from tests.test_webm_stream import as_file
from training.codecs import encode_audio
from tests.conftest import SPEECH_TEXTS
from tests.grpc_harness import LoopbackServer

pytestmark = pytest.mark.slow
RATE = 22050  # espeak-ng's native rate: every request here is resampled by the server
Code = grpc.StatusCode


# --------------------------------------------------------------------------- fixtures and helpers

SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def stub(grpc_server: LoopbackServer) -> Iterator[pb_grpc.SpeechLabelerStub]:
    with grpc.insecure_channel(grpc_server.address) as channel:
        yield pb_grpc.SpeechLabelerStub(channel)


@pytest.fixture(scope="module")
def recognizer(model_dir: Path) -> Recognizer:
    return Recognizer.from_checkpoint(model_dir / "tiny.ckpt")


@pytest.fixture(scope="module")
def streaming(recognizer: Recognizer) -> Recognizer:
    """The offline twin of a stream: the same model in the chunked mode the server streams with."""
    return Recognizer(recognizer.config, recognizer.model, chunking=recognizer.config.model.streaming)


@pytest.fixture(scope="module")
def pcm(speech_files: dict[str, Path]) -> dict[str, bytes]:
    """Each test utterance as raw PCM16LE at 22.05 kHz."""
    result = {}
    for text, path in speech_files.items():
        samples, rate = sf.read(path, dtype="int16")
        assert rate == RATE
        result[text] = Audio(samples.astype("<i2").tobytes())
    return result


class Audio(bytes):
    """Raw audio whose repr stays short in failure reports (hypothesis prints its arguments)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes of audio>"


@pytest.fixture(scope="module")
def two_utterances(pcm: dict[str, bytes]) -> Audio:
    """'hello world', one second of silence, 'open the door': two utterances for the endpointer."""
    return Audio(pcm["hello world"] + bytes(2 * RATE) + pcm["open the door"])


def in_room(data: bytes, gain_db: float, noise_dbfs: float | None) -> Audio:
    """PCM16 audio made louder or quieter by ``gain_db``, in steady pink noise of ``noise_dbfs`` RMS."""
    samples = decode_raw(data, "pcm16", RATE) * 10 ** (gain_db / 20)
    if noise_dbfs is not None:
        samples += 10 ** (noise_dbfs / 20) * colored_noise(len(samples), "pink", np.random.default_rng(0))
    return Audio(encode_pcm16(samples))


def raw_config(**fields: object) -> pb.RecognitionConfig:
    return pb.RecognitionConfig(**{"encoding": pb.LINEAR16, "sample_rate_hz": RATE, **fields})


def offline(
    recognizer: Recognizer, data: bytes, beam_size: int = 1, alternatives: int = 1, bias: PhraseBias | None = None
) -> Transcript:
    samples = decode_raw(data, "pcm16", RATE)
    return recognizer.transcribe(samples, RATE, beam_size=beam_size, alternatives=alternatives, bias=bias)


def assert_alternatives(result: pb.Result, expected: Transcript) -> None:
    """``result`` holds ``expected`` and its runner-ups, best first, each with its words."""
    hypotheses = (expected, *expected.alternatives)
    assert [a.transcript for a in result.alternatives] == [h.text for h in hypotheses]
    assert len({h.text for h in hypotheses}) == len(hypotheses)  # distinct
    for alternative, hypothesis in zip(result.alternatives, hypotheses, strict=True):
        assert alternative.confidence == pytest.approx(hypothesis.confidence, abs=2e-3)
        assert_same_words(list(alternative.words), hypothesis, result.start_s)


def assert_same_words(actual: list[pb.WordInfo], expected: Transcript, offset_s: float = 0.0) -> None:
    """Words and times exactly; confidences to float tolerance (a stream resamples piece by piece)."""
    wanted = mapping.word_infos(expected.words, offset_s)
    assert [(w.word, w.start_s, w.end_s) for w in actual] == [(w.word, w.start_s, w.end_s) for w in wanted]
    assert [w.confidence for w in actual] == pytest.approx([w.confidence for w in wanted], abs=2e-3)


def chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` cut into pieces of the given sizes, cycling through them."""
    offset, index = 0, 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        yield data[offset : offset + size]
        offset, index = offset + size, index + 1


def stream(
    stub: pb_grpc.SpeechLabelerStub, config: pb.RecognitionConfig, pieces: Iterator[bytes] | list[bytes]
) -> list[pb.Result]:
    requests = [pb.StreamingRecognizeRequest(config=config)] + [pb.StreamingRecognizeRequest(audio=p) for p in pieces]
    return [result for response in stub.StreamingRecognize(iter(requests)) for result in response.results]


def finals(results: list[pb.Result]) -> list[pb.Result]:
    return [r for r in results if r.is_final]


def expect_error(call: Callable[[], object], code: grpc.StatusCode, *words: str) -> None:
    """``call`` fails with ``code`` and a message containing ``words`` (streams are read to the end)."""
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    assert caught.value.code() == code, caught.value.details()
    for word in words:
        assert word in caught.value.details(), caught.value.details()


def file_bytes(samples: np.ndarray, rate: int, format: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=format, subtype=subtype)
    return buffer.getvalue()


# --------------------------------------------------------------------------- contract basics


def test_generated_stubs_are_current() -> None:
    assert check_current() == [], "run: python -m service.proto_gen"


def test_health_serving_and_reflection_lists_the_services(grpc_server: LoopbackServer) -> None:
    with grpc.insecure_channel(grpc_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(reflection.ServerReflectionInfo(iter([request])))
        names = {s.name for s in response.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_list_models_reports_checkpoint_facts(stub: pb_grpc.SpeechLabelerStub, model_dir: Path) -> None:
    response = stub.ListModels(pb.ListModelsRequest())
    (model,) = response.models
    assert response.default_model == model.name == "tiny" and model.is_default
    assert model.label_type == "char" and model.sample_rate_hz == 16000
    assert model.num_parameters > 10_000 and model.size_bytes == (model_dir / "tiny.ckpt").stat().st_size
    assert dict(model.metrics) == {"dev_cer": 0.0} and model.training_steps > 0
    assert model.model_card.startswith("# tiny") and model.labels[0] == "<blank>"
    assert model.frame_shift_s == pytest.approx(0.03)
    streaming = load_checkpoint(model_dir / "tiny.ckpt").config.model.streaming
    assert model.stream_latency_ms == round(streaming.latency_frames * 30)
    assert list(model.warp_factors) == []  # one plain pass unless the server runs with --warps
    assert model.phone_check_weight == 0.0  # no phone check unless the server runs with --phone-check
    assert list(model.calibrated_confidence) == []  # no confidence maps beside tiny.ckpt: raw scores


# --------------------------------------------------------------------------- unary calls


def test_recognize_equals_the_offline_transcript_for_every_encoding(
    stub: pb_grpc.SpeechLabelerStub, recognizer: Recognizer, pcm: dict[str, bytes]
) -> None:
    data = pcm["the quick brown fox"]
    expected = offline(recognizer, data)
    assert expected.text == "the quick brown fox"
    samples = decode_raw(data, "pcm16", RATE)
    requests = {
        "LINEAR16": (raw_config(), data),
        "FLOAT32": (pb.RecognitionConfig(encoding=pb.FLOAT32, sample_rate_hz=RATE), samples.astype("<f4").tobytes()),
        "WAV": (pb.RecognitionConfig(encoding=pb.WAV), file_bytes(samples, RATE)),
        "FLAC": (pb.RecognitionConfig(encoding=pb.FLAC, sample_rate_hz=RATE), file_bytes(samples, RATE, "FLAC")),
    }
    for name, (config, audio) in requests.items():
        config.word_time_offsets = config.frame_labels = True
        response = stub.Recognize(pb.RecognizeRequest(config=config, audio=audio))
        (result,) = response.results
        assert response.model == "tiny" and result.is_final, name
        assert result.alternatives[0].transcript == expected.text, name
        assert result.alternatives[0].confidence == pytest.approx(expected.confidence, abs=1e-6)
        assert list(result.alternatives[0].words) == mapping.word_infos(expected.words), name
        assert list(result.segments) == mapping.label_segments(expected.segments), name
        assert tuple(result.frame_labels) == expected.frame_labels
        assert result.start_s == 0.0 and result.end_s == pytest.approx(expected.duration_s)


@pytest.mark.parametrize(("encoding", "fmt", "subtype"), [(pb.MP3, "MP3", "MPEG_LAYER_III"), (pb.OGG, "OGG", "OPUS")])
def test_recognize_takes_compressed_files(
    stub: pb_grpc.SpeechLabelerStub, recognizer: Recognizer, pcm, encoding, fmt, subtype
) -> None:
    # not "the quick brown fox": the tiny model hears its f begin one or two frames late after Opus,
    # whichever decoder (libsndfile's own libopus at 16 kHz too), and at 48 kHz not at all
    samples = decode_raw(pcm["seven green apples"], "pcm16", RATE)
    rate = 24000 if subtype == "OPUS" else RATE  # Opus takes 8, 12, 16, 24 or 48 kHz
    audio = file_bytes(prepare_waveform(samples, RATE, target_rate=rate), rate, fmt, subtype)
    config = pb.RecognitionConfig(encoding=encoding, word_time_offsets=True)
    (result,) = stub.Recognize(pb.RecognizeRequest(config=config, audio=audio)).results
    assert result.alternatives[0].transcript == "seven green apples"
    assert result.end_s == pytest.approx(len(samples) / RATE, abs=1e-3)  # no codec delay or padding
    expected = recognizer.transcribe(samples, RATE).words
    for word, lossless in zip(result.alternatives[0].words, expected, strict=True):
        assert word.start_s == pytest.approx(lossless.start_s, abs=0.031)  # a model frame at most


def test_recognize_leaves_out_words_and_labels_unless_asked(stub: pb_grpc.SpeechLabelerStub, pcm) -> None:
    (result,) = stub.Recognize(pb.RecognizeRequest(config=raw_config(beam_size=4), audio=pcm["hello world"])).results
    assert result.alternatives[0].transcript == "hello world"
    assert not result.alternatives[0].words and not result.segments and not result.frame_labels


def test_recognize_returns_the_beams_alternatives_best_first(stub, recognizer, pcm) -> None:
    data = pcm["hello world"]
    expected = offline(recognizer, data, beam_size=8, alternatives=3)
    assert expected.text == "hello world" and len(expected.alternatives) == 2
    config = raw_config(beam_size=8, max_alternatives=3, word_time_offsets=True)
    (result,) = stub.Recognize(pb.RecognizeRequest(config=config, audio=data)).results
    assert_alternatives(result, expected)
    (result,) = stub.Recognize(pb.RecognizeRequest(config=raw_config(beam_size=8), audio=data)).results
    assert [a.transcript for a in result.alternatives] == ["hello world"]  # one unless asked
    with pytest.raises(ValueError, match="need beam search"):
        offline(recognizer, data, alternatives=2)  # greedy decoding has one hypothesis


def test_recognize_and_streams_follow_phrase_hints_as_offline(stub, recognizer, streaming, pcm) -> None:
    data = pcm["hello world"]
    bias = PhraseBias.from_phrases(["hello word"], recognizer.labels, boost=10.0)
    assert offline(recognizer, data, beam_size=8).text == "hello world"
    assert offline(recognizer, data, beam_size=8, bias=bias).text == "hello word"  # the hint is heard
    config = raw_config(beam_size=8, phrases=["Hello word!"], phrase_boost=10.0)
    (result,) = stub.Recognize(pb.RecognizeRequest(config=config, audio=data)).results
    assert result.alternatives[0].transcript == "hello word"
    (final,) = finals(stream(stub, config, chunks(data, [3200])))
    assert final.alternatives[0].transcript == offline(streaming, data, beam_size=8, bias=bias).text


def test_stream_interims_are_the_beam_searchs_leading_hypothesis_with_hints(recognizer, pcm) -> None:
    # The search runs chunk by chunk, so interims show what the final will say as it is said:
    # the hinted phrase appears in an interim before the final, where greedy interims cannot.
    data = pcm["hello world"]
    bias = PhraseBias.from_phrases(["hello word"], recognizer.labels, boost=10.0)
    hinted = StreamSettings("pcm16", RATE, interim_results=True, beam_size=8, bias=bias, latency_s=0.3)
    results, _ = run_stream(recognizer, hinted, chunks(data, [3200]))
    *interims, final = results
    assert final.is_final and final.transcript.text == "hello word" and len(interims) >= 4
    assert interims[-1].transcript.text == "hello word"
    greedy, _ = run_stream(recognizer, replace(hinted, beam_size=1, bias=None), chunks(data, [3200]))
    assert "hello word" not in [r.transcript.text for r in greedy[:-1]]
    # What an interim marks stable, no later result takes back; a final is stable as a whole.
    for i, earlier in enumerate(results):
        assert earlier.transcript.text.startswith(earlier.stable_text)
        assert all(later.transcript.text.startswith(earlier.stable_text) for later in results[i + 1 :])
    assert final.stable_text == final.transcript.text
    assert any(len(r.stable_text) < len(r.transcript.text) for r in interims)  # the beam held doubts
    # Each interim is the search's leading prefix over the frames the stream had labelled then.
    twin = Recognizer(recognizer.config, recognizer.model, chunking=stream_chunking(recognizer, 0.3))
    span = decode_raw(data, "pcm16", RATE)[round(final.start_s * RATE) : round(final.end_s * RATE)]
    ((log_probs, _, _),) = twin.decodable_batch([(span, RATE)])
    for interim in interims:
        search = twin.search(8, bias=bias)
        search.advance(log_probs[: round(interim.transcript.duration_s / interim.transcript.frame_shift_s)])
        assert interim.transcript.text == twin.labels.decode(search.best())


def test_align_returns_words_and_labels_with_times(stub: pb_grpc.SpeechLabelerStub, recognizer, pcm) -> None:
    data = pcm["open the door"]
    response = stub.Align(pb.AlignRequest(config=raw_config(), audio=data, transcript="Open the DOOR!"))
    expected = recognizer.align(decode_raw(data, "pcm16", RATE), RATE, "open the door")
    assert [w.word for w in response.words] == ["open", "the", "door"]
    assert list(response.words) == mapping.word_infos(expected.words)
    assert "".join(s.label for s in response.segments) == "open the door"
    assert response.model == "tiny" and response.duration_s == pytest.approx(expected.duration_s)


def _bad_unary_calls(pcm: dict[str, bytes]) -> dict[str, tuple[object, grpc.StatusCode, str]]:
    """name -> (request, expected status, a word the message must contain)."""
    speech = pcm["hello world"]
    samples = decode_raw(speech, "pcm16", RATE)
    flac = file_bytes(samples, RATE, "FLAC")
    m4a = encode_audio(samples, RATE, "mp4", "aac")
    long_audio = bytes(2 * 8000 * 25)  # 25 s at 8 kHz: over the test server's 20 s
    recognize = pb.RecognizeRequest
    return {
        "unknown model": (recognize(config=raw_config(model="nope"), audio=speech), Code.NOT_FOUND, "tiny"),
        "empty audio": (recognize(config=raw_config(), audio=b""), Code.INVALID_ARGUMENT, "empty"),
        "odd LINEAR16 bytes": (recognize(config=raw_config(), audio=speech + b"\x00"), Code.INVALID_ARGUMENT, "2-byte"),
        "unspecified encoding": (
            recognize(config=pb.RecognitionConfig(sample_rate_hz=RATE), audio=speech),
            Code.INVALID_ARGUMENT,
            "AUDIO_ENCODING_UNSPECIFIED",
        ),
        "unknown encoding": (
            recognize(config=pb.RecognitionConfig(encoding=99, sample_rate_hz=RATE), audio=speech),
            Code.INVALID_ARGUMENT,
            "99",
        ),
        "missing rate": (
            recognize(config=pb.RecognitionConfig(encoding=pb.LINEAR16), audio=speech),
            Code.INVALID_ARGUMENT,
            "sample_rate_hz",
        ),
        "rate too low": (
            recognize(config=raw_config(sample_rate_hz=4000), audio=speech),
            Code.INVALID_ARGUMENT,
            "4000",
        ),
        "rate too high": (
            recognize(config=raw_config(sample_rate_hz=192000), audio=speech),
            Code.INVALID_ARGUMENT,
            "192000",
        ),
        "corrupt WAV": (
            recognize(config=pb.RecognitionConfig(encoding=pb.WAV), audio=b"RIFF\x00\x00\x00\x00WAVEjunk"),
            Code.INVALID_ARGUMENT,
            "decode",
        ),
        "truncated FLAC": (
            recognize(config=pb.RecognitionConfig(encoding=pb.FLAC), audio=flac[: len(flac) // 2]),
            Code.INVALID_ARGUMENT,
            "decode",
        ),
        "header rate mismatch": (
            recognize(
                config=pb.RecognitionConfig(encoding=pb.WAV, sample_rate_hz=16000), audio=file_bytes(samples, RATE)
            ),
            Code.INVALID_ARGUMENT,
            "22050",
        ),
        "NaN samples": (
            recognize(
                config=pb.RecognitionConfig(encoding=pb.FLOAT32, sample_rate_hz=RATE),
                audio=np.full(4000, np.nan, "<f4").tobytes(),
            ),
            Code.INVALID_ARGUMENT,
            "NaN",
        ),
        "too short": (recognize(config=raw_config(), audio=speech[:200]), Code.INVALID_ARGUMENT, "shorter"),
        "negative beam": (recognize(config=raw_config(beam_size=-1), audio=speech), Code.INVALID_ARGUMENT, "beam_size"),
        "alternatives without a beam": (
            recognize(config=raw_config(max_alternatives=2), audio=speech),
            Code.INVALID_ARGUMENT,
            "max_alternatives must be 0-1",
        ),
        "more alternatives than the beam": (
            recognize(config=raw_config(beam_size=4, max_alternatives=5), audio=speech),
            Code.INVALID_ARGUMENT,
            "max_alternatives must be 0-4",
        ),
        "phrases without a beam": (
            recognize(config=raw_config(phrases=["ann"]), audio=speech),
            Code.INVALID_ARGUMENT,
            "phrases need beam search",
        ),
        "phrase outside the label set": (
            recognize(config=raw_config(beam_size=4, phrases=["ann", "東京"]), audio=speech),
            Code.INVALID_ARGUMENT,
            "'東京'",
        ),
        "phrase boost out of range": (
            recognize(config=raw_config(beam_size=4, phrases=["ann"], phrase_boost=25), audio=speech),
            Code.INVALID_ARGUMENT,
            "boost",
        ),
        "too many phrases": (
            recognize(config=raw_config(beam_size=4, phrases=["ann"] * 1001), audio=speech),
            Code.RESOURCE_EXHAUSTED,
            "1001 phrases",
        ),
        "too long a phrase": (
            recognize(config=raw_config(beam_size=4, phrases=["a" * 101]), audio=speech),
            Code.RESOURCE_EXHAUSTED,
            "100 characters",
        ),
        "too long": (
            recognize(config=raw_config(sample_rate_hz=8000), audio=long_audio),
            Code.RESOURCE_EXHAUSTED,
            "20 s",
        ),
        "too long WAV": (
            recognize(
                config=pb.RecognitionConfig(encoding=pb.WAV), audio=file_bytes(np.zeros(8000 * 25, np.float32), 8000)
            ),
            Code.RESOURCE_EXHAUSTED,
            "20 s",
        ),
        "too long MP3": (
            recognize(
                config=pb.RecognitionConfig(encoding=pb.MP3),
                audio=file_bytes(np.zeros(8000 * 25, np.float32), 8000, "MP3", "MPEG_LAYER_III"),
            ),
            Code.RESOURCE_EXHAUSTED,
            "20 s",
        ),
        "MP3 cut in its header": (
            recognize(
                config=pb.RecognitionConfig(encoding=pb.MP3),
                audio=file_bytes(samples, RATE, "MP3", "MPEG_LAYER_III")[:30],
            ),
            Code.INVALID_ARGUMENT,
            "decode",
        ),
        "Opus packets to Recognize": (
            recognize(config=pb.RecognitionConfig(encoding=pb.OPUS), audio=m4a),
            Code.INVALID_ARGUMENT,
            "OPUS packets are for StreamingRecognize",
        ),
        "M4A cut before its index": (
            recognize(config=pb.RecognitionConfig(encoding=pb.MP4), audio=m4a[: len(m4a) // 2]),
            Code.INVALID_ARGUMENT,
            "moov",
        ),
        "recorder WebM over the length limit": (  # no duration in its header: measured before decoding
            recognize(
                config=pb.RecognitionConfig(encoding=pb.WEBM),
                audio=encode_audio(np.zeros(25 * 48000, np.float32), 48000, "webm", "libopus", seekable=False),
            ),
            Code.RESOURCE_EXHAUSTED,
            "25.0 s",
        ),
        "over message size": (recognize(config=raw_config(), audio=bytes(2 << 20)), Code.RESOURCE_EXHAUSTED, ""),
        "align empty transcript": (
            pb.AlignRequest(config=raw_config(), audio=speech, transcript=" "),
            Code.INVALID_ARGUMENT,
            "empty",
        ),
        "align unlabelable text": (
            pb.AlignRequest(config=raw_config(), audio=speech, transcript="hello 世界"),
            Code.INVALID_ARGUMENT,
            "世",
        ),
        "align too long a text": (
            pb.AlignRequest(config=raw_config(), audio=speech[:8000], transcript="hello world " * 20),
            Code.INVALID_ARGUMENT,
            "frames",
        ),
        "align unknown model": (
            pb.AlignRequest(config=raw_config(model="x"), audio=speech, transcript="hi"),
            Code.NOT_FOUND,
            "x",
        ),
    }


def test_every_bad_unary_request_gets_its_status_and_the_server_keeps_serving(stub, pcm) -> None:
    for name, (request, code, word) in _bad_unary_calls(pcm).items():
        call = stub.Align if isinstance(request, pb.AlignRequest) else stub.Recognize
        try:
            expect_error(partial(call, request), code, word)
        except AssertionError as failure:
            raise AssertionError(f"{name}: {failure}") from None
    (result,) = stub.Recognize(pb.RecognizeRequest(config=raw_config(), audio=pcm["hello world"])).results
    assert result.alternatives[0].transcript == "hello world"


# --------------------------------------------------------------------------- streaming


def test_streamed_final_equals_the_offline_chunked_transcript(stub, streaming, pcm, grpc_server) -> None:
    data = pcm["seven green apples"]
    expected = offline(streaming, data, beam_size=4)
    results = stream(stub, raw_config(word_time_offsets=True, frame_labels=True, beam_size=4), chunks(data, [4410]))
    (final,) = results
    assert final.is_final and final.alternatives[0].transcript == expected.text == "seven green apples"
    assert_same_words(list(final.alternatives[0].words), expected)
    assert [(s.label, s.start_s, s.end_s) for s in final.segments] == [
        (s.label, s.start_s, s.end_s) for s in mapping.label_segments(expected.segments)
    ]
    assert final.start_s == 0.0 and final.end_s == pytest.approx(len(data) / 2 / RATE, abs=1e-3)
    grpc_server.wait_for_no_streams()


def test_streamed_finals_carry_the_alternatives_of_their_offline_twins(stub, streaming, two_utterances) -> None:
    config = raw_config(beam_size=8, max_alternatives=3, word_time_offsets=True)
    results = finals(stream(stub, config, chunks(two_utterances, [3200])))
    assert len(results) == 2
    for result in results:
        span = two_utterances[round(result.start_s * RATE) * 2 : round(result.end_s * RATE) * 2]
        assert_alternatives(result, offline(streaming, span, beam_size=8, alternatives=3))


def test_full_context_finals_are_recognize_of_their_spans(recognizer, streaming, two_utterances) -> None:
    """``full_context_finals``: each final is the full-context model's transcript of its span, as
    Recognize gives it, alternatives and word times included; interims (if asked) still come from
    the chunked model, which does not run at all without them."""
    settings_ = StreamSettings("pcm16", RATE, beam_size=8, alternatives=3, full_context_finals=True)
    quiet, quiet_session = run_stream(recognizer, settings_, chunks(two_utterances, [3200]))
    interim_settings = replace(settings_, interim_results=True)
    with_interims, session = run_stream(recognizer, interim_settings, chunks(two_utterances, [3200]))
    assert len(quiet) == 2 and all(r.is_final for r in quiet) and quiet_session.model_frames == 0
    assert [r.transcript for r in with_interims if r.is_final] == [r.transcript for r in quiet]
    assert len(with_interims) > len(quiet) and session.model_frames > 0
    chunked, _ = run_stream(recognizer, replace(settings_, full_context_finals=False), [two_utterances])
    for result, chunked_result in zip(quiet, chunked, strict=True):
        span = two_utterances[round(result.start_s * RATE) * 2 : round(result.end_s * RATE) * 2]
        expected = offline(recognizer, span, beam_size=8, alternatives=3)
        assert result.transcript.text == result.stable_text == expected.text
        assert [a.text for a in result.transcript.alternatives] == [a.text for a in expected.alternatives]
        assert [(w.word, w.start_s, w.end_s) for w in result.transcript.words] == [
            (w.word, w.start_s, w.end_s) for w in expected.words
        ]
        # without full_context_finals: the chunked twin's
        assert chunked_result.transcript.text == offline(streaming, span, beam_size=8).text


def test_streams_choose_their_latency_and_each_equals_its_offline_twin(stub, recognizer, pcm, grpc_server) -> None:
    data = pcm["the quick brown fox"]
    latencies = {300: Chunking(7, 3), 2000: Chunking(44, 22)}  # the default (0) is every other streaming test's
    with ThreadPoolExecutor(len(latencies)) as pool:  # concurrent streams of different chunkings batch apart
        runs = {
            ms: pool.submit(stream, stub, raw_config(interim_results=True, stream_latency_ms=ms), chunks(data, [2205]))
            for ms in latencies
        }
        results = {ms: run.result() for ms, run in runs.items()}
    for ms, chunking in latencies.items():
        twin = Recognizer(recognizer.config, recognizer.model, chunking=chunking)
        (final,) = finals(results[ms])
        assert final.alternatives[0].transcript == offline(twin, data).text, ms
        interims = [r for r in results[ms] if not r.is_final]
        frames = round(len(data) / 2 / RATE / 0.03)
        assert len(interims) >= frames // chunking.chunk - 1, (ms, len(interims))  # one per model chunk
    assert len([r for r in results[300] if not r.is_final]) > 2 * len([r for r in results[2000] if not r.is_final])
    grpc_server.wait_for_no_streams()


def test_interim_results_come_before_each_final(stub, two_utterances, grpc_server) -> None:
    config = raw_config(interim_results=True, endpoint_silence_ms=500)
    results = stream(stub, config, chunks(two_utterances, [2205]))  # 50 ms messages
    kinds = "".join("F" if r.is_final else "i" for r in results)
    assert kinds.count("F") == 2 and kinds.startswith("i") and "Fi" in kinds, kinds
    first_final = kinds.index("F")
    assert all(r.end_s <= results[first_final].end_s for r in results[:first_final])
    assert all(r.start_s >= results[first_final].end_s for r in results[first_final + 1 :])
    assert all(not r.alternatives[0].words for r in results if not r.is_final)
    # Greedy decoding never takes a label back: every result is stable as a whole.
    assert all(r.stable_transcript == r.alternatives[0].transcript for r in results)
    grpc_server.wait_for_no_streams()


def test_endpointer_splits_utterances_with_stream_times(stub, streaming, two_utterances) -> None:
    config = raw_config(word_time_offsets=True, endpoint_silence_ms=500)
    first, second = stream(stub, config, chunks(two_utterances, [8000]))
    assert first.is_final and second.is_final and 1.0 < first.end_s < second.start_s  # leading silence dropped
    assert second.end_s == pytest.approx(len(two_utterances) / 2 / RATE, abs=1e-3)
    # Each utterance runs through the model on its own: its final is the offline chunked transcript
    # of exactly its span of the stream.
    samples = decode_raw(two_utterances, "pcm16", RATE)
    block = round(BLOCK_S * RATE)  # cuts fall on the block grid (or the stream's end); times are rounded to ms
    for result in (first, second):
        start, end = (min(round(t * RATE / block) * block, len(samples)) for t in (result.start_s, result.end_s))
        expected = streaming.transcribe(samples[start:end], RATE)
        assert result.alternatives[0].transcript == expected.text
        assert_same_words(list(result.alternatives[0].words), expected, result.start_s)
    assert first.alternatives[0].transcript.startswith("hello")
    assert second.alternatives[0].words[0].start_s > first.end_s


def test_max_utterance_length_cuts_a_stream_that_never_pauses(stub, pcm) -> None:
    data = pcm["the quick brown fox"]
    results = stream(stub, raw_config(max_utterance_s=0.5), chunks(data, [3000]))
    assert len(results) >= 3 and all(r.is_final for r in results)
    assert all(r.end_s - r.start_s <= 0.5 + 1e-3 for r in results)
    assert [r.start_s for r in results[1:]] == [r.end_s for r in results[:-1]]


def test_streamed_finals_do_not_depend_on_chunking_through_grpc(stub, two_utterances, grpc_server) -> None:
    config = raw_config(word_time_offsets=True, frame_labels=True, interim_results=True, endpoint_silence_ms=500)
    reference = finals(
        stream(stub, config, [two_utterances[i : i + 65536] for i in range(0, len(two_utterances), 65536)])
    )
    rng = np.random.default_rng(7)
    head, rest = two_utterances[:3001], two_utterances[3001:]
    chunkings = {
        "1-byte pieces, then 4 KiB": list(chunks(head, [1])) + list(chunks(rest, [4096])),
        "random sizes": list(chunks(two_utterances, list(rng.integers(1, 9000, size=50)))),
        "odd sizes": list(chunks(two_utterances, [3, 4097, 1, 2, 999])),
    }
    for name, pieces in chunkings.items():
        assert finals(stream(stub, config, pieces)) == reference, name
    grpc_server.wait_for_no_streams()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 6000), min_size=1, max_size=20))
@example(sizes=[1])
@example(sizes=[1, 2, 3])
def test_session_finals_do_not_depend_on_chunking(recognizer, two_utterances, sizes) -> None:
    """The property at the session level, where 1-byte pieces of a whole stream are cheap."""
    settings_ = StreamSettings("pcm16", RATE, interim_results=True, endpoint_silence_s=0.5)

    def finals(pieces: Iterable[bytes]) -> list[tuple]:
        results, _ = run_stream(recognizer, settings_, pieces)
        return [(r.transcript, r.start_s, r.end_s) for r in results if r.is_final]

    expected = _session_reference(recognizer, two_utterances, finals)
    assert finals(chunks(two_utterances, sizes)) == expected


_REFERENCE: dict[int, list[tuple]] = {}


def _session_reference(
    recognizer: Recognizer, data: bytes, finals: Callable[[Iterable[bytes]], list[tuple]]
) -> list[tuple]:
    """The finals for the whole stream in one piece, computed once."""
    key = id(recognizer)
    if key not in _REFERENCE:
        _REFERENCE[key] = finals([data])
        texts = [transcript.text for transcript, _, _ in _REFERENCE[key]]
        assert len(texts) == 2 and texts[0].startswith("hello wor")  # the 4-clip model, chunked
    return _REFERENCE[key]


def test_silence_never_reaches_the_model_and_earlier_audio_never_changes_a_final(
    recognizer, streaming, two_utterances
) -> None:
    settings_ = StreamSettings("pcm16", RATE, endpoint_silence_s=0.5)
    silence = bytes(2 * round(3.0 * RATE))  # 3 s, a whole number of 100 ms blocks
    results, session = run_stream(recognizer, settings_, [two_utterances + silence])
    padded, padded_session = run_stream(recognizer, settings_, [silence + two_utterances + silence])
    # Only the utterances (each with at most leading_silence_s + a block before its speech and the
    # endpointing silence after it) ran through the model, not the padding.
    for finals, ran in ((results, session), (padded, padded_session)):
        spans_s = sum(r.end_s - r.start_s for r in finals)
        assert len(finals) == 2 and ran.model_frames == pytest.approx(spans_s / 0.03, abs=2)
    assert padded_session.model_frames < (len(silence) * 2 + len(two_utterances)) / 2 / RATE / 0.03 / 2
    # Every final is the offline chunked transcript of its own span, and the utterance after the
    # pause is the same utterance, 3 s later, whatever the stream held before it.
    samples = decode_raw(silence + two_utterances, "pcm16", RATE)
    for result in padded:
        span = samples[round(result.start_s * RATE) : round(result.end_s * RATE)]
        assert result.transcript.text == streaming.transcribe(span, RATE).text
    assert padded[1].transcript == results[1].transcript
    assert (padded[1].start_s, padded[1].end_s) == pytest.approx((results[1].start_s + 3.0, results[1].end_s + 3.0))
    assert padded[0].start_s == pytest.approx(3.0 - settings_.leading_silence_s)
    no_margin = replace(settings_, leading_silence_s=0.0)
    assert run_stream(recognizer, no_margin, [silence + two_utterances])[0][0].start_s == pytest.approx(3.0)
    silent, silent_session = run_stream(recognizer, settings_, [silence])
    assert silent == [] and silent_session.model_frames == 0


def speech_level_dbfs(data: bytes) -> float:
    samples = decode_raw(data, "pcm16", RATE).astype(np.float64)
    return 10 * np.log10(np.mean(samples[np.abs(samples) > 1e-3] ** 2))


@pytest.mark.parametrize(
    ("gain_db", "noise_dbfs"),
    [(0.0, -40.0), (0.0, -30.0), (-30.0, None)],
    ids=["noise -40 dBFS", "noise -30 dBFS", "quiet"],
)
def test_a_stream_in_steady_noise_or_quiet_is_cut_at_its_pause(recognizer, pcm, gain_db, noise_dbfs) -> None:
    """The pause between two utterances ends the first, whether the room's noise is louder than the
    offline silence threshold or the talker is quiet; nothing is lost or heard as an utterance of noise."""
    pause = bytes(2 * round(1.5 * RATE))
    data = in_room(pause + pcm["hello world"] + pause + pcm["open the door"] + pause, gain_db, noise_dbfs)
    speech_dbfs = speech_level_dbfs(pcm["hello world"] + pcm["open the door"]) + gain_db
    if noise_dbfs is not None:
        assert noise_dbfs > SILENCE_DBFS + 15  # by the offline rule alone, the pauses would be speech
    else:
        assert speech_dbfs < -45  # a quiet microphone
    results, _ = run_stream(recognizer, StreamSettings("pcm16", RATE), [data])
    speech_s = [(1.5, 1.5 + len(pcm["hello world"]) / 2 / RATE)]
    speech_s.append((speech_s[0][1] + 1.5, speech_s[0][1] + 1.5 + len(pcm["open the door"]) / 2 / RATE))
    finals = [r for r in results if r.is_final]
    assert len(finals) == 2
    for final, (start_s, end_s) in zip(finals, speech_s, strict=True):
        assert final.start_s <= start_s + 0.05 and end_s <= final.end_s < end_s + 1.5  # cut in its pause


def test_a_stream_of_opus_packets_is_the_offline_transcript_of_what_they_decode_to(stub, streaming, pcm) -> None:
    """One raw Opus packet per message (what a phone app's encoder hands out), at 24 kbps: a
    twelfth of LINEAR16's bytes at 16 kHz or less, and each final is the offline chunked transcript
    of the audio its packets decode to (the tiny test model reads Opus speech worse than PCM)."""
    data = pcm["seven green apples"]
    packets = list(opus_packets(decode_raw(data, "pcm16", RATE), RATE, kbps=24))
    assert len(packets) == pytest.approx(len(data) / 2 / RATE / 0.02, abs=2)  # 20 ms each
    assert sum(map(len, packets)) < len(data) / 2 / RATE * 16000 * 2 / 12
    decoder = OpusPackets()
    decoded = np.concatenate([decoder.decode(packet) for packet in packets])
    expected = streaming.transcribe(decoded, OPUS_RATE, beam_size=4)

    config = pb.RecognitionConfig(encoding=pb.OPUS, sample_rate_hz=16000, word_time_offsets=True, beam_size=4)
    (final,) = finals(stream(stub, config, packets))

    assert final.alternatives[0].transcript == expected.text
    assert_same_words(list(final.alternatives[0].words), expected)
    assert final.end_s == pytest.approx(len(decoded) / OPUS_RATE, abs=1e-3)


@pytest.mark.parametrize(("fmt", "encoding"), [("webm", pb.WEBM), ("ogg", pb.OGG), ("mp4", pb.MP4)])
def test_a_recorders_stream_gives_the_finals_of_the_samples_it_decodes_to(stub, pcm, fmt, encoding) -> None:
    """A browser's MediaRecorder stream (WebM/Opus from Chrome, sizes unknown; Ogg/Opus from
    Firefox; fragmented MP4/AAC from Safari), forwarded in pieces cut anywhere: the same finals,
    words and times as the samples FFmpeg decodes the whole recording to, streamed as FLOAT32."""
    speech = pcm["hello world"] + bytes(2 * RATE) + pcm["open the door"]
    if fmt == "mp4":  # Safari records at the device's rate, here 48 kHz (other rates are resampled to it)
        data = mp4_recording(prepare_waveform(decode_raw(speech, "pcm16", RATE), RATE, target_rate=48000), 48000)
        decoded = as_file(data)  # cut to the last sample's duration, as the stream is
    else:
        wideband = prepare_waveform(decode_raw(speech, "pcm16", RATE), RATE, target_rate=16000)  # Opus has no 22.05 kHz
        data = encode_audio(wideband, 16000, fmt, "libopus", seekable=False)
        decoded = whole_file(data)
    float32 = pb.RecognitionConfig(encoding=pb.FLOAT32, sample_rate_hz=OPUS_RATE, word_time_offsets=True)
    as_samples = stream(stub, float32, chunks(decoded.astype("<f4").tobytes(), [48000]))

    recorded = pb.RecognitionConfig(encoding=encoding, word_time_offsets=True)
    as_recorded = stream(stub, recorded, chunks(data, [1, 333, 64, 5000]))

    assert len(finals(as_recorded)) == 2 and finals(as_recorded) == finals(as_samples)
    assert finals(as_recorded)[-1].end_s == pytest.approx(len(decoded) / OPUS_RATE, abs=1e-3)


def test_an_mp4_stream_at_another_rate_is_heard_at_its_own_times(stub, pcm) -> None:
    """A 22.05 kHz AAC stream with no rate stated: resampled to 48 kHz on arrival, it is heard
    right and its end is where the audio's is."""
    data = mp4_recording(decode_raw(pcm["hello world"], "pcm16", RATE), RATE)
    results = finals(stream(stub, pb.RecognitionConfig(encoding=pb.MP4), chunks(data, [777])))
    assert [r.alternatives[0].transcript for r in results] == ["hello world"]
    assert results[-1].end_s == pytest.approx(len(as_file(data)) / RATE, abs=2e-3)


def test_a_stream_opened_mid_sentence_loses_nothing(recognizer, streaming, pcm) -> None:
    """A stream that opens inside speech keeps its start until the first pause shows it was speech."""
    hello = decode_raw(pcm["hello world"], "pcm16", RATE)
    inside = hello[speech_start(hello, RATE, leading_silence_s=0.0) + round(0.05 * RATE) :]
    data = encode_pcm16(inside) + bytes(2 * RATE) + pcm["open the door"]
    results, _ = run_stream(recognizer, StreamSettings("pcm16", RATE), [data])
    assert len(results) == 2 and results[0].start_s == 0.0
    assert results[0].transcript.text == streaming.transcribe(inside[: round(results[0].end_s * RATE)], RATE).text


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=st.lists(
        st.tuples(st.sampled_from([0.0, 0.05, 0.3, 1.2]), st.sampled_from(sorted(SPEECH_TEXTS))), min_size=1, max_size=3
    ),
    endpoint_s=st.sampled_from([0.3, 0.8]),
    max_utterance_s=st.sampled_from([0.7, 30.0]),
    leading_s=st.sampled_from([0.0, 0.1, 0.3]),
    size=st.integers(1, 9000),
    room=st.sampled_from([(0.0, None), (-30.0, None), (0.0, -40.0)]),
)
def test_every_final_is_the_offline_transcript_of_its_span(
    recognizer, pcm, layout, endpoint_s, max_utterance_s, leading_s, size, room
) -> None:
    """Any layout of speech and silence, endpointing and forced cuts, loud, quiet or in noise:
    finals are ordered, disjoint spans of the stream, each recognized exactly as the same samples
    offline (with the same margin)."""
    data = in_room(b"".join(bytes(2 * round(pause * RATE)) + pcm[text] for pause, text in layout), *room)
    settings_ = StreamSettings(
        "pcm16", RATE, endpoint_silence_s=endpoint_s, max_utterance_s=max_utterance_s, leading_silence_s=leading_s
    )
    results, _ = run_stream(recognizer, settings_, chunks(data, [size]))
    twin = Recognizer(
        recognizer.config, recognizer.model, chunking=recognizer.config.model.streaming, leading_silence_s=leading_s
    )
    samples = decode_raw(data, "pcm16", RATE)
    previous_end = 0.0
    assert results and all(r.is_final for r in results)
    for result in results:
        assert previous_end <= result.start_s < result.end_s <= len(samples) / RATE + 1e-3
        assert result.end_s - result.start_s <= max_utterance_s + 1e-3
        previous_end = result.end_s
        span = samples[round(result.start_s * RATE) : round(result.end_s * RATE)]
        assert result.transcript.text == twin.transcribe(span, RATE).text


def _bad_streams(pcm: dict[str, bytes]) -> dict[str, tuple[list[pb.StreamingRecognizeRequest], grpc.StatusCode, str]]:
    speech = pcm["hello world"]
    request = pb.StreamingRecognizeRequest
    opus = list(opus_packets(decode_raw(speech, "pcm16", RATE), RATE))
    webm = encode_audio(prepare_waveform(decode_raw(speech, "pcm16", RATE), RATE), 16000, "webm", "libopus", seekable=False)
    aac_mka = encode_audio(decode_raw(speech, "pcm16", RATE), RATE, "matroska", "aac", seekable=False)
    m4a = encode_audio(decode_raw(speech, "pcm16", RATE), RATE, "mp4", "aac")  # its moov comes last
    fragmented = mp4_recording(decode_raw(speech, "pcm16", RATE), RATE)
    wav = io.BytesIO()
    sf.write(wav, decode_raw(speech, "pcm16", RATE), RATE, format="WAV")
    wav = wav.getvalue()
    vorbis = io.BytesIO()
    sf.write(vorbis, decode_raw(speech, "pcm16", RATE), RATE, format="OGG", subtype="VORBIS")
    vorbis = vorbis.getvalue()

    def request_audio(packet: bytes) -> pb.StreamingRecognizeRequest:
        return request(audio=packet)

    return {
        "audio first": ([request(audio=speech[:4000])], Code.INVALID_ARGUMENT, "first message"),
        "empty first message": ([request()], Code.INVALID_ARGUMENT, "first message"),
        "second config": (
            [request(config=raw_config()), request(audio=speech[:4000]), request(config=raw_config())],
            Code.INVALID_ARGUMENT,
            "only the first",
        ),
        "WAV streamed": (
            [request(config=pb.RecognitionConfig(encoding=pb.WAV)), request(audio=speech[:4000])],
            Code.INVALID_ARGUMENT,
            "LINEAR16",
        ),
        "unknown model": ([request(config=raw_config(model="nope"))], Code.NOT_FOUND, "nope"),
        "bad rate": ([request(config=raw_config(sample_rate_hz=100))], Code.INVALID_ARGUMENT, "100 Hz"),
        "missing rate": (
            [request(config=pb.RecognitionConfig(encoding=pb.FLOAT32))],
            Code.INVALID_ARGUMENT,
            "sample_rate_hz",
        ),
        "negative endpoint": ([request(config=raw_config(endpoint_silence_ms=-1))], Code.INVALID_ARGUMENT, "endpoint"),
        "latency of one frame": (
            [request(config=raw_config(stream_latency_ms=59)), request(audio=speech[:4000])],
            Code.INVALID_ARGUMENT,
            "under two model frames",
        ),
        "negative latency": (
            [request(config=raw_config(stream_latency_ms=-5))],
            Code.INVALID_ARGUMENT,
            "stream_latency_ms",
        ),
        "more alternatives than the beam": (
            [request(config=raw_config(beam_size=2, max_alternatives=3))],
            Code.INVALID_ARGUMENT,
            "max_alternatives must be 0-2",
        ),
        "phrases without a beam": (
            [request(config=raw_config(phrases=["ann"]))],
            Code.INVALID_ARGUMENT,
            "phrases need beam search",
        ),
        "utterance cap over limit": ([request(config=raw_config(max_utterance_s=99))], Code.INVALID_ARGUMENT, "10"),
        "trailing odd byte": (
            [request(config=raw_config()), request(audio=speech[:4001])],
            Code.INVALID_ARGUMENT,
            "trailing",
        ),
        "NaN samples": (
            [
                request(config=pb.RecognitionConfig(encoding=pb.FLOAT32, sample_rate_hz=RATE)),
                request(audio=np.full(100, np.nan, "<f4").tobytes()),
            ],
            Code.INVALID_ARGUMENT,
            "NaN",
        ),
        "Opus at a rate Opus lacks": (
            [request(config=pb.RecognitionConfig(encoding=pb.OPUS, sample_rate_hz=44100))],
            Code.INVALID_ARGUMENT,
            "not an Opus rate",
        ),
        "corrupt Opus packet": (
            [request(config=pb.RecognitionConfig(encoding=pb.OPUS)), *map(request_audio, opus[:2]), request(audio=b"\xff\xfe junk")],
            Code.INVALID_ARGUMENT,
            "Opus packet 3 is corrupt",
        ),
        "WAV bytes as a WebM stream": (
            [request(config=pb.RecognitionConfig(encoding=pb.WEBM)), request(audio=wav)],
            Code.INVALID_ARGUMENT,
            "not a WebM stream: it does not begin with an EBML header",
        ),
        "WebM stream of AAC": (
            [request(config=pb.RecognitionConfig(encoding=pb.WEBM)), request(audio=aac_mka)],
            Code.INVALID_ARGUMENT,
            "only Opus (A_OPUS) streams are accepted",
        ),
        "Ogg Vorbis as a stream": (
            [request(config=pb.RecognitionConfig(encoding=pb.OGG)), request(audio=vorbis)],
            Code.INVALID_ARGUMENT,
            "Ogg stream has no Opus stream before page 2",
        ),
        "MP4 saved to disk, streamed": (
            [request(config=pb.RecognitionConfig(encoding=pb.MP4)), request(audio=m4a)],
            Code.INVALID_ARGUMENT,
            "comes before its index (moov)",
        ),
        "MP4 stream at a rate it lacks": (
            [request(config=pb.RecognitionConfig(encoding=pb.MP4, sample_rate_hz=16000)), request(audio=fragmented)],
            Code.INVALID_ARGUMENT,
            f"sample_rate_hz is 16000 but the MP4 stream's audio is {RATE} Hz",
        ),
        "MP4 stream at no rate": (
            [request(config=pb.RecognitionConfig(encoding=pb.MP4, sample_rate_hz=4000))],
            Code.INVALID_ARGUMENT,
            "sample_rate_hz must be 8000-96000 (or 0), got 4000",
        ),
        "WebM stream cut short": (
            [request(config=pb.RecognitionConfig(encoding=pb.WEBM)), request(audio=webm[:-7])],
            Code.INVALID_ARGUMENT,
            "WebM stream ended inside an element",
        ),
        "chunk over 64 KiB": (
            [request(config=raw_config()), request(audio=bytes(64 * 1024 + 2))],
            Code.RESOURCE_EXHAUSTED,
            "65536",
        ),
        "stream over 60 s": (
            [request(config=raw_config(sample_rate_hz=8000))] + [request(audio=bytes(64000))] * 16,
            Code.RESOURCE_EXHAUSTED,
            "60 s",
        ),
    }


def test_every_bad_stream_gets_its_status(stub, pcm, grpc_server) -> None:
    for name, (requests, code, word) in _bad_streams(pcm).items():
        try:
            expect_error(partial(stub.StreamingRecognize, iter(requests)), code, word)
        except AssertionError as failure:
            raise AssertionError(f"{name}: {failure}") from None
    grpc_server.wait_for_no_streams()
    assert finals(stream(stub, raw_config(), [pcm["hello world"]]))[0].alternatives[0].transcript == "hello world"


class OpenStream:
    """A stream whose requests the test feeds by hand (``send``), to hold it open or cancel it."""

    def __init__(self, stub: pb_grpc.SpeechLabelerStub, config: pb.RecognitionConfig) -> None:
        self._queue: queue.Queue[pb.StreamingRecognizeRequest | None] = queue.Queue()
        self._queue.put(pb.StreamingRecognizeRequest(config=config))
        self.call = stub.StreamingRecognize(iter(self._queue.get, None))
        self.responses: list[pb.StreamingRecognizeResponse] = []
        self.error: grpc.RpcError | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.responses.append(response)
        except grpc.RpcError as error:
            self.error = error

    def send(self, audio: bytes) -> None:
        self._queue.put(pb.StreamingRecognizeRequest(audio=audio))

    def close(self) -> None:
        self._queue.put(None)

    def join(self, timeout: float = 10.0) -> None:
        self._reader.join(timeout)
        assert not self._reader.is_alive()


def _wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_cancel_mid_stream_frees_the_session_at_once(stub, pcm, grpc_server) -> None:
    open_stream = OpenStream(stub, raw_config(interim_results=True))
    open_stream.send(pcm["the quick brown fox"][:60000])  # past one model chunk + look-ahead
    _wait_until(lambda: open_stream.responses)  # the server is mid-stream: interims arrived
    assert grpc_server.active_streams == 1
    open_stream.call.cancel()
    open_stream.join()
    assert open_stream.error is not None and open_stream.error.code() == Code.CANCELLED
    grpc_server.wait_for_no_streams(timeout=2.0)
    assert finals(stream(stub, raw_config(), [pcm["hello world"]]))[0].alternatives[0].transcript == "hello world"
    grpc_server.wait_for_no_streams()


def test_concurrent_stream_cap_and_idle_timeout(stub, pcm, grpc_server) -> None:
    held = [OpenStream(stub, raw_config()) for _ in range(2)]  # the test server allows 2
    _wait_until(lambda: grpc_server.active_streams == 2)
    expect_error(
        lambda: stub.StreamingRecognize(iter([pb.StreamingRecognizeRequest(config=raw_config())])),
        Code.RESOURCE_EXHAUSTED,
        "2 streams",
    )
    for open_stream in held:  # nobody sends: the 1.5 s idle timeout ends both
        open_stream.join()
        assert open_stream.error is not None and open_stream.error.code() == Code.DEADLINE_EXCEEDED
        assert "no audio for 1.5 s" in open_stream.error.details()
    grpc_server.wait_for_no_streams()


def test_messages_without_audio_cannot_hold_a_stream_open(model_dir: Path) -> None:
    """Empty messages (or a WebM stream's skipped bytes) bring no audio, so the audio limit never
    counts them, and they reset the idle timeout: the stream's wall time is capped at the audio
    limit plus the idle timeout."""
    limits = Limits(max_stream_s=1.0, stream_idle_timeout_s=0.5)
    server = LoopbackServer(ModelRegistry.load_dir(model_dir), limits=limits, workers=1)

    def requests() -> Iterator[pb.StreamingRecognizeRequest]:
        yield pb.StreamingRecognizeRequest(config=raw_config())
        for _ in range(60):  # 6 s of nothing, a message every 0.1 s
            time.sleep(0.1)
            yield pb.StreamingRecognizeRequest(audio=b"")

    try:
        with grpc.insecure_channel(server.address) as channel:
            started = time.monotonic()
            expect_error(
                lambda: pb_grpc.SpeechLabelerStub(channel).StreamingRecognize(requests()),
                Code.RESOURCE_EXHAUSTED,
                "stream open for over 1.5 s",
            )
            assert 1.5 <= time.monotonic() - started < 3.0
    finally:
        server.close()


def test_shutdown_finishes_open_streams_with_their_finals(model_dir: Path, pcm) -> None:
    server = LoopbackServer(ModelRegistry.load_dir(model_dir), workers=1)
    try:
        with grpc.insecure_channel(server.address) as channel:
            open_stream = OpenStream(pb_grpc.SpeechLabelerStub(channel), raw_config(interim_results=True))
            open_stream.send(pcm["hello world"])
            _wait_until(lambda: open_stream.responses)  # an interim: the server has taken in the audio
            server.run(server.running.stop(grace_s=5.0))
            open_stream.join()
            assert open_stream.error is None
            *interims, final = [r for response in open_stream.responses for r in response.results]
            assert interims and final.is_final and final.alternatives[0].transcript == "hello world"
            health = health_pb2_grpc.HealthStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert caught.value.code() == Code.UNAVAILABLE
    finally:
        server.close()


def test_a_warp_ensemble_server_streams_and_recognizes_like_its_offline_twins(
    model_dir: Path, recognizer: Recognizer, streaming: Recognizer, pcm
) -> None:
    """``serve --warps``: Recognize and live streams both run the ensemble, each equal to its offline
    twin with the same warps, and neither equals the plain model (the warps reach both paths);
    ListModels says which factors the server runs."""
    warps, data = (0.95, 1.05), pcm["seven green apples"]
    server = LoopbackServer(ModelRegistry.load_dir(model_dir, warps=warps), workers=1)
    try:
        with grpc.insecure_channel(server.address) as channel:
            warped = pb_grpc.SpeechLabelerStub(channel)
            (streamed,) = stream(warped, raw_config(word_time_offsets=True), chunks(data, [4410]))
            (recognized,) = warped.Recognize(
                pb.RecognizeRequest(config=raw_config(word_time_offsets=True), audio=data)
            ).results
            (model,) = warped.ListModels(pb.ListModelsRequest()).models
            assert list(model.warp_factors) == pytest.approx(warps)
            server.wait_for_no_streams()
    finally:
        server.close()
    twins = {"stream": (streamed, streaming), "recognize": (recognized, recognizer)}
    for name, (result, plain) in twins.items():
        ensemble = Recognizer(plain.config, plain.model, chunking=plain.chunking, warps=warps)
        assert result.alternatives[0].transcript == offline(ensemble, data).text, name
        assert_same_words(list(result.alternatives[0].words), offline(ensemble, data))
        confidences = [w.confidence for w in result.alternatives[0].words]
        assert confidences != pytest.approx([w.confidence for w in offline(plain, data).words], abs=2e-3), name


def test_a_phone_checked_server_recognizes_like_its_offline_twin(
    model_dir: Path, recognizer: Recognizer, pcm, tmp_path: Path
) -> None:
    """``serve --phone-check``: Recognize with beam search (and a stream's full-context finals) guides
    and re-ranks a char model's beam as the offline recognizer with the same check does (a heavy
    weight, so the check changes what the tiny model says); a phone model in the same directory is
    served unchecked."""
    check = PhoneCheck(Recognizer.from_checkpoint(SHIPPED_MODELS / "phone.ckpt"), weight=10.0)
    (tmp_path / "tiny.ckpt").symlink_to(model_dir / "tiny.ckpt")
    (tmp_path / "phone.ckpt").symlink_to(SHIPPED_MODELS / "phone.ckpt")
    models = ModelRegistry.load_dir(tmp_path, default="tiny", phone_check=check)
    assert models.get("tiny").recognizer.phone_check is check and models.get("phone").recognizer.phone_check is None
    config = raw_config(beam_size=4, max_alternatives=4)
    server = LoopbackServer(models, workers=1)
    try:
        with grpc.insecure_channel(server.address) as channel:
            served = pb_grpc.SpeechLabelerStub(channel)
            results = {text: served.Recognize(pb.RecognizeRequest(config=config, audio=data)).results[0] for text, data in pcm.items()}
            listed = {
                m.name: (m.phone_check_weight, m.phone_check_search_weight)
                for m in served.ListModels(pb.ListModelsRequest()).models
            }
            assert listed == {"tiny": (10.0, check.search_weight), "phone": (0.0, 0.0)}
            full_context = raw_config(beam_size=4, max_alternatives=4, full_context_finals=True)
            streamed = {text: finals(stream(served, full_context, chunks(data, [4410]))) for text, data in pcm.items()}
    finally:
        server.close()
    checked = Recognizer(recognizer.config, recognizer.model, fusion=recognizer.fusion, phone_check=check)
    changed = 0
    for text, data in pcm.items():
        expected = offline(checked, data, beam_size=4, alternatives=4)
        ranked = [expected.text, *(a.text for a in expected.alternatives)]
        assert [a.transcript for a in results[text].alternatives] == ranked, text
        (final,) = streamed[text]  # a stream's full-context final is checked too (its span: the whole file here)
        span = data[round(final.start_s * RATE) * 2 : round(final.end_s * RATE) * 2]
        expected_final = offline(checked, span, beam_size=4, alternatives=4)
        checked_final = [expected_final.text, *(a.text for a in expected_final.alternatives)]
        assert [a.transcript for a in final.alternatives] == checked_final
        plain = offline(recognizer, data, beam_size=4, alternatives=4)
        changed += ranked != [plain.text, *(a.text for a in plain.alternatives)]
    assert changed  # the check reached the served results


def test_a_char_checked_server_recognizes_like_its_offline_twin(model_dir: Path, pcm, tmp_path: Path) -> None:
    """``serve --char-check``: Recognize with beam search (and a stream's full-context finals) ranks a
    phone model's beam with the char model's reading as the offline recognizer with the same check
    does (a heavy bonus, so the reading wins); a char model in the same directory is served unchecked."""
    char = SHIPPED_MODELS / "char.ckpt"
    check = CharCheck(Recognizer.from_checkpoint(char, fusion=own_fusion(char)), agreement_bonus=100.0)
    (tmp_path / "tiny.ckpt").symlink_to(model_dir / "tiny.ckpt")
    (tmp_path / "phone.ckpt").symlink_to(SHIPPED_MODELS / "phone.ckpt")
    (tmp_path / "phone.lm.npz").symlink_to(SHIPPED_MODELS / "phone.lm.npz")
    models = ModelRegistry.load_dir(tmp_path, default="tiny", char_check=check)
    assert models.get("phone").recognizer.char_check is check and models.get("tiny").recognizer.char_check is None
    config = raw_config(beam_size=4, max_alternatives=2, model="phone")
    server = LoopbackServer(models, workers=1)
    try:
        with grpc.insecure_channel(server.address) as channel:
            served = pb_grpc.SpeechLabelerStub(channel)
            results = {text: served.Recognize(pb.RecognizeRequest(config=config, audio=data)).results[0] for text, data in pcm.items()}
            listed = {m.name: (m.char_check, m.char_check_weight) for m in served.ListModels(pb.ListModelsRequest()).models}
            assert listed == {"tiny": (False, 0.0), "phone": (True, check.distance_weight)}
            full_context = raw_config(beam_size=4, max_alternatives=2, full_context_finals=True, model="phone")
            streamed = {text: finals(stream(served, full_context, chunks(data, [4410]))) for text, data in pcm.items()}
    finally:
        server.close()
    phone = models.get("phone").recognizer
    for text, data in pcm.items():
        expected = offline(phone, data, beam_size=4, alternatives=2)
        assert [a.transcript for a in results[text].alternatives] == [expected.text, expected.alternatives[0].text], text
        reading = phonemize_normalized([offline(check.recognizer, data, beam_size=8).text])[0]
        assert expected.text == reading  # the heavy bonus: the char model's reading wins
        (final,) = streamed[text]  # a stream's full-context final is checked too (its span: the whole file here)
        span = data[round(final.start_s * RATE) * 2 : round(final.end_s * RATE) * 2]
        assert final.alternatives[0].transcript == offline(phone, span, beam_size=4).text


def test_bearer_token_guards_everything_but_health(model_dir: Path, pcm) -> None:
    server = LoopbackServer(ModelRegistry.load_dir(model_dir), workers=1, auth_token="s3cret")
    try:
        with grpc.insecure_channel(server.address) as channel:
            guarded = pb_grpc.SpeechLabelerStub(channel)
            expect_error(lambda: guarded.ListModels(pb.ListModelsRequest()), Code.UNAUTHENTICATED)
            expect_error(
                lambda: guarded.ListModels(pb.ListModelsRequest(), metadata=[("authorization", "Bearer no")]),
                Code.UNAUTHENTICATED,
            )
            expect_error(
                lambda: guarded.StreamingRecognize(iter([pb.StreamingRecognizeRequest(config=raw_config())])),
                Code.UNAUTHENTICATED,
            )
            auth = [("authorization", "Bearer s3cret")]
            assert guarded.ListModels(pb.ListModelsRequest(), metadata=auth).models[0].name == "tiny"
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.close()


def test_tls(model_dir: Path, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    server = LoopbackServer(ModelRegistry.load_dir(model_dir), workers=1, credentials=credentials)
    try:
        assert check_health(Connection(server.address, tls_ca=cert)) == "SERVING"
        with grpc.insecure_channel(server.address) as plain:  # a plaintext client cannot talk to it
            expect_error(partial(pb_grpc.SpeechLabelerStub(plain).ListModels, pb.ListModelsRequest(), timeout=5),
                         Code.UNAVAILABLE)  # fmt: skip
    finally:
        server.close()


def test_mutual_tls_requires_a_client_certificate(model_dir: Path, tmp_path: Path) -> None:
    def self_signed(name: str) -> tuple[Path, Path]:
        key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
             "-subj", f"/CN={name}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        return key, cert

    server_key, server_cert = self_signed("localhost")
    client_key, client_cert = self_signed("client")
    credentials = server_credentials(server_cert, server_key, client_ca=client_cert)
    server = LoopbackServer(ModelRegistry.load_dir(model_dir), workers=1, credentials=credentials)
    try:
        trusted = Connection(server.address, tls_ca=server_cert, tls_client_cert=client_cert, tls_client_key=client_key)
        assert check_health(trusted) == "SERVING"
        anonymous = Connection(server.address, tls_ca=server_cert, timeout_s=5)
        with pytest.raises(grpc.RpcError) as caught:
            check_health(anonymous)
        assert caught.value.code() == Code.UNAVAILABLE
    finally:
        server.close()
