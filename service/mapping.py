"""Protobuf <-> domain: request audio and configs in, ``Transcript``/model facts out, errors to codes.

Nothing here runs a model; the servicer calls these around its ``Recognizer`` calls.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
import numpy as np

from audiomodels.alignment import AlignmentError
from audiomodels.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioError, audio_duration, decode_audio, decode_raw
from audiomodels.context import DEFAULT_BOOST, PhraseBias, PhraseError
from audiomodels.labels import LabelError, LabelSet
from audiomodels.media import OPUS_INPUT_RATES, OPUS_RATE
from audiomodels.mp4_stream import DEFAULT_RATE as MP4_STREAM_RATE
from audiomodels.recognizer import Segment, Transcript, Word
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.limits import IdleTimeout, LimitExceeded, Limits, ModelNotFound, RequestError, ShuttingDown
from service.registry import ModelEntry, ModelRegistry
from service.sessions import StreamResult, StreamSettings

RAW_ENCODINGS = {pb.LINEAR16: "pcm16", pb.FLOAT32: "float32"}
# Whole files; the container is read from the bytes (libsndfile, or FFmpeg for MP4 and WebM), so
# the one declared only documents it.
CONTAINER_ENCODINGS = (pb.WAV, pb.FLAC, pb.MP3, pb.OGG, pb.MP4, pb.WEBM)
OPUS_STREAMS = {pb.OPUS: "opus", pb.WEBM: "webm", pb.OGG: "ogg"}  # streamed encodings decoded at OPUS_RATE

_STATUS_CODES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], grpc.StatusCode], ...] = (
    (ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (IdleTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ShuttingDown, grpc.StatusCode.UNAVAILABLE),
    ((AudioError, LabelError, AlignmentError, RequestError), grpc.StatusCode.INVALID_ARGUMENT),
)


def status_code(error: BaseException) -> grpc.StatusCode | None:
    """The status a request error maps to; ``None`` for a server fault (bug or crash)."""
    return next((code for kinds, code in _STATUS_CODES if isinstance(error, kinds)), None)


def _encoding_name(encoding: int) -> str:
    return pb.AudioEncoding.Name(encoding) if encoding in pb.AudioEncoding.values() else str(encoding)


def request_waveform(config: pb.RecognitionConfig, audio: bytes, limits: Limits) -> tuple[np.ndarray, int]:
    """Decode unary request audio to ``(samples, rate)``; the length is checked before decoding."""
    if not audio:
        raise AudioError("audio is empty (0 bytes)")
    encoding = config.encoding
    if encoding in RAW_ENCODINGS:
        name = RAW_ENCODINGS[encoding]
        rate = _raw_rate(config)
        samples = decode_raw(audio, name, rate)
        _check_audio_length(len(samples) / rate, limits)
        return samples, rate
    if encoding in CONTAINER_ENCODINGS:
        _check_audio_length(audio_duration(audio), limits)
        samples, rate = decode_audio(audio)
        if config.sample_rate_hz and config.sample_rate_hz != rate:
            raise RequestError(f"sample_rate_hz is {config.sample_rate_hz} but the audio header says {rate} Hz")
        return samples, rate
    raise RequestError(
        f"encoding {_encoding_name(encoding)} is not supported here; use LINEAR16 or FLOAT32 (with sample_rate_hz), "
        "WAV, FLAC, MP3, OGG, MP4 or WEBM" + (" (OPUS packets are for StreamingRecognize)" if encoding == pb.OPUS else "")
    )


def _raw_rate(config: pb.RecognitionConfig) -> int:
    if config.sample_rate_hz <= 0:
        raise RequestError(f"sample_rate_hz is required for {_encoding_name(config.encoding)} audio")
    return config.sample_rate_hz


def _opus_rate(config: pb.RecognitionConfig) -> int:
    """The rate an Opus stream is decoded at; ``sample_rate_hz``, if given, is the encoder's input rate."""
    if config.sample_rate_hz and config.sample_rate_hz not in OPUS_INPUT_RATES:
        raise RequestError(
            f"sample_rate_hz {config.sample_rate_hz} is not an Opus rate; Opus encodes "
            f"{', '.join(map(str, OPUS_INPUT_RATES))} Hz (or leave it 0)"
        )
    return OPUS_RATE


def _mp4_stream_rate(config: pb.RecognitionConfig) -> int:
    """A streamed MP4's rate: the one stated (its audio must have it), or 48 kHz, which audio at
    another rate is resampled to (the rate is fixed before the stream's header arrives)."""
    if config.sample_rate_hz and not MIN_SAMPLE_RATE <= config.sample_rate_hz <= MAX_SAMPLE_RATE:
        raise RequestError(
            f"sample_rate_hz must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} (or 0), got {config.sample_rate_hz}"
        )
    return config.sample_rate_hz or MP4_STREAM_RATE


def _check_audio_length(seconds: float, limits: Limits) -> None:
    if seconds > limits.max_audio_s:
        raise LimitExceeded(
            f"audio is {seconds:.1f} s long; this server takes at most {limits.max_audio_s:g} s per request "
            "(stream longer audio with StreamingRecognize)"
        )


def beam_size(config: pb.RecognitionConfig, limits: Limits) -> int:
    if not 0 <= config.beam_size <= limits.max_beam_size:
        raise RequestError(f"beam_size must be 0-{limits.max_beam_size}, got {config.beam_size}")
    return max(1, config.beam_size)


def alternatives(config: pb.RecognitionConfig, limits: Limits) -> int:
    """Hypotheses per result; the beam must hold them (greedy decoding has one)."""
    beam = beam_size(config, limits)
    if not 0 <= config.max_alternatives <= beam:
        raise RequestError(
            f"max_alternatives must be 0-{beam} (at most beam_size: the beam holds the alternatives), "
            f"got {config.max_alternatives}"
        )
    return max(1, config.max_alternatives)


def phrase_bias(config: pb.RecognitionConfig, labels: LabelSet, limits: Limits) -> PhraseBias | None:
    """The request's phrase hints for a model with ``labels``; None without any."""
    if not config.phrases:
        if config.phrase_boost:
            raise RequestError("phrase_boost is set but phrases is empty")
        return None
    if beam_size(config, limits) <= 1:
        raise RequestError("phrases need beam search: set beam_size > 1")
    if len(config.phrases) > limits.max_phrases:
        raise LimitExceeded(f"{len(config.phrases)} phrases is over the limit of {limits.max_phrases}")
    long = next((p for p in config.phrases if len(p) > limits.max_phrase_chars), None)
    if long is not None:
        raise LimitExceeded(f"phrase {long[:20]!r}... is over the limit of {limits.max_phrase_chars} characters")
    try:
        return PhraseBias.from_phrases(list(config.phrases), labels, config.phrase_boost or DEFAULT_BOOST)
    except PhraseError as error:
        raise RequestError(str(error)) from None


def stream_settings(config: pb.RecognitionConfig, labels: LabelSet, limits: Limits) -> StreamSettings:
    """A streaming config -> session settings (raw audio, Opus packets, or a WebM or Ogg stream of
    Opus; thresholds within server limits)."""
    if config.encoding not in (*RAW_ENCODINGS, *OPUS_STREAMS, pb.MP4):
        raise RequestError(
            "streaming takes headerless LINEAR16 or FLOAT32 audio, OPUS packets, a WEBM or OGG stream "
            f"of Opus audio, or an MP4 stream of AAC or Opus, not {_encoding_name(config.encoding)}"
        )
    if config.endpoint_silence_ms < 0:
        raise RequestError(f"endpoint_silence_ms must not be negative, got {config.endpoint_silence_ms}")
    if not 0 <= config.max_utterance_s <= limits.max_utterance_s:
        raise RequestError(f"max_utterance_s must be 0-{limits.max_utterance_s:g} (0 = server default)")
    if not 0 <= config.stream_latency_ms <= limits.max_utterance_s * 1000:
        raise RequestError(
            f"stream_latency_ms must be 0-{limits.max_utterance_s * 1000:g} (0 = the model's default), "
            f"got {config.stream_latency_ms}"
        )
    defaults = StreamSettings(encoding="pcm16", sample_rate=16000)
    if config.encoding in OPUS_STREAMS:
        encoding, rate = OPUS_STREAMS[config.encoding], _opus_rate(config)
    elif config.encoding == pb.MP4:
        encoding, rate = "mp4", _mp4_stream_rate(config)
    else:
        encoding, rate = RAW_ENCODINGS[config.encoding], _raw_rate(config)
    return StreamSettings(
        encoding=encoding,
        sample_rate=rate,
        stated_rate=config.encoding != pb.MP4 or config.sample_rate_hz != 0,
        interim_results=config.interim_results,
        beam_size=beam_size(config, limits),
        alternatives=alternatives(config, limits),
        bias=phrase_bias(config, labels, limits),
        endpoint_silence_s=config.endpoint_silence_ms / 1000 or defaults.endpoint_silence_s,
        max_utterance_s=config.max_utterance_s or limits.max_utterance_s,
        max_stream_s=limits.max_stream_s,
        latency_s=config.stream_latency_ms / 1000,
        full_context_finals=config.full_context_finals,
    )


def _at(offset_s: float, seconds: float) -> float:
    return round(offset_s + seconds, 3)


def word_infos(words: Iterable[Word], offset_s: float = 0.0) -> list[pb.WordInfo]:
    return [
        pb.WordInfo(
            word=w.word, start_s=_at(offset_s, w.start_s), end_s=_at(offset_s, w.end_s), confidence=w.confidence
        )
        for w in words
    ]


def label_segments(segments: Iterable[Segment], offset_s: float = 0.0) -> list[pb.LabelSegment]:
    return [
        pb.LabelSegment(label=s.label, start_s=_at(offset_s, s.start_s), end_s=_at(offset_s, s.end_s), score=s.score)
        for s in segments
    ]


def result(
    transcript: Transcript,
    config: pb.RecognitionConfig,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    is_final: bool = True,
) -> pb.Result:
    """One result; words and labels (as the config asks) only on finals, times from ``start_s``."""
    with_words = is_final and config.word_time_offsets
    message = pb.Result(
        alternatives=[
            pb.Alternative(
                transcript=hypothesis.text,
                confidence=hypothesis.confidence,
                words=word_infos(hypothesis.words, start_s) if with_words else [],
            )
            for hypothesis in (transcript, *transcript.alternatives)
        ],
        is_final=is_final,
        start_s=round(start_s, 3),
        end_s=_at(start_s, transcript.duration_s) if end_s is None else round(end_s, 3),
    )
    if is_final and config.frame_labels:
        message.segments.extend(label_segments(transcript.segments, start_s))
        message.frame_labels.extend(transcript.frame_labels)
        message.frame_shift_s = transcript.frame_shift_s
    return message


def recognize_response(transcript: Transcript, config: pb.RecognitionConfig, model: str) -> pb.RecognizeResponse:
    return pb.RecognizeResponse(results=[result(transcript, config)], model=model)


def streaming_response(results: Iterable[StreamResult], config: pb.RecognitionConfig) -> pb.StreamingRecognizeResponse:
    messages = []
    for r in results:
        message = result(r.transcript, config, start_s=r.start_s, end_s=r.end_s, is_final=r.is_final)
        message.stable_transcript = r.stable_text
        messages.append(message)
    return pb.StreamingRecognizeResponse(results=messages)


def align_response(transcript: Transcript, model: str) -> pb.AlignResponse:
    return pb.AlignResponse(
        words=word_infos(transcript.words),
        segments=label_segments(transcript.segments),
        model=model,
        duration_s=transcript.duration_s,
    )


def model_info(entry: ModelEntry, default_name: str) -> pb.ModelInfo:
    recognizer = entry.recognizer
    return pb.ModelInfo(
        name=entry.name,
        label_type=recognizer.labels.kind,
        sample_rate_hz=recognizer.sample_rate,
        num_parameters=recognizer.model.num_parameters(),
        size_bytes=entry.size_bytes,
        metrics=entry.metrics,
        model_card=entry.model_card,
        is_default=entry.name == default_name,
        labels=recognizer.labels.symbols,
        frame_shift_s=recognizer.config.features.frame_shift_s,
        training_steps=int(entry.metadata.get("step", entry.metadata.get("steps", 0))),
        training_hours=float(entry.metadata.get("train_hours", 0.0)),
        stream_latency_ms=round(
            recognizer.config.model.streaming.latency_frames * recognizer.config.features.frame_shift_s * 1000
        ),
        warp_factors=recognizer.warps,
        phone_check_weight=recognizer.phone_check.weight if recognizer.phone_check else 0.0,
        phone_check_search_weight=recognizer.phone_check.search_weight if recognizer.phone_check else 0.0,
        char_check=recognizer.char_check is not None,
        char_check_weight=recognizer.char_check.distance_weight if recognizer.char_check else 0.0,
        calibrated_confidence=sorted(recognizer.calibration.maps) if recognizer.calibration else [],
    )


def list_models_response(registry: ModelRegistry) -> pb.ListModelsResponse:
    return pb.ListModelsResponse(
        models=[model_info(entry, registry.default_name) for entry in registry], default_model=registry.default_name
    )
