"""Audio-in speed per container: ``load_audio`` (decode, downmix, resample to 16 kHz) as real-time
factors, FFmpeg's MP4/M4A, WebM and Ogg Opus (PyAV; Opus by libopus) side by side with
libsndfile's WAV, FLAC and MP3,
and the same WebM, Ogg and fragmented MP4 files as live streams (:mod:`audiomodels.webm_stream`,
:mod:`audiomodels.ogg_stream`, :mod:`audiomodels.mp4_stream`: pieces of :data:`STREAM_PIECE`
bytes, then resampled the same way) beside their whole-file rows.

Usage: python benchmarks/audio_decode.py [--minutes 10] [--out benchmarks/results/audio_decode.json]
The audio is espeak-ng speech (real speech, not noise: codecs work differently on it) at each
container's usual rate, stereo where recorders write stereo. RTF = seconds / audio seconds.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf

from audiomodels.audio import load_audio, prepare_waveform
from audiomodels.media import OPUS_RATE
from audiomodels.mp4_stream import Mp4AudioStream
from audiomodels.ogg_stream import OggOpusStream
from audiomodels.webm_stream import WebmOpusStream

from training.codecs import FRAGMENTED_MP4, encode_audio

from report import write_report  # beside this script in benchmarks/

TEXT = (
    "Phones record voice memos as M4A files, browsers record WebM, and a transcription service "
    "should read them as readily as it reads WAV. The quick brown fox jumps over the lazy dog."
)
# name -> (writer, rate, channels); libsndfile rows first: they are the reference (the Ogg file is
# libsndfile's writing, FFmpeg's reading)
CASES = {
    "WAV PCM16 16 kHz mono (libsndfile)": ("WAV", "PCM_16", 16000, 1),
    "FLAC 44.1 kHz stereo (libsndfile)": ("FLAC", "PCM_16", 44100, 2),
    "MP3 44.1 kHz stereo (libsndfile)": ("MP3", "MPEG_LAYER_III", 44100, 2),
    "M4A AAC 44.1 kHz stereo (FFmpeg)": ("mp4", "aac", 44100, 2),
    "M4A ALAC 44.1 kHz stereo (FFmpeg)": ("mp4", "alac", 44100, 2),
    "WebM Opus 48 kHz mono (FFmpeg)": ("webm", "libopus", 48000, 1),
    "Ogg Opus 48 kHz mono (FFmpeg)": ("OGG", "OPUS", 48000, 1),
    "fragmented MP4 AAC 48 kHz mono (FFmpeg)": ("fragmented mp4", "aac", 48000, 1),  # Safari's MediaRecorder
}
# live-stream row -> (the file row whose very bytes it streams, its reader)
STREAMED = {
    "WebM Opus 48 kHz mono, live stream (webm_stream)": ("WebM Opus 48 kHz mono (FFmpeg)", WebmOpusStream),
    "Ogg Opus 48 kHz mono, live stream (ogg_stream)": ("Ogg Opus 48 kHz mono (FFmpeg)", OggOpusStream),
    "fragmented MP4 AAC 48 kHz mono, live stream (mp4_stream)": ("fragmented MP4 AAC 48 kHz mono (FFmpeg)", Mp4AudioStream),
}
STREAM_PIECE = 4096  # bytes per message: about a MediaRecorder's 1 s timeslice at 32 kbps


def speech(seconds: float) -> tuple[np.ndarray, int]:
    """espeak-ng reading :data:`TEXT`, repeated to ``seconds``."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), TEXT], check=True)
        samples, rate = sf.read(path, dtype="float32")
    return np.resize(samples, round(seconds * rate)), rate


def encoded(samples: np.ndarray, rate: int, case: tuple[str, str, int, int]) -> bytes:
    fmt, codec, target, channels = case
    audio = prepare_waveform(samples, rate, target_rate=target)
    audio = np.stack([audio, 0.8 * audio], axis=1) if channels == 2 else audio
    if fmt.isupper():  # libsndfile's names
        buffer = io.BytesIO()
        sf.write(buffer, audio, target, format=fmt, subtype=codec)
        return buffer.getvalue()
    if fmt == "fragmented mp4":
        return encode_audio(audio, target, "mp4", codec, options=FRAGMENTED_MP4, seekable=False)
    return encode_audio(audio, target, fmt, codec)


def load_streamed(data: bytes, reader: type[WebmOpusStream | OggOpusStream | Mp4AudioStream]) -> np.ndarray:
    """``data`` as StreamingRecognize decodes a WEBM, OGG or MP4 stream (at 48 kHz), resampled to
    16 kHz as load_audio does."""
    stream = reader()
    pieces = [stream.push(data[at : at + STREAM_PIECE]) for at in range(0, len(data), STREAM_PIECE)]
    return prepare_waveform(np.concatenate([*pieces, stream.finish()]), OPUS_RATE)


def median_s(decode: Callable[[bytes], object], data: bytes, repeats: int) -> float:
    decode(data)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="audio length of each file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/audio_decode.json"))
    args = parser.parse_args()

    seconds = 60 * args.minutes
    samples, rate = speech(seconds)
    results: dict[str, object] = {"audio_seconds": seconds, "cases": {}}
    print(f"{'container':50s} {'MB':>7s} {'median s':>9s} {'RTF':>8s} {'x real time':>12s}")
    rows = [(name, encoded(samples, rate, case), partial(load_audio, max_duration_s=None)) for name, case in CASES.items()]
    files = {name: data for name, data, _ in rows}
    rows += [(name, files[file], partial(load_streamed, reader=reader)) for name, (file, reader) in STREAMED.items()]
    for name, data, decode in rows:
        median = median_s(decode, data, args.repeats)
        results["cases"][name] = {  # type: ignore[index]
            "bytes": len(data),
            "median_s": median,
            "rtf": median / seconds,
            "x_real_time": seconds / median,
        }
        print(f"{name:50s} {len(data) / 1e6:7.1f} {median:9.3f} {median / seconds:8.5f} {seconds / median:12.0f}")
    write_report(args.out, results)


if __name__ == "__main__":
    main()
