"""MP4 and WebM files for tests, in the container and codec their suffix names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.codecs import encode_audio

# file suffix -> PyAV output format and encoder
SUFFIX_FORMATS = {".m4a": ("mp4", "aac"), ".mp4": ("mp4", "aac"), ".webm": ("webm", "libopus"), ".mka": ("matroska", "libopus")}


def write_media(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write ``samples`` to ``path`` in the container and codec of its suffix (:data:`SUFFIX_FORMATS`)."""
    fmt, codec = SUFFIX_FORMATS[path.suffix]
    path.write_bytes(encode_audio(samples, rate, fmt, codec))
    return path
