"""MFCC front-end speed: ours (torchaudio) vs librosa, whole-file and streaming, as real-time factors.

Usage: python benchmarks/features.py [--seconds 600] [--out benchmarks/results/features.json]
RTF = compute seconds / audio seconds (lower is faster); "x real time" is its inverse.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import torch

from audiomodels.config import FeatureConfig
from audiomodels.features import Featurizer, StreamingFeaturizer

from report import write_report  # beside this script in benchmarks/


def timed(function: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of each of ``repeats`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="audio length to featurize")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/features.json"))
    args = parser.parse_args()

    config = FeatureConfig()
    featurizer = Featurizer(config)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(args.seconds * config.sample_rate))).astype(np.float32)
    tensor = torch.from_numpy(audio)
    chunk = config.sample_rate // 10  # 100 ms pieces, as a live stream sends them

    def streaming() -> None:
        stream = StreamingFeaturizer(featurizer)
        for start in range(0, len(audio), chunk):
            stream.accept(audio[start : start + chunk])

    def reference() -> None:
        librosa.feature.mfcc(
            y=audio, sr=config.sample_rate, n_mfcc=config.n_mfcc, n_fft=config.win_length,
            hop_length=config.hop_length, win_length=config.win_length, n_mels=config.n_mels, center=False,
        )

    cases = {
        "speechlabel_whole": lambda: featurizer(tensor),
        "speechlabel_stream_100ms": streaming,
        "librosa_whole": reference,
    }
    results = {"audio_seconds": args.seconds, "torch_threads": torch.get_num_threads()}
    print(f"{'case':28s} {'median s':>10s} {'RTF':>10s} {'x real time':>12s}")
    for name, function in cases.items():
        times = timed(function, args.repeats)
        median = statistics.median(times)
        results[name] = {"median_s": median, "rtf": median / args.seconds, "x_real_time": args.seconds / median}
        print(f"{name:28s} {median:10.3f} {median / args.seconds:10.5f} {args.seconds / median:12.0f}")
    write_report(args.out, results)


if __name__ == "__main__":
    main()
