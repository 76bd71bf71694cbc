"""Phrase hints (``audiomodels.context``): how much they recover of the words the LM does not know,
and what hinted words that are not spoken cost.

Usage:
    python benchmarks/phrase_hints.py [--checkpoint models/char.ckpt] [--manifest data/corpus/test.jsonl]
        [--beam-size 8] [--boosts 1 2 3 4 6] [--distractors 20] [--out benchmarks/results/phrase_hints.json]

The words a user would hint are the ones the model's LM does not know: names, jargon. Here they
are the reference words (3+ letters) outside the LM's word vocabulary. Each utterance is decoded
with beam search + its LM (the reference) and then with hints, per boost:

- ``spoken + distractors``: its own unknown words plus ``--distractors`` unknown words of other
  utterances (a hint list as a caller would send: what may be said, mostly not said);
- ``distractors only``: the distractors alone, none of them spoken (what false hints cost).

Scores: CER and WER over the split, and the recall of the hinted spoken words (how many of them
appear in the hypothesis, counted per utterance as a multiset). The model runs once per
utterance; only decoding is repeated. Tune ``--boosts`` on dev, report on test.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from audiomodels.audio import load_audio
from audiomodels.context import PhraseBias
from audiomodels.lm import own_fusion
from audiomodels.recognizer import Recognizer
from training.manifest import read_manifest
from training.metrics import ErrorCounts, char_errors, word_errors

from report import write_report  # beside this script in benchmarks/


def unknown_words(text: str, known: set[str]) -> list[str]:
    return [w for w in text.split() if len(w) >= 3 and w not in known]


def distractor_lists(spoken: list[list[str]], count: int, seed: int) -> list[list[str]]:
    """Per utterance, ``count`` of the other utterances' unknown words: hints that are not said."""
    pool = sorted({w for words in spoken for w in words})
    rng = random.Random(seed)
    return [rng.sample([w for w in pool if w not in set(own)], count) for own in spoken]


def recall(hinted: list[str], hypothesis: str) -> tuple[int, int]:
    """(hinted words found in the hypothesis, hinted words), as multisets."""
    found = Counter(hypothesis.split())
    wanted = Counter(hinted)
    return sum(min(n, found[w]) for w, n in wanted.items()), sum(wanted.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("models/char.ckpt"))
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--beam-size", type=int, default=8)
    parser.add_argument("--boosts", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0, 6.0])
    parser.add_argument("--distractors", type=int, default=20, help="unspoken hints per utterance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/phrase_hints.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fusion = own_fusion(args.checkpoint)
    if fusion is None or fusion.lm.words is None:
        raise SystemExit(f"{args.checkpoint} has no LM with a word vocabulary beside it")
    recognizer = Recognizer.from_checkpoint(args.checkpoint, fusion=fusion)
    labels = recognizer.labels
    known = {labels.decode(spelling) for spelling in fusion.lm.words.vocabulary}
    utterances = read_manifest(args.manifest)
    references = [labels.normalize(u.text) for u in utterances]
    spoken = [unknown_words(r, known) for r in references]
    distractors = distractor_lists(spoken, args.distractors, args.seed)

    emissions = recognizer.decodable_batch([(load_audio(u.audio_filepath), 16000) for u in utterances], 120.0)

    def decode(hints: list[list[str]] | None, boost: float) -> dict[str, float]:
        chars, words, hits = ErrorCounts(), ErrorCounts(), [0, 0]
        for i, output in enumerate(emissions):
            bias = PhraseBias.from_phrases(hints[i], labels, boost) if hints and hints[i] else None
            text = recognizer.decode(*output, beam_size=args.beam_size, bias=bias).text
            chars += char_errors(references[i], text)
            words += word_errors(references[i], text)
            found, total = recall(spoken[i], text)
            hits[0] += found
            hits[1] += total
        return {"cer": chars.rate, "wer": words.rate, "unknown_word_recall": hits[0] / max(hits[1], 1)}

    print(f"{len(utterances)} utterances, {sum(map(len, spoken))} spoken words outside the LM "
          f"({len({w for words in spoken for w in words})} distinct), {args.distractors} distractors each; beam {args.beam_size} + LM")  # fmt: skip
    results: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "manifest": str(args.manifest),
        "utterances": len(utterances),
        "spoken_unknown_words": sum(map(len, spoken)),
        "distractors": args.distractors,
        "beam_size": args.beam_size,
        "no_hints": decode(None, 1.0),
        "boosts": {},
    }
    row = results["no_hints"]
    print(f"  no hints: CER {row['cer']:.2%} WER {row['wer']:.2%} recall {row['unknown_word_recall']:.1%}", flush=True)
    for boost in args.boosts:
        with_spoken = decode([own + extra for own, extra in zip(spoken, distractors)], boost)
        only_distractors = decode(distractors, boost)
        results["boosts"][f"{boost:g}"] = {"spoken_and_distractors": with_spoken, "distractors_only": only_distractors}
        print(f"  boost {boost:g}: spoken + distractors CER {with_spoken['cer']:.2%} WER {with_spoken['wer']:.2%} "
              f"recall {with_spoken['unknown_word_recall']:.1%} | distractors only CER {only_distractors['cer']:.2%} "
              f"WER {only_distractors['wer']:.2%}", flush=True)  # fmt: skip
    write_report(args.out, results, threads=args.threads)


if __name__ == "__main__":
    main()
