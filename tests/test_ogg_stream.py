"""Live Ogg/Opus streams (audiomodels.ogg_stream): Firefox's MediaRecorder, opusenc or ffmpeg
writing to a pipe, in pieces cut anywhere, decode to what FFmpeg makes of the whole file."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator

import av
import numpy as np
import pytest
import soundfile as sf

from audiomodels import audio
from audiomodels.audio import AudioError, audio_duration, decode_audio, load_audio, prepare_waveform
from audiomodels.media import GAP_MAX_S, OPUS_RATE, MediaError, opus_decoder
from audiomodels.ogg_stream import OggOpusStream, link_spans, ogg_crc
from tests.test_audio import RATE, sweep
from tests.test_media import clicks_with_a_gap
from training.codecs import encode_audio


def whole_file(data: bytes) -> np.ndarray:
    """The whole file's Opus packets as FFmpeg's demuxer gives them, decoded by the product's Opus
    decoder at 48 kHz, as mono float32 (the mean of its channels)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        decoder = opus_decoder(bytes(stream.codec_context.extradata), "test file")
        frames = [frame for packet in container.demux(stream) for frame in decoder.decode(packet)]
    channels = stream.codec_context.layout.nb_channels
    return np.concatenate([f.to_ndarray().reshape(-1, channels).mean(axis=1, dtype=np.float32) for f in frames])


def streamed(data: bytes, sizes: Iterator[int]) -> np.ndarray:
    stream, at, pieces = OggOpusStream(), 0, []
    while at < len(data):
        size = next(sizes)
        pieces.append(stream.push(data[at : at + size]))
        at += size
    stream.finish()
    return np.concatenate(pieces)


def pages(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every page."""
    found, at = [], 0
    while at < len(data):
        segments = data[at + 26]
        length = 27 + segments + sum(data[at + 27 : at + 27 + segments])
        found.append((at, length))
        at += length
    return found


@pytest.mark.parametrize("channels", [1, 2])
def test_pieces_of_any_size_decode_to_the_whole_files_samples(channels):
    """FFmpeg's Ogg muxer, mono or stereo, cut into random pieces: FFmpeg's samples of the whole
    file bit for bit, to the last one (the end page's granule position cuts the padding)."""
    signal = sweep(OPUS_RATE, seconds=1.3)
    audio = signal if channels == 1 else np.stack([signal, signal[::-1]], axis=1)
    data = encode_audio(audio, OPUS_RATE, "ogg", "libopus", kbps=24)
    rng = np.random.default_rng(channels)
    got = streamed(data, (int(n) for n in rng.integers(1, 600, size=len(data))))
    np.testing.assert_array_equal(got, whole_file(data))
    assert len(got) == round(1.3 * OPUS_RATE)


def test_libsndfiles_ogg_opus_streams_too():
    """Another muxer (libsndfile's, over libopus): its pages and packets are read the same way."""
    buffer = io.BytesIO()
    sf.write(buffer, sweep(OPUS_RATE, seconds=2.0), OPUS_RATE, format="OGG", subtype="OPUS")
    data = buffer.getvalue()
    np.testing.assert_array_equal(streamed(data, iter([1] * len(data))), whole_file(data))


def test_a_chained_stream_goes_on_with_the_next_link():
    """Two Opus streams one after the other (a chain, RFC 3533): both links' samples, each cut to
    its own end, whatever the pieces."""
    first = encode_audio(sweep(OPUS_RATE, seconds=0.7), OPUS_RATE, "ogg", "libopus")
    second = encode_audio(sweep(OPUS_RATE, seconds=0.4, f0=500.0), OPUS_RATE, "ogg", "libopus")
    got = streamed(first + second, iter([333] * len(first + second)))
    np.testing.assert_array_equal(got, np.concatenate([whole_file(first), whole_file(second)]))


@pytest.mark.parametrize("gap_at", [1.0, 1.37])
def test_a_gap_in_the_granule_positions_is_filled_as_the_file_fills_it(gap_at):
    """A recorder that lost 0.5 s of audio: the stream puts the same silence in the same place as
    the whole file's decoding, bit for bit, whether the loss falls between pages or inside one
    (Ogg times only a page's end, so the silence goes near the page's start)."""
    signal = sweep(OPUS_RATE, seconds=2.0)
    data = encode_audio(signal, OPUS_RATE, "ogg", "libopus", gap=(gap_at, 0.5))
    rng = np.random.default_rng(7)
    got = streamed(data, (int(n) for n in rng.integers(1, 600, size=len(data))))
    as_file, rate = decode_audio(data)
    assert rate == OPUS_RATE
    np.testing.assert_array_equal(got, as_file)
    assert len(got) == round(2.5 * OPUS_RATE)
    assert np.count_nonzero(got == 0) >= 0.5 * OPUS_RATE


def test_a_stream_joined_late_is_not_padded():
    """Granule positions that start 10 s in (a live stream joined mid-way, RFC 7845) time the
    stream, not a loss: the first page is never checked, so no silence goes before it."""
    data = encode_audio(sweep(OPUS_RATE, seconds=1.5), OPUS_RATE, "ogg", "libopus")
    late = bytearray(data)
    for at, length in pages(data):
        granule = struct.unpack_from("<q", data, at + 6)[0]
        if granule > 0:
            struct.pack_into("<q", late, at + 6, granule + 10 * OPUS_RATE)
            struct.pack_into("<I", late, at + 22, 0)
            struct.pack_into("<I", late, at + 22, ogg_crc(bytes(late[at : at + length])))
    np.testing.assert_array_equal(streamed(bytes(late), iter([500] * len(late))), whole_file(data))
    assert audio_duration(bytes(late)) == pytest.approx(1.5)
    np.testing.assert_array_equal(decode_audio(bytes(late))[0], whole_file(data))


def test_a_surround_ogg_file_is_still_read():
    """Six channels (Opus channel mapping family 1), which the mono-or-stereo Opus decoder of the
    gap-filling path refuses, go on through libsndfile as before: every channel decoded."""
    signal = sweep(OPUS_RATE, seconds=1.0)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([0.5 * signal] * 6, axis=1), OPUS_RATE, format="OGG", subtype="OPUS")
    samples, rate = decode_audio(buffer.getvalue())
    assert rate == OPUS_RATE and samples.shape == (len(signal), 6)
    assert np.corrcoef(samples[:, 3], signal)[0, 1] > 0.99


def vorbis(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="OGG", subtype="VORBIS")
    return buffer.getvalue()


def test_link_spans_find_each_link_of_a_chain_from_the_page_headers():
    first = encode_audio(sweep(OPUS_RATE, seconds=0.7), OPUS_RATE, "ogg", "libopus")
    second = vorbis(sweep(RATE, seconds=0.4), RATE)
    file = io.BytesIO(first + second + first)
    file.seek(5)
    assert link_spans(file) == [(0, len(first)), (len(first), len(first + second)), (len(first + second), len(file.getvalue()))]
    assert file.tell() == 5  # left where it was
    assert link_spans(io.BytesIO(first)) == [(0, len(first))]
    assert link_spans(io.BytesIO(first + b"not a page")) == [(0, len(first) + 10)]  # the reader reports the rest


@pytest.mark.parametrize("codec", ["opus", "vorbis"])
def test_a_chained_file_is_read_to_its_last_link(codec):
    """A recorded radio stream (a new link at every title) or ``cat a.ogg b.ogg``: libsndfile reads
    the first link and stops, FFmpeg takes the length from the last link, so each link is read as
    a file of its own, back to back. Opus links keep their gap filling (0.5 s lost in the second)."""
    signals = [sweep(RATE, seconds=0.7), sweep(RATE, seconds=2.0, f0=500.0)]
    if codec == "opus":
        links = [encode_audio(signals[0], RATE, "ogg", "libopus"), encode_audio(signals[1], RATE, "ogg", "libopus", gap=(1.0, 0.5))]
    else:
        links = [vorbis(signal, RATE) for signal in signals]
    samples, rate = decode_audio(b"".join(links))
    assert rate == RATE
    np.testing.assert_array_equal(samples, np.concatenate([decode_audio(link)[0] for link in links]))
    seconds = 0.7 + 2.0 + (0.5 if codec == "opus" else 0.0)
    assert len(samples) == round(seconds * RATE) and audio_duration(b"".join(links)) == pytest.approx(seconds)
    assert len(load_audio(b"".join(links) * 6, max_duration_s=100)) == 6 * len(samples)


def test_links_at_other_rates_and_channel_counts_are_resampled_and_mixed():
    """A chain is read at its highest rate; a link at another is resampled whole (as
    :func:`prepare_waveform` would), and links with different channel counts come out mono."""
    low, high = sweep(RATE, seconds=0.6), sweep(2 * RATE, seconds=0.5, f0=300.0)
    stereo = np.stack([high, 0.5 * high], axis=1)
    links = [vorbis(low, RATE), vorbis(stereo, 2 * RATE)]
    samples, rate = decode_audio(b"".join(links))
    assert rate == 2 * RATE and samples.ndim == 1
    first = prepare_waveform(decode_audio(links[0])[0], RATE, target_rate=2 * RATE)
    np.testing.assert_allclose(samples[: len(first)], first, atol=1e-6)
    np.testing.assert_allclose(samples[len(first) :], decode_audio(links[1])[0].mean(axis=1), atol=1e-6)
    assert audio_duration(b"".join(links)) == pytest.approx(1.1)
    both_stereo, _ = decode_audio(links[1] + links[1])
    assert both_stereo.shape == (2 * len(stereo), 2)  # the same channels in every link: kept


def test_a_chain_cut_short_keeps_its_whole_pages_and_a_broken_link_is_named():
    """A recording stopped mid-link decodes to that link's last whole page, as a cut single file
    does; a link that cannot be read at all is named in the error."""
    first = vorbis(sweep(RATE, seconds=20.0), RATE)
    cut, _ = decode_audio(first + first[:-3000])
    alone, _ = decode_audio(first[:-3000])
    assert RATE * 20 < len(cut) < RATE * 40 and np.array_equal(cut[RATE * 20 :], alone)
    head = encode_audio(sweep(RATE, seconds=0.4), RATE, "ogg", "libopus")
    with pytest.raises(AudioError, match=r"could not decode audio, link 2 of 2 of the chain: .*corrupt"):
        decode_audio(first + head[:-30])


def test_a_chain_of_more_links_than_the_limit_is_refused_before_any_is_opened(monkeypatch):
    """Every link costs an open however little it holds, so tiny links could cost far more than
    the duration limits allow for: over :data:`MAX_CHAIN_LINKS` the file is refused, counted from
    the page headers."""
    link = encode_audio(sweep(RATE, seconds=0.05), RATE, "ogg", "libopus")
    monkeypatch.setattr(audio, "MAX_CHAIN_LINKS", 3)
    assert len(decode_audio(link * 3)[0]) == 3 * len(decode_audio(link)[0])
    opened = []
    monkeypatch.setattr(audio, "OggChain", lambda *args: opened.append(args))
    with pytest.raises(AudioError, match="audio is a chain of 4 Ogg links; at most 3 are read: split it"):
        decode_audio(link * 4)
    assert not opened


def test_a_granule_jump_beyond_the_limit_is_refused():
    data = clicks_with_a_gap(OPUS_RATE, "ogg", "libopus", gap_s=GAP_MAX_S + 5)
    with pytest.raises(MediaError, match=r"Ogg page \d+ starts 35\.0 s after the audio before it ends"):
        streamed(data, iter([4096] * len(data)))


def test_crc_is_oggs_own():
    """Every page FFmpeg writes carries the checksum this module computes."""
    data = encode_audio(sweep(OPUS_RATE, seconds=0.5), OPUS_RATE, "ogg", "libopus")
    for at, length in pages(data):
        page = data[at : at + length]
        assert ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) == struct.unpack_from("<I", page, 22)[0]


def test_bad_streams_get_errors_that_say_what_is_wrong():
    data = encode_audio(sweep(OPUS_RATE, seconds=0.5), OPUS_RATE, "ogg", "libopus")
    with pytest.raises(MediaError, match="not an Ogg stream: it does not begin with an Ogg page"):
        OggOpusStream().push(b"RIFF" + data)
    (first, _), (second, second_len), *_ = pages(data)
    flipped = bytearray(data)
    flipped[second + second_len - 1] ^= 0xFF
    stream = OggOpusStream()
    with pytest.raises(MediaError, match="Ogg page 2 fails its checksum"):
        stream.push(bytes(flipped))
    vorbis = io.BytesIO()
    sf.write(vorbis, sweep(OPUS_RATE, seconds=0.5), OPUS_RATE, format="OGG", subtype="VORBIS")
    with pytest.raises(MediaError, match="no Opus stream before page 2"):
        OggOpusStream().push(vorbis.getvalue())
    cut = OggOpusStream()
    cut.push(data[:-5])
    with pytest.raises(MediaError, match="ended inside page"):
        cut.finish()
    head_only = OggOpusStream()
    head_only.push(data[first:second])
    assert head_only.pages == 1
    head_only.finish()  # a stream may end after its headers: no audio, no error
