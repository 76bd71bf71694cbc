"""``speechlabel compare BEFORE AFTER``: two exported checkpoints' scores side by side.

Whether a training round is worth shipping is a judgement over every split, decoder, held-out
speaker and recording condition, and a mean can hide a voice or a condition that got worse.
``speechlabel export`` stores all of those scores in the checkpoint, so this reads them back (no
audio is decoded) and prints before -> after with the change, worst change first, and how many
rows gained and lost; a split only one side scored is named, not dropped unseen.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audiomodels.checkpoint import CheckpointError, load_checkpoint
from training.export import GROUPINGS, scored_splits

# Changes smaller than this (a rate difference, 0.005 points) count as level, not as gained or lost.
LEVEL = 5e-5


@dataclass(frozen=True)
class Change:
    """One rate scored for both checkpoints: a whole split (``grouping`` and ``group`` empty) or one
    group of it, e.g. grouping "speaker", group "cmu-slt"."""

    split: str
    grouping: str
    group: str
    decoder: str
    metric: str
    before: float
    after: float

    @property
    def delta(self) -> float:
        return self.after - self.before


def exported_evaluation(path: Path) -> dict[str, Any]:
    """The scores ``speechlabel export`` stored in a checkpoint; raises CheckpointError without them."""
    evaluation = load_checkpoint(path).metadata.get("evaluation")
    if not isinstance(evaluation, dict):
        raise CheckpointError(f"{path} carries no exported scores: ship it with `speechlabel export` first")
    return evaluation


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Every rate both evaluations have: split x decoder x metric, then each held-out speaker and
    condition x decoder in the first shared metric (CER or PER). Rows only one side scored are left
    out (e.g. conditions, which exports before them did not score)."""
    metrics = [name for name in after["metric_names"] if name in before["metric_names"]]
    if not metrics:
        raise CheckpointError(
            f"no metric in common ({'/'.join(before['metric_names'])} vs {'/'.join(after['metric_names'])}): "
            "compare models of one label set"
        )
    changes = []
    for split in (key for key in scored_splits(after) if key in before):
        for decoder in (d for d in after[split] if d in before[split]):
            old, new = before[split][decoder]["rates"], after[split][decoder]["rates"]
            changes += [Change(split, "", "", decoder, metric, old[metric], new[metric]) for metric in metrics]
    for key, grouping in GROUPINGS.items():
        for split, groups in after.get(key, {}).items():
            old_groups = before.get(key, {}).get(split, {})
            for group in (g for g in groups if g in old_groups):
                old, new = old_groups[group]["rates"], groups[group]["rates"]
                changes += [
                    Change(split, grouping, group, decoder, metrics[0], old[decoder][metrics[0]], new[decoder][metrics[0]])
                    for decoder in new
                    if decoder in old
                ]
    return changes


def one_sided_splits(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    """Splits only one evaluation scored (e.g. a held-out test added to the new export): named, so
    that what was not compared is seen."""
    return {
        "before": [split for split in scored_splits(before) if split not in after],
        "after": [split for split in scored_splits(after) if split not in before],
    }


def tally(changes: list[Change]) -> dict[str, int]:
    """How many rows gained (lower error), lost and stayed level."""
    return {
        "gained": sum(c.delta <= -LEVEL for c in changes),
        "lost": sum(c.delta >= LEVEL for c in changes),
        "level": sum(abs(c.delta) < LEVEL for c in changes),
    }


def _table(title: str, column: str, changes: list[Change]) -> list[str]:
    counts = tally(changes)
    lines = [
        f"{title}: {counts['gained']} gained, {counts['lost']} lost, {counts['level']} level (of {len(changes)})",
        "",
        f"| split | {column} | decoder | metric | before | after | change |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for c in sorted(changes, key=lambda c: -c.delta):  # the largest loss first
        lines.append(
            f"| {c.split} | {c.group or 'all'} | {c.decoder} | {c.metric.upper()} | {c.before:.2%} | "
            f"{c.after:.2%} | {100 * c.delta:+.2f} |"
        )
    return lines


def report(changes: list[Change], one_sided: dict[str, list[str]]) -> str:
    """Markdown: whole splits, then each grouping (held-out speakers, conditions), worst change first;
    last, the splits only one side scored."""
    lines = _table("Splits", "group", [c for c in changes if not c.grouping])
    for grouping in GROUPINGS.values():
        if rows := [c for c in changes if c.grouping == grouping]:
            lines += ["", *_table(f"Held-out test {grouping}s", grouping, rows)]
    for side, splits in one_sided.items():
        if splits:
            lines += ["", f"Scored only {side} (not compared): {', '.join(splits)}"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("before", type=Path, help="exported checkpoint, e.g. the shipped models/char.ckpt")
    parser.add_argument("after", type=Path, help="exported checkpoint of the same label set, e.g. a new round's")
    parser.add_argument("--json", action="store_true", help="print the rows and counts as JSON instead")


def run(args: argparse.Namespace) -> int:
    try:
        before, after = exported_evaluation(args.before), exported_evaluation(args.after)
        changes = compare(before, after)
    except CheckpointError as error:
        raise SystemExit(f"speechlabel compare: {error}") from error
    one_sided = one_sided_splits(before, after)
    if args.json:
        rows = [{**asdict(c), "delta": c.delta} for c in changes]
        json.dump({"counts": tally(changes), "changes": rows, "one_sided": one_sided}, sys.stdout, indent=1)
        print()
    else:
        print(report(changes, one_sided))
    return 0
