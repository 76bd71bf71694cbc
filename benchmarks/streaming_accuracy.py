"""What streaming costs in accuracy: full context vs latency-controlled chunked mode.

Usage:
    python benchmarks/streaming_accuracy.py [--checkpoints models/char.ckpt ...]
        [--dev data/corpus/dev.jsonl] [--test data/corpus/test.jsonl]
        [--modes full 10,5 20,10 40,20] [--out benchmarks/results/streaming_accuracy.json]

Every checkpoint is scored on every split in every mode with ``training.evaluate.evaluate``
(the path of ``speechlabel evaluate --chunked C,R``), greedy decoding. A chunked mode C,R is the
computation a live stream gets from the server: C-frame chunks, R frames of look-ahead, so its
algorithmic latency is (C + R) x the frame shift (30 ms for the shipped models). The primary
rate is CER for char models and PER for phone models.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from audiomodels.config import Chunking
from audiomodels.recognizer import Recognizer
from training.evaluate import evaluate, parse_chunking
from training.manifest import read_manifest

from report import write_report  # beside this script in benchmarks/


def mode_name(chunking: Chunking | None) -> str:
    return "full" if chunking is None else f"{chunking.chunk},{chunking.right_context}"


def parse_mode(text: str) -> Chunking | None:
    return None if text == "full" else parse_chunking(text)


def score(checkpoint: Path, splits: dict[str, Path], modes: list[Chunking | None]) -> dict[str, Any]:
    """{split: {mode: rates + latency}} for one checkpoint."""
    base = Recognizer.from_checkpoint(checkpoint)
    shift = base.config.features.frame_shift_s
    results: dict[str, Any] = {}
    for split, manifest in splits.items():
        utterances = read_manifest(manifest)
        results[split] = {}
        for chunking in modes:
            recognizer = Recognizer(base.config, base.model, chunking=chunking)
            summary = evaluate(recognizer, utterances).summary()
            latency_ms = None if chunking is None else round(1000 * chunking.latency_frames * shift)
            results[split][mode_name(chunking)] = {"latency_ms": latency_ms, **summary}
            print(f"{checkpoint.name} {split} {mode_name(chunking)}: {summary['rates']}", flush=True)
    return results


def print_table(report: dict[str, Any]) -> None:
    """A markdown table per model (char models have CER/WER, phone models PER)."""
    for model, by_split in report["results"].items():
        columns = [(split, rate) for split in by_split for rate in by_split[split][report["modes"][0]]["rates"]]
        print(f"\n| {model} | latency | " + " | ".join(f"{split} {rate}" for split, rate in columns) + " |")
        print("|---|---|" + "---|" * len(columns))
        for mode in report["modes"]:
            latency_ms = by_split[columns[0][0]][mode]["latency_ms"]
            latency = "whole utterance" if latency_ms is None else f"{latency_ms} ms"
            cells = [f"{100 * by_split[split][mode]['rates'][rate]:.1f}%" for split, rate in columns]
            print(f"| {mode} | {latency} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=[Path("models/char.ckpt")])
    parser.add_argument("--dev", type=Path, default=Path("data/corpus/dev.jsonl"))
    parser.add_argument("--test", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--modes", type=parse_mode, nargs="+", default=[None, Chunking(10, 5), Chunking(20, 10), Chunking(40, 20)],
                        help="'full' or C,R (model frames)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable on a loaded machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/streaming_accuracy.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = {"dev": args.dev, "test": args.test}
    results = {str(path): score(path, splits, args.modes) for path in args.checkpoints}
    report = {
        "threads": args.threads,
        "modes": [mode_name(m) for m in args.modes],
        "results": results,
    }
    print_table(report)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
