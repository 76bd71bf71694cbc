"""Accuracy against input level: the level gain (``audiomodels.silence.level_gain``) on and off.

Usage:
    python benchmarks/levels.py [--checkpoints models/char.ckpt models/phone.ckpt]
        [--manifest data/corpus/test.jsonl] [--limit 200] [--levels -10 -20 -30 -40 -50 -55 -60 -70]
        [--out benchmarks/results/levels.json]

Each held-out utterance is scaled to an RMS level (dBFS) and quantized to 16 bits, as a recording at
that level would be, then recognized greedily with the gain (the product's default) and without it
(the reference, ``level_dbfs=None``); "as recorded" is the corpus audio untouched. The gain must not
turn noise into text, so 2 s clips of white, pink and brown noise alone are recognized both ways
too, and the characters (labels) each way emits are counted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiomodels.audio import load_audio, quantize_pcm16
from audiomodels.recognizer import Recognizer
from training.augment import colored_noise, to_level
from training.manifest import read_manifest
from training.metrics import ErrorCounts, char_errors, phone_errors

from report import write_report  # beside this script in benchmarks/

NOISE_LEVELS = (-55.0, -45.0, -35.0)


def at_level(samples: np.ndarray, rms_dbfs: float) -> np.ndarray:
    """``samples`` scaled to ``rms_dbfs`` and rounded to 16-bit steps."""
    return quantize_pcm16(to_level(samples, rms_dbfs))


def error_rate(recognizer: Recognizer, waveforms: list[np.ndarray], references: list[str]) -> float:
    errors = phone_errors if recognizer.labels.kind == "phone" else char_errors
    total = ErrorCounts()
    for transcript, reference in zip(recognizer.transcribe_batch([(w, 16000) for w in waveforms]), references, strict=True):
        total += errors(reference, transcript.text)
    return total.rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=[Path("models/char.ckpt"), Path("models/phone.ckpt")])
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--limit", type=int, default=200, help="every k-th utterance, spread over the manifest")
    parser.add_argument("--levels", type=float, nargs="+", default=[-10, -20, -30, -40, -50, -55, -60, -70])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/levels.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    utterances = read_manifest(args.manifest)
    utterances = utterances[:: max(1, len(utterances) // args.limit)][: args.limit]
    audio = [load_audio(u.audio_filepath, target_rate=16000) for u in utterances]
    conditions = {"as recorded": audio, **{f"{level:g} dBFS": [at_level(a, level) for a in audio] for level in args.levels}}
    noises = {
        f"{color} {level:g} dBFS": [at_level(colored_noise(32000, color, np.random.default_rng(seed)), level) for seed in range(10)]
        for color in ("white", "pink", "brown")
        for level in NOISE_LEVELS
    }
    results: dict[str, Any] = {"manifest": str(args.manifest), "utterances": len(utterances), "models": {}}
    for checkpoint in args.checkpoints:
        gained = Recognizer.from_checkpoint(checkpoint)
        plain = Recognizer(gained.config, gained.model, level_dbfs=None)
        phone = gained.labels.kind == "phone"
        references = [u.phones if phone else gained.labels.normalize(u.text) for u in utterances]
        metric = "per" if phone else "cer"
        rows: dict[str, Any] = {"metric": metric, "speech": {}, "noise_labels_emitted": {}}
        print(f"{checkpoint} ({metric}, greedy): level | without gain | with gain")
        for name, waveforms in conditions.items():
            row = {"without_gain": error_rate(plain, waveforms, references), "with_gain": error_rate(gained, waveforms, references)}
            rows["speech"][name] = row
            print(f"  {name:>12} | {row['without_gain']:7.2%} | {row['with_gain']:7.2%}", flush=True)
        for name, clips in noises.items():
            emitted = {
                label: sum(len(t.segments) for t in recognizer.transcribe_batch([(c, 16000) for c in clips]))
                for label, recognizer in (("without_gain", plain), ("with_gain", gained))
            }
            rows["noise_labels_emitted"][name] = emitted
            print(f"  noise {name:>16}: labels emitted {emitted['without_gain']} | {emitted['with_gain']}")
        results["models"][str(checkpoint)] = rows
    write_report(args.out, results, threads=args.threads)


if __name__ == "__main__":
    main()
