"""Audio libsndfile cannot read, or cannot read with its timestamps, through FFmpeg (PyAV):
MP4/M4A, WebM/Matroska and Ogg Opus files, and live streams of raw Opus packets
(:class:`OpusPackets`).

Phones record voice memos as M4A (AAC or ALAC), video calls and screen recorders save MP4, and
browsers' ``MediaRecorder`` writes WebM or Ogg with Opus. :func:`audiomodels.audio.load_audio`
tries libsndfile first and comes here for what it does not recognise, and for Ogg Opus, whose
granule positions libsndfile decodes past (a recorder's lost audio would close up), so every
caller (server, batch job, training) reads these files the same way.

Only the formats named in :data:`CONTAINERS` and codecs in :data:`CODECS` are accepted: FFmpeg
would guess a format for almost any bytes, and a corrupt WAV should be reported as a corrupt WAV,
not decoded as whatever FFmpeg's probe takes it for. :class:`MediaFile` offers the few members of
``soundfile.SoundFile`` that :mod:`audiomodels.audio` uses, so both readers share one code path.

This module imports no torch, so the light gRPC client can use it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from itertools import chain
from typing import BinaryIO

import av
import numpy as np

# FFmpeg demuxer name -> the container name this product reports (and the proto's encoding name).
CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": "MP4", "matroska,webm": "WEBM", "ogg": "OGG"}
CODECS = frozenset({"aac", "alac", "opus"})  # the ones tested; FFmpeg decodes many more
SUPPORTED_TEXT = "MP4/M4A (AAC or ALAC), WebM/Matroska (Opus)"  # Ogg is named with libsndfile's (audio.py)
GAP_MIN_S = 0.01  # shorter timestamp gaps are rounding (WebM counts milliseconds), not missing audio
GAP_MAX_S = 30.0  # a longer jump is taken for a corrupt timestamp, not filled


class MediaError(ValueError):
    """Bytes that are not a readable MP4 or WebM audio file; the message says what is wrong."""


class MediaFile:
    """The first audio stream of an MP4, WebM or Ogg file, decoded to float32 at its own rate (an
    Ogg Opus file's: the rate its OpusHead says the encoder was fed, as libsndfile reports it).

    ``frames`` is known before decoding, so duration limits hold before any work is done: from the
    container's header, or, where a recorder wrote none (a ``MediaRecorder`` WebM), from the
    packets' timestamps, which costs a demux but no decoding. Decoded audio is cut to that length:
    AAC's last frame is padded past the end of the signal. Gaps in the packets' timestamps (a
    recorder that lost audio) are filled with silence (:class:`TimelineGaps`).
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._container = _open_container(file)
        try:
            self._stream = _audio_stream(self._container)
            self.format = CONTAINERS[self._container.format.name]
            self.format_info = f"{self.format} ({self._stream.codec_context.name})"
            self.samplerate = _rate(self.format, self._stream)
            self.channels = int(self._stream.codec_context.layout.nb_channels)
            self.frames = self._length()
        except BaseException:
            self._container.close()
            raise

    def __enter__(self) -> MediaFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def read(self, dtype: str = "float32", always_2d: bool = False) -> np.ndarray:
        """All samples, ``(frames,)`` for mono unless ``always_2d``, else ``(frames, channels)``."""
        return joined(self._decoded(dtype), self.channels, always_2d)

    def blocks(self, blocksize: int, dtype: str = "float32", always_2d: bool = True) -> Iterator[np.ndarray]:
        """The samples as ``(blocksize, channels)`` blocks (the last one shorter), decoded as they go."""
        return rechunk(self._decoded(dtype), blocksize)

    def _decoded(self, dtype: str) -> Iterator[np.ndarray]:
        """Packed float32 ``(n, channels)`` pieces from the start, cut at ``frames``."""
        if dtype != "float32":
            raise ValueError(f"MediaFile decodes to float32 only, not {dtype}")
        self._rewind()
        resampler = av.AudioResampler(format="flt", layout=self._stream.codec_context.layout, rate=self.samplerate)
        gaps = TimelineGaps(self.samplerate)
        left = self.frames
        try:
            for frame in chain(self._frames(), [None]):  # None flushes the converter
                if frame is not None:
                    start = None if frame.pts is None or frame.time_base is None else frame.pts * frame.time_base
                    length = round(frame.samples * self.samplerate / frame.sample_rate)  # at the rate read
                    silence = gaps.before(start, length, f"{self.format} audio at {float(start or 0):.3f} s")
                    if silence:
                        samples = np.zeros((min(silence, left), self.channels), np.float32)
                        left -= len(samples)
                        yield samples
                for piece in resampler.resample(frame):
                    samples = piece.to_ndarray().reshape(-1, self.channels)[:left]
                    left -= len(samples)
                    if len(samples):
                        yield samples
                if left <= 0:
                    return
        except av.FFmpegError as error:
            raise MediaError(f"{self.format} audio is corrupt: {_reason(error)}") from error

    def _frames(self) -> Iterator[av.AudioFrame]:
        """The stream's decoded frames; Opus by the live readers' decoder (:func:`opus_decoder`)."""
        if self._stream.codec_context.name != "opus":
            yield from self._container.decode(self._stream)
            return
        head = bytes(self._stream.codec_context.extradata or b"")
        decoder = opus_decoder(head, f"{self.format} audio")
        for packet in self._container.demux(self._stream):
            yield from decoder.decode(packet)

    def _length(self) -> int:
        """Samples in the stream: from the header, else from the last packet's end."""
        stream, container = self._stream, self._container
        if stream.duration and stream.time_base:
            seconds = stream.duration * stream.time_base
            if self.format == "OGG":  # the last granule position: counted from the first's start, and the pre-skip dropped
                seconds -= (stream.start_time or 0) * stream.time_base + Fraction(stream.codec_context.delay, OPUS_RATE)
            return round(seconds * self.samplerate)
        if container.duration:
            return round(container.duration / av.time_base * self.samplerate)
        end = 0.0
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.time_base:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        except av.FFmpegError as error:
            raise MediaError(f"{self.format} audio is corrupt: {_reason(error)}") from error
        return round(end * self.samplerate)

    def _rewind(self) -> None:
        """Decode from the start (after a demux for the length, or a second read)."""
        self._container.close()
        self._file.seek(0)
        self._container = _open_container(self._file)
        self._stream = _audio_stream(self._container)


def joined(pieces: Iterable[np.ndarray], channels: int, always_2d: bool) -> np.ndarray:
    """``(frames, channels)`` pieces as one array, ``(frames,)`` for mono unless ``always_2d``
    (soundfile's ``read``)."""
    pieces = list(pieces)
    samples = np.concatenate(pieces) if pieces else np.zeros((0, channels), np.float32)
    return samples if always_2d or channels > 1 else samples[:, 0]


def rechunk(pieces: Iterable[np.ndarray], blocksize: int) -> Iterator[np.ndarray]:
    """Pieces of any lengths as blocks of ``blocksize`` rows (the last one shorter)."""
    pending, held = [], 0
    for piece in pieces:
        pending.append(piece)
        held += len(piece)
        while held >= blocksize:
            together = np.concatenate(pending)
            yield together[:blocksize]
            pending, held = [together[blocksize:]], held - blocksize
    if held:
        yield np.concatenate(pending)


def _open_container(file: BinaryIO) -> av.container.InputContainer:
    try:
        container = av.open(file, mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as error:
        file.seek(4)
        if file.read(4) == b"ftyp":  # an MP4 whose index (written last) is missing
            raise MediaError("MP4 file without its index (moov box): cut short or still being written") from error
        raise MediaError(f"not a readable media file ({_reason(error)})") from error
    if container.format.name not in CONTAINERS:
        container.close()
        raise MediaError(f"it is {container.format.long_name}, not MP4 or WebM")
    return container


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _rate(container: str, stream: av.audio.stream.AudioStream) -> int:
    """The rate a stream is read at: its own, but for Ogg Opus the encoder's input rate its
    OpusHead states (Opus itself decodes at 48 kHz), where that is an Opus rate. Clients have
    stated that rate for Ogg files since libsndfile read them, and it saves resampling later."""
    head = bytes(stream.codec_context.extradata or b"")
    if container == "OGG" and head.startswith(b"OpusHead") and len(head) >= 16:
        stated = int.from_bytes(head[12:16], "little")
        if stated in OPUS_INPUT_RATES:
            return stated
    return int(stream.rate)


def _audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise MediaError(f"{CONTAINERS[container.format.name]} file has no audio stream")
    stream = container.streams.audio[0]
    if stream.codec_context is None:  # a codec ID FFmpeg does not know (a corrupt header)
        raise MediaError(f"{CONTAINERS[container.format.name]} audio stream names a codec FFmpeg does not know")
    codec = stream.codec_context.name
    if codec not in CODECS:
        raise MediaError(f"{CONTAINERS[container.format.name]} audio in the {codec} codec is not supported")
    if not stream.rate or not stream.codec_context.layout.nb_channels:
        raise MediaError(f"{CONTAINERS[container.format.name]} audio stream states no sample rate or channels")
    return stream


class TimelineGaps:
    """How much silence goes before each decoded frame so that the samples keep the recording's
    timeline: a recorder that lost audio (a busy tab, a device glitch) leaves a jump in its
    packets' timestamps, and decoding them back to back would put every later label early by the
    lost time. The whole-file and the live readers both use this on the same timestamps, so they
    fill the same gaps.

    The first frame that holds samples is not checked: a codec's pre-skip or priming shortens it
    by an amount its timestamp does not tell. From the second on, a frame that starts more than
    :data:`GAP_MIN_S` after the samples before it end gets that much silence first; one that
    starts early (overlapping timestamps) keeps all its samples; a jump over :data:`GAP_MAX_S`
    raises :class:`MediaError`.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._seen_first = False  # a frame with samples has come (the unchecked first one)
        self._anchor: int | None = None  # the timeline position (in samples) that the count starts at
        self._written = 0  # samples (silence included) since the anchor

    def before(self, start: Fraction | None, samples: int, where: str) -> int:
        """Samples of silence before a frame of ``samples`` samples that starts at ``start``
        seconds (None: its timestamp is not known, as for a laced block's later frames)."""
        if not samples:
            return 0
        gap = 0
        if start is not None and self._seen_first:
            at = round(start * self.rate)
            if self._anchor is None:
                self._anchor = at
            else:
                gap = at - self._anchor - self._written
                if gap > GAP_MAX_S * self.rate:
                    raise MediaError(
                        f"{where} starts {gap / self.rate:.1f} s after the audio before it ends; "
                        f"a timestamp jump over {GAP_MAX_S:.0f} s is taken for corruption"
                    )
                gap = gap if gap >= GAP_MIN_S * self.rate else 0
        if self._anchor is not None:
            self._written += gap + samples
        self._seen_first = True
        return gap


# --- live Opus: one packet per stream message ---------------------------------------------------

OPUS_RATE = 48000  # an Opus decoder's output rate, whatever rate the encoder was fed
OPUS_INPUT_RATES = (8000, 12000, 16000, 24000, 48000)
OPUS_FRAME_S = 0.02  # the usual packet length for speech


class OpusPackets:
    """Decodes a live stream of raw mono Opus packets (what an Opus encoder hands out, one per
    stream message, no container) to float32 samples at :data:`OPUS_RATE`: at 24 kbps about a
    twelfth of LINEAR16's bytes. Packets must arrive whole and in order, as a gRPC stream's do."""

    def __init__(self) -> None:
        self._decoder = _libopus("mono")
        self.packets = 0

    def decode(self, packet: bytes) -> np.ndarray:
        """One packet's samples (none for an empty message, as an empty raw chunk has none)."""
        if not packet:
            return np.zeros(0, np.float32)
        self.packets += 1
        return decode_packet(self._decoder, packet, f"Opus packet {self.packets}")


class OpusEncoder:
    """Mono float32 samples at ``rate``, fed in pieces of any size, as raw Opus packets of
    :data:`OPUS_FRAME_S` at ``kbps`` (the client side of :class:`OpusPackets`; a live microphone's
    chunks and a whole file alike). The input is converted to 16 kHz, Opus's wideband, which holds
    all a speech model hears."""

    def __init__(self, rate: int, kbps: float = 24.0) -> None:
        self._encoder = av.CodecContext.create("libopus", "w")
        self._encoder.sample_rate, self._encoder.layout, self._encoder.format = 16000, "mono", "flt"
        self._encoder.bit_rate = round(kbps * 1000)
        self._encoder.open()  # libopus's frame: 20 ms (OPUS_FRAME_S)
        self._converter = av.AudioResampler(format="flt", layout="mono", rate=16000, frame_size=self._encoder.frame_size)
        self._rate, self._pts = rate, 0

    def encode(self, samples: np.ndarray) -> list[bytes]:
        """The packets these samples complete (a partial frame waits for the next piece)."""
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32).reshape(1, -1), format="flt", layout="mono")
        frame.rate, frame.pts = self._rate, self._pts
        self._pts += len(samples)
        return self._packets(self._converter.resample(frame))

    def finish(self) -> list[bytes]:
        """The last packets: the partial frame and the encoder's lookahead."""
        return self._packets([*self._converter.resample(None), None])

    def _packets(self, frames: list[av.AudioFrame | None]) -> list[bytes]:
        return [bytes(packet) for frame in frames for packet in self._encoder.encode(frame)]


def opus_packets(samples: np.ndarray, rate: int, kbps: float = 24.0) -> list[bytes]:
    """A whole signal as raw Opus packets (:class:`OpusEncoder`)."""
    encoder = OpusEncoder(rate, kbps)
    return encoder.encode(samples) + encoder.finish()


def opus_decoder(head: bytes, where: str) -> av.CodecContext:
    """The Opus decoder of every file and stream here (:func:`_libopus`) for a stream whose
    OpusHead is ``head``: mono or stereo, at :data:`OPUS_RATE`; it skips the head's pre-skip itself."""
    if len(head) < 19 or not head.startswith(b"OpusHead"):
        raise MediaError(f"{where} has no valid OpusHead ({len(head)} bytes)")
    channels, family = head[9], head[18]
    if channels not in (1, 2):
        raise MediaError(f"{where} is Opus with {channels} channels; mono and stereo are supported")
    if family != 0:  # other families carry a channel mapping table, which FFmpeg trusts over the channel count
        raise MediaError(f"{where} is Opus with channel mapping family {family}; mono and stereo (family 0) are supported")
    decoder = _libopus("mono" if channels == 1 else "stereo")
    decoder.extradata = head
    return decoder


def _libopus(layout: str) -> av.CodecContext:
    """libopus, the reference decoder, through FFmpeg, giving float32 at :data:`OPUS_RATE`.
    FFmpeg's own Opus decoder is not used: on a SILK-coded tone (a sweep libsndfile encoded at
    16 kHz) its output swelled to three times the signal for 0.2 s, where libopus stays within
    the codec's error (``tests/test_audio.py``, the lossy round trip)."""
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = OPUS_RATE, layout
    decoder.options = {"request_sample_fmt": "flt"}  # libopus's float output; 16-bit otherwise
    return decoder


def decode_packet(decoder: av.CodecContext, packet: bytes, name: str) -> np.ndarray:
    """One compressed packet's samples as mono float32 (the mean of its channels); a packet the
    decoder refuses raises :class:`MediaError` naming it as ``name``."""
    try:
        frames = decoder.decode(av.Packet(packet))
    except av.FFmpegError as error:
        raise MediaError(f"{name} is corrupt: {_reason(error)}") from error
    for frame in frames:
        channels = frame.layout.nb_channels
        if channels not in (1, 2) or len(frame.planes) != (channels if frame.format.is_planar else 1):
            raise MediaError(f"{name} decodes to {channels} channels; mono and stereo are supported")
    pieces = [_mono_float(frame) for frame in frames]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def _mono_float(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame's float32 samples (AAC's planar, libopus's packed) as mono float32."""
    values = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if channels == 1:
        return values.reshape(-1).astype(np.float32, copy=False)
    by_channel = values if frame.format.is_planar else values.reshape(-1, channels).T
    return by_channel.mean(axis=0, dtype=np.float32)
