"""Headerless little-endian samples (LINEAR16 as ``"pcm16"``, FLOAT32 as ``"float32"``), whole or
arriving in pieces cut anywhere, even inside a sample.

It imports no torch, so the light gRPC client (turning a recorder's pipe into Opus packets) and the
server (decoding stream messages) carry a partial sample over to the next piece the same way.
"""

from __future__ import annotations

import numpy as np

RAW_DTYPES = {"pcm16": np.dtype("<i2"), "float32": np.dtype("<f4")}


def samples_from_bytes(data: bytes, encoding: str) -> np.ndarray:
    """Whole samples as float32; pcm16 is scaled to [-1, 1)."""
    samples = np.frombuffer(data, RAW_DTYPES[encoding]).astype(np.float32)
    return samples / np.float32(32768) if encoding == "pcm16" else samples


class RawSampleReader:
    """Pieces of a raw sample stream -> float32 samples; a partial sample waits for the next piece."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.bytes_per_sample = RAW_DTYPES[encoding].itemsize
        self.remainder = b""  # the bytes of a sample not yet complete

    def push(self, data: bytes) -> np.ndarray:
        data = self.remainder + data
        whole = len(data) - len(data) % self.bytes_per_sample
        self.remainder = data[whole:]
        return samples_from_bytes(data[:whole], self.encoding)
