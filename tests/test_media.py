"""MP4/M4A and WebM audio (audiomodels.media) through the one decode path every caller uses."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest

from audiomodels import audio, media
from audiomodels.audio import AudioError, audio_duration, decode_audio, load_audio, prepare_waveform
from audiomodels.media import OPUS_RATE, OpusPackets, opus_packets
from tests.test_audio import RATE, as_source, noise, sweep
from training.codecs import FRAGMENTED_MP4, encode_audio

# (container, codec, rate): what phones (M4A: AAC, ALAC) and browsers (WebM: Opus) record
KINDS = [("mp4", "aac", 44100), ("mp4", "alac", 16000), ("webm", "libopus", 48000), ("matroska", "libopus", 48000)]
NAMES = {"mp4": "MP4", "webm": "WEBM", "matroska": "WEBM"}
EXT = {"mp4": "m4a", "webm": "webm", "matroska": "mka"}


@pytest.mark.parametrize("kind", ["path", "bytes"])
@pytest.mark.parametrize(("fmt", "codec", "rate"), KINDS)
def test_round_trip_keeps_length_rate_and_signal(tmp_path, kind, fmt, codec, rate):
    original = sweep(rate, seconds=1.5)
    source = as_source(encode_audio(original, rate, fmt, codec), kind, tmp_path, EXT[fmt])

    samples, decoded_rate = decode_audio(source)

    assert decoded_rate == rate and samples.dtype == np.float32
    assert abs(len(samples) - len(original)) <= rate // 100  # within 10 ms: codec padding is cut
    common = min(len(samples), len(original))
    if codec == "alac":  # lossless: the 16-bit step is all that differs
        np.testing.assert_allclose(samples[:common], original[:common], rtol=0, atol=1 / 32768)
    else:
        assert np.corrcoef(samples[:common], original[:common])[0, 1] > 0.99
    assert audio_duration(source) == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize(("fmt", "codec", "rate"), [k for k in KINDS if k[1] != "alac"])
def test_lossy_codecs_keep_time(fmt, codec, rate):
    """Encoder delay does not shift the samples: a click stays where it was (word times stay true)."""
    clicks = np.zeros(2 * rate, dtype=np.float32)
    clicks[rate] = 0.9
    samples, _ = decode_audio(encode_audio(clicks, rate, fmt, codec))
    assert abs(int(np.argmax(np.abs(samples))) - rate) <= rate // 1000  # within 1 ms


# a recorder's fragmented MP4 with an edit list (its moov waits for the first fragment), which says
# how much AAC priming to cut; without one the whole signal is 1024 samples late
RECORDER_MP4 = {**FRAGMENTED_MP4, "movflags": FRAGMENTED_MP4["movflags"] + "+delay_moov"}


def clicks_with_a_gap(rate: int, fmt: str, codec: str, gap_s: float = 0.5, **how: object) -> bytes:
    """Clicks at 0.5 and 1.5 s of 2 s of faint noise (never exact silence), encoded with timestamps
    that jump ``gap_s`` ahead at 1 s: a recorder that lost that much audio there (``how``:
    :func:`encode_audio`'s options)."""
    clicks = np.random.default_rng(0).normal(0, 0.01, 2 * rate).astype(np.float32)
    clicks[rate // 2] = clicks[3 * rate // 2] = 0.9
    return encode_audio(clicks, rate, fmt, codec, gap=(1.0, gap_s), **how)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "codec", "rate", "how"),
    [
        ("mp4", "aac", 44100, {}),
        ("mp4", "aac", 48000, {"options": RECORDER_MP4, "seekable": False}),
        ("webm", "libopus", 48000, {}),
        ("webm", "libopus", 48000, {"seekable": False}),
        ("matroska", "libopus", 48000, {}),
        ("ogg", "libopus", 48000, {}),
        ("ogg", "libopus", 16000, {}),
    ],
    ids=["m4a", "mp4-recorder", "webm", "webm-recorder", "mka", "ogg", "ogg-16k"],
)
def test_a_gap_in_the_timestamps_is_filled_with_silence(fmt, codec, rate, how):
    """Audio a recorder lost keeps its place on the timeline: the click after a 0.5 s jump in the
    timestamps comes 0.5 s later than it was recorded, where the recording's clock put it, and the
    decoded length is the duration the container states."""
    data = clicks_with_a_gap(rate, fmt, codec, **how)
    samples, _ = decode_audio(data)
    first, second = (int(np.argmax(np.abs(half))) for half in (samples[:rate], samples[rate:]))
    assert abs(first - rate // 2) <= rate // 500  # within 2 ms: AAC smears a click a little
    assert abs(rate + second - 2 * rate) <= rate // 500  # 1.5 s + the 0.5 s gap
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (samples == 0).astype(np.int8), [0]])))
    assert abs(int((edges[1::2] - edges[::2]).max()) - rate // 2) <= rate // 1000  # the gap: exact zeros
    assert audio_duration(data) == pytest.approx(len(samples) / rate, abs=0.025)


def test_a_timestamp_jump_beyond_the_limit_is_refused_as_corrupt():
    data = clicks_with_a_gap(OPUS_RATE, "webm", "libopus", gap_s=media.GAP_MAX_S + 1)
    with pytest.raises(AudioError, match=r"WEBM audio at 32\.0\d\d s starts 31\.0 s after the audio before it ends; a timestamp jump over 30 s"):
        load_audio(data)


def test_timeline_gaps_fill_only_what_the_timestamps_say_is_missing():
    """Rounded timestamps (WebM's milliseconds) and overlaps add nothing; the first frame, which a
    codec's pre-skip shortens, is not checked; a frame without a timestamp follows the one before."""
    gaps = media.TimelineGaps(1000)  # one sample a millisecond
    assert gaps.before(Fraction(0), 6, "frame 1") == 0  # pre-skip: 6 of 20 ms left
    assert gaps.before(Fraction(20, 1000), 20, "frame 2") == 0  # the anchor
    assert gaps.before(Fraction(49, 1000), 20, "frame 3") == 0  # 9 ms late: rounding
    assert gaps.before(None, 20, "frame 4") == 0
    assert gaps.before(Fraction(70, 1000), 20, "frame 5") == 0  # 10 ms early: kept whole
    assert gaps.before(Fraction(200, 1000), 20, "frame 6") == 100  # 80 ms written since the anchor
    assert gaps.before(Fraction(230, 1000), 0, "empty") == 0
    assert gaps.before(Fraction(250, 1000), 20, "frame 7") == 30


def test_stereo_decodes_by_channels_and_loads_as_mean():
    left, right = sweep(RATE), sweep(RATE, f0=300.0, f1=300.0)
    data = encode_audio(np.stack([left, right], axis=1), RATE, "mp4", "alac")
    samples, _ = decode_audio(data)
    assert samples.shape == (RATE, 2)
    np.testing.assert_allclose(load_audio(data), (left + right) / 2, rtol=0, atol=1 / 32768)


def test_a_recorder_webm_without_a_duration_is_measured_from_its_packets(monkeypatch):
    """A MediaRecorder WebM states no duration; the packets' times give it without decoding, so the
    length limit still holds before any samples are decoded."""
    data = encode_audio(noise(3 * 48000), 48000, "webm", "libopus", seekable=False)
    assert b"\x44\x89" not in data[:200]  # no Duration element in the header

    assert audio_duration(data) == pytest.approx(3.0, abs=0.03)

    def no_decoding(self, dtype):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(media.MediaFile, "_decoded", no_decoding)
    with pytest.raises(AudioError, match="audio is 3.0 s long, longer than the 2.5 s limit"):
        load_audio(data, max_duration_s=2.5)


def test_long_files_load_block_by_block_as_they_would_whole(monkeypatch):
    monkeypatch.setattr(audio, "WHOLE_DECODE_LIMIT_S", 1.0)
    monkeypatch.setattr(audio, "_BLOCK_S", 0.3)
    data = encode_audio(noise(round(2.5 * 44100), 2), 44100, "mp4", "aac")
    decoded, rate = decode_audio(data)
    whole = prepare_waveform(decoded, rate)

    blocks = load_audio(data)

    assert blocks.shape == whole.shape
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-4)
    with pytest.raises(AudioError, match="longer than the 2.0 s limit"):
        load_audio(data, max_duration_s=2.0)


def test_mp4_cut_before_its_index_is_rejected_with_the_reason():
    data = encode_audio(sweep(RATE, seconds=2.0), RATE, "mp4", "aac")  # the index (moov) is written last
    with pytest.raises(AudioError, match=r"MP4 file without its index \(moov box\): cut short or still being written"):
        load_audio(data[: len(data) // 2])


def test_webm_cut_mid_way_decodes_its_readable_prefix():
    original = sweep(48000, seconds=3.0)
    data = encode_audio(original, 48000, "webm", "libopus")

    samples, _ = decode_audio(data[: len(data) // 2])

    assert 0.3 * len(original) < len(samples) < 0.7 * len(original)
    head = len(samples) // 2
    assert np.corrcoef(samples[:head], original[:head])[0, 1] > 0.99


@pytest.mark.parametrize(
    ("fmt", "codec", "match"),
    [
        ("matroska", "pcm_s16le", "WEBM audio in the pcm_s16le codec is not supported"),
        ("adts", "aac", r"it is raw ADTS AAC \(Advanced Audio Coding\), not MP4 or WebM"),
    ],
)
def test_formats_and_codecs_not_promised_are_refused_by_name(fmt, codec, match):
    data = encode_audio(sweep(RATE), RATE, fmt, codec)
    with pytest.raises(AudioError, match=match):
        decode_audio(data)


def test_garbage_is_reported_as_neither_reader_could_read_it():
    garbage = np.random.default_rng(0).bytes(5000)
    with pytest.raises(AudioError, match=r"unsupported or corrupt container \(.*; as MP4/WebM: .*\); supported: .*MP4/M4A"):
        load_audio(garbage)


def test_a_codec_ffmpeg_does_not_know_is_refused_by_name():
    data = encode_audio(sweep(48000, seconds=0.3), 48000, "webm", "libopus").replace(b"A_OPUS", b"A_OPUX")
    with pytest.raises(media.MediaError, match="names a codec FFmpeg does not know"):
        media.MediaFile(io.BytesIO(data))


def test_the_supported_list_names_mp4_and_webm():
    with pytest.raises(AudioError, match=r"supported: WAV .*, MP4/M4A \(AAC or ALAC\), WebM/Matroska \(Opus\)"):
        decode_audio(b"RIFF" + bytes(100))


def test_opus_packets_decode_to_the_signal_late_by_the_encoders_lookahead():
    original = sweep(RATE, seconds=1.0)
    packets = list(opus_packets(original, RATE, kbps=32))
    assert 50 <= len(packets) <= 52  # 20 ms each, and the encoder's tail
    decoder = OpusPackets()
    decoded = np.concatenate([decoder.decode(packet) for packet in packets])
    reference = prepare_waveform(original, RATE, target_rate=OPUS_RATE)
    common = len(reference) - 2000

    def match(lag: int) -> float:
        return float(np.corrcoef(decoded[lag : lag + common], reference[:common])[0, 1])

    lag = max(range(600), key=match)  # libopus's lookahead, 6.5 ms: word times from Opus streams are that much late
    assert abs(lag - 312) <= 2 and match(lag) > 0.8  # perceptual coding keeps the sound, not every phase
    level = np.std(decoded[lag : lag + common]) / np.std(reference[:common])
    assert 0.9 < level < 1.1
    assert decoder.decode(b"").size == 0  # an empty message carries no audio, as with raw chunks
    with pytest.raises(media.MediaError, match=f"Opus packet {len(packets) + 1} is corrupt"):
        decoder.decode(b"\xff\xfe junk")



def _video(audio: np.ndarray | None) -> bytes:
    """A 2-second MP4 video (MPEG-4 part 2 frames), with ``audio`` as its AAC track if given."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("aac", rate=RATE, layout="mono") if audio is not None else None
        for index in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * index, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            for start in range(0, len(audio), 1024):
                piece = av.AudioFrame.from_ndarray(audio[None, start : start + 1024], format="fltp", layout="mono")
                piece.rate, piece.pts = RATE, start
                container.mux(sound.encode(piece))
            container.mux(sound.encode(None))
    return buffer.getvalue()


def test_a_video_is_read_for_its_audio_track_and_one_without_sound_is_refused():
    original = sweep(RATE, seconds=2.0)
    samples, rate = decode_audio(_video(original))
    assert rate == RATE and abs(len(samples) - len(original)) <= RATE // 100
    common = min(len(samples), len(original))
    assert np.corrcoef(samples[:common], original[:common])[0, 1] > 0.99
    with pytest.raises(AudioError, match="MP4 file has no audio stream"):
        load_audio(_video(None))
