"""Speech as lossy codecs leave it: Opus in WebM (calls, browsers) and AAC in M4A (phones' voice
memos), encoded with FFmpeg (PyAV) at a chosen bitrate, so benchmarks can score the models on the
files users send and tests can make real MP4 and WebM files. The files decode through
:mod:`audiomodels.media`, as any upload does; the service itself only decodes."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import av
import numpy as np

# PyAV's MP4 muxer options for a fragmented MP4 written to a pipe, as a recorder writes one
# (Safari's MediaRecorder): an empty moov first, then a moof + mdat per second (a recorder's
# timeslice; without a fragment length FFmpeg puts all the audio in one fragment)
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000"}
# codec -> (PyAV output format, encoder, file suffix) of the file it usually comes in
CODEC_FILES = {"opus": ("webm", "libopus", ".webm"), "aac": ("mp4", "aac", ".m4a"), "alac": ("mp4", "alac", ".m4a")}


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


def encode_audio(
    samples: np.ndarray,
    rate: int,
    fmt: str,
    codec: str,
    *,
    kbps: float | None = None,
    seekable: bool = True,
    options: dict[str, str] | None = None,
    gap: tuple[float, float] | None = None,
) -> bytes:
    """``samples`` (float32, ``(n,)`` or ``(n, channels)``) as a ``fmt`` file in ``codec`` (PyAV's
    names, e.g. ``"webm"``, ``"libopus"``), at ``kbps`` or the encoder's default bitrate, with the
    muxer's ``options`` (e.g. ``{"movflags": "frag_keyframe+empty_moov"}``: a recorder's fragmented MP4).
    ``gap`` = (at_s, length_s): from the encoder frame that starts at or after ``at_s``, timestamps
    run ``length_s`` ahead of the samples, as a recorder that lost audio writes them."""
    if "faststart" in (options or {}).get("movflags", ""):  # moving the index to the front takes a real file
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"audio.{fmt}"
            _encode_into(str(path), samples, rate, fmt, codec, kbps, options, gap)
            return path.read_bytes()
    sink = io.BytesIO() if seekable else _Pipe()
    _encode_into(sink, samples, rate, fmt, codec, kbps, options, gap)
    return sink.getvalue() if isinstance(sink, io.BytesIO) else bytes(sink.data)


def _encode_into(
    sink: str | io.IOBase,
    samples: np.ndarray,
    rate: int,
    fmt: str,
    codec: str,
    kbps: float | None,
    options: dict[str, str] | None,
    gap: tuple[float, float] | None = None,
) -> None:
    data = samples[:, None] if samples.ndim == 1 else samples
    layout = {1: "mono", 2: "stereo"}[data.shape[1]]
    with av.open(sink, "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if kbps is not None:
            stream.codec_context.bit_rate = round(kbps * 1000)
        accepted = [f.name for f in stream.codec_context.codec.audio_formats]
        sample_format = next(name for name in ("flt", "fltp", "s16p", "s16", "s32p") if name in accepted)
        if sample_format.startswith("s16"):
            values = np.clip(np.rint(data * 32768), -32768, 32767).astype(np.int16)
        elif sample_format.startswith("s32"):
            values = np.clip(np.rint(data.astype(np.float64) * 2**31), -(2**31), 2**31 - 1).astype(np.int32)
        else:
            values = data.astype(np.float32)
        frame_size = stream.codec_context.frame_size or 1024
        gap_at, gap_length = (round(gap[0] * rate), round(gap[1] * rate)) if gap else (len(values), 0)
        for start in range(0, len(values), frame_size):
            block = values[start : start + frame_size]
            planes = np.ascontiguousarray(block.T) if sample_format.endswith("p") else block.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(planes, format=sample_format, layout=layout)
            frame.rate, frame.pts = rate, start + (gap_length if start >= gap_at else 0)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def compressed(samples: np.ndarray, rate: int, codec: str, kbps: float) -> tuple[bytes, str]:
    """Mono ``samples`` through ``codec`` (a :data:`CODEC_FILES` key) at ``kbps``: the file's bytes and suffix."""
    fmt, encoder, suffix = CODEC_FILES[codec]
    return encode_audio(samples, rate, fmt, encoder, kbps=kbps), suffix
