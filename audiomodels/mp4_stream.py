"""A live MP4 stream with AAC or Opus audio, decoded as its bytes arrive: what Safari's
``MediaRecorder`` records (fragmented MP4 with AAC; Chrome's can record MP4 with Opus too), and
what ``ffmpeg -f mp4 -movflags frag_keyframe+empty_moov -`` writes to a pipe.

FFmpeg's MP4 demuxer wants a whole file it can seek in, so this module reads the boxes itself, as
far as an audio stream needs (ISO/IEC 14496-12). The ``moov`` names the tracks: the first sound
track is decoded, by FFmpeg's decoder of its codec, the one :class:`audiomodels.media.MediaFile`
decodes whole MP4 files with (AAC from the ``esds``'s AudioSpecificConfig, Opus from the ``dOps``
turned into an OpusHead). Each ``moof`` then lists where that track's samples lie in the ``mdat``
that follows (``tfhd``/``trun``, defaults from the ``trex``); a faststart file's ``moov`` lists
them for the whole file (``stts``/``stsz``/``stsc``/``stco``). The ``mdat`` is read as it comes:
the audio samples are held one at a time and everything else (a video track's frames) is skipped
without being held. Pieces may be cut anywhere.

The signal is cut as the file's timing says: AAC's priming samples by the edit list (``elst``),
Opus's pre-skip by the decoder, and the last frame to the duration its sample states. A file whose
``moov`` comes after its ``mdat`` (a recording saved to disk) cannot be streamed: it is refused
with a message saying so. A jump in the samples' decode times (a fragment's ``tfdt`` ahead of the
samples before it, or a sample that lasts longer than it holds) is filled with silence, as the
whole file's decoding fills it (:class:`audiomodels.media.TimelineGaps`).

Samples come out at ``rate``: the track's own when they agree, else resampled (a stream's rate is
fixed before its header arrives, and a Mac records at 44.1 kHz as often as at 48 kHz). It imports
no torch, like :mod:`audiomodels.media`.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field, replace
from fractions import Fraction

import av
import numpy as np

from audiomodels.container_stream import ContainerStream
from audiomodels.media import OPUS_RATE, MediaError, TimelineGaps, decode_packet, opus_decoder

DEFAULT_RATE = OPUS_RATE  # as WebM and Ogg streams' samples come out: Safari's usual rate

# Boxes held whole to be parsed: an index, at most this long (a faststart hour of AAC needs ~1 MB)
MAX_BOX_BYTES = 4 << 20
MAX_SAMPLE_BYTES = 1 << 20  # an AAC frame is at most 6144 bits a channel, an Opus packet 61 KB
_CONTAINERS = frozenset({b"trak", b"mdia", b"minf", b"stbl", b"edts", b"mvex", b"traf"})
_SOUND = b"soun"
_AAC_OBJECT_TYPES = frozenset({0x40, 0x66, 0x67, 0x68})  # MPEG-4 audio; MPEG-2 AAC Main, LC, SSR


@dataclass
class _Track:
    """What the moov says of one track."""

    track_id: int = 0
    handler: bytes = b""
    timescale: int = 0
    entry: bytes = b""  # the first sample entry of the stsd (type + body)
    media_start: int = 0  # the edit list's first media time: samples to drop before the signal
    default_duration: int = 0  # trex defaults, for fragments that state none
    default_size: int = 0
    tables: dict[bytes, bytes] = field(default_factory=dict)  # stts, stsz, stsc, stco or co64 bodies


@dataclass(frozen=True)
class _Sample:
    offset: int  # from the stream's first byte
    size: int
    duration: int  # in the track's timescale; 0 = not stated
    time: int | None = None  # decode time in the track's timescale; None after a duration not stated


class Mp4AudioStream(ContainerStream):
    """``push`` the stream's bytes in pieces of any size; each call returns the mono float32
    samples (at ``rate``) of the audio samples the piece completed; ``finish`` returns what the
    resampler held back. Errors are :class:`MediaError` with what was wrong and where."""

    def __init__(self, rate: int = DEFAULT_RATE, *, required: bool = False) -> None:
        """``rate``: the samples' rate out; ``required``: the track must have it (the client stated it)."""
        super().__init__()
        self._required = required
        self.rate = rate
        self._started = False
        self._track: _Track | None = None
        self._decoder: av.CodecContext | None = None
        self._pending: deque[_Sample] = deque()  # listed by the index, not yet read
        self._mdat_end: int | None = None  # while inside an mdat: where it ends (-1: at the stream's end)
        self._drop = 0  # decoded samples still to drop (AAC's priming)
        self._allowed = 0  # decoded samples the stated durations allow so far
        self._decoded = 0
        self._resampler: av.AudioResampler | None = None
        self._decoded_rate = 0
        self._gaps: TimelineGaps | None = None
        self._next_time: int | None = 0  # where the audio track's samples listed so far end
        self._listed_end: int | None = None  # where the last decoded sample ends (decode time)

    def finish(self) -> np.ndarray:
        """The resampler's last samples; raise if the stream ended inside a box or a listed sample."""
        if self._skip or self._buffer or (self._mdat_end is not None and self._mdat_end >= 0):
            raise MediaError(f"MP4 stream ended inside a box (at byte {self.bytes_read + len(self._buffer)})")
        if self._pending:
            raise MediaError(f"MP4 stream ended before {len(self._pending)} audio sample(s) its index lists")
        if self._started and self._track is None:
            raise MediaError("MP4 stream ended before it described its tracks (moov)")
        return self._resampled(None)

    # --- boxes -----------------------------------------------------------------------------------

    def _advance(self, pieces: list[np.ndarray]) -> bool:
        """Consume a skipped span, a sample, or a box; False when more bytes are needed."""
        if self._skip:
            self._consume(min(self._skip, len(self._buffer)))
            return not self._skip and bool(self._buffer)
        if self._mdat_end is not None:
            return self._read_mdat(pieces)
        header = self._box_header()
        if header is None:
            return False
        kind, size, header_len = header
        at = self.bytes_read
        if kind == b"mdat":
            self._consume(header_len)
            self._enter_mdat(at, size)
            return True
        if kind not in (b"moov", b"moof"):
            if size is None:
                raise MediaError(f"MP4 {kind!r} box at byte {at} runs to the stream's end")
            self._consume(header_len)
            self._skip = size - header_len
            return True
        if size is None or size > MAX_BOX_BYTES:
            raise MediaError(f"MP4 {kind.decode()} box at byte {at} is {size or 'unbounded'} bytes long")
        if len(self._buffer) < size:
            return False
        body = bytes(self._buffer[header_len:size])
        self._consume(size)
        try:
            self._read_moov(body) if kind == b"moov" else self._read_moof(body, at)
        except (struct.error, IndexError) as error:
            raise MediaError(f"MP4 {kind.decode()} box at byte {at} is corrupt ({error})") from error
        return True

    def _box_header(self) -> tuple[bytes, int | None, int] | None:
        """(type, size including the header or None to the stream's end, header length)."""
        if len(self._buffer) < 8:
            return None
        size, kind = struct.unpack_from(">I4s", self._buffer)
        if not self._started:
            if kind != b"ftyp":
                raise MediaError("not an MP4 stream: it does not begin with an ftyp box")
            self._started = True
        if size == 1:
            if len(self._buffer) < 16:
                return None
            return kind, struct.unpack_from(">Q", self._buffer, 8)[0], 16
        if size == 0:
            return kind, None, 8
        if size < 8:
            raise MediaError(f"MP4 stream is corrupt at byte {self.bytes_read}: a box of {size} bytes")
        return kind, size, 8

    def _read_moov(self, body: bytes) -> None:
        if self._track is not None:
            raise MediaError("MP4 stream has a second moov box")
        tracks: list[_Track] = []
        defaults: dict[int, tuple[int, int]] = {}
        for kind, child in _boxes(body, "moov"):
            if kind == b"trak":
                tracks.append(_parse_trak(child))
            elif kind == b"mvex":
                for inner, trex in _boxes(child, "mvex"):
                    if inner == b"trex" and len(trex) >= 20:
                        track_id, _, duration, size = struct.unpack_from(">IIII", trex, 4)
                        defaults[track_id] = (duration, size)
        sound = [track for track in tracks if track.handler == _SOUND]
        if not sound:
            raise MediaError("MP4 stream has no audio track")
        track = sound[0]
        if track.timescale <= 0:
            raise MediaError("MP4 stream's audio track states no timescale (mdhd)")
        track.default_duration, track.default_size = defaults.get(track.track_id, (0, 0))
        self._open_decoder(track)
        self._track = track
        self._pending.extend(_table_samples(track))

    def _open_decoder(self, track: _Track) -> None:
        kind, body = track.entry[:4], track.entry[4:]
        preskip = 0  # Opus's, which its decoder drops itself (AAC's priming is dropped here: _drop)
        if kind == b"mp4a":
            config = _aac_config(body)
            decoder = av.CodecContext.create("aac", "r")
            decoder.extradata = config
            self._drop = round(track.media_start * _entry_rate(body, track) / track.timescale)
        elif kind == b"Opus":
            head = _opus_head(body)
            decoder = opus_decoder(head, "MP4 stream's Opus track")
            preskip = struct.unpack_from("<H", head, 10)[0]
        else:
            raise MediaError(f"MP4 stream's audio is {kind.decode('latin-1')!r}; AAC (mp4a) and Opus are accepted")
        rate = decoder.sample_rate or _entry_rate(body, track)
        if self._required and rate != self.rate:
            raise MediaError(f"sample_rate_hz is {self.rate} but the MP4 stream's audio is {rate} Hz")
        self._decoder = decoder
        self._allowed = -preskip - self._drop

    def _read_moof(self, body: bytes, start: int) -> None:
        if self._track is None:
            raise MediaError(f"MP4 stream has a fragment (moof at byte {start}) before its tracks (moov)")
        data_end = start  # where the previous track fragment's data ended
        for kind, traf in _boxes(body, "moof"):
            if kind == b"traf":
                samples, data_end, self._next_time = _fragment_samples(traf, start, data_end, self._track, self._next_time)
                self._pending.extend(samples)

    # --- samples ---------------------------------------------------------------------------------

    def _enter_mdat(self, at: int, size: int | None) -> None:
        if self._track is None:
            raise MediaError(
                "MP4 stream's audio (mdat) comes before its index (moov): a file recorded to disk writes it "
                "last, so it cannot be streamed; send it whole to Recognize, or stream a fragmented MP4 (what "
                "MediaRecorder writes) or a faststart one (ffmpeg -movflags +faststart)"
            )
        start = self.bytes_read
        if self._pending and self._pending[0].offset < start:
            raise MediaError(f"MP4 audio sample at byte {self._pending[0].offset} lies outside the mdat at byte {at}")
        self._mdat_end = -1 if size is None else at + size

    def _read_mdat(self, pieces: list[np.ndarray]) -> bool:
        """Skip to the next listed sample inside this mdat and decode it, or skip to the mdat's end."""
        end = self._mdat_end
        assert end is not None
        if self._pending and (end < 0 or self._pending[0].offset < end):
            sample = self._pending[0]
            if sample.offset > self.bytes_read:
                self._skip = sample.offset - self.bytes_read
                return True
            if sample.offset < self.bytes_read or (end >= 0 and sample.offset + sample.size > end):
                raise MediaError(f"MP4 audio sample at byte {sample.offset} overlaps another or its mdat's end")
            if sample.size > MAX_SAMPLE_BYTES:
                raise MediaError(f"MP4 audio sample at byte {sample.offset} is {sample.size} bytes long")
            if len(self._buffer) < sample.size:
                return False
            frame = bytes(self._buffer[: sample.size])
            self._consume(sample.size)
            self._pending.popleft()
            pieces.append(self._decode(frame, sample))
            return True
        if end < 0:  # the rest of the stream is this mdat, and nothing more is listed in it
            self._consume(len(self._buffer))
            return False
        self._mdat_end = None
        self._skip = end - self.bytes_read
        return True

    def _decode(self, frame: bytes, sample: _Sample) -> np.ndarray:
        """A sample's signal: priming dropped, the end cut to the durations stated so far, after
        the silence of any gap in the timeline before it."""
        assert self._decoder is not None and self._track is not None
        where = f"MP4 audio sample at byte {sample.offset}"
        samples = decode_packet(self._decoder, frame, where)
        rate, timescale = self._decoder.sample_rate, self._track.timescale
        if self._gaps is None:
            self._gaps = TimelineGaps(rate)
        if sample.time is not None and self._listed_end is not None and sample.time > self._listed_end:
            self._allowed += round((sample.time - self._listed_end) * rate / timescale)  # a jump in tfdt
        self._listed_end = None if sample.time is None or not sample.duration else sample.time + sample.duration
        self._allowed += round(sample.duration * rate / timescale) if sample.duration else len(samples)
        if self._drop:
            dropped = min(self._drop, len(samples))
            samples, self._drop = samples[dropped:], self._drop - dropped
        samples = samples[: max(0, self._allowed - self._decoded)]
        start = None if sample.time is None else Fraction(sample.time, timescale)
        silence = self._gaps.before(start, len(samples), where)
        if silence:
            samples = np.concatenate([np.zeros(silence, np.float32), samples])
        self._decoded += len(samples)
        self._decoded_rate = rate
        return self._resampled(samples)

    def _resampled(self, samples: np.ndarray | None) -> np.ndarray:
        """At ``rate``; None flushes the resampler."""
        if self._decoded_rate in (0, self.rate):
            return samples if samples is not None else np.zeros(0, np.float32)
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        frame = None
        if samples is not None:
            if not len(samples):
                return samples
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self._decoded_rate
        out = [piece.to_ndarray().reshape(-1) for piece in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


# --- box parsing ---------------------------------------------------------------------------------


def _boxes(data: bytes, where: str) -> list[tuple[bytes, bytes]]:
    """The (type, body) of each box inside ``data``; a box that overruns it is corruption."""
    found, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1 and offset + 16 <= len(data):
            size, header = struct.unpack_from(">Q", data, offset + 8)[0], 16
        elif size == 0:
            size = len(data) - offset
        if size < header or offset + size > len(data):
            raise MediaError(f"MP4 {where} box is corrupt: its {kind!r} box overruns it")
        found.append((kind, data[offset + header : offset + size]))
        offset += size
    return found


def _parse_trak(data: bytes) -> _Track:
    track = _Track()
    stack = [data]
    while stack:
        for kind, body in _boxes(stack.pop(), "trak"):
            if kind in _CONTAINERS:
                stack.append(body)
            elif kind == b"tkhd" and len(body) >= 16:
                track.track_id = struct.unpack_from(">I", body, 20 if body[0] == 1 else 12)[0]
            elif kind == b"hdlr" and len(body) >= 12:
                track.handler = body[8:12]
            elif kind == b"mdhd" and len(body) >= 24:
                track.timescale = struct.unpack_from(">I", body, 20 if body[0] == 1 else 12)[0]
            elif kind == b"stsd" and len(body) >= 16:
                entries = _boxes(body[8:], "stsd")
                if entries:
                    track.entry = entries[0][0] + entries[0][1]
            elif kind == b"elst" and len(body) >= 8:
                track.media_start = _first_media_time(body)
            elif kind in (b"stts", b"stsz", b"stsc", b"stco", b"co64"):
                track.tables[kind] = body
    return track


def _first_media_time(body: bytes) -> int:
    """The edit list's first media time that is not an empty edit (a delay): priming to drop."""
    version, count = body[0], struct.unpack_from(">I", body, 4)[0]
    entry = struct.Struct(">Qq" if version == 1 else ">Ii")
    for index in range(count):
        if 8 + (index + 1) * (entry.size + 4) > len(body):
            break
        media_time = entry.unpack_from(body, 8 + index * (entry.size + 4))[1]
        if media_time >= 0:
            return media_time
    return 0


def _entry_rate(body: bytes, track: _Track) -> int:
    """An AudioSampleEntry's rate (16.16 fixed point; 0 in some writers: the timescale then)."""
    rate = struct.unpack_from(">I", body, 24)[0] >> 16 if len(body) >= 28 else 0
    return rate or track.timescale


def _entry_children(body: bytes) -> dict[bytes, bytes]:
    """The boxes after an AudioSampleEntry's fields (QuickTime versions 1 and 2 add fields)."""
    if len(body) < 28:
        raise MediaError("MP4 stream's audio sample entry is cut short")
    version = struct.unpack_from(">H", body, 8)[0]
    start = {0: 28, 1: 44, 2: 64}.get(version)
    if start is None:
        raise MediaError(f"MP4 stream's audio sample entry has unknown version {version}")
    return dict(_boxes(body[start:], "audio sample entry"))


def _aac_config(body: bytes) -> bytes:
    """The AudioSpecificConfig inside the entry's esds (ES_Descriptor > DecoderConfig > DecoderSpecificInfo)."""
    esds = _entry_children(body).get(b"esds")
    if esds is None:
        raise MediaError("MP4 stream's AAC track has no esds box")
    descriptors = _descriptors(esds[4:])
    es = descriptors.get(3)
    if es is None or len(es) < 3:
        raise MediaError("MP4 stream's esds has no ES descriptor")
    flags, offset = es[2], 3
    offset += 2 if flags & 0x80 else 0
    offset += 1 + es[offset] if flags & 0x40 and offset < len(es) else 0
    offset += 2 if flags & 0x20 else 0
    config = _descriptors(es[offset:]).get(4)
    if config is None or len(config) < 13:
        raise MediaError("MP4 stream's esds has no decoder config")
    if config[0] not in _AAC_OBJECT_TYPES:
        raise MediaError(f"MP4 stream's mp4a track is not AAC (object type 0x{config[0]:02X})")
    specific = _descriptors(config[13:]).get(5)
    if not specific:
        raise MediaError("MP4 stream's AAC track has no AudioSpecificConfig")
    return specific


def _descriptors(data: bytes) -> dict[int, bytes]:
    """MPEG-4 descriptors (tag, size in 7-bit groups, body) -> {tag: body}."""
    found, offset = {}, 0
    while offset + 2 <= len(data):
        tag, size, offset = data[offset], 0, offset + 1
        for _ in range(4):
            byte = data[offset] if offset < len(data) else 0
            size, offset = (size << 7) | (byte & 0x7F), offset + 1
            if not byte & 0x80:
                break
        found.setdefault(tag, data[offset : offset + size])
        offset += size
    return found


def _opus_head(body: bytes) -> bytes:
    """The entry's dOps (big-endian, ISO BMFF's Opus mapping) as the OpusHead a decoder takes."""
    ops = _entry_children(body).get(b"dOps")
    if ops is None or len(ops) < 11:
        raise MediaError("MP4 stream's Opus track has no valid dOps box")
    channels, preskip, rate, gain, family = struct.unpack_from(">BHIhB", ops, 1)
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, preskip, rate, gain, family) + ops[11:]


def _fragment_samples(
    traf: bytes, moof_start: int, data_end: int, track: _Track, time: int | None
) -> tuple[list[_Sample], int, int | None]:
    """A track fragment's samples, if it is the audio track's, where its data ends, and where the
    audio track's decode times end (``time`` before it: the fragment starts there unless its
    ``tfdt`` says otherwise)."""
    children = _boxes(traf, "traf")
    tfhd = next((body for kind, body in children if kind == b"tfhd"), None)
    if tfhd is None or len(tfhd) < 8:
        raise MediaError(f"MP4 fragment at byte {moof_start} has a track fragment without a tfhd")
    flags, track_id = struct.unpack_from(">I", tfhd)[0] & 0xFFFFFF, struct.unpack_from(">I", tfhd, 4)[0]
    offset, base = 8, data_end
    if flags & 0x01:
        base, offset = struct.unpack_from(">Q", tfhd, offset)[0], offset + 8
    elif flags & 0x020000:
        base = moof_start
    offset += 4 if flags & 0x02 else 0
    duration, size = track.default_duration, track.default_size
    if flags & 0x08:
        duration, offset = struct.unpack_from(">I", tfhd, offset)[0], offset + 4
    if flags & 0x10:
        size = struct.unpack_from(">I", tfhd, offset)[0]
    samples: list[_Sample] = []
    position = base
    for kind, trun in children:
        if kind == b"trun":
            run, position = _run_samples(trun, base, position, duration, size)
            samples += run
    if track_id != track.track_id:
        return [], position, time
    tfdt = next((body for kind, body in children if kind == b"tfdt"), None)
    if tfdt is not None and len(tfdt) >= 8:
        time = struct.unpack_from(">Q" if tfdt[0] == 1 and len(tfdt) >= 12 else ">I", tfdt, 4)[0]
    timed, end = _timed(samples, time)
    return timed, position, end


def _timed(samples: list[_Sample], time: int | None) -> tuple[list[_Sample], int | None]:
    """``samples`` with their decode times, the first at ``time``, and where the last ends."""
    timed = []
    for sample in samples:
        timed.append(replace(sample, time=time))
        time = time + sample.duration if time is not None and sample.duration else None
    return timed, time


def _run_samples(trun: bytes, base: int, position: int, duration: int, size: int) -> tuple[list[_Sample], int]:
    """A trun's samples: its data at base + data_offset, or right after the previous run's."""
    flags, count = struct.unpack_from(">I", trun)[0] & 0xFFFFFF, struct.unpack_from(">I", trun, 4)[0]
    offset = 8
    if flags & 0x01:
        position, offset = base + struct.unpack_from(">i", trun, offset)[0], offset + 4
    offset += 4 if flags & 0x04 else 0
    fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
    if offset + count * 4 * len(fields) > len(trun):
        raise MediaError(f"MP4 trun lists {count} samples but is {len(trun)} bytes long")
    samples = []
    for _ in range(count):
        values = dict(zip(fields, struct.unpack_from(f">{len(fields)}I", trun, offset)))
        offset += 4 * len(fields)
        sample = _Sample(position, values.get(0x200, size), values.get(0x100, duration))
        samples.append(sample)
        position += sample.size
    return samples, position


def _table_samples(track: _Track) -> list[_Sample]:
    """A faststart moov's samples (stsz sizes, stsc chunk runs, stco/co64 offsets, stts durations)."""
    tables = track.tables
    if b"stsz" not in tables or b"stsc" not in tables:
        return []
    stsz = tables[b"stsz"]
    fixed, count = struct.unpack_from(">II", stsz, 4)
    if not count:
        return []  # a fragmented file's moov lists no samples
    sizes = [fixed] * count if fixed else list(struct.unpack_from(f">{count}I", stsz, 12))
    chunks = tables.get(b"stco") or tables.get(b"co64") or b""
    wide = b"co64" in tables and b"stco" not in tables
    chunk_count = struct.unpack_from(">I", chunks, 4)[0] if len(chunks) >= 8 else 0
    offsets = struct.unpack_from(f">{chunk_count}{'Q' if wide else 'I'}", chunks, 8)
    runs_count = struct.unpack_from(">I", tables[b"stsc"], 4)[0]
    runs = [struct.unpack_from(">III", tables[b"stsc"], 8 + 12 * index)[:2] for index in range(runs_count)]
    durations = _sample_durations(tables.get(b"stts", b""), count)
    samples, index = [], 0
    for run, (first_chunk, per_chunk) in enumerate(runs):
        last_chunk = runs[run + 1][0] - 1 if run + 1 < len(runs) else chunk_count
        for chunk in range(first_chunk - 1, last_chunk):
            position = offsets[chunk]
            for _ in range(per_chunk):
                if index == count:
                    break
                samples.append(_Sample(position, sizes[index], durations[index]))
                position += sizes[index]
                index += 1
    if index != count:
        raise MediaError(f"MP4 stream's sample tables place {index} of its {count} samples")
    return sorted(_timed(samples, 0)[0], key=lambda sample: sample.offset)


def _sample_durations(stts: bytes, count: int) -> list[int]:
    durations: list[int] = []
    entries = struct.unpack_from(">I", stts, 4)[0] if len(stts) >= 8 else 0
    for index in range(entries):
        run, duration = struct.unpack_from(">II", stts, 8 + 8 * index)
        durations += [duration] * run
    return (durations + [0] * count)[:count]
