"""What test-time adaptation buys and costs: the plain model vs the model tuned to each utterance.

Usage:
    python benchmarks/adaptation.py [--checkpoint models/char.ckpt]
        [--split test=data/corpus/test.jsonl ...] [--limit N] [--steps 10] [--beam-size 8]
        [--threads 2] [--out benchmarks/results/adaptation.json]

Each split is scored with ``training.evaluate.evaluate_decoders`` (the path of ``speechlabel
evaluate --adapt``), greedy and with beam search plus the LM shipped beside the model, once plainly
and once adapted (:mod:`audiomodels.adaptation`); the model's output is computed once per variant
and decoded both ways, and the real-time factors of both variants are measured side by side. The
splits default to the shipped models' dev set (seen voices) and their three held-out test sets
(unseen voices), with per-synthesizer (``engine``) scores kept too. ``--limit`` scores the first N
utterances of each split (adaptation costs seconds per utterance on a CPU).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from audiomodels.adaptation import Adaptation
from audiomodels.lm import own_fusion
from audiomodels.recognizer import Recognizer
from training.evaluate import breakdown, evaluate_decoders
from training.manifest import read_manifest

from report import write_report  # beside this script in benchmarks/
from warp_ensemble import DEFAULT_SPLITS, parse_split


def score(
    checkpoint: Path, splits: dict[str, Path], adaptation: Adaptation, beam_size: int, limit: int | None
) -> dict[str, Any]:
    """{split: {decoder: {"plain": summary, "adapted": summary}}} for one checkpoint."""
    base = Recognizer.from_checkpoint(checkpoint, fusion=own_fusion(checkpoint))
    decoders = {"greedy": 1, f"beam{beam_size} + LM" if base.fusion else f"beam{beam_size}": beam_size}
    results: dict[str, Any] = {}
    for split, manifest in splits.items():
        utterances = read_manifest(manifest)[:limit]
        results[split] = {decoder: {} for decoder in decoders}
        for variant, adapting in (("plain", None), ("adapted", adaptation)):
            recognizer = Recognizer(base.config, base.model, fusion=base.fusion, adaptation=adapting)
            by_beam = evaluate_decoders(recognizer, utterances, list(decoders.values()))
            for decoder, beam in decoders.items():
                result = by_beam[beam]
                by_engine = breakdown(result, utterances, ["engine"])
                results[split][decoder][variant] = {
                    **result.summary(),
                    "by_engine": {engine: group["rates"] for engine, group in by_engine.items()},
                }
                rates = {name: f"{100 * rate:.2f}%" for name, rate in result.summary()["rates"].items()}
                print(f"{split} {decoder} {variant}: {rates} RTF {result.real_time_factor:.4f}", flush=True)
    return results


def print_table(report: dict[str, Any]) -> None:
    """A markdown table: each rate and the RTF, plain -> adapted."""
    print(f"\n| split | decoder | rate, plain -> adapted ({report['adaptation']['steps']} steps) | RTF, plain -> adapted |")
    print("|---|---|---|---|")
    for split, by_decoder in report["results"].items():
        for decoder, variants in by_decoder.items():
            plain, adapted = variants["plain"], variants["adapted"]
            rates = ", ".join(
                f"{name.upper()} {100 * plain['rates'][name]:.2f}% -> {100 * adapted['rates'][name]:.2f}%"
                for name in plain["rates"]
            )
            speed = f"{plain['real_time_factor']:.4f} -> {adapted['real_time_factor']:.4f}"
            print(f"| {split} | {decoder} | {rates} | {speed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("models/char.ckpt"))
    parser.add_argument("--split", type=parse_split, action="append", metavar="NAME=MANIFEST",
                        help="a split to score (repeatable; default: dev and the three held-out test sets)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="score the first N utterances of each split")
    parser.add_argument("--steps", type=int, default=Adaptation().steps, help="adaptation steps per utterance")
    parser.add_argument("--beam-size", type=int, default=8, help="beam width of the LM rows")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/adaptation.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    adaptation = Adaptation(steps=args.steps)
    splits = dict(args.split) if args.split else DEFAULT_SPLITS
    report = {
        "checkpoint": str(args.checkpoint),
        "threads": args.threads,
        "limit": args.limit,
        "beam_size": args.beam_size,
        "adaptation": vars(adaptation),
        "results": score(args.checkpoint, splits, adaptation, args.beam_size, args.limit),
    }
    print_table(report)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
