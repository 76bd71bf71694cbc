from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    LINEAR16: _ClassVar[AudioEncoding]
    FLOAT32: _ClassVar[AudioEncoding]
    WAV: _ClassVar[AudioEncoding]
    FLAC: _ClassVar[AudioEncoding]
    MP3: _ClassVar[AudioEncoding]
    OGG: _ClassVar[AudioEncoding]
    MP4: _ClassVar[AudioEncoding]
    WEBM: _ClassVar[AudioEncoding]
    OPUS: _ClassVar[AudioEncoding]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
LINEAR16: AudioEncoding
FLOAT32: AudioEncoding
WAV: AudioEncoding
FLAC: AudioEncoding
MP3: AudioEncoding
OGG: AudioEncoding
MP4: AudioEncoding
WEBM: AudioEncoding
OPUS: AudioEncoding

class RecognitionConfig(_message.Message):
    __slots__ = ("encoding", "sample_rate_hz", "model", "interim_results", "word_time_offsets", "frame_labels", "beam_size", "endpoint_silence_ms", "max_utterance_s", "stream_latency_ms", "max_alternatives", "phrases", "phrase_boost", "full_context_finals")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    WORD_TIME_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    FRAME_LABELS_FIELD_NUMBER: _ClassVar[int]
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_UTTERANCE_S_FIELD_NUMBER: _ClassVar[int]
    STREAM_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    PHRASES_FIELD_NUMBER: _ClassVar[int]
    PHRASE_BOOST_FIELD_NUMBER: _ClassVar[int]
    FULL_CONTEXT_FINALS_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioEncoding
    sample_rate_hz: int
    model: str
    interim_results: bool
    word_time_offsets: bool
    frame_labels: bool
    beam_size: int
    endpoint_silence_ms: int
    max_utterance_s: float
    stream_latency_ms: int
    max_alternatives: int
    phrases: _containers.RepeatedScalarFieldContainer[str]
    phrase_boost: float
    full_context_finals: bool
    def __init__(self, encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., model: _Optional[str] = ..., interim_results: _Optional[bool] = ..., word_time_offsets: _Optional[bool] = ..., frame_labels: _Optional[bool] = ..., beam_size: _Optional[int] = ..., endpoint_silence_ms: _Optional[int] = ..., max_utterance_s: _Optional[float] = ..., stream_latency_ms: _Optional[int] = ..., max_alternatives: _Optional[int] = ..., phrases: _Optional[_Iterable[str]] = ..., phrase_boost: _Optional[float] = ..., full_context_finals: _Optional[bool] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class StreamingRecognizeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class WordInfo(_message.Message):
    __slots__ = ("word", "start_s", "end_s", "confidence")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    word: str
    start_s: float
    end_s: float
    confidence: float
    def __init__(self, word: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class LabelSegment(_message.Message):
    __slots__ = ("label", "start_s", "end_s", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    start_s: float
    end_s: float
    score: float
    def __init__(self, label: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class Alternative(_message.Message):
    __slots__ = ("transcript", "confidence", "words")
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    transcript: str
    confidence: float
    words: _containers.RepeatedCompositeFieldContainer[WordInfo]
    def __init__(self, transcript: _Optional[str] = ..., confidence: _Optional[float] = ..., words: _Optional[_Iterable[_Union[WordInfo, _Mapping]]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("alternatives", "segments", "is_final", "start_s", "end_s", "frame_labels", "frame_shift_s", "stable_transcript")
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    FRAME_LABELS_FIELD_NUMBER: _ClassVar[int]
    FRAME_SHIFT_S_FIELD_NUMBER: _ClassVar[int]
    STABLE_TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    alternatives: _containers.RepeatedCompositeFieldContainer[Alternative]
    segments: _containers.RepeatedCompositeFieldContainer[LabelSegment]
    is_final: bool
    start_s: float
    end_s: float
    frame_labels: _containers.RepeatedScalarFieldContainer[str]
    frame_shift_s: float
    stable_transcript: str
    def __init__(self, alternatives: _Optional[_Iterable[_Union[Alternative, _Mapping]]] = ..., segments: _Optional[_Iterable[_Union[LabelSegment, _Mapping]]] = ..., is_final: _Optional[bool] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., frame_labels: _Optional[_Iterable[str]] = ..., frame_shift_s: _Optional[float] = ..., stable_transcript: _Optional[str] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("results", "model")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Result]
    model: str
    def __init__(self, results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class StreamingRecognizeResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Result]
    def __init__(self, results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ...) -> None: ...

class AlignRequest(_message.Message):
    __slots__ = ("config", "audio", "transcript")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: bytes
    transcript: str
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ..., transcript: _Optional[str] = ...) -> None: ...

class AlignResponse(_message.Message):
    __slots__ = ("words", "segments", "model", "duration_s")
    WORDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    words: _containers.RepeatedCompositeFieldContainer[WordInfo]
    segments: _containers.RepeatedCompositeFieldContainer[LabelSegment]
    model: str
    duration_s: float
    def __init__(self, words: _Optional[_Iterable[_Union[WordInfo, _Mapping]]] = ..., segments: _Optional[_Iterable[_Union[LabelSegment, _Mapping]]] = ..., model: _Optional[str] = ..., duration_s: _Optional[float] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "label_type", "sample_rate_hz", "num_parameters", "size_bytes", "metrics", "model_card", "is_default", "labels", "frame_shift_s", "training_steps", "training_hours", "stream_latency_ms", "warp_factors", "phone_check_weight", "phone_check_search_weight", "char_check", "char_check_weight", "calibrated_confidence")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    NUM_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MODEL_CARD_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FRAME_SHIFT_S_FIELD_NUMBER: _ClassVar[int]
    TRAINING_STEPS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_HOURS_FIELD_NUMBER: _ClassVar[int]
    STREAM_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    WARP_FACTORS_FIELD_NUMBER: _ClassVar[int]
    PHONE_CHECK_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PHONE_CHECK_SEARCH_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHAR_CHECK_FIELD_NUMBER: _ClassVar[int]
    CHAR_CHECK_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    label_type: str
    sample_rate_hz: int
    num_parameters: int
    size_bytes: int
    metrics: _containers.ScalarMap[str, float]
    model_card: str
    is_default: bool
    labels: _containers.RepeatedScalarFieldContainer[str]
    frame_shift_s: float
    training_steps: int
    training_hours: float
    stream_latency_ms: int
    warp_factors: _containers.RepeatedScalarFieldContainer[float]
    phone_check_weight: float
    phone_check_search_weight: float
    char_check: bool
    char_check_weight: float
    calibrated_confidence: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., label_type: _Optional[str] = ..., sample_rate_hz: _Optional[int] = ..., num_parameters: _Optional[int] = ..., size_bytes: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., model_card: _Optional[str] = ..., is_default: _Optional[bool] = ..., labels: _Optional[_Iterable[str]] = ..., frame_shift_s: _Optional[float] = ..., training_steps: _Optional[int] = ..., training_hours: _Optional[float] = ..., stream_latency_ms: _Optional[int] = ..., warp_factors: _Optional[_Iterable[float]] = ..., phone_check_weight: _Optional[float] = ..., phone_check_search_weight: _Optional[float] = ..., char_check: _Optional[bool] = ..., char_check_weight: _Optional[float] = ..., calibrated_confidence: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., default_model: _Optional[str] = ...) -> None: ...
