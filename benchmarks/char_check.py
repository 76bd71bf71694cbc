"""What the char check buys and costs: the phone model's beam as it ranks itself, and ranked with the
char model's reading (its transcript with the LM, phone-checked, phonemized) by the exact score.

Usage:
    python benchmarks/char_check.py [--checkpoint models/phone.ckpt] [--char-model models/char.ckpt]
        [--split dev=data/corpus/dev.jsonl --split test=data/corpus/test.jsonl ...]
        [--beam-sizes 8 32] [--bonus 2] [--weight 0.5] [--threads 1]
        [--out benchmarks/results/char_check.json]

Every split is scored with ``training.evaluate.evaluate`` (the path of ``speechlabel evaluate
--char-check``) at each beam size with the LM shipped beside the phone model, plainly ("plain") and
checked ("checked"); the real-time factors are measured one after the other on the same machine
(the checked ones include the char model's pass, its phone-checked search and espeak-ng). The
splits default to the shipped models' dev set and their three held-out test sets. Per split the
scores of each synthesizer (``engine``) are kept too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from audiomodels.char_check import DEFAULT_AGREEMENT_BONUS, DEFAULT_CHAR_MODEL, DEFAULT_DISTANCE_WEIGHT, CharCheck
from audiomodels.lm import own_fusion
from audiomodels.recognizer import Recognizer

from phone_check import print_table, score_variants  # beside this script in benchmarks/
from report import write_report
from warp_ensemble import add_split_argument, chosen_splits


def score(
    checkpoint: Path, check: CharCheck, splits: dict[str, Path], beam_sizes: list[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{split: {"beamN + LM": {"plain": summary, "checked": summary}}}."""
    plain = Recognizer.from_checkpoint(checkpoint, fusion=own_fusion(checkpoint))
    checked = Recognizer(plain.config, plain.model, fusion=plain.fusion, char_check=check)
    return score_variants({"plain": plain, "checked": checked}, splits, beam_sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("models/phone.ckpt"))
    parser.add_argument("--char-model", type=Path, default=DEFAULT_CHAR_MODEL)
    add_split_argument(parser)
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--bonus", type=float, default=DEFAULT_AGREEMENT_BONUS, help="the reading's own bonus")
    parser.add_argument("--weight", type=float, default=DEFAULT_DISTANCE_WEIGHT, help="cost per phone of distance")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable on a loaded machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/char_check.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    char = Recognizer.from_checkpoint(args.char_model, fusion=own_fusion(args.char_model))
    check = CharCheck(char, args.bonus, args.weight)
    results = score(args.checkpoint, check, chosen_splits(args), args.beam_sizes)
    print_table(results, ("per",))
    report = {
        "threads": args.threads, "bonus": args.bonus, "weight": args.weight, "char_model": str(args.char_model),
        "results": results,
    }  # fmt: skip
    write_report(args.out, report)


if __name__ == "__main__":
    main()
