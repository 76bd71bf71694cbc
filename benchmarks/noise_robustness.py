"""How recognition holds up in background noise: clean held-out speech vs the same speech in noise.

Usage:
    python benchmarks/noise_robustness.py [--checkpoints models/char.ckpt models/phone.ckpt]
        [--manifest data/corpus/test.jsonl] [--snrs 30 20 10 5] [--colors white pink brown]
        [--out benchmarks/results/noise_robustness.json]

Only the manifest's un-augmented utterances are used (the corpus bakes noise, reverb or a phone
line into some of the others), so the clean row is a real baseline. Each condition adds the
corpus's own noise (:func:`training.augment.add_noise`: white, pink or brown, SNR over the
utterance's mean power) and writes 16-bit WAV files, as a client would send them; every checkpoint
then scores the same files with ``training.evaluate.evaluate`` (greedy), so the models are compared
on identical audio. The primary rate is CER for char models and PER for phone models.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from audiomodels.audio import load_audio
from audiomodels.files import write_json
from audiomodels.recognizer import Recognizer
from training.augment import NOISE_COLORS, add_noise
from training.evaluate import evaluate
from training.manifest import Utterance, read_manifest

SAMPLE_RATE = 16000


def noisy_copies(
    utterances: Sequence[Utterance], snr_db: float, color: str, directory: Path, seed: int
) -> list[Utterance]:
    """The utterances with noise added, as WAV files in ``directory`` (one noise draw per utterance)."""
    copies = []
    for index, utterance in enumerate(utterances):
        rng = np.random.default_rng([seed, index])
        audio = add_noise(load_audio(utterance.audio_filepath, target_rate=SAMPLE_RATE), snr_db, color, rng)
        path = directory / f"{index:05d}.wav"
        sf.write(path, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
        copies.append(replace(utterance, audio_filepath=path))
    return copies


def run(
    checkpoints: Sequence[Path], utterances: Sequence[Utterance], conditions: Sequence[tuple[str, float | None]]
) -> dict[str, dict[str, Any]]:
    """{condition: {checkpoint: evaluation summary}}; condition "clean" or "COLOR SNR dB"."""
    recognizers = {str(path): Recognizer.from_checkpoint(path) for path in checkpoints}
    results: dict[str, dict[str, Any]] = {}
    for number, (color, snr_db) in enumerate(conditions):
        name = "clean" if snr_db is None else f"{color} {snr_db:g} dB"
        with tempfile.TemporaryDirectory(prefix="noise-bench-") as directory:
            scored = utterances if snr_db is None else noisy_copies(utterances, snr_db, color, Path(directory), number)
            results[name] = {path: evaluate(recognizer, scored).summary() for path, recognizer in recognizers.items()}
        print(name, {path: summary["rates"] for path, summary in results[name].items()}, flush=True)
    return results


def primary_rate(summary: dict[str, Any]) -> float:
    return summary["rates"]["per" if "per" in summary["rates"] else "cer"]


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """Markdown: a row per condition, a column per checkpoint (CER or PER, change from clean)."""
    checkpoints = list(results["clean"])
    print("\n| condition | " + " | ".join(checkpoints) + " |")
    print("|---|" + "---:|" * len(checkpoints))
    for name, by_checkpoint in results.items():
        cells = []
        for path in checkpoints:
            rate, clean = primary_rate(by_checkpoint[path]), primary_rate(results["clean"][path])
            cells.append(f"{100 * rate:.1f}%" + ("" if name == "clean" else f" ({100 * (rate - clean):+.1f})"))
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=[Path("models/char.ckpt"), Path("models/phone.ckpt")])
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--snrs", type=float, nargs="+", default=[30.0, 20.0, 10.0, 5.0])
    parser.add_argument("--colors", nargs="+", choices=sorted(NOISE_COLORS), default=["white", "pink", "brown"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable on a loaded machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/noise_robustness.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clean = [u for u in read_manifest(args.manifest) if not u.extra.get("augment")]
    conditions = [("", None)] + [(color, snr) for color in args.colors for snr in args.snrs]
    results = run(args.checkpoints, clean, conditions)
    report = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "manifest": str(args.manifest),
        "utterances": len(clean),
        "audio_seconds": results["clean"][str(args.checkpoints[0])]["audio_seconds"],
        "results": results,
    }
    print_table(results)
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
