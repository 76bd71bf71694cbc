"""A live Ogg stream with Opus audio, decoded as its bytes arrive: what Firefox's
``MediaRecorder`` records by default (Chrome's is WebM, :mod:`audiomodels.webm_stream`), and what
``opusenc`` or ``ffmpeg -f ogg -`` write to a pipe.

The stream is read page by page (RFC 3533): every page's CRC is checked, the first logical
stream whose first packet is an OpusHead is decoded (other streams' pages are skipped), packets
are joined across pages, and the page that ends the stream cuts the decoder's last frame to the
length its granule position states (the encoder's padding), as a whole-file decoder does. A page
whose granule position runs ahead of its packets (a recorder that lost audio) gets the missing
time as silence before them (:class:`audiomodels.media.TimelineGaps`, as FFmpeg's timestamps
give it to the whole-file decoder: Ogg times only a page's end, so the silence goes near the
page's start, after its first packet). A
chained stream (another Opus stream beginning after one ends, as a radio stream's do) goes on
with the next. Pieces may be cut anywhere. It imports no torch, like :mod:`audiomodels.media`.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np

from audiomodels.media import OPUS_RATE, MediaError, TimelineGaps, decode_packet, opus_decoder

_CAPTURE = b"OggS"
_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, sequence, CRC, segments
_CONTINUED, _FIRST, _LAST = 0x01, 0x02, 0x04


def _crc_table() -> list[int]:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, no final xor (not zlib's)."""
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def ogg_crc(data: bytes) -> int:
    crc, table = 0, _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def link_spans(file: BinaryIO) -> list[tuple[int, int]]:
    """The byte range ``(start, end)`` of each link of an Ogg file, read from its page headers
    alone: a chain (a logical stream that begins after another's pages, as in a recorded Icecast
    stream or ``cat a.ogg b.ogg``) has one per link, a plain file one. The file is left where it
    was (libsndfile may be reading it). Bytes that are not a page end the scan: the last range
    runs to the end of the file, and its reader reports what is wrong there."""
    spans, start, at, seen_data, position = [], 0, 0, False, file.tell()
    file.seek(0)
    try:
        while len(header := file.read(_HEADER.size)) == _HEADER.size:
            capture, _, flags, _, _, _, _, segments = _HEADER.unpack(header)
            if capture != _CAPTURE:
                break
            if flags & _FIRST and seen_data:
                spans.append((start, at))
                start, seen_data = at, False
            seen_data = seen_data or not flags & _FIRST
            at += _HEADER.size + segments + sum(file.read(segments))
            file.seek(at)
        return [*spans, (start, file.seek(0, io.SEEK_END))]
    finally:
        file.seek(position)


class OggOpusStream:
    """``push`` the stream's bytes in pieces of any size; each call returns the mono float32
    samples (at :data:`audiomodels.media.OPUS_RATE`) of the Opus packets the piece completed.
    Errors are :class:`MediaError` with what was wrong and on which page."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._serial: int | None = None  # the Opus stream's
        self._decoder: av.CodecContext | None = None
        self._packet = bytearray()  # a packet continued on the next page
        self._preskip = 0
        self._granule = 0  # where the last page's packets ended (the pre-skip before any)
        self._gaps = TimelineGaps(OPUS_RATE)
        self._ended = False
        self.pages = 0

    def push(self, data: bytes) -> np.ndarray:
        self._buffer += data
        pieces: list[np.ndarray] = []
        while (page := self._next_page()) is not None:
            pieces += self._read_page(*page)
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        """Raise if the stream ended inside a page or a packet, or before any Opus audio; no
        samples are held back, so none are returned (the MP4 reader's resampler holds some)."""
        if self._buffer or self._packet:
            raise MediaError(f"Ogg stream ended inside page {self.pages + 1}")
        if self.pages and self._decoder is None:
            raise MediaError("Ogg stream ended before its OpusHead")
        return np.zeros(0, np.float32)

    def _next_page(self) -> tuple[int, int, int, bytes, bytes] | None:
        """(flags, granule, serial, lacing values, body) of the next whole page, or None until it is in."""
        buffer = self._buffer
        if len(buffer) < _HEADER.size:
            if not _CAPTURE.startswith(bytes(buffer[:4])):
                raise self._not_a_page()
            return None
        capture, version, flags, granule, serial, _, crc, segments = _HEADER.unpack_from(buffer)
        if capture != _CAPTURE:
            raise self._not_a_page()
        if version != 0:
            raise MediaError(f"Ogg page {self.pages + 1} has version {version}; only version 0 exists")
        header_len = _HEADER.size + segments
        if len(buffer) < header_len:
            return None
        lacing = bytes(buffer[_HEADER.size : header_len])
        page_len = header_len + sum(lacing)
        if len(buffer) < page_len:
            return None
        page = bytes(buffer[:page_len])
        del buffer[:page_len]
        self.pages += 1
        if ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != crc:
            raise MediaError(f"Ogg page {self.pages} fails its checksum: the stream is corrupt")
        return flags, granule, serial, lacing, page[header_len:]

    def _not_a_page(self) -> MediaError:
        where = "it does not begin with an Ogg page" if not self.pages else f"page {self.pages + 1} is not an Ogg page"
        return MediaError(f"not an Ogg stream: {where}")

    def _read_page(self, flags: int, granule: int, serial: int, lacing: bytes, body: bytes) -> list[np.ndarray]:
        if self._ended and flags & _FIRST:  # the next stream of a chain
            self._serial, self._decoder, self._ended = None, None, False
            self._gaps = TimelineGaps(OPUS_RATE)
        if self._serial is None:
            if not flags & _FIRST:
                raise MediaError(f"Ogg stream has no Opus stream before page {self.pages}")
            if not body.startswith(b"OpusHead"):
                return []  # another logical stream's first page (a multiplexed file's video or Vorbis)
            self._serial = serial
        if serial != self._serial or self._ended:
            return []
        if not flags & _CONTINUED and self._packet:
            raise MediaError(f"Ogg page {self.pages} drops a packet the page before began")
        pieces, offset = [], 0
        for value in lacing:
            self._packet += body[offset : offset + value]
            offset += value
            if value < 255:
                packet, self._packet = bytes(self._packet), bytearray()
                pieces += self._read_packet(packet)
        if pieces:
            pieces = self._with_gaps(granule, pieces)
        if flags & _LAST:
            self._ended = True
            pieces = self._cut_to(granule, pieces)
        if pieces:
            self._granule = granule
        return pieces

    def _with_gaps(self, granule: int, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """The page's packets with any silence their timeline asks for. The granule position
        times the end of the page's last packet: the packets after its first start that far back
        from it, and the first follows on from the page before, untimed. That is how FFmpeg's
        demuxer times them for the whole-file decoder, so both fill a gap at the same sample."""
        timed = [pieces[0]]
        self._gaps.before(None, len(pieces[0]), f"Ogg page {self.pages}")
        start = granule - self._preskip - sum(len(piece) for piece in pieces[1:])
        for piece in pieces[1:]:
            silence = self._gaps.before(Fraction(start, OPUS_RATE), len(piece), f"Ogg page {self.pages}")
            if silence:
                timed.append(np.zeros(silence, np.float32))
            timed.append(piece)
            start += len(piece)
        return timed

    def _read_packet(self, packet: bytes) -> list[np.ndarray]:
        if self._decoder is None:
            self._decoder = opus_decoder(packet, "Ogg stream")
            self._preskip = self._granule = int.from_bytes(packet[10:12], "little")
            return []
        if packet.startswith(b"OpusTags"):
            return []
        return [decode_packet(self._decoder, packet, f"Opus packet on Ogg page {self.pages}")]

    def _cut_to(self, granule: int, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """The last page's samples, cut where its granule position says the signal ends: that
        far past the page before's (whatever gaps before it were or were not filled)."""
        allowed = max(granule - self._granule, 0)
        samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return [samples[:allowed]]
