"""The comparison rules of ``speechlabel compare`` on exported-score dicts (the real exports: test_training)."""

from __future__ import annotations

import pytest

from audiomodels.checkpoint import CheckpointError
from training.compare import compare, one_sided_splits, report, tally


def groups(rates: dict[str, float], metrics: list[str], decoders: tuple[str, ...]) -> dict:
    return {"test": {g: {"utterances": 3, "rates": {d: dict.fromkeys(metrics, r) for d in decoders}} for g, r in rates.items()}}


def evaluation(
    metrics: list[str],
    rate: float,
    speakers: dict[str, float],
    decoders: tuple[str, ...] = ("greedy",),
    conditions: dict[str, float] | None = None,
) -> dict:
    """The shape ``speechlabel export`` stores: split -> decoder -> summary, speakers, conditions
    (exports before conditions existed have none), metric names."""
    return {
        "test": {d: {"rates": dict.fromkeys(metrics, rate)} for d in decoders},
        "speakers": groups(speakers, metrics, decoders),
        **({"conditions": groups(conditions, metrics, decoders)} if conditions is not None else {}),
        "metric_names": metrics,
        "data": {"test": {"utterances": 9}},
    }


def test_rows_scored_on_one_side_only_are_left_out_and_level_is_under_half_a_hundredth_of_a_point() -> None:
    before = evaluation(["cer", "wer"], 0.20, {"ann": 0.30, "bob": 0.10, "gone": 0.5})
    after = evaluation(["cer", "wer"], 0.19, {"ann": 0.31, "bob": 0.100001, "new": 0.2}, decoders=("greedy", "beam8"))
    changes = compare(before, after)
    assert [(c.split, c.grouping, c.group, c.decoder, c.metric) for c in changes] == [
        ("test", "", "", "greedy", "cer"), ("test", "", "", "greedy", "wer"),
        ("test", "speaker", "ann", "greedy", "cer"), ("test", "speaker", "bob", "greedy", "cer"),  # the first metric only
    ]
    assert tally(changes) == {"gained": 2, "lost": 1, "level": 1}
    text = report(changes, one_sided_splits(before, after))
    assert text.index("| test | ann | greedy | CER | 30.00% | 31.00% | +1.00 |") < text.index("| bob |")  # loss first
    assert "Held-out test speakers: 0 gained, 1 lost, 1 level (of 2)" in text
    assert "condition" not in text  # neither side scored conditions

    conditioned = evaluation(["cer", "wer"], 0.18, {}, conditions={"clean": 0.10, "noise": 0.25})
    assert not [c for c in compare(before, conditioned) if c.grouping]  # before has no conditions: no rows
    later = evaluation(["cer", "wer"], 0.17, {}, conditions={"clean": 0.09, "noise": 0.26, "telephone": 0.3})
    rows = [(c.grouping, c.group, round(100 * c.delta, 2)) for c in compare(conditioned, later) if c.grouping]
    assert rows == [("condition", "clean", -1.0), ("condition", "noise", 1.0)]
    text = report(compare(conditioned, later), one_sided_splits(conditioned, later))
    assert "Held-out test conditions: 1 gained, 1 lost, 0 level (of 2)" in text
    assert "| split | condition | decoder |" in text and "| test | noise | greedy | CER | 25.00% | 26.00% | +1.00 |" in text


def test_a_char_and_a_phone_model_share_no_metric() -> None:
    with pytest.raises(CheckpointError, match=r"no metric in common \(cer/wer vs per\)"):
        compare(evaluation(["cer", "wer"], 0.2, {}), evaluation(["per"], 0.1, {}))
