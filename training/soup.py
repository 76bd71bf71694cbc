"""``speechlabel soup``: a model and its next fine-tuning round mixed, the round's share picked on dev.

A round can trade one held-out set for another (gain test's voices, lose unseen ones); the mean of
its weights and those of the model it started from then often beats both (README, Checkpoint
averaging: both shipped models are such means). Which share of the round is best is an empirical
question, so this scores each candidate mix on the dev manifests with the product's own decoder
(:func:`training.evaluate.evaluate`, beam 8 + the start's LM by default: how the shipped models are
picked), writes the best one that loses no dev manifest to the start by more than a tolerance
(:data:`DEFAULT_TOLERANCE`), and records every
candidate's scores in its metadata so the choice can be checked later (``speechlabel export``
prints it on the model card).

Command line::

    speechlabel soup START ROUND --dev DEV.jsonl [DEV2.jsonl ...] --out SOUP.ckpt [--shares 0,1/3,1/2,2/3,1]
                     [--beam-size 8] [--lm LM | none] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from audiomodels.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from audiomodels.lm import Fusion, LMError, add_fusion_arguments, fusion_from_args
from audiomodels.recognizer import Recognizer
from training.average import load_lineage, shares_of, weighted_mean
from training.evaluate import decoder_name, evaluate, primary_metric
from training.manifest import ManifestError, Utterance, read_manifest
from training.metrics import ErrorCounts

DEFAULT_SHARES = "0,1/3,1/2,2/3,1"  # the start alone, three mixes, the round alone
# A dev manifest's loss smaller than this (a rate, 0.05 percentage points: 16 of corpus dev's 31,908
# characters) is noise, not a trade: set before the seed-26 round, after the seed-25 round's third was
# refused over 0.019 points (6 characters).
DEFAULT_TOLERANCE = 0.0005


@dataclass(frozen=True)
class Candidate:
    """One mix: the round's share of the weights, its dev score (the primary rate, all dev manifests
    pooled) and each dev manifest's own, in the order given: a pooled gain can hide a loss on one."""

    share: float
    rate: float
    by_dev: tuple[float, ...]


@dataclass(frozen=True)
class Soup:
    """The best mix's checkpoint and every candidate, in the order they were given."""

    checkpoint: Checkpoint
    metric: str
    candidates: list[Candidate]

    tolerance: float = DEFAULT_TOLERANCE

    @property
    def picked(self) -> Candidate:
        return best_candidate(self.candidates, self.tolerance)


def best_candidate(candidates: Sequence[Candidate], tolerance: float = DEFAULT_TOLERANCE) -> Candidate:
    """The lowest pooled dev rate among the mixes that lose no dev manifest to the start alone
    (share 0, when it was scored) by more than ``tolerance`` (a rate); the first given among equals.
    A round that adds a new kind of voice gains so much on that voice's dev that a pooled pick would
    hide a loss on the others."""
    start = next((candidate for candidate in candidates if candidate.share == 0.0), None)
    safe = [
        candidate
        for candidate in candidates
        if start is None
        or all(rate <= before + tolerance for rate, before in zip(candidate.by_dev, start.by_dev, strict=True))
    ]
    return min(safe, key=lambda candidate: candidate.rate)


def make_soup(
    start: Path,
    round_: Path,
    dev: Sequence[Sequence[Utterance]],
    shares: Sequence[float],
    *,
    beam_size: int = 8,
    fusion: Fusion | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: bool = False,
) -> Soup:
    """Score ``(1 - share) x start + share x round_`` on the dev manifests ``dev`` (their counts
    pooled, and each alone) for every share; keep the best (:func:`best_candidate` with ``tolerance``).

    Raises :class:`CheckpointError` when the two are not one lineage (``load_lineage``) and
    ``ValueError`` for a share outside [0, 1], a negative tolerance or a dev set of which nothing could be scored."""
    if not shares or any(not 0.0 <= share <= 1.0 for share in shares):
        raise ValueError(f"shares are the round's part of the weights, each within [0, 1], got {list(shares)}")
    if tolerance < 0:
        raise ValueError(f"the tolerance is a loss a share may have on a dev manifest, not below 0, got {tolerance:g}")
    paths = [start, round_]
    checkpoints = load_lineage(paths)  # loaded once, mixed once per share

    def mixed(share: float) -> Checkpoint:
        return weighted_mean(paths, checkpoints, shares_of([1.0 - share, share], 2))

    candidates: list[Candidate] = []
    metric = ""
    for share in shares:
        mix = mixed(share)
        recognizer = Recognizer(mix.config, mix.build_model(), fusion=fusion)
        counts = []
        for utterances in dev:
            result = evaluate(recognizer, utterances, beam_size=beam_size, progress=progress)
            if not result.num_scored:
                raise ValueError(f"no utterance of a dev manifest could be scored ({result.num_utterances} given)")
            metric = primary_metric(result.kind)
            counts.append(result.metrics[metric])
        pooled = sum(counts, ErrorCounts())
        candidates.append(Candidate(share, pooled.rate, tuple(count.rate for count in counts)))
    return Soup(mixed(best_candidate(candidates, tolerance).share), metric, candidates, tolerance)


def soup_record(soup: Soup, dev: Sequence[Path], beam_size: int, fusion: Fusion | None) -> dict[str, Any]:
    """What the written checkpoint's metadata says of the choice (under ``soup``)."""
    return {
        "dev": " + ".join(map(str, dev)),
        "decoder": decoder_name(beam_size, fusion),
        "metric": soup.metric,
        "picked_share": soup.picked.share,
        "tolerance": soup.tolerance,
        "candidates": [
            {"share": c.share, "rate": c.rate, "by_dev": dict(zip(map(str, dev), c.by_dev, strict=True))}
            for c in soup.candidates
        ],
    }


def parse_shares(text: str) -> list[float]:
    """``0,1/3,0.5,2/3,1`` -> floats; fractions keep thirds exact enough to read back."""
    try:
        return [float(Fraction(part.strip())) for part in text.split(",")]
    except (ValueError, ZeroDivisionError) as error:
        raise argparse.ArgumentTypeError(f"expected shares like 0,1/3,1/2 separated by commas, got {text!r}") from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``speechlabel soup``."""
    parser.add_argument("start", type=Path, help="the model a round started from (init_from), e.g. models/phone.ckpt")
    parser.add_argument("round", type=Path, help="a checkpoint of that round, e.g. RUN_DIR/checkpoints/step-0001400.ckpt")
    parser.add_argument(
        "--dev", type=Path, nargs="+", required=True, help="manifest(s) the share is picked on, as one (not test splits)"
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the best mix")
    parser.add_argument(
        "--shares",
        type=parse_shares,
        default=parse_shares(DEFAULT_SHARES),
        help=f"the round's shares to try, 0 = the start alone, 1 = the round alone (default {DEFAULT_SHARES})",
    )
    parser.add_argument(
        "--beam-size", type=int, default=8, help="decoder the mixes are scored with (default 8, with the LM; 1 = greedy)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE * 100,
        help="percentage points a share may lose on one dev manifest to the start alone and still be"
        f" picked (default {DEFAULT_TOLERANCE * 100:g}: smaller losses are noise; 0 = none)",
    )
    add_fusion_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the candidates and the pick as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        if repeated := sorted({str(path) for path in args.dev if args.dev.count(path) > 1}):
            raise ValueError(f"a dev manifest given twice would count twice pooled: {', '.join(repeated)}")
        fusion = fusion_from_args(args, args.start)
        dev = [read_manifest(path) for path in args.dev]
        soup = make_soup(
            args.start,
            args.round,
            dev,
            args.shares,
            beam_size=args.beam_size,
            fusion=fusion,
            tolerance=args.tolerance / 100,
            progress=sys.stderr.isatty(),
        )
        record = soup_record(soup, args.dev, args.beam_size, fusion)
        mixed = soup.checkpoint
        save_checkpoint(args.out, mixed.config, mixed.build_model(), {**mixed.metadata, "soup": record})
    except (CheckpointError, ManifestError, LMError, OSError, ValueError) as error:
        raise SystemExit(f"speechlabel soup: {error}") from error
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    several = len(dev) > 1  # then a column per manifest beside the pooled rate
    columns = "".join(f" | {path} ({len(part)})" for path, part in zip(args.dev, dev, strict=True)) if several else ""
    print(f"round's share | dev {soup.metric.upper()} ({record['decoder']}, {sum(map(len, dev))} utterances){columns}")
    picked = soup.picked  # derived from the candidates: found once, not per printed row
    for candidate in soup.candidates:
        mark = "  <- written to " + str(args.out) if candidate is picked else ""
        parts = "".join(f" | {rate:.3%}" for rate in candidate.by_dev) if several else ""
        print(f"{candidate.share:13.3g} | {candidate.rate:.3%}{parts}{mark}")
    if picked.share == 0.0:
        print(f"the round adds nothing on this dev set: {_why_the_start(picked, soup.candidates, soup.tolerance)}")
    return 0


def _why_the_start(start: Candidate, candidates: Sequence[Candidate], tolerance: float) -> str:
    """Why share 0 (``start``, the pick) won: it scored best pooled, or every share that scored better
    loses a dev manifest by more than ``tolerance``."""
    if all(start.rate <= candidate.rate for candidate in candidates):
        return "the start alone scored best"
    return (
        "every share that scored better pooled loses a dev manifest to the start alone"
        f" by more than {tolerance * 100:g} points"
    )
