"""Score a recognizer on a manifest: CER/WER for char models, PER for phone models, and speed.

:func:`evaluate` is shared by ``speechlabel evaluate`` and the trainer's dev scoring, so a model
is scored with exactly the featurizer and decoder the product serves with (:class:`Recognizer`).
It never crashes on bad data: an utterance whose audio or reference cannot be used is reported
in its ``per_utterance`` row and counted in ``num_failed``, and the rest are still scored.

Command line::

    speechlabel evaluate --checkpoint C --manifest M.jsonl [--beam-size N] [--out rows.jsonl]
                         [--batch-seconds S] [--device cpu|cuda] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from audiomodels.audio import load_audio
from audiomodels.checkpoint import CheckpointError
from audiomodels.config import Chunking
from audiomodels.labels import LabelSet
from audiomodels.lm import Fusion, LMError, add_fusion_arguments, fusion_from_args
from audiomodels.recognizer import PRECISIONS, Recognizer
from audiomodels.char_check import CharCheckError, add_char_check_arguments, char_check_from_args
from audiomodels.phone_check import PhoneCheckError, add_phone_check_arguments, phone_check_from_args
from audiomodels.warp import add_warps_argument
from training.manifest import ManifestError, Utterance, read_manifest
from training.metrics import (
    ErrorCounts,
    align_tokens,
    char_errors,
    confidence_quality,
    phone_errors,
    right_tokens,
    separated_words,
    word_errors,
)

Scorer = Callable[[str, str], ErrorCounts]
_MAX_LISTED_FAILURES = 5  # failures named in the readable summary (all are in --out)
_COUNT_FIELDS = ("substitutions", "insertions", "deletions", "reference_length")  # ErrorCounts' fields
# The corpus's augmentation steps that degrade what a microphone hears; speed and gain do not.
_DEGRADING_STEPS = ("reverb", "noise", "telephone")


@dataclass
class EvaluationResult:
    """Corpus totals (summed counts, so rates weigh utterances by length) and per-utterance rows.

    ``cer``/``wer`` are set for char and custom models, ``per`` for phone models; the others are
    None. Rows follow the input order; a failed utterance's row has an ``error`` instead of scores.
    """

    kind: str
    cer: ErrorCounts | None = None
    wer: ErrorCounts | None = None
    per: ErrorCounts | None = None
    num_utterances: int = 0  # all input utterances, failed ones included
    num_failed: int = 0
    audio_seconds: float = 0.0  # scored audio only
    wall_seconds: float = 0.0  # everything: audio decoding, features, model, search, scoring
    per_utterance: list[dict[str, Any]] = field(default_factory=list)
    # how well the recognized words' confidences predict which are right (metrics.confidence_quality);
    # None for label sets without a word separator
    word_confidence: dict[str, float] | None = None

    @property
    def num_scored(self) -> int:
        """Utterances that count in the rates; with none, the rates mean nothing."""
        return self.num_utterances - self.num_failed

    @property
    def metrics(self) -> dict[str, ErrorCounts]:
        """The metrics this kind of model has, by name."""
        named = {"cer": self.cer, "wer": self.wer, "per": self.per}
        return {name: counts for name, counts in named.items() if counts is not None}

    @property
    def real_time_factor(self) -> float:
        """wall / audio seconds (below 1 is faster than real time); 0.0 when nothing was scored."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-able totals; ``rates`` maps metric name to rate (what the trainer logs)."""
        return {
            "kind": self.kind,
            "num_utterances": self.num_utterances,
            "num_failed": self.num_failed,
            "audio_seconds": round(self.audio_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "real_time_factor": round(self.real_time_factor, 5),
            "rates": {name: counts.rate for name, counts in self.metrics.items()},
            "counts": {name: _counts_record(counts) for name, counts in self.metrics.items()},
            **({"word_confidence": self.word_confidence} if self.word_confidence is not None else {}),
        }


def primary_metric(kind: str) -> str:
    """The rate a model of this label kind is judged by (its best checkpoint, its soup): PER for
    phone models, CER for char and custom ones."""
    return "per" if kind == "phone" else "cer"


def decoder_name(beam_size: int, fusion: Fusion | None) -> str:
    """``greedy``, ``beam 8`` or ``beam 8 + LM``: how a result was decoded, in reports."""
    if beam_size <= 1:
        return "greedy"
    return f"beam {beam_size}" + (" + LM" if fusion is not None else "")


def evaluate(
    recognizer: Recognizer,
    utterances: Sequence[Utterance],
    *,
    beam_size: int = 1,
    batch_seconds: float = 120.0,
    progress: bool = False,
) -> EvaluationResult:
    """Transcribe and score ``utterances`` in length-sorted batches of about ``batch_seconds``.

    Batches are formed from the manifest durations, longest first, and their audio is loaded
    only when the batch runs: memory stays bounded on large sets, and a ``batch_seconds`` too
    large for the device fails on the first batch rather than at the end. References: ``labels.normalize(text)`` for char/custom models, the ``phones`` field
    for phone models (hypotheses are already in the label alphabet).
    """
    start = time.perf_counter()
    scorers = scorers_for(recognizer.labels)
    rows: list[dict[str, Any]] = [{} for _ in utterances]
    totals = dict.fromkeys(scorers, ErrorCounts())
    separator = recognizer.labels.word_separator
    confidences: list[float] = []
    outcomes: list[bool] = []
    audio_seconds = 0.0
    with tqdm(total=len(utterances), disable=not progress, unit="utt", desc="evaluate") as bar:
        for batch in batches_of(utterances, batch_seconds):
            loaded: list[tuple[int, str, np.ndarray]] = []
            for index in batch:
                try:
                    loaded.append((index, *scored_utterance(recognizer, utterances[index])))
                except ValueError as error:  # AudioError, LabelError or no phones: this row fails
                    rows[index] = _row(utterances[index], utterances[index].duration, error=str(error))
            transcripts = recognizer.transcribe_batch(
                [(audio, recognizer.sample_rate) for _, _, audio in loaded],
                beam_size=beam_size,
                max_batch_seconds=batch_seconds,
            )
            for (index, reference, audio), transcript in zip(loaded, transcripts, strict=True):
                counts = {name: score(reference, transcript.text) for name, score in scorers.items()}
                totals = {name: totals[name] + counts[name] for name in totals}
                if separator is not None:
                    confidences += [word.confidence for word in transcript.words]
                    outcomes += right_tokens(separated_words(reference, separator), [w.word for w in transcript.words])
                duration = len(audio) / recognizer.sample_rate
                audio_seconds += duration
                rows[index] = _row(
                    utterances[index],
                    duration,
                    reference=reference,
                    hypothesis=transcript.text,
                    **{name: _counts_record(c) for name, c in counts.items()},
                )
            bar.update(len(batch))
    return EvaluationResult(
        kind=recognizer.labels.kind,
        **totals,
        num_utterances=len(utterances),
        num_failed=sum("error" in row for row in rows),
        audio_seconds=audio_seconds,
        wall_seconds=time.perf_counter() - start,
        per_utterance=rows,
        word_confidence=confidence_quality(confidences, outcomes) if separator is not None else None,
    )


def breakdown(
    result: EvaluationResult, utterances: Sequence[Utterance], fields: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Scores per value of manifest fields (e.g. ``speaker``): where a corpus's errors come from.

    Counts are summed within each group as for the totals; utterances without a field have "?"
    for it. A list of steps such as the corpus's ``augment`` groups by its kinds
    ("noise+telephone", "none" when empty). Several fields group by their combination
    ("cmu-slt / noise"), e.g. to see whether one voice suffers more from noise than others. Groups
    come in descending order of their first metric's rate.

    Besides manifest fields, two groupings are derived from the corpus's fields (a manifest field of
    the same name wins): ``engine``, the synthesizer of ``voice`` ("espeak-ng" of
    "espeak-ng:en-us+m7"), and ``condition``, the ``augment`` steps that degrade the audio ("clean",
    "noise", "reverb+noise", ...; speed and gain left out). ``engine,condition`` answers in a few
    large groups what ``voice,augment`` scatters over hundreds of small ones.
    """
    groups: dict[str, dict[str, Any]] = {}
    for utterance, row in zip(utterances, result.per_utterance, strict=True):
        value = " / ".join(_field_value(utterance, f) for f in fields)
        group = groups.setdefault(value, {"utterances": 0, "failed": 0, **dict.fromkeys(result.metrics, ErrorCounts())})
        group["utterances"] += 1
        if "error" in row:
            group["failed"] += 1
            continue
        for name in result.metrics:
            group[name] += ErrorCounts(*(row[name][key] for key in _COUNT_FIELDS))
    first = next(iter(result.metrics))
    ordered = sorted(groups.items(), key=lambda item: -item[1][first].rate)
    return {
        value: {
            "utterances": group["utterances"],
            "failed": group["failed"],
            "rates": {name: group[name].rate for name in result.metrics},
        }
        for value, group in ordered
    }


def parse_fields(text: str) -> list[str]:
    """``"speaker,augment"`` -> the manifest fields a ``--by`` option groups by (blanks dropped)."""
    return [field.strip() for field in text.split(",") if field.strip()]


def _field_value(utterance: Utterance, field_name: str) -> str:
    """The group name of one field: the manifest's value when it has the field, else a derived one."""
    if field_name in utterance.extra or field_name not in _DERIVED_FIELDS:
        return _group_name(utterance.extra.get(field_name, getattr(utterance, field_name, "?")))
    return _DERIVED_FIELDS[field_name](utterance)


def engine_of(utterance: Utterance) -> str:
    """The synthesizer of a corpus utterance's ``voice`` ("espeak-ng" of "espeak-ng:en-us+m7"), "?" without one."""
    return str(utterance.extra.get("voice", "?")).split(":", 1)[0]


def _condition(utterance: Utterance) -> str:
    chain = utterance.extra.get("augment")
    if not isinstance(chain, list):
        return "?"
    kinds = [step.get("kind") for step in chain if isinstance(step, dict)]
    return "+".join(kind for kind in kinds if kind in _DEGRADING_STEPS) or "clean"


_DERIVED_FIELDS: dict[str, Callable[[Utterance], str]] = {"engine": engine_of, "condition": _condition}


def _group_name(value: Any) -> str:
    if isinstance(value, list):
        kinds = [str(step["kind"]) if isinstance(step, dict) and "kind" in step else str(step) for step in value]
        return "+".join(kinds) or "none"
    return str(value)


def _readable_breakdown(field: str, groups: dict[str, dict[str, Any]]) -> str:
    width = max(len(value) for value in groups)
    lines = [f"by {field}:"]
    for value, group in groups.items():
        rates = "  ".join(f"{name.upper()} {100 * rate:6.2f}%" for name, rate in group["rates"].items())
        failed = f" ({group['failed']} failed)" if group["failed"] else ""
        lines.append(f"    {value:<{width}}  {group['utterances']:5d} utt  {rates}{failed}")
    return "\n".join(lines)


def scorers_for(labels: LabelSet) -> dict[str, Scorer]:
    """Metric name -> scorer for a label set. Custom sets get "cer" over their label tokens (what
    the trainer selects models by) and, when they have a word separator, "wer" over the words
    it delimits."""
    if labels.kind == "char":
        return {"cer": char_errors, "wer": word_errors}
    if labels.kind == "phone":
        return {"per": phone_errors}
    scorers: dict[str, Scorer] = {"cer": lambda ref, hyp: align_tokens(ref.split(), hyp.split())}
    if separator := labels.word_separator:
        scorers["wer"] = lambda ref, hyp: align_tokens(separated_words(ref, separator), separated_words(hyp, separator))
    return scorers


def scored_utterance(recognizer: Recognizer, utterance: Utterance) -> tuple[str, np.ndarray]:
    """Reference text and model-rate audio of one utterance; a ValueError says why it is unusable."""
    labels = recognizer.labels
    source = utterance.phones if labels.kind == "phone" else utterance.text
    if source is None:
        raise ValueError("no 'phones' field in the manifest (phone models are scored against it)")
    reference = labels.normalize(source)
    audio = load_audio(
        utterance.audio_filepath, target_rate=recognizer.sample_rate, max_duration_s=recognizer.max_duration_s
    )
    return reference, audio


def batches_of(utterances: Sequence[Utterance], batch_seconds: float) -> list[list[int]]:
    """Indices longest-first, grouped into runs of at most ``batch_seconds`` (or one longer item)."""
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].duration, reverse=True)
    batches: list[list[int]] = []
    total = 0.0
    for index in order:
        duration = utterances[index].duration
        if batches and total + duration <= batch_seconds:
            batches[-1].append(index)
            total += duration
        else:
            batches.append([index])
            total = duration
    return batches


def _row(utterance: Utterance, duration: float, **fields: Any) -> dict[str, Any]:
    return {"audio": str(utterance.audio_filepath), "duration": round(duration, 3), **fields}


def _counts_record(counts: ErrorCounts) -> dict[str, Any]:
    return {**asdict(counts), "errors": counts.errors, "rate": counts.rate}


def _readable(result: EvaluationResult) -> str:
    """Human summary: one line per metric, speed, and the first few failures."""
    lines = [f"{result.num_scored} of {result.num_utterances} utterances scored ({result.kind} model)"]
    for name, counts in result.metrics.items() if result.num_scored else ():  # no rates from nothing
        lines.append(
            f"{name.upper()} {100 * counts.rate:6.2f}%  ({counts.errors} errors = S {counts.substitutions}"
            f" + I {counts.insertions} + D {counts.deletions}, reference length {counts.reference_length})"
        )
    quality = result.word_confidence
    if quality and quality["words"]:
        lines.append(
            f"word confidence: mean {quality['confidence']:.3f} for accuracy {quality['accuracy']:.3f} "
            f"({quality['words']} words), calibration error (ECE) {quality['ece']:.3f}, AUC {quality['auc']:.3f}"
        )
    lines.append(
        f"audio {result.audio_seconds:.1f} s, wall {result.wall_seconds:.1f} s, "
        f"real-time factor {result.real_time_factor:.4f}"
    )
    failures = [row for row in result.per_utterance if "error" in row]
    if failures:
        lines.append(f"{len(failures)} failed:")
        lines.extend(f"    {row['audio']}: {row['error']}" for row in failures[:_MAX_LISTED_FAILURES])
        if len(failures) > _MAX_LISTED_FAILURES:
            lines.append("    ... (all are in the --out rows)")
    return "\n".join(lines)


def parse_chunking(text: str) -> Chunking:
    """``"20,10"`` -> Chunking(20, 10) (argparse type)."""
    try:
        chunk, right = (int(part) for part in text.split(","))
        return Chunking(chunk, right)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected C,R (two non-negative integers, C >= 1), got {text!r}") from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``speechlabel evaluate``."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="model checkpoint to score")
    parser.add_argument("--manifest", type=Path, required=True, help="JSONL manifest of utterances")
    parser.add_argument("--beam-size", type=int, default=1, help="CTC prefix beam width (1 = greedy; default 1)")
    parser.add_argument("--out", type=Path, help="write one JSON line per utterance (scores or error) here")
    parser.add_argument(
        "--batch-seconds", type=float, default=120.0, help="audio per model call, bounds memory (default 120)"
    )
    parser.add_argument("--device", default="cpu", help="torch device for the model (default cpu)")
    parser.add_argument(
        "--chunked",
        type=parse_chunking,
        metavar="C,R",
        help="score the streaming (latency-controlled) mode: C-frame chunks with R frames of look-ahead",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", *PRECISIONS],
        default="float32",
        help="model arithmetic (default float32; auto = bfloat16 where the hardware has it)",
    )
    add_fusion_arguments(parser)
    add_warps_argument(parser)
    add_phone_check_arguments(parser)
    add_char_check_arguments(parser)
    parser.add_argument(
        "--by",
        metavar="FIELD[,FIELD]",
        help="also score each value of this manifest field separately, e.g. --by speaker, --by voice, "
        "or --by augment (the corpus's augmentation steps, grouped by their kinds); two groupings are "
        "derived: engine (the voice's synthesizer) and condition (clean or the steps that degrade the "
        "audio: reverb, noise, telephone); comma-separated fields group by their combination, e.g. "
        "--by engine,condition",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")


def run(args: argparse.Namespace) -> int:
    """Evaluate; exit 0 when some utterances failed (they are listed and counted), 1 when none
    could be scored: a script gating on the rates must not read "0.00%" as a perfect score."""
    try:
        recognizer = Recognizer.from_checkpoint(
            args.checkpoint,
            device=args.device,
            chunking=args.chunked,
            precision=args.precision,
            fusion=fusion_from_args(args, args.checkpoint),
            warps=args.warps,
            phone_check=phone_check_from_args(args, args.beam_size, device=args.device, precision=args.precision),
            char_check=char_check_from_args(args, args.beam_size, device=args.device, precision=args.precision),
        )
        utterances = read_manifest(args.manifest)
    except (CheckpointError, ManifestError, LMError, PhoneCheckError, CharCheckError, OSError) as error:
        raise SystemExit(f"speechlabel evaluate: {error}") from error
    result = evaluate(
        recognizer,
        utterances,
        beam_size=args.beam_size,
        batch_seconds=args.batch_seconds,
        progress=sys.stderr.isatty(),
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", encoding="utf-8") as stream:
            stream.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in result.per_utterance)
    groups = breakdown(result, utterances, parse_fields(args.by)) if args.by else None
    if args.json:
        print(json.dumps({**result.summary(), **({"by": {args.by: groups}} if groups else {})}, indent=2))
    else:
        print(_readable(result) + (f"\n{_readable_breakdown(args.by, groups)}" if groups else ""))
    if not result.num_scored:
        print(
            f"speechlabel evaluate: no utterance of {args.manifest} could be scored ({result.num_utterances} in it)",
            file=sys.stderr,
        )
        return 1
    return 0
