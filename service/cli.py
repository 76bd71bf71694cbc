"""The one ``speechlabel`` command; each subcommand lives in its own module with add_arguments/run."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

# subcommand -> (target, help). A target is a module with add_arguments/run, or "module:NAME" for an
# object in it that has them. Modules are imported only when their subcommand runs (start-up stays fast).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "transcribe": ("service.transcribe", "batch-transcribe files, directories, globs and manifests"),
    "serve": ("service.server", "serve the SpeechLabeler gRPC service"),
    "stream": ("service.client:STREAM", "stream an audio file to a server, printing results as they come"),
    "recognize": ("service.client:RECOGNIZE", "transcribe an audio file on a server"),
    "align": ("service.client:ALIGN", "force-align a transcript to an audio file on a server"),
    "health": ("service.client:HEALTH", "check a server's gRPC health (exit 0 when SERVING)"),
    "train": ("training.train", "train or resume a model from manifests"),
    "pack": ("training.feature_pack", "quantize a corpus's features into one small file to train on elsewhere"),
    "evaluate": ("training.evaluate", "score a checkpoint on a manifest (CER/WER/PER, RTF)"),
    "calibrate": ("training.calibrate", "fit a checkpoint's word confidences (P(word is right)) and word time shifts on dev"),
    "corpus": ("training.corpus", "synthesize an offline speech corpus"),
    "manifest": ("training.manifest", "import and validate JSONL manifests"),
    "lm": ("training.lm", "build a label n-gram language model for beam search"),
    "average": ("training.average", "average the weights of one run's (or its fine-tuning rounds') checkpoints into one"),
    "soup": ("training.soup", "mix a model with its next fine-tuning round, the round's share picked on dev"),
    "export": ("training.export", "ship a run's best checkpoint to models/ with a model card"),
    "compare": ("training.compare", "two exported checkpoints' scores side by side: splits, speakers, conditions"),
}


def load_command(name: str) -> Any:
    """The module or object that implements subcommand ``name`` (has ``add_arguments`` and ``run``)."""
    module_name, _, attribute = SUBCOMMANDS[name][0].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Top-level parser; only the selected subcommand's module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog="speechlabel", description="speech sequence labelling")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            load_command(name).add_arguments(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    args = build_parser(selected).parse_args(argv)
    return load_command(args.command).run(args)


if __name__ == "__main__":
    sys.exit(main())
