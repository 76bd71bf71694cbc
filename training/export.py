"""``speechlabel export``: turn a training run's best checkpoint into a shipped model with a card.

The shipped checkpoint is the run's ``best.ckpt`` (or ``--checkpoint``, e.g. an average of the
run's last checkpoints from ``speechlabel average``) with its held-out scores (dev and test, greedy
and beam) added to the metadata, so ``ListModels`` and anyone holding the file can see how good
it is; ``NAME.md`` beside it is the human-readable model card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from audiomodels.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from audiomodels.lm import Fusion, LMError, NgramLM, lm_beside
from audiomodels.recognizer import Recognizer
from training.evaluate import EvaluationResult, breakdown, engine_of, evaluate
from training.feature_pack import FeaturePackError
from training.manifest import ManifestError, Utterance, read_manifest
from training.train import run_train_utterances

BEAM_SIZE = 8
WIDE_BEAM_SIZE = 32  # with the LM a wider beam still pays (~1 point CER on dev) at ~5x the decode time
EXTRA_TEST_PREFIX = "test:"


def score(recognizer: Recognizer, utterances: list[Utterance], fusion: Fusion | None) -> dict[str, EvaluationResult]:
    """Greedy, beam and (with an LM) beam + LM at two widths on one split, by decoder name."""
    results = {
        decoder: evaluate(recognizer, utterances, beam_size=beam)
        for decoder, beam in (("greedy", 1), (f"beam{BEAM_SIZE}", BEAM_SIZE))
    }
    if fusion is not None:
        with_lm = Recognizer(recognizer.config, recognizer.model, fusion=fusion)
        for beam in (BEAM_SIZE, WIDE_BEAM_SIZE):
            results[f"beam{beam} + LM"] = evaluate(with_lm, utterances, beam_size=beam)
    return results


# Evaluation keys of the per-group scores of each test split -> the field they group by. A card
# should say which voices and which recording conditions the model fails, not only the mean: one
# speaker can be most of a test split, and noise can cost one voice three times what it costs others.
GROUPINGS = {"speakers": "speaker", "conditions": "condition"}


def by_group(results: dict[str, EvaluationResult], utterances: list[Utterance], field: str) -> dict[str, dict[str, Any]]:
    """Each value's utterance count and rates per decoder (`training.evaluate.breakdown`), worst first."""
    groups: dict[str, dict[str, Any]] = {}
    for decoder, result in results.items():
        for value, group in breakdown(result, utterances, [field]).items():
            entry = groups.setdefault(value, {"utterances": group["utterances"], "rates": {}})
            entry["rates"][decoder] = group["rates"]
    return groups


def grouped_scores(
    results: dict[str, dict[str, EvaluationResult]], splits: dict[str, list[Utterance]], field: str
) -> dict[str, dict[str, Any]]:
    """:func:`by_group` for every test split whose manifest has the field (all "?" says it has not)."""
    tests = ["test", *_extra_tests(splits)]
    grouped = {split: by_group(results[split], splits[split], field) for split in tests}
    return {split: groups for split, groups in grouped.items() if set(groups) != {"?"}}


def corpus_description(utterances: list[Utterance]) -> dict[str, Any]:
    """Size and voice diversity of a manifest (for the card).

    A training set that names a manifest twice (oversampling) is described as trained on, with the
    distinct audio beside it so the card does not overstate how much data there was.
    """
    voices = {u.extra.get("voice", "?") for u in utterances}
    engines = sorted({engine_of(u) for u in utterances})
    description: dict[str, Any] = {
        "utterances": len(utterances),
        "hours": _hours(utterances),
        "voices": len(voices),
        "engines": engines,
    }
    distinct = list({u.audio_filepath: u for u in utterances}.values())
    if len(distinct) < len(utterances):
        description["distinct_utterances"] = len(distinct)
        description["distinct_hours"] = _hours(distinct)
    return description


def _hours(utterances: list[Utterance]) -> float:
    return round(sum(u.duration for u in utterances) / 3600, 3)


def _extra_tests(evaluation: dict[str, Any]) -> list[str]:
    """Splits scored from ``--extra-test NAME=MANIFEST`` ("test:NAME") among the keys of an evaluation
    or of the splits to score, in the order given."""
    return [split for split in evaluation if split.startswith(EXTRA_TEST_PREFIX)]


def scored_splits(evaluation: dict[str, Any]) -> list[str]:
    """The keys of an exported ``evaluation`` that hold a split's scores (the rest describe them)."""
    return ["dev", "test", *_extra_tests(evaluation)]


def model_card(
    name: str, metadata: dict[str, Any], model_config: dict[str, Any], num_parameters: int, size_mb: float
) -> str:
    """Markdown card: data, config, steps, held-out scores, speed."""
    evaluation = metadata["evaluation"]
    train_config = {**metadata["train_config"], "model": model_config}  # sizes as built, not as typed
    lines = [
        f"# `{name}` — {metadata['label_kind']} BiGRU-CTC model",
        "",
        f"- parameters: {num_parameters:,} ({size_mb:.1f} MB file); trained {metadata['step']} steps",
        *_averaging_line(metadata),
        *_soup_line(metadata),
        f"- training data: {json.dumps(evaluation['data']['train'])}",
        "- data: synthetic speech from `speechlabel corpus synth` (the engines above; Debian `fortunes` text); "
        "test = unseen sentences AND unseen voices, dev = unseen sentences"
        + "".join(f"; {split} = {json.dumps(evaluation['data'][split])}" for split in _extra_tests(evaluation)),
        f"- training config: `{json.dumps(train_config, separators=(',', ':'))}`",
        *(
            [
                f"- LM (`{name}.lm.npz`, used by beam search): order {lm['order']}, {lm['ngrams']:,} n-grams from "
                f"{lm['source']}; weight {lm['weight']}, length bonus {lm['length_bonus']}"
                + (
                    f"; word {words['order']}-gram over {words['vocabulary']:,} words ({words['ngrams']:,} n-grams), "
                    f"weight {words['weight']}, word bonus {words['bonus']}"
                    if (words := lm.get("words"))
                    else ""
                )
            ]
            if (lm := metadata.get("lm"))
            else []
        ),
        "",
        "| split | decoder | " + " | ".join(evaluation["metric_names"]) + " | RTF (CPU) |",
        "|---|---|" + "---|" * len(evaluation["metric_names"]) + "---|",
    ]
    for split in scored_splits(evaluation):
        for decoder, summary in evaluation[split].items():
            rates = " | ".join(f"{summary['rates'][m]:.2%}" for m in evaluation["metric_names"])
            lines.append(f"| {split} | {decoder} | {rates} | {summary['real_time_factor']:.4f} |")
    tables = [line for key, field in GROUPINGS.items() if evaluation.get(key) for line in _group_table(evaluation, key, field)]
    return "\n".join(lines + tables) + "\n"


def _averaging_line(metadata: dict[str, Any]) -> list[str]:
    """Where averaged weights came from: the steps above are only the last source's."""
    sources = metadata.get("averaged_from")
    if not sources:
        return []
    named = ", ".join(f"`{source['path']}` ({_step_and_share(source)})" for source in sources)
    return [f"- weights: the mean of {len(sources)} checkpoints ({named}); the steps and config are the last one's"]


def _soup_line(metadata: dict[str, Any]) -> list[str]:
    """How ``speechlabel soup`` picked the mix: every share it scored on dev, the picked one in bold;
    with several dev manifests each one's rate too (in order), since the pick refuses a share losing one."""
    soup = metadata.get("soup")
    if not soup:
        return []
    scored = ", ".join(
        ("**{}**" if c["share"] == soup["picked_share"] else "{}").format(
            f"{c['share']:.3g}: {c['rate']:.3%}" + _per_manifest(c.get("by_dev", {}))
        )
        for c in soup["candidates"]
    )
    guard = f"; a share losing over {soup['tolerance'] * 100:g} points on a dev manifest to 0 is refused" if "tolerance" in soup else ""
    return [f"- the round's share, picked on `{soup['dev']}` ({soup['decoder']}, {soup['metric'].upper()}): {scored}{guard}"]


def _per_manifest(by_dev: dict[str, float]) -> str:
    """`` (a% / b%)`` for a candidate scored on several dev manifests; nothing for one (it is the pooled rate)."""
    return f" ({' / '.join(f'{rate:.3%}' for rate in by_dev.values())})" if len(by_dev) > 1 else ""


def _step_and_share(source: dict[str, Any]) -> str:
    """``step N, share S``; checkpoints averaged before ``--weights`` existed recorded no share."""
    return f"step {source['step']}" + (f", share {source['share']:.3g}" if "share" in source else "")


_GROUP_TITLES = {
    "speaker": "Held-out test speakers",
    "condition": "Held-out test by condition (clean: no noise, room or phone line; speed and gain aside)",
}


def _group_table(evaluation: dict[str, Any], key: str, field: str) -> list[str]:
    """One grouping of the test splits, worst first by greedy decoding, the first metric per decoder."""
    metric = evaluation["metric_names"][0]
    decoders = list(evaluation["test"])
    lines = [
        "",
        f"{_GROUP_TITLES[field]} ({metric.upper()}):",
        "",
        f"| split | {field} | utterances | " + " | ".join(decoders) + " |",
        "|---|---|---|" + "---|" * len(decoders),
    ]
    for split, groups in evaluation[key].items():
        for value, entry in groups.items():
            rates = " | ".join(f"{entry['rates'][decoder][metric]:.2%}" for decoder in decoders)
            lines.append(f"| {split} | {value} | {entry['utterances']} | {rates} |")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="training run directory (its data go into the card)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="the checkpoint to ship (default: RUN/best.ckpt), e.g. from `speechlabel average`",
    )
    parser.add_argument("--name", required=True, help="model name (file stem under --models-dir)")
    parser.add_argument("--dev", type=Path, required=True, help="dev manifest")
    parser.add_argument("--test", type=Path, required=True, help="held-out test manifest")
    parser.add_argument(
        "--extra-test",
        type=_named_manifest,
        action="append",
        default=[],
        metavar="NAME=MANIFEST",
        help="another held-out test set, scored into the card as test:NAME (repeatable)",
    )
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--lm", type=Path, help="label LM (`speechlabel lm`) to ship beside the model as NAME.lm.npz")


def _named_manifest(value: str) -> tuple[str, Path]:
    name, separator, path = value.partition("=")
    if not (separator and name and path):
        raise argparse.ArgumentTypeError(f"expected NAME=MANIFEST, got {value!r}")
    return name, Path(path)


def run(args: argparse.Namespace) -> int:
    """Score and ship; an input that cannot be read stops it with its name, before any scoring."""
    try:
        checkpoint = load_checkpoint(args.checkpoint or args.run / "best.ckpt")
        model = checkpoint.build_model()
        train = run_train_utterances(json.loads((args.run / "run.json").read_text()))
        dev, test = read_manifest(args.dev), read_manifest(args.test)
        extra_tests = {f"{EXTRA_TEST_PREFIX}{name}": read_manifest(path) for name, path in args.extra_test}
        fusion = Fusion(NgramLM.load(args.lm)) if args.lm else None
    except (CheckpointError, ManifestError, FeaturePackError, LMError, OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"speechlabel export: {error}") from error
    recognizer = Recognizer(checkpoint.config, model)
    metadata = dict(checkpoint.metadata)
    metadata["label_kind"] = checkpoint.config.labels.kind
    if fusion is not None:
        metadata["lm"] = {
            "order": fusion.lm.order,
            "ngrams": len(fusion.lm.log_probs),
            "source": fusion.lm.source,
            "weight": fusion.weight,
            "length_bonus": fusion.length_bonus,
        }
        if (words := fusion.lm.words) is not None:
            metadata["lm"]["words"] = {
                "order": words.ngrams.order,
                "vocabulary": len(words.vocabulary),
                "ngrams": len(words.ngrams.log_probs),
                "weight": fusion.word_weight,
                "bonus": fusion.word_bonus,
            }
    splits = {"dev": dev, "test": test, **extra_tests}
    results = {split: score(recognizer, utterances, fusion) for split, utterances in splits.items()}
    metadata["evaluation"] = {
        **{split: {decoder: r.summary() for decoder, r in by_decoder.items()} for split, by_decoder in results.items()},
        **{key: grouped_scores(results, splits, field) for key, field in GROUPINGS.items()},
        "metric_names": ["per"] if checkpoint.config.labels.kind == "phone" else ["cer", "wer"],
        "data": {
            "train": corpus_description(train),
            "test": corpus_description(test),
            **{split: corpus_description(utterances) for split, utterances in extra_tests.items()},
        },
    }
    target = args.models_dir / f"{args.name}.ckpt"
    save_checkpoint(target, checkpoint.config, model, metadata)
    size_mb = target.stat().st_size / 1e6
    card = model_card(args.name, metadata, checkpoint.config.to_dict()["model"], model.num_parameters(), size_mb)
    if fusion is not None:
        fusion.lm.save(lm_beside(target))
    (args.models_dir / f"{args.name}.md").write_text(card)
    print(card)
    return 0
