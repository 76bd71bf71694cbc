"""Real MP4 and WebM files for tests, encoded with PyAV's FFmpeg (the product itself only decodes)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

# PyAV output format and codec of each file suffix the tests write
SUFFIX_FORMATS = {".m4a": ("mp4", "aac"), ".mp4": ("mp4", "aac"), ".webm": ("webm", "libopus"), ".mka": ("matroska", "libopus")}


class _Pipe(io.RawIOBase):
    """A write-only sink that cannot seek, like the socket a browser's MediaRecorder writes to:
    the Matroska muxer then leaves the duration out of the header."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk: bytes) -> int:  # type: ignore[override]
        self.data += chunk
        return len(chunk)


def encode_media(
    samples: np.ndarray, rate: int, fmt: str, codec: str, *, seekable: bool = True, options: dict | None = None
) -> bytes:
    """``samples`` (float32, ``(n,)`` or ``(n, channels)``) as a ``fmt`` file in ``codec``."""
    data = samples[:, None] if samples.ndim == 1 else samples
    layout = {1: "mono", 2: "stereo"}[data.shape[1]]
    sink = io.BytesIO() if seekable else _Pipe()
    with av.open(sink, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout, options=options or {})
        accepted = [f.name for f in stream.codec_context.codec.audio_formats]
        sample_format = next(name for name in ("flt", "fltp", "s16p", "s16", "s32p") if name in accepted)
        if sample_format.startswith("s16"):
            values = np.clip(np.rint(data * 32768), -32768, 32767).astype(np.int16)
        elif sample_format.startswith("s32"):
            values = np.clip(np.rint(data.astype(np.float64) * 2**31), -(2**31), 2**31 - 1).astype(np.int32)
        else:
            values = data.astype(np.float32)
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, len(values), frame_size):
            block = values[start : start + frame_size]
            planes = np.ascontiguousarray(block.T) if sample_format.endswith("p") else block.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(planes, format=sample_format, layout=layout)
            frame.rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return sink.getvalue() if isinstance(sink, io.BytesIO) else bytes(sink.data)


def write_media(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write ``samples`` to ``path`` in the container and codec of its suffix (:data:`SUFFIX_FORMATS`)."""
    fmt, codec = SUFFIX_FORMATS[path.suffix]
    path.write_bytes(encode_media(samples, rate, fmt, codec))
    return path
