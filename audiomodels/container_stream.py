"""What the live container readers (:mod:`audiomodels.webm_stream`, :mod:`audiomodels.mp4_stream`)
share: bytes arrive in pieces cut anywhere, are buffered until a whole element (a header, a
packet) is in, and spans the reader does not need are skipped as they arrive, never held."""

from __future__ import annotations

import numpy as np


class ContainerStream:
    """``push`` pieces of a stream; a subclass's ``_advance`` consumes what it can of the buffer."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0  # bytes of a skipped span still to come
        self.bytes_read = 0  # consumed so far: the stream offset of the buffer's first byte

    def push(self, data: bytes) -> np.ndarray:
        """The mono float32 samples of what this piece completed."""
        self._buffer += data
        pieces: list[np.ndarray] = []
        while self._advance(pieces):
            pass
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def _advance(self, pieces: list[np.ndarray]) -> bool:
        """Consume one step's bytes, appending any samples to ``pieces``; False when more are needed."""
        raise NotImplementedError

    def _consume(self, count: int) -> None:
        del self._buffer[:count]
        self.bytes_read += count
        if self._skip:
            self._skip -= count
