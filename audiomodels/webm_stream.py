"""A live WebM stream with Opus audio, decoded as its bytes arrive: what a browser's
``MediaRecorder`` hands out every timeslice, forwarded by a web gateway piece by piece.

FFmpeg's demuxer wants a whole file it can probe and seek, so this module reads the stream's EBML
itself, as far as an audio stream needs: it checks the header, finds the first audio track in
``Tracks`` (it must be Opus, ``A_OPUS``; its ``CodecPrivate`` is the decoder's OpusHead), and
hands that track's frames from ``SimpleBlock`` and ``Block`` elements to FFmpeg's Opus decoder,
the one :class:`audiomodels.media.MediaFile` decodes a whole WebM file with, so a stream and the
same bytes sent as a file decode to the same samples. Segments and clusters of unknown size (a
live recorder cannot know them) are read in line; every other element is skipped by its size
without being held, so other tracks (a screen recording's video) cost no memory. Pieces may be cut
anywhere, inside any element. Laced blocks (several frames in one, as mkvmerge writes audio) are
read frame by frame. A jump in the blocks' timestamps (cluster ``Timecode`` + the block's own, in
``TimecodeScale`` units) is filled with silence, as the whole file's decoding fills it
(:class:`audiomodels.media.TimelineGaps`), so labels keep the recording's times.

It imports no torch, like :mod:`audiomodels.media`.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from audiomodels.container_stream import ContainerStream
from audiomodels.media import OPUS_RATE, MediaError, TimelineGaps, decode_packet, opus_decoder

_EBML, _DOC_TYPE = 0x1A45DFA3, 0x4282
_SEGMENT, _CLUSTER, _BLOCK_GROUP, _TRACKS, _TRACK_ENTRY, _AUDIO = 0x18538067, 0x1F43B675, 0xA0, 0x1654AE6B, 0xAE, 0xE1
_INFO, _TIMECODE_SCALE, _CLUSTER_TIMECODE = 0x1549A966, 0x2AD7B1, 0xE7
_SIMPLE_BLOCK, _BLOCK, _DISCARD_PADDING = 0xA3, 0xA1, 0x75A2
_TRACK_NUMBER, _TRACK_TYPE, _CODEC_ID, _CODEC_PRIVATE = 0xD7, 0x83, 0x86, 0x63A2
# Masters whose children are read in line (their size, possibly unknown, is not needed).
_MASTERS = frozenset({_EBML, _SEGMENT, _INFO, _CLUSTER, _TRACKS, _TRACK_ENTRY, _AUDIO})
_TRACK_FIELDS = {_TRACK_NUMBER: "number", _TRACK_TYPE: "type", _CODEC_ID: "codec", _CODEC_PRIVATE: "private"}
_AUDIO_TRACK = 2  # Matroska's TrackType of audio
_XIPH_LACING, _FIXED_LACING = 1, 2  # a block's lacing (flags bits 1-2); 3 is EBML lacing
_DEFAULT_TIMECODE_SCALE = 1_000_000  # ns per timestamp unit: milliseconds
# An element held whole (a header field, an audio block or block group): an Opus packet is at most
# 61 KB (48 frames of 1275 bytes), so a block group beyond this is another track's and is skipped.
MAX_ELEMENT_BYTES = 1 << 20


class WebmOpusStream(ContainerStream):
    """``push`` the stream's bytes in pieces of any size; each call returns the mono float32
    samples (at :data:`OPUS_RATE`) of the audio blocks the piece completed. Errors are
    :class:`MediaError` with what was wrong and where."""

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._tracks: list[dict[str, int | bytes]] = []
        self._audio_track: int | None = None
        self._decoder: av.CodecContext | None = None
        self._timecode_scale = _DEFAULT_TIMECODE_SCALE
        self._cluster_time = 0  # the current cluster's Timecode, in TimecodeScale units
        self._gaps = TimelineGaps(OPUS_RATE)

    def finish(self) -> np.ndarray:
        """Raise if the stream ended inside an element, or before it described its tracks; no
        samples are held back, so none are returned (the MP4 reader's resampler holds some)."""
        if self._buffer or self._skip:
            raise MediaError(f"WebM stream ended inside an element (at byte {self.bytes_read + len(self._buffer)})")
        if self._started and not self._tracks:
            raise MediaError("WebM stream ended before it described its tracks (Tracks)")
        return np.zeros(0, np.float32)

    def _advance(self, pieces: list[np.ndarray]) -> bool:
        """Consume one element header, skipped span or whole element; False when more bytes are needed."""
        if self._skip:
            self._consume(min(self._skip, len(self._buffer)))
            return False if self._skip else bool(self._buffer)
        if not self._started:
            if len(self._buffer) < 4:
                return False
            if self._buffer[:4] != b"\x1a\x45\xdf\xa3":
                raise MediaError("not a WebM stream: it does not begin with an EBML header")
            self._started = True
        header = _element_header(self._buffer, self.bytes_read)
        if header is None:
            return False
        element, size, header_len = header
        if element in _MASTERS:
            self._consume(header_len)
            if element == _TRACK_ENTRY:
                self._tracks.append({})
            return True
        if size is None:
            raise MediaError(f"WebM element 0x{element:X} at byte {self.bytes_read} has an unknown size")
        if element == _SIMPLE_BLOCK:
            return self._simple_block(size, header_len, pieces)
        if element == _BLOCK_GROUP:
            return self._block_group(size, header_len, pieces)
        if element in _TRACK_FIELDS or element in (_DOC_TYPE, _TIMECODE_SCALE, _CLUSTER_TIMECODE):
            if size > MAX_ELEMENT_BYTES:
                raise MediaError(f"WebM element 0x{element:X} at byte {self.bytes_read} is {size} bytes long")
            if len(self._buffer) < header_len + size:
                return False
            value = bytes(self._buffer[header_len : header_len + size])
            self._consume(header_len + size)
            self._field(element, value)
            return True
        self._consume(header_len)
        self._skip = size
        return True

    def _field(self, element: int, value: bytes) -> None:
        if element == _DOC_TYPE:
            if value.rstrip(b"\0") not in (b"webm", b"matroska"):
                raise MediaError(f"not a WebM stream: its EBML document type is {value!r}")
            return
        if element == _TIMECODE_SCALE:
            self._timecode_scale = _uint(value) or _DEFAULT_TIMECODE_SCALE
            return
        if element == _CLUSTER_TIMECODE:
            self._cluster_time = _uint(value)
            return
        if not self._tracks:
            raise MediaError("WebM stream describes a track field outside a TrackEntry")
        name = _TRACK_FIELDS[element]
        self._tracks[-1][name] = (
            value if name == "private" else (value.decode("ascii", "replace") if name == "codec" else _uint(value))
        )

    def _simple_block(self, size: int, header_len: int, pieces: list[np.ndarray]) -> bool:
        """A block of the audio track is decoded whole; another track's is skipped as it comes."""
        track_len = _vint_length(self._buffer[header_len]) if len(self._buffer) > header_len else None
        if track_len is None or len(self._buffer) < header_len + track_len:
            return False
        if _vint_value(self._buffer[header_len : header_len + track_len]) != self._audio():
            self._consume(header_len)
            self._skip = size
            return True
        if size > MAX_ELEMENT_BYTES:
            raise MediaError(f"WebM audio block at byte {self.bytes_read} is {size} bytes long")
        if len(self._buffer) < header_len + size:
            return False
        at = self.bytes_read
        body = bytes(self._buffer[header_len : header_len + size])
        self._consume(header_len + size)
        pieces.append(self._decode(body, at))
        return True

    def _block_group(self, size: int, header_len: int, pieces: list[np.ndarray]) -> bool:
        """A BlockGroup, read whole: its Block, cut by its DiscardPadding (the encoder's padding
        after the signal's end, written with the last block)."""
        if size > MAX_ELEMENT_BYTES:
            self._consume(header_len)
            self._skip = size
            return True
        if len(self._buffer) < header_len + size:
            return False
        at = self.bytes_read
        group = bytes(self._buffer[header_len : header_len + size])
        self._consume(header_len + size)
        body, padding_ns, offset = b"", 0, 0
        while offset < len(group):
            child = _element_header(bytearray(group[offset : offset + 12]), at + header_len + offset)
            if child is None or child[1] is None or offset + child[2] + child[1] > len(group):
                raise MediaError(f"WebM block group at byte {at} is corrupt")
            element, child_size, child_header = child
            value = group[offset + child_header : offset + child_header + child_size]
            if element == _BLOCK:
                body = value
            elif element == _DISCARD_PADDING:
                padding_ns = int.from_bytes(value, "big", signed=True)
            offset += child_header + child_size
        if not body:
            raise MediaError(f"WebM block group at byte {at} holds no block")
        if _vint_value(body[: _vint_length(body[0]) or 1]) != self._audio():
            return True
        samples = self._decode(body, at)
        cut = round(max(padding_ns, 0) * OPUS_RATE / 1e9)
        pieces.append(samples[: len(samples) - cut] if cut else samples)
        return True

    def _audio(self) -> int:
        """The audio track's number, chosen (and its decoder opened) at the first block."""
        if self._audio_track is not None:
            return self._audio_track
        audio = [track for track in self._tracks if track.get("type") == _AUDIO_TRACK]
        if not audio:
            raise MediaError("WebM stream has no audio track before its first block")
        track = audio[0]
        if track.get("codec") != "A_OPUS":
            raise MediaError(f"WebM stream's audio is {track.get('codec')!r}; only Opus (A_OPUS) streams are accepted")
        self._decoder = opus_decoder(bytes(track.get("private", b"")), "WebM stream's audio track")  # type: ignore[arg-type]
        self._audio_track = int(track["number"])  # type: ignore[arg-type]
        return self._audio_track

    def _decode(self, body: bytes, at: int) -> np.ndarray:
        """A (Simple)Block's frames decoded in order, end to end, after the silence of any gap in
        the timeline before it (only a block's first frame has a timestamp of its own)."""
        assert self._decoder is not None
        where = f"WebM audio block at byte {at}"
        frames = _block_frames(body, at)
        track_len = _vint_length(body[0]) or 9
        relative = int.from_bytes(body[track_len : track_len + 2], "big", signed=True)
        start: Fraction | None = Fraction((self._cluster_time + relative) * self._timecode_scale, 1_000_000_000)
        decoded = []
        for frame in frames:
            samples = decode_packet(self._decoder, frame, where)
            silence = self._gaps.before(start, len(samples), where)
            decoded += [np.zeros(silence, np.float32), samples] if silence else [samples]
            start = None
        return decoded[0] if len(decoded) == 1 else np.concatenate(decoded)


def _block_frames(body: bytes, at: int) -> list[bytes]:
    """The frames of a (Simple)Block's body: track number, 16-bit timecode, flags, then one frame,
    or with lacing (flags bits 1-2) a frame count less one, the frames' sizes and the frames
    (Matroska's Xiph, fixed-size and EBML lacing, as mkvmerge writes audio)."""
    track_len = _vint_length(body[0]) or 9
    if len(body) < track_len + 3:
        raise MediaError(f"WebM block at byte {at} is corrupt: {len(body)} bytes")
    lacing = (body[track_len + 2] >> 1) & 0x03
    frames = [body[track_len + 3 :]] if not lacing else _laced_frames(body, track_len + 3, lacing, at)
    if not all(frames):  # an empty packet would tell the decoder the stream has ended
        raise MediaError(f"WebM block at byte {at} is corrupt: it holds a frame of 0 bytes")
    return frames


def _laced_frames(body: bytes, offset: int, lacing: int, at: int) -> list[bytes]:
    """The frames of a laced block's body from ``offset``: a frame count less one, their sizes
    (all but the last's, Xiph or EBML coded; none for fixed-size lacing), the frames."""
    if len(body) <= offset:
        raise MediaError(f"WebM block at byte {at} is corrupt: its lacing has no frame count")
    count, offset = body[offset] + 1, offset + 1
    if lacing == _FIXED_LACING:
        data = body[offset:]
        if len(data) % count:
            raise MediaError(f"WebM block at byte {at} is corrupt: {len(data)} bytes in {count} equal frames")
        size = len(data) // count
        return [data[i * size : (i + 1) * size] for i in range(count)]
    sizes, offset = (_xiph_sizes if lacing == _XIPH_LACING else _ebml_sizes)(body, offset, count - 1, at)
    last = len(body) - offset - sum(sizes)
    if last < 0 or any(size < 0 for size in sizes):
        raise MediaError(f"WebM block at byte {at} is corrupt: its laced frames overrun it")
    frames = []
    for size in [*sizes, last]:
        frames.append(body[offset : offset + size])
        offset += size
    return frames


def _xiph_sizes(body: bytes, offset: int, count: int, at: int) -> tuple[list[int], int]:
    """``count`` Xiph lace sizes from ``offset`` (each a run of 255s and a last byte under 255), and
    the offset after them."""
    sizes = []
    for _ in range(count):
        size, byte = 0, 255
        while byte == 255:
            if offset >= len(body):
                raise MediaError(f"WebM block at byte {at} is corrupt: its lace sizes overrun it")
            byte, offset = body[offset], offset + 1
            size += byte
        sizes.append(size)
    return sizes, offset


def _ebml_sizes(body: bytes, offset: int, count: int, at: int) -> tuple[list[int], int]:
    """``count`` EBML lace sizes from ``offset`` (the first an unsigned variable-length integer, each
    next one its difference from the one before, signed), and the offset after them."""
    sizes: list[int] = []
    for _ in range(count):
        length = _vint_length(body[offset]) if offset < len(body) else None
        if length is None or offset + length > len(body):
            raise MediaError(f"WebM block at byte {at} is corrupt: its lace sizes overrun it")
        value, offset = _vint_value(body[offset : offset + length]), offset + length
        sizes.append(sizes[-1] + value - ((1 << (7 * length - 1)) - 1) if sizes else value)
    return sizes, offset


def _element_header(buffer: bytearray, at: int) -> tuple[int, int | None, int] | None:
    """(element ID, data size or None if unknown, header length), or None until the header is whole."""
    if not buffer:
        return None
    id_len = _vint_length(buffer[0])
    if id_len is None or id_len > 4:
        raise MediaError(f"WebM stream is corrupt at byte {at}: 0x{buffer[0]:02X} starts no element ID")
    if len(buffer) <= id_len:
        return None
    size_len = _vint_length(buffer[id_len])
    if size_len is None:
        raise MediaError(f"WebM stream is corrupt at byte {at}: 0x{buffer[id_len]:02X} starts no element size")
    if len(buffer) < id_len + size_len:
        return None
    element = int.from_bytes(buffer[:id_len], "big")
    size = _vint_value(buffer[id_len : id_len + size_len])
    unknown = size == (1 << (7 * size_len)) - 1  # all value bits set
    return element, None if unknown else size, id_len + size_len


def _vint_length(first: int) -> int | None:
    """An EBML variable-length integer's length from its first byte (its leading zeros + 1)."""
    return 9 - first.bit_length() if first else None


def _vint_value(data: bytes | bytearray) -> int:
    return int.from_bytes(data, "big") & ((1 << (7 * len(data))) - 1)


def _uint(data: bytes) -> int:
    return int.from_bytes(data, "big")
