"""``speechlabel export``: turn a training run's best checkpoint into a shipped model with a card.

The shipped checkpoint is the run's ``best.ckpt`` with its held-out scores (dev and test, greedy
and beam) added to the metadata, so ``ListModels`` and anyone holding the file can see how good
it is; ``NAME.md`` beside it is the human-readable model card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from audiomodels.checkpoint import load_checkpoint, save_checkpoint
from audiomodels.recognizer import Recognizer
from training.evaluate import evaluate
from training.manifest import Utterance, read_manifest

BEAM_SIZE = 8


def score(recognizer: Recognizer, utterances: list[Utterance]) -> dict[str, Any]:
    """Greedy and beam summaries on one split."""
    return {
        decoder: evaluate(recognizer, utterances, beam_size=beam).summary()
        for decoder, beam in (("greedy", 1), (f"beam{BEAM_SIZE}", BEAM_SIZE))
    }


def corpus_description(utterances: list[Utterance]) -> dict[str, Any]:
    """Size and voice diversity of a manifest (for the card)."""
    voices = {u.extra.get("voice", "?") for u in utterances}
    engines = sorted({voice.split(":")[0] for voice in voices})
    return {
        "utterances": len(utterances),
        "hours": round(sum(u.duration for u in utterances) / 3600, 3),
        "voices": len(voices),
        "engines": engines,
    }


def model_card(name: str, metadata: dict[str, Any], model_config: dict[str, Any], num_parameters: int, size_mb: float) -> str:
    """Markdown card: data, config, steps, held-out scores, speed."""
    evaluation = metadata["evaluation"]
    train_config = {**metadata["train_config"], "model": model_config}  # sizes as built, not as typed
    lines = [
        f"# `{name}` — {metadata['label_kind']} BiGRU-CTC model",
        "",
        f"- parameters: {num_parameters:,} ({size_mb:.1f} MB file); trained {metadata['step']} steps",
        f"- training data: {json.dumps(evaluation['data']['train'])}",
        "- data: synthetic speech from `speechlabel corpus synth` (espeak-ng, flite, festival, Piper voices; "
        "Debian `fortunes` text); test = unseen sentences AND unseen voices, dev = unseen sentences",
        f"- training config: `{json.dumps(train_config, separators=(',', ':'))}`",
        "",
        "| split | decoder | " + " | ".join(evaluation["metric_names"]) + " | RTF (CPU) |",
        "|---|---|" + "---|" * len(evaluation["metric_names"]) + "---|",
    ]
    for split in ("dev", "test"):
        for decoder, summary in evaluation[split].items():
            rates = " | ".join(f"{summary['rates'][m]:.2%}" for m in evaluation["metric_names"])
            lines.append(f"| {split} | {decoder} | {rates} | {summary['real_time_factor']:.4f} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="training run directory (uses best.ckpt)")
    parser.add_argument("--name", required=True, help="model name (file stem under --models-dir)")
    parser.add_argument("--dev", type=Path, required=True, help="dev manifest")
    parser.add_argument("--test", type=Path, required=True, help="held-out test manifest")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))


def run(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.run / "best.ckpt")
    model = checkpoint.build_model()
    recognizer = Recognizer(checkpoint.config, model)
    run_info = json.loads((args.run / "run.json").read_text())
    metadata = dict(checkpoint.metadata)
    metadata["label_kind"] = checkpoint.config.labels.kind
    dev, test = read_manifest(args.dev), read_manifest(args.test)
    metadata["evaluation"] = {
        "dev": score(recognizer, dev),
        "test": score(recognizer, test),
        "metric_names": ["per"] if checkpoint.config.labels.kind == "phone" else ["cer", "wer"],
        "data": {"train": corpus_description(read_manifest(run_info["train"])), "test": corpus_description(test)},
    }
    target = args.models_dir / f"{args.name}.ckpt"
    save_checkpoint(target, checkpoint.config, model, metadata)
    size_mb = target.stat().st_size / 1e6
    card = model_card(args.name, metadata, checkpoint.config.to_dict()["model"], model.num_parameters(), size_mb)
    (args.models_dir / f"{args.name}.md").write_text(card)
    print(card)
    return 0
