"""The one ``speechlabel`` command; each subcommand lives in its own module with add_arguments/run."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, help). Modules are imported only when their subcommand runs (start-up stays fast).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "transcribe": ("service.transcribe", "transcribe audio files to JSON lines"),
    "train": ("training.train", "train or resume a model from manifests"),
    "evaluate": ("training.evaluate", "score a checkpoint on a manifest (CER/WER/PER, RTF)"),
    "corpus": ("training.corpus", "synthesize an offline speech corpus"),
    "manifest": ("training.manifest", "import and validate JSONL manifests"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Top-level parser; only the selected subcommand's module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog="speechlabel", description="speech sequence labelling")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module_name).add_arguments(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    args = build_parser(selected).parse_args(argv)
    return importlib.import_module(SUBCOMMANDS[args.command][0]).run(args)


if __name__ == "__main__":
    sys.exit(main())
