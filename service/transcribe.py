"""``speechlabel transcribe INPUT... --out OUT_DIR``: the command line of the batch job in :mod:`service.batch`.

Exit status: 0 when every file was transcribed (or ``--allow-errors``), 1 when some failed, 2 when
the job could not start (bad inputs or options, output directory in use).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from audiomodels.checkpoint import CheckpointError
from audiomodels.context import DEFAULT_BOOST, PhraseBias, PhraseError
from audiomodels.lm import LMError, add_fusion_arguments, fusion_from_args
from audiomodels.char_check import CharCheckError, add_char_check_arguments, char_check_from_args
from audiomodels.phone_check import PhoneCheckError, add_phone_check_arguments, phone_check_from_args
from audiomodels.recognizer import PRECISIONS, Recognizer
from audiomodels.warp import add_warps_argument
from service.auth import token_from
from service.batch import JobError, JobOptions, LocalSettings, LocalTranscriber, RemoteTranscriber, Transcriber, run_job
from service.client import Connection
from service.formats import RENDERERS, parse_formats
from service.inputs import InputError, parse_shard

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "char"
DEFAULT_CHECKPOINT = MODELS_DIR / f"{DEFAULT_MODEL}.ckpt"
T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = LocalSettings()
    parser.add_argument("inputs", nargs="+", help="audio files, directories (recursive), globs, JSONL manifests")
    parser.add_argument("--out", default="-", help="output directory, or '-' for JSON lines on stdout (default)")
    parser.add_argument(
        "--format",
        type=_option(parse_formats),
        default="",
        help=f"per-file outputs, comma separated: {','.join(RENDERERS)}",
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", help=f"model name: {MODELS_DIR}/NAME.ckpt, or the server's model with --server")
    model.add_argument("--checkpoint", type=Path, help=f"model checkpoint file (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--beam-size", type=int, default=defaults.beam_size, help="CTC prefix beam width (1 = greedy)")
    parser.add_argument(
        "--alternatives",
        type=int,
        default=defaults.alternatives,
        help="N > 1: also write up to N hypotheses per stretch of speech, best first (needs --beam-size N or more)",
    )
    add_phrase_arguments(parser)
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip files already in OUT_DIR/transcripts.jsonl (default); --no-resume starts it afresh",
    )
    parser.add_argument("--allow-errors", action="store_true", help="exit 0 even when some files failed")
    parser.add_argument("--shard", type=_option(parse_shard), help="I/N: process this deterministic 1/N of the inputs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    local = parser.add_argument_group("local recognition")
    local.add_argument(
        "--workers",
        type=int,
        default=max(1, min(4, (os.cpu_count() or 2) - 1)),
        help="audio decoder processes (0 = decode in the main process)",
    )
    local.add_argument("--threads", type=int, help="torch threads for the model (default: torch's choice)")
    local.add_argument(
        "--precision",
        choices=["auto", *PRECISIONS],
        default="auto",
        help="model arithmetic: auto (default) = bfloat16 where the CPU has it natively (about 1.7x faster "
        "batches, transcripts within a fraction of a percent), else float32",
    )
    local.add_argument(
        "--model-procs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="model processes working on different groups of files, one thread each (default: one per core, "
        "at most 4; 1 = the model runs in this process with --threads)",
    )
    add_fusion_arguments(local)
    add_warps_argument(local)
    add_phone_check_arguments(local)
    add_char_check_arguments(local)
    local.add_argument(
        "--batch-seconds", type=float, default=defaults.batch_seconds, help="padded audio per model call"
    )
    local.add_argument(
        "--batch-files", type=int, default=defaults.batch_files, help="most files recognized and written together"
    )
    local.add_argument(
        "--max-segment-s",
        type=float,
        default=defaults.max_segment_s,
        help="longer files are cut at pauses into pieces at most this long",
    )
    local.add_argument(
        "--max-duration-s",
        type=float,
        default=defaults.max_duration_s,
        help="longer files get an error line instead of a transcript (memory: 230 MB per hour of audio)",
    )
    remote = parser.add_argument_group("server mode")
    remote.add_argument("--server", help="HOST:PORT of a speechlabel server: recognize there instead of locally")
    remote.add_argument("--concurrency", type=int, default=4, help="RPCs in flight")
    remote.add_argument("--auth-token", help="bearer token (default: $SPEECHLABEL_AUTH_TOKEN)")
    remote.add_argument("--tls-ca", type=Path, help="PEM root certificates: connect with TLS")
    remote.add_argument("--timeout", type=float, help="seconds before one file's call is abandoned")


def _option(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type that reports the parser's ``ValueError`` message as the usage error."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def add_phrase_arguments(parser: argparse.ArgumentParser) -> None:
    """Phrase hints (beam search): ``--phrase`` (repeatable), ``--phrases-file``, ``--phrase-boost``."""
    parser.add_argument("--phrase", action="append", default=[], help="a word or phrase to favour (repeatable)")
    parser.add_argument("--phrases-file", type=Path, help="phrases to favour, one per line")
    parser.add_argument("--phrase-boost", type=float, default=DEFAULT_BOOST, help="reward per matched label")


def phrases_from_args(args: argparse.Namespace) -> list[str]:
    """``--phrase`` values, then the non-blank lines of ``--phrases-file``."""
    phrases = list(args.phrase)
    if args.phrases_file:
        try:
            lines = args.phrases_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise JobError(f"cannot read --phrases-file: {error}") from None
        phrases += [line.strip() for line in lines if line.strip()]
    if phrases and args.beam_size <= 1:
        raise JobError("phrase hints need beam search: add --beam-size 8 (or more)")
    return phrases


def transcriber(args: argparse.Namespace) -> Transcriber:
    """A :class:`RemoteTranscriber` with ``--server``, else a :class:`LocalTranscriber` on the chosen model."""
    if not 1 <= args.alternatives <= max(1, args.beam_size):
        raise JobError(
            f"--alternatives {args.alternatives}: must be 1 to the beam size ({args.beam_size}); "
            "the beam holds the alternatives, so add --beam-size N (N >= the alternatives)"
        )
    if args.server:
        if args.checkpoint or args.lm or args.warps or args.phone_check or args.char_check:
            raise JobError(
                "--checkpoint, --lm, --warps, --phone-check and --char-check are for local recognition; with "
                "--server choose the model with --model (the server uses the LM it ships beside the model for beam "
                "search, and its own --warps, --phone-check and --char-check)"
            )
        connection = Connection(args.server, token_from(args.auth_token), args.tls_ca, args.timeout)
        phrases = tuple(phrases_from_args(args))
        return RemoteTranscriber(
            connection, args.model or "", args.beam_size, args.concurrency, phrases, args.phrase_boost, args.alternatives
        )
    model = str(args.checkpoint) if args.checkpoint else args.model or DEFAULT_MODEL
    checkpoint = args.checkpoint or MODELS_DIR / f"{model}.ckpt"
    if not checkpoint.is_file():
        raise JobError(f"no model at {checkpoint}")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = LocalSettings(
        beam_size=args.beam_size,
        alternatives=args.alternatives,
        batch_seconds=args.batch_seconds,
        batch_files=args.batch_files,
        max_segment_s=args.max_segment_s,
        workers=args.workers,
        model_procs=args.model_procs,
        max_duration_s=args.max_duration_s,
    )
    try:
        fusion = fusion_from_args(args, checkpoint)
        recognizer = Recognizer.from_checkpoint(
            checkpoint,
            precision=args.precision,
            fusion=fusion,
            warps=args.warps,
            phone_check=phone_check_from_args(args, args.beam_size, precision=args.precision),
            char_check=char_check_from_args(args, args.beam_size, precision=args.precision),
        )
    except (LMError, CheckpointError, PhoneCheckError, CharCheckError) as error:
        raise JobError(str(error)) from None
    if phrases := phrases_from_args(args):
        try:
            bias = PhraseBias.from_phrases(phrases, recognizer.labels, args.phrase_boost)
        except PhraseError as error:
            raise JobError(str(error)) from None
        settings = dataclasses.replace(settings, bias=bias)
    return LocalTranscriber(recognizer, model, settings)


def run(args: argparse.Namespace) -> int:
    try:
        options = JobOptions(args.out, args.format, args.resume, args.shard, not args.no_progress)
        stats = run_job(args.inputs, transcriber(args), options)
    except (InputError, JobError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(stats.summary(), file=sys.stderr)
    for line in stats.errors:
        print(f"  failed: {line}", file=sys.stderr)
    return 0 if stats.failed == 0 or args.allow_errors else 1
