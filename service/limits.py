"""What a client may ask of the server, and the errors that say a request asked wrongly or too much.

The errors are plain exceptions so sessions and the model registry stay free of gRPC;
``service.mapping.status_code`` turns them (and the model core's ``AudioError``, ``LabelError``,
``AlignmentError``) into gRPC status codes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Server-side caps; every one of them is a ``speechlabel serve`` option."""

    max_message_bytes: int = 32 * 1024 * 1024  # any one gRPC message (unary audio included)
    max_audio_s: float = 600.0  # unary Recognize/Align audio length
    max_chunk_bytes: int = 64 * 1024  # one streaming audio message
    max_stream_s: float = 3600.0  # audio in one stream
    max_utterance_s: float = 30.0  # a streamed utterance is cut at this length at the latest
    max_streams: int = 16  # concurrent StreamingRecognize calls
    stream_idle_timeout_s: float = 30.0  # longest wait for a stream's next message
    max_beam_size: int = 64
    max_phrases: int = 1000  # phrase hints per request
    max_phrase_chars: int = 100  # characters in one phrase hint


class RequestError(ValueError):
    """The request is malformed (INVALID_ARGUMENT); the message says what to fix."""


class LimitExceeded(RuntimeError):
    """The request is well-formed but over a server limit (RESOURCE_EXHAUSTED)."""


class ModelNotFound(LookupError):
    """The requested model is not loaded (NOT_FOUND)."""


class IdleTimeout(TimeoutError):
    """A stream sent nothing for too long (DEADLINE_EXCEEDED)."""


class ShuttingDown(RuntimeError):
    """The server is draining and takes no new streams (UNAVAILABLE)."""
