"""Chained Ogg files: links (logical streams) one after another, as a recorded Icecast radio
stream starts one at every title, and as ``cat a.opus b.opus`` makes. libsndfile reads a chain's
first link and stops, and FFmpeg times a chain by its last link, so either would lose audio.
:class:`OggChain` reads each link with the reader it would get as a file of its own (libsndfile
for Vorbis, the gap-filling FFmpeg path for Opus, :func:`audiomodels.audio._reader`) and plays
them back to back, resampled to one rate where links differ.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
import soundfile as sf

from audiomodels.media import MediaFile, joined, rechunk
from audiomodels.resampling import StreamingResampler

LinkReader = sf.SoundFile | MediaFile
_LINK_BLOCK = 65536  # frames a link is read in


class OggChain:
    """The few members of ``soundfile.SoundFile`` that :mod:`audiomodels.audio` uses, over all the
    links of a chain. ``frames`` is the links' header lengths summed (no decoding), at the highest
    rate of any link; links with other channel counts than the rest make the chain mono."""

    format = "OGG"

    def __init__(self, file: BinaryIO, spans: list[tuple[int, int]], open_link: Callable[[BinaryIO, str], LinkReader]) -> None:
        self._file, self._spans, self._open_link = file, spans, open_link
        facts = []
        for index in range(len(spans)):
            with self._link(index) as link:
                facts.append((link.samplerate, link.channels, link.frames))
        self._rates = [rate for rate, _, _ in facts]
        self.samplerate = max(self._rates)
        self.channels = facts[0][1] if len({channels for _, channels, _ in facts}) == 1 else 1
        self.frames = sum(math.ceil(frames * self.samplerate / rate) for rate, _, frames in facts)
        self.format_info = f"OGG (a chain of {len(spans)} links)"

    def __enter__(self) -> OggChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing held open: each link is opened for as long as it is read."""

    def read(self, dtype: str = "float32", always_2d: bool = False) -> np.ndarray:
        return joined(self._decoded(dtype), self.channels, always_2d)

    def blocks(self, blocksize: int, dtype: str = "float32", always_2d: bool = True) -> Iterator[np.ndarray]:
        return rechunk(self._decoded(dtype), blocksize)

    def _link(self, index: int) -> LinkReader:
        start, end = self._spans[index]
        self._file.seek(start)
        return self._open_link(io.BytesIO(self._file.read(end - start)), f"link {index + 1} of {len(self._spans)} of the chain")

    def _decoded(self, dtype: str) -> Iterator[np.ndarray]:
        """float32 ``(n, channels)`` pieces, link after link."""
        if dtype != "float32":
            raise ValueError(f"OggChain decodes to float32 only, not {dtype}")
        for index, rate in enumerate(self._rates):
            with self._link(index) as link:
                blocks = (self._mixed(block) for block in link.blocks(_LINK_BLOCK, dtype="float32", always_2d=True))
                yield from blocks if rate == self.samplerate else self._resampled(blocks, rate)

    def _mixed(self, block: np.ndarray) -> np.ndarray:
        """A link's block with the chain's channels: its own, or their mean where links differ."""
        return block if block.shape[1] == self.channels else block.mean(axis=1, keepdims=True, dtype=np.float32)

    def _resampled(self, blocks: Iterator[np.ndarray], rate: int) -> Iterator[np.ndarray]:
        """A link's blocks at the chain's rate, each channel by the same resampler as the rest of
        the product (the whole link's result, computed piece by piece)."""
        channels = [StreamingResampler(rate, self.samplerate) for _ in range(self.channels)]
        for block in blocks:
            yield np.stack([resampler.accept(block[:, c]) for c, resampler in enumerate(channels)], axis=1)
        yield np.stack([resampler.finish() for resampler in channels], axis=1)
