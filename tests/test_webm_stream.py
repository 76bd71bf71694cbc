"""Live WebM/Opus streams (audiomodels.webm_stream): a MediaRecorder's bytes, in pieces cut
anywhere, decode to exactly what the same bytes decode to as a whole file."""

from __future__ import annotations

import io
from collections.abc import Iterator

import av
import numpy as np
import pytest

from audiomodels import webm_stream
from audiomodels.media import GAP_MAX_S, OPUS_RATE, MediaError, MediaFile
from audiomodels.webm_stream import WebmOpusStream
from tests.test_audio import sweep
from tests.test_media import clicks_with_a_gap
from training.codecs import encode_audio


def as_file(data: bytes) -> np.ndarray:
    """The whole file's mono samples, as the server's file path decodes them."""
    with MediaFile(io.BytesIO(data)) as media:
        samples = media.read(always_2d=True)
    return samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]


def pieces(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    at = 0
    while at < len(data):
        size = next(sizes)
        yield data[at : at + size]
        at += size


def streamed(data: bytes, sizes: Iterator[int]) -> np.ndarray:
    stream = WebmOpusStream()
    samples = np.concatenate([stream.push(piece) for piece in pieces(data, sizes)])
    stream.finish()
    return samples


def elements(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(ID, offset, header length) of every element, masters read in line, as the stream reads them."""
    at = 0
    while at < len(data):
        element, size, header = webm_stream._element_header(bytearray(data[at : at + 12]), at)
        yield element, at, header
        at += header if element in webm_stream._MASTERS else header + size


@pytest.mark.parametrize("seekable", [False, True], ids=["recorder", "file"])
@pytest.mark.parametrize("channels", [1, 2])
def test_pieces_of_any_size_decode_to_the_files_samples(seekable, channels):
    """A recorder's live WebM (sizes unknown) and a finished file, mono or stereo, cut into random
    pieces: the same samples, bit for bit and to the last one, as decoding the whole file (the
    last block's padding is cut by its DiscardPadding)."""
    signal = sweep(OPUS_RATE, seconds=1.3)
    data = encode_audio(
        signal if channels == 1 else np.stack([signal, signal[::-1]], axis=1),
        OPUS_RATE,
        "webm",
        "libopus",
        seekable=seekable,
    )
    rng = np.random.default_rng(channels)
    got = streamed(data, (int(n) for n in rng.integers(1, 600, size=len(data))))
    np.testing.assert_array_equal(got, as_file(data))


def test_one_byte_at_a_time_and_all_at_once_agree():
    data = encode_audio(sweep(OPUS_RATE, seconds=0.5), OPUS_RATE, "webm", "libopus", seekable=False)
    one = streamed(data, iter([1] * len(data)))
    whole = streamed(data, iter([len(data)]))
    np.testing.assert_array_equal(one, whole)
    assert len(whole) == round(0.5 * OPUS_RATE)


def test_a_video_tracks_blocks_are_skipped():
    """A screen recording's WebM (VP8 video first, then Opus): only the audio is decoded."""
    signal = sweep(OPUS_RATE, seconds=1.0)
    sink = io.BytesIO()
    with av.open(sink, "w", format="webm") as container:
        video = container.add_stream("libvpx", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("libopus", rate=OPUS_RATE, layout="mono")
        for index in range(10):
            image = np.full((48, 64, 3), 25 * index, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        for start in range(0, len(signal), 960):
            frame = av.AudioFrame.from_ndarray(signal[None, start : start + 960], format="flt", layout="mono")
            frame.rate, frame.pts = OPUS_RATE, start
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    data = sink.getvalue()
    got = streamed(data, iter([777] * len(data)))
    np.testing.assert_array_equal(got, as_file(data))


def vint(value: int, length: int | None = None) -> bytes:
    """``value`` as an EBML variable-length integer (the shortest, or ``length`` bytes)."""
    length = length or next(n for n in range(1, 9) if value < (1 << (7 * n)) - 1)
    return ((1 << (7 * length)) | value).to_bytes(length, "big")


def lace_sizes(sizes: list[int], lacing: str) -> bytes:
    """The lace header after the frame count: every frame's size but the last's."""
    if lacing == "xiph":
        return b"".join(b"\xff" * (size // 255) + bytes([size % 255]) for size in sizes[:-1])
    coded = vint(sizes[0]) if len(sizes) > 1 else b""
    for before, size in zip(sizes[:-2], sizes[1:-1]):  # signed differences: value + 2^(7n-1) - 1 in n bytes
        length = next(n for n in range(1, 9) if abs(size - before) < (1 << (7 * n - 1)) - 1)
        coded += vint(size - before + (1 << (7 * length - 1)) - 1, length)
    return coded


def laced(data: bytes, lacing: str, group: int) -> bytes:
    """A recorder's WebM (clusters of unknown size) with up to ``group`` back-to-back SimpleBlocks of
    a cluster made one laced block (``xiph`` or ``ebml``), as mkvmerge writes audio: the same frames
    in order."""
    runs: list[list[tuple[int, int, bytes]]] = []  # per laced block: (offset, end, body) of the blocks it replaces
    end = -1
    for element, at, header in elements(data):
        if element != 0xA3:
            continue
        size = webm_stream._element_header(bytearray(data[at : at + 12]), at)[1]
        if at != end or len(runs[-1]) == group:  # another cluster (or a BlockGroup) between: a new run
            runs.append([])
        end = at + header + size
        runs[-1].append((at, end, data[at + header : end]))
    out, copied = bytearray(), 0
    for run in (run for run in runs if len(run) > 1):  # a lone block stays unlaced, as mkvmerge leaves it (FFmpeg, the reference here, reads a lace of one frame otherwise)
        (start, _, first), *_ = run
        frames = [body[4:] for _, _, body in run]  # track number (1 byte), timecode, flags, frame
        flags = first[3] | (0x02 if lacing == "xiph" else 0x06)
        body = first[:3] + bytes([flags, len(frames) - 1]) + lace_sizes([len(f) for f in frames], lacing) + b"".join(frames)
        out += data[copied:start] + b"\xa3" + vint(len(body), 8) + body
        copied = run[-1][1]
    return bytes(out + data[copied:])


@pytest.mark.parametrize("lacing", ["xiph", "ebml"])
def test_laced_blocks_decode_frame_by_frame(lacing):
    """Blocks of several frames (mkvmerge laces audio): the samples of the same frames unlaced, and
    of FFmpeg's decoding of the laced bytes as a file, bit for bit, in pieces cut anywhere."""
    data = encode_audio(sweep(OPUS_RATE, seconds=1.3), OPUS_RATE, "webm", "libopus", seekable=False)
    relaced = laced(data, lacing, group=4)
    assert len(relaced) < len(data)  # fewer block headers
    rng = np.random.default_rng(5)
    got = streamed(relaced, (int(n) for n in rng.integers(1, 300, size=len(relaced))))
    np.testing.assert_array_equal(got, streamed(data, iter([len(data)])))
    np.testing.assert_array_equal(got, as_file(relaced))


def test_lace_headers_are_read_and_checked():
    frames = [b"a" * 300, b"b" * 7, b"c" * 600, b"d" * 5]
    for lacing, bits in (("xiph", 0x02), ("ebml", 0x06)):
        body = b"\x81\x00\x00" + bytes([0x80 | bits, 3]) + lace_sizes([300, 7, 600, 5], lacing) + b"".join(frames)
        assert webm_stream._block_frames(body, 0) == frames
        with pytest.raises(MediaError, match="laced frames overrun it"):
            webm_stream._block_frames(body[:-6], 0)
    fixed = b"\x81\x00\x00\x84\x02" + b"x" * 9  # three frames of equal size
    assert webm_stream._block_frames(fixed, 0) == [b"xxx"] * 3
    with pytest.raises(MediaError, match="8 bytes in 3 equal frames"):
        webm_stream._block_frames(fixed[:-1], 0)
    with pytest.raises(MediaError, match="lace sizes overrun it"):
        webm_stream._block_frames(b"\x81\x00\x00\x82\x05\xff\xff", 0)
    with pytest.raises(MediaError, match="no frame count"):
        webm_stream._block_frames(b"\x81\x00\x00\x86", 0)
    with pytest.raises(MediaError, match="a frame of 0 bytes"):  # an empty packet would end the decoder's stream
        webm_stream._block_frames(b"\x81\x00\x00\x80", 0)


@pytest.mark.parametrize("seekable", [False, True], ids=["recorder", "file"])
def test_a_gap_in_the_block_timestamps_is_filled_as_the_file_fills_it(seekable):
    """A recorder that lost 0.5 s of audio: the stream puts the same silence in the same place as
    the whole file's decoding, bit for bit, so later labels keep the recording's times."""
    data = clicks_with_a_gap(OPUS_RATE, "webm", "libopus", seekable=seekable)
    rng = np.random.default_rng(6)
    got = streamed(data, (int(n) for n in rng.integers(1, 600, size=len(data))))
    np.testing.assert_array_equal(got, as_file(data))
    assert len(got) == round(2.5 * OPUS_RATE)


def test_block_timestamps_are_read_in_the_streams_timecode_scale():
    """Timestamps count TimecodeScale nanoseconds: doubled (2 ms a unit), the blocks 20 ms apart
    stand 40 ms apart, each followed by 20 ms of silence, in the stream as in FFmpeg's reading."""
    data = encode_audio(sweep(OPUS_RATE, seconds=0.5), OPUS_RATE, "webm", "libopus", seekable=False)
    scale = b"\x2a\xd7\xb1\x83\x0f\x42\x40"  # TimecodeScale, 3 bytes: 1,000,000 ns
    assert data.count(scale) == 1
    doubled = data.replace(scale, b"\x2a\xd7\xb1\x83" + (2_000_000).to_bytes(3, "big"))
    got = streamed(doubled, iter([333] * len(doubled)))
    np.testing.assert_array_equal(got, as_file(doubled))
    assert len(got) == pytest.approx(2 * len(streamed(data, iter([len(data)]))), abs=2 * 960)


def test_a_timestamp_jump_beyond_the_limit_is_refused():
    data = clicks_with_a_gap(OPUS_RATE, "webm", "libopus", gap_s=GAP_MAX_S + 5, seekable=False)
    with pytest.raises(MediaError, match=r"WebM audio block at byte \d+ starts 35\.0 s after the audio before it ends"):
        streamed(data, iter([4096] * len(data)))


def test_bad_streams_get_errors_that_say_what_is_wrong():
    data = encode_audio(sweep(OPUS_RATE, seconds=0.5), OPUS_RATE, "webm", "libopus", seekable=False)
    with pytest.raises(MediaError, match="does not begin with an EBML header"):
        WebmOpusStream().push(b"RIFF" + data)
    with pytest.raises(MediaError, match="document type is b'abcd'"):
        WebmOpusStream().push(data.replace(b"\x42\x82\x84webm", b"\x42\x82\x84abcd", 1))
    head = data.index(b"OpusHead")  # a channel mapping family other than 0: its table, not the count, rules FFmpeg
    with pytest.raises(MediaError, match="channel mapping family 1"):
        WebmOpusStream().push(data[: head + 18] + b"\x01" + data[head + 19 :])
    aac = encode_audio(sweep(OPUS_RATE, seconds=0.5), OPUS_RATE, "matroska", "aac", seekable=False)
    with pytest.raises(MediaError, match="'A_AAC'; only Opus"):
        WebmOpusStream().push(aac)

    cut = WebmOpusStream()
    cut.push(data[:-5])
    with pytest.raises(MediaError, match="ended inside an element"):
        cut.finish()
    segment = next(at for element, at, _ in elements(data) if element == 0x18538067)
    header_only = WebmOpusStream()
    header_only.push(data[:segment])
    with pytest.raises(MediaError, match="ended before it described its tracks"):
        header_only.finish()
    first_cluster = next(at for element, at, _ in elements(data) if element == 0x1F43B675)
    no_audio_yet = WebmOpusStream()  # recording stopped at once: no blocks, no samples, no error
    assert len(no_audio_yet.push(data[:first_cluster])) == 0
    no_audio_yet.finish()

    first_block = next(at + header for element, at, header in elements(data) if element == 0xA3)
    falsely_laced = bytearray(data)
    falsely_laced[first_block + 3] |= 0x02  # the flags byte after track number (1 byte) and timecode (2): Xiph lacing
    with pytest.raises(MediaError, match="WebM block at byte .* is corrupt"):
        WebmOpusStream().push(bytes(falsely_laced))

    garbage = WebmOpusStream()
    garbage.push(data[:segment])
    with pytest.raises(MediaError, match=f"corrupt at byte {segment}: 0x00 starts no element ID"):
        garbage.push(b"\x00" * 8)
