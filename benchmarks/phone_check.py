"""What the phone check buys and costs: the char model's beam as it ranks itself, re-ranked by the
phone model's likelihood of each hypothesis' phones, and with the phone model guiding the search too
(the guided and the unguided beams ranked together).

Usage:
    python benchmarks/phone_check.py [--checkpoint models/char.ckpt] [--phone-model models/phone.ckpt]
        [--split dev=data/corpus/dev.jsonl --split test=data/corpus/test.jsonl ...]
        [--beam-sizes 8 32] [--weight 0.5] [--search-weight 0.3] [--threads 1]
        [--out benchmarks/results/phone_check.json]

Every split is scored with ``training.evaluate.evaluate`` (the path of ``speechlabel evaluate
--phone-check``) at each beam size with the LM shipped beside the char model three ways: plainly
("plain"), re-ranked only (``--phone-check-search-weight 0``, "reranked") and guided, with both
beams ranked ("checked", the default check); the real-time factors are measured side by side on the same
machine (the checked ones include the phone model's pass and espeak-ng). The splits default to the
shipped models' dev set (seen voices) and their three held-out test sets (unseen voices). Per
split the scores of each synthesizer (``engine``) are kept too.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import torch

from audiomodels.lm import own_fusion
from audiomodels.phone_check import DEFAULT_PHONE_MODEL, DEFAULT_SEARCH_WEIGHT, DEFAULT_WEIGHT, PhoneCheck
from audiomodels.recognizer import Recognizer
from training.evaluate import breakdown, evaluate
from training.manifest import read_manifest

from report import write_report  # beside this script in benchmarks/
from warp_ensemble import add_split_argument, chosen_splits


def score(
    checkpoint: Path, check: PhoneCheck, splits: dict[str, Path], beam_sizes: list[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{split: {"beamN + LM": {"plain": summary, "reranked": summary, "checked": summary}}}."""
    plain = Recognizer.from_checkpoint(checkpoint, fusion=own_fusion(checkpoint))
    reranking = dataclasses.replace(check, search_weight=0.0)
    variants = {
        "plain": plain,
        "reranked": Recognizer(plain.config, plain.model, fusion=plain.fusion, phone_check=reranking),
        "checked": Recognizer(plain.config, plain.model, fusion=plain.fusion, phone_check=check),
    }
    return score_variants(variants, splits, beam_sizes)


def score_variants(
    variants: dict[str, Recognizer], splits: dict[str, Path], beam_sizes: list[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{split: {"beamN + LM": {variant: summary with its rates by engine}}}: each recognizer (the same
    model, decoded differently) scored by ``training.evaluate.evaluate`` one after another."""
    plain = next(iter(variants.values()))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for split, manifest in splits.items():
        utterances = read_manifest(manifest)
        results[split] = {}
        for beam in beam_sizes:
            decoder = f"beam{beam} + LM" if plain.fusion else f"beam{beam}"
            results[split][decoder] = {}
            for variant, recognizer in variants.items():
                result = evaluate(recognizer, utterances, beam_size=beam)
                by_engine = breakdown(result, utterances, ["engine"])
                results[split][decoder][variant] = {
                    **result.summary(),
                    "by_engine": {engine: group["rates"] for engine, group in by_engine.items()},
                }
                rates = {name: f"{100 * rate:.2f}%" for name, rate in result.summary()["rates"].items()}
                print(f"{split} {decoder} {variant}: {rates} RTF {result.real_time_factor:.4f}", flush=True)
    return results


def print_table(results: dict[str, dict[str, dict[str, Any]]], metrics: tuple[str, ...] = ("cer", "wer")) -> None:
    """A markdown table: each metric and the real-time factor of every variant (plain / re-ranked /
    guided and re-ranked, for the phone check)."""
    names = list(next(iter(next(iter(results.values())).values())))
    sides = " / ".join(names)
    print("\n| split | decoder | " + " | ".join(f"{m.upper()}: {sides}" for m in (*metrics, "rtf")) + " |")
    print("|---|---|" + "---|" * (len(metrics) + 1))
    for split, by_decoder in results.items():
        for decoder, variants in by_decoder.items():
            rows = [variants[name] for name in names]
            rates = [" / ".join(f"{100 * row['rates'][n]:.2f}%" for row in rows) for n in metrics]
            speed = " / ".join(f"{row['real_time_factor']:.4f}" for row in rows)
            print(f"| {split} | {decoder} | {' | '.join(rates)} | {speed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("models/char.ckpt"))
    parser.add_argument("--phone-model", type=Path, default=DEFAULT_PHONE_MODEL)
    add_split_argument(parser)
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--weight", type=float, default=DEFAULT_WEIGHT, help="the phone model's weight in re-ranking")
    parser.add_argument("--search-weight", type=float, default=DEFAULT_SEARCH_WEIGHT,
                        help="the phone model's weight in guiding the search")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable on a loaded machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/phone_check.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = chosen_splits(args)
    check = PhoneCheck(Recognizer.from_checkpoint(args.phone_model), args.weight, args.search_weight)
    results = score(args.checkpoint, check, splits, args.beam_sizes)
    print_table(results)
    report = {
        "threads": args.threads, "weight": args.weight, "search_weight": args.search_weight,
        "word_bonus": check.word_bonus, "phone_model": str(args.phone_model), "results": results,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
