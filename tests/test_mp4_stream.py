"""Live MP4 streams (audiomodels.mp4_stream): Safari's MediaRecorder (fragmented MP4, AAC), Chrome's
MP4 recordings (Opus) and faststart files, in pieces cut anywhere, decode to what the same bytes
decode to as a whole file, cut to the signal the file's timing states."""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path

import av
import numpy as np
import pytest

from audiomodels.media import MediaError
from audiomodels.mp4_stream import Mp4AudioStream
from tests.test_audio import sweep
from tests.test_media import clicks_with_a_gap
from tests.test_webm_stream import as_file, pieces
from training.codecs import FRAGMENTED_MP4, encode_audio

RECORDER = {**FRAGMENTED_MP4, "frag_duration": "300000"}
# a fragmented file whose moov waits for the first fragment, so it carries the edit list (AAC's priming)
WITH_EDIT_LIST = {**RECORDER, "movflags": RECORDER["movflags"] + "+delay_moov"}
FASTSTART = {"movflags": "faststart"}


def mp4(samples: np.ndarray, rate: int, codec: str = "aac", options: dict[str, str] = RECORDER) -> bytes:
    """``samples`` as an MP4 written the way ``options`` say (a pipe's, unless faststart rewrites a file)."""
    return encode_audio(samples, rate, "mp4", codec, options=options, seekable=options is not FASTSTART)


def streamed(data: bytes, sizes: Iterator[int], rate: int = 48000, required: bool = True) -> np.ndarray:
    stream = Mp4AudioStream(rate, required=required)
    samples = [stream.push(piece) for piece in pieces(data, sizes)]
    return np.concatenate([*samples, stream.finish()])


def random_sizes(seed: int) -> Iterator[int]:
    generator = random.Random(seed)
    while True:
        yield generator.choice([1, 7, 64, 333, 2048, 70000])


@pytest.mark.parametrize(
    ("codec", "options", "channels"),
    [
        ("aac", RECORDER, 1),
        ("aac", RECORDER, 2),
        ("aac", WITH_EDIT_LIST, 1),
        ("aac", FASTSTART, 1),
        ("libopus", RECORDER, 1),
        ("libopus", WITH_EDIT_LIST, 2),
    ],
    ids=["aac-recorder", "aac-stereo", "aac-edit-list", "aac-faststart", "opus-recorder", "opus-edit-list-stereo"],
)
def test_pieces_of_any_size_decode_to_the_files_samples(codec, options, channels):
    """Fragmented (as a recorder writes to a pipe) or faststart, AAC or Opus, mono or stereo, cut
    into random pieces: the whole file's samples bit for bit, one byte at a time as all at once.
    Where the file states its priming (an edit list; Opus's pre-skip) the signal comes out exactly
    as long as the one encoded."""
    signal = sweep(48000, seconds=1.3)
    data = mp4(signal if channels == 1 else np.stack([signal, signal[::-1] * 0.5], axis=1), 48000, codec, options)
    whole = as_file(data)
    samples = streamed(data, random_sizes(channels))

    assert len(samples) > 0.9 * len(signal)
    np.testing.assert_array_equal(samples, whole[: len(samples)])
    np.testing.assert_array_equal(streamed(data, iter([len(data)])), samples)
    np.testing.assert_array_equal(streamed(data, repeat(1)), samples)
    if options is not RECORDER or codec == "libopus":
        assert len(samples) == len(signal)
    else:  # no edit list: AAC's 1024 priming samples stay, as the whole-file decoder keeps them
        assert len(samples) == len(whole) == len(signal) + 1024


def resampled(samples: np.ndarray, rate: int, to: int) -> np.ndarray:
    """FFmpeg's resampler over the whole signal at once."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    return np.concatenate([piece.to_ndarray().reshape(-1) for piece in [*resampler.resample(frame), *resampler.resample(None)]])


def test_a_stream_at_another_rate_is_resampled_unless_its_rate_was_stated():
    """A Mac records at 44.1 kHz: with no rate stated the samples come out at 48 kHz (as FFmpeg
    resamples the whole signal, the resampler's tail included); with 44100 stated, untouched; a
    stated rate the audio does not have is an error that names both."""
    data = mp4(sweep(44100, seconds=1.0), 44100)
    whole = as_file(data)

    np.testing.assert_array_equal(streamed(data, random_sizes(3), rate=44100), whole)
    at_48k = streamed(data, random_sizes(4), required=False)
    np.testing.assert_allclose(at_48k, resampled(whole, 44100, 48000), atol=1e-6)
    with pytest.raises(MediaError, match="sample_rate_hz is 48000 but the MP4 stream's audio is 44100 Hz"):
        streamed(data, random_sizes(5), rate=48000, required=True)


@pytest.mark.parametrize("options", [WITH_EDIT_LIST, FASTSTART], ids=["recorder", "faststart"])
def test_a_sample_lasting_past_its_audio_is_followed_by_silence_as_in_the_file(options):
    """A recorder that lost 0.5 s: FFmpeg's muxer states it as the duration of the sample before the
    gap. The stream fills it with the silence the whole file's decoding puts there, bit for bit."""
    data = clicks_with_a_gap(48000, "mp4", "aac", options=options, seekable=options is not FASTSTART)
    samples = streamed(data, random_sizes(7))
    np.testing.assert_array_equal(samples, as_file(data)[: len(samples)])
    assert len(samples) == round(2.5 * 48000)


@pytest.mark.parametrize("codec", ["aac", "libopus"])
def test_a_fragment_whose_tfdt_jumps_ahead_is_filled_as_in_the_file(codec):
    """Fragments after the first start 0.5 s later (their tfdt) than the samples before them end:
    the same silence as the whole file's decoding, and the stated length still cuts the end."""
    data = bytearray(mp4(sweep(48000, seconds=1.3), 48000, codec, WITH_EDIT_LIST))
    plain = streamed(bytes(data), iter([len(data)]))
    tfdts = [at for at in range(len(data)) if data[at : at + 4] == b"tfdt"]
    assert len(tfdts) >= 3
    for at in tfdts[1:]:  # version 1: a 64-bit decode time
        struct.pack_into(">Q", data, at + 8, struct.unpack_from(">Q", data, at + 8)[0] + 24000)
    samples = streamed(bytes(data), random_sizes(8))
    np.testing.assert_array_equal(samples, as_file(bytes(data))[: len(samples)])
    assert len(samples) == len(plain) + 24000


def with_video(signal: np.ndarray, rate: int, options: dict[str, str]) -> bytes:
    """A screen recording's MP4: an MPEG-4 video track beside the AAC one, their fragments interleaved."""
    sink = io.BytesIO()
    with av.open(sink, "w", format="mp4", options=options) as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="mono")
        shown = 0
        for start in range(0, len(signal), 1024):
            frame = av.AudioFrame.from_ndarray(signal[start : start + 1024].reshape(1, -1), format="flt", layout="mono")
            frame.rate, frame.pts = rate, start
            container.mux(audio.encode(frame))
            while shown / 25 <= start / rate:
                picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), shown * 9 % 256, np.uint8), format="rgb24")
                picture.pts, shown = shown, shown + 1
                container.mux(video.encode(picture))
        container.mux(audio.encode(None))
        container.mux(video.encode(None))
    return sink.getvalue()


@pytest.mark.parametrize("movflags", ["frag_keyframe+empty_moov+default_base_moof", "frag_keyframe+empty_moov"])
def test_a_video_tracks_samples_are_skipped(movflags):
    """Audio and video fragments interleaved, their data found from the moof (default-base-is-moof)
    or from the previous track fragment's end (the spec's implicit base): the audio alone."""
    data = with_video(sweep(48000, seconds=1.5), 48000, {"movflags": movflags, "frag_duration": "200000"})
    np.testing.assert_array_equal(streamed(data, random_sizes(6)), as_file(data))


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def test_bad_streams_get_errors_that_say_what_is_wrong(tmp_path: Path):
    signal = sweep(48000, seconds=0.6)
    good = mp4(signal, 48000)
    moov_at = good.index(b"moov") - 4
    moof_at = good.index(b"moof") - 4
    trun_at = good.index(b"trun") - 4
    bad = {
        "not an MP4 stream: it does not begin with an ftyp box": b"RIFF\x00\x00\x00\x00WAVEfmt ",
        "audio \\(mdat\\) comes before its index \\(moov\\)": encode_audio(signal, 48000, "mp4", "aac"),
        "'alac'; AAC \\(mp4a\\) and Opus are accepted": mp4(signal, 48000, "alac"),
        "no audio track": good[:moov_at] + box(b"moov", b""),
        "fragment \\(moof at byte \\d+\\) before its tracks": good[:moov_at] + good[moof_at:],
        # a trun that lists more samples than it holds
        "trun lists 100000 samples": good[: trun_at + 12] + struct.pack(">I", 100000) + good[trun_at + 16 :],
        "ended inside a box": good[:-5],
        "ended before it described its tracks": good[:moov_at],
        "a second moov box": good[:moof_at] + good[moov_at:moof_at] + good[moof_at:],
    }
    for message, data in bad.items():
        with pytest.raises(MediaError, match=message):
            streamed(data, random_sizes(7), required=False)


def test_corrupt_streams_get_errors_never_a_crash():
    """Bytes flipped anywhere in recorder and faststart streams, AAC and Opus, some cut short: each
    decodes or raises MediaError (a status for the client), never another exception. (A run of
    3,000 such streams found a crash of the process, pinned by the next test, and a timescale of 0.)"""
    signal = sweep(48000, seconds=0.5)
    streams = [mp4(signal, 48000), mp4(signal, 48000, "libopus"), mp4(signal, 48000, options=FASTSTART)]
    generator = random.Random(11)
    for _ in range(400):
        data = bytearray(generator.choice(streams))
        for _ in range(generator.randint(1, 4)):
            data[generator.randrange(min(len(data), 1200) if generator.random() < 0.5 else len(data))] = generator.randrange(256)
        cut = bytes(data[: generator.randrange(len(data))] if generator.random() < 0.2 else data)
        try:
            streamed(cut, repeat(500), required=False)
        except MediaError:
            pass


def test_an_opus_track_with_a_channel_mapping_table_is_refused():
    """FFmpeg trusts a mapping table over the channel count: a corrupt one made a 24-channel
    "frame" of 108 planes, and PyAV's conversion of it crashed the process (the server)."""
    data = bytearray(mp4(sweep(48000, seconds=0.3), 48000, "libopus"))
    ops = data.index(b"dOps") + 4  # version, channels, pre-skip, rate, gain, then the mapping family
    data[ops + 10] = 1
    with pytest.raises(MediaError, match="channel mapping family 1; mono and stereo \\(family 0\\) are supported"):
        streamed(bytes(data), iter([len(data)]), required=False)
