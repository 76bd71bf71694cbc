"""What the warp ensemble buys and costs: one plain model pass vs one pass per warp factor.

Usage:
    python benchmarks/warp_ensemble.py [--checkpoints models/char.ckpt models/phone.ckpt]
        [--split dev=data/corpus/dev.jsonl --split test=data/corpus/test.jsonl ...]
        [--warps 0.88,0.96,1,1.04,1.12] [--beam-size 8] [--threads 1]
        [--out benchmarks/results/warp_ensemble.json]

Every checkpoint is scored on every split with ``training.evaluate.evaluate`` (the path of
``speechlabel evaluate --warps``), greedy and with beam search plus the LM shipped beside the
model (without one when there is none), once plainly and once with the ensemble; the real-time
factors of both are measured side by side on the same machine. The splits default to the shipped models' dev set (seen voices) and
their three held-out test sets (unseen voices): the ensemble is meant for voices unlike the
training voices and must not cost the seen ones. Per split the scores of each synthesizer
(``engine``) are kept too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from audiomodels.lm import own_fusion
from audiomodels.recognizer import Recognizer
from audiomodels.warp import RECOMMENDED_WARPS, parse_warps
from training.evaluate import breakdown, evaluate
from training.manifest import read_manifest

from report import write_report  # beside this script in benchmarks/

DEFAULT_SPLITS = {
    "dev": Path("data/corpus/dev.jsonl"),
    "test": Path("data/corpus/test.jsonl"),
    "test:voices": Path("data/corpus-voices/test.jsonl"),
    "test:extra": Path("data/corpus-extra/test.jsonl"),
}


def parse_split(text: str) -> tuple[str, Path]:
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(f"--split wants NAME=MANIFEST, got {text!r}")
    return name, Path(path)


def add_split_argument(parser: argparse.ArgumentParser) -> None:
    """``--split NAME=MANIFEST``, repeatable: the splits a benchmark scores (:func:`chosen_splits`)."""
    parser.add_argument("--split", type=parse_split, action="append", metavar="NAME=MANIFEST",
                        help="a split to score (repeatable; default: dev and the three held-out test sets)")  # fmt: skip


def chosen_splits(args: argparse.Namespace) -> dict[str, Path]:
    """The ``--split`` splits, or :data:`DEFAULT_SPLITS` without any."""
    return dict(args.split) if args.split else DEFAULT_SPLITS


def score(checkpoint: Path, splits: dict[str, Path], warps: tuple[float, ...], beam_size: int) -> dict[str, Any]:
    """{split: {decoder: {"plain": summary, "ensemble": summary}}} for one checkpoint."""
    base = Recognizer.from_checkpoint(checkpoint, fusion=own_fusion(checkpoint))
    beam_name = f"beam{beam_size} + LM" if base.fusion else f"beam{beam_size}"  # the LM beside the checkpoint, if any
    decoders = {"greedy": 1, beam_name: beam_size}
    results: dict[str, Any] = {}
    for split, manifest in splits.items():
        utterances = read_manifest(manifest)
        results[split] = {}
        for decoder, beam in decoders.items():
            results[split][decoder] = {}
            for variant, factors in (("plain", ()), ("ensemble", warps)):
                recognizer = Recognizer(base.config, base.model, fusion=base.fusion, warps=factors)
                result = evaluate(recognizer, utterances, beam_size=beam)
                summary = result.summary()
                by_engine = breakdown(result, utterances, ["engine"])
                results[split][decoder][variant] = {
                    **summary,
                    "by_engine": {engine: group["rates"] for engine, group in by_engine.items()},
                }
                rates = {name: f"{100 * rate:.2f}%" for name, rate in summary["rates"].items()}
                print(f"{checkpoint.name} {split} {decoder} {variant}: {rates} RTF {result.real_time_factor:.4f}", flush=True)
    return results


def print_table(report: dict[str, Any]) -> None:
    """A markdown table per model: each rate and the RTF, plain -> ensemble."""
    for model, by_split in report["results"].items():
        print(f"\n| {model} | decoder | rate, plain -> {len(report['warps'])} warps | RTF, plain -> ensemble |")
        print("|---|---|---|---|")
        for split, by_decoder in by_split.items():
            for decoder, variants in by_decoder.items():
                plain, ensemble = variants["plain"], variants["ensemble"]
                rates = ", ".join(
                    f"{name.upper()} {100 * plain['rates'][name]:.2f}% -> {100 * ensemble['rates'][name]:.2f}%"
                    for name in plain["rates"]
                )
                speed = f"{plain['real_time_factor']:.4f} -> {ensemble['real_time_factor']:.4f}"
                print(f"| {split} | {decoder} | {rates} | {speed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=[Path("models/char.ckpt")])
    add_split_argument(parser)
    parser.add_argument("--warps", type=parse_warps, default=RECOMMENDED_WARPS, help="the ensemble's factors")
    parser.add_argument("--beam-size", type=int, default=8, help="beam width of the LM rows")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable on a loaded machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/warp_ensemble.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = chosen_splits(args)
    results = {str(path): score(path, splits, args.warps, args.beam_size) for path in args.checkpoints}
    report = {"threads": args.threads, "warps": list(args.warps), "beam_size": args.beam_size, "results": results}
    print_table(report)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
