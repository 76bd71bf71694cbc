"""How true are the word times? Start and end of every word the service returns, against the
true times of espeak-ng's own synthesis (:mod:`training.espeak_timing`: the library reports where
each phoneme starts as it speaks).

Usage:
    python benchmarks/word_times.py [--manifest data/corpus/test.jsonl] [--limit 200]
        [--checkpoint models/char.ckpt] [--phone-model models/phone.ckpt] [--workers 2]
        [--noise-snr-db 20] [--out benchmarks/results/word_times.json]

The held-out test split's espeak-ng utterances (held-out voices and sentences) are spoken again,
clean, with their voice, speed, pitch and word gap, and each word's times are compared: the char
model's forced alignment of the text (what Align returns) and its recognized words (greedy; beam
8 + LM), the right ones only (paired with the reference by a minimum-edit alignment), and the
phone model's alignment (its words, the phones between word separators, paired in order when
espeak-ng voiced as many words as the text has), and the phone model's label segments against
espeak-ng's phonemes (paired in order when there are as many). Errors are hypothesis minus truth, in ms: their
mean (a bias: late is positive), the median and 90th percentile of their size, and the share
within 20, 50 and 100 ms. Model frames are 30 ms long, so half a frame (15 ms) is the grain.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiomodels.calibration import Calibration, own_calibration
from audiomodels.lm import own_fusion
from audiomodels.recognizer import Recognizer
from training.augment import add_noise
from training.calibrate import moved_times
from training.espeak_timing import TimedSpeech, espeak_jobs, time_error_summary, timed_speech, transcript_time_errors
from training.manifest import read_manifest

from report import write_report  # beside this script in benchmarks/


def measure(
    char_model: Recognizer,
    phone_model: Recognizer | None,
    speech: list[TimedSpeech],
    texts: list[str],
    noise_snr_db: float | None = None,
    calibrations: dict[str, Calibration | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every decoder's word time errors (and the phone model's segments') over the same synthesized
    utterances, clean or with white noise at ``noise_snr_db`` (the corpus's own
    :func:`training.augment.add_noise`, seeded): ``"raw"``, the uncalibrated models' frame times,
    and ``"calibrated"``, the same transcripts moved by ``calibrations`` (``"char"``, ``"phone"``;
    none: not moved), which is what a calibrated recognizer returns (:func:`moved_times`)."""
    rng = np.random.default_rng(0)
    names = ["char align", "char greedy", "char beam 8 + LM"] + (
        ["phone align", "phone segments"] if phone_model else []
    )
    stages = ("raw", "calibrated")
    errors: dict[str, dict[str, list[tuple[float, float]]]] = {stage: {name: [] for name in names} for stage in stages}
    counted = dict.fromkeys(names, 0)
    for truth, text in zip(speech, texts, strict=True):
        audio = truth.samples.astype(np.float32) / 32768
        if noise_snr_db is not None:
            audio = add_noise(audio, noise_snr_db, "white", rng)
        found = {
            "char align": char_model.align(audio, truth.rate, text),
            "char greedy": char_model.transcribe(audio, truth.rate),
            "char beam 8 + LM": char_model.transcribe(audio, truth.rate, beam_size=8),
        }
        if phone_model is not None:
            found["phone align"] = phone_model.align(audio, truth.rate, text)
        for name, transcript in found.items():
            kind = name.split()[0]
            model = phone_model if kind == "phone" else char_model
            calibration = (calibrations or {}).get(kind)
            moved = moved_times(calibration, transcript) if calibration is not None else transcript
            for stage, shown in zip(stages, (transcript, moved), strict=True):
                word_errors, segment_errors = transcript_time_errors(truth, shown, model.labels)
                errors[stage][name] += word_errors
                if kind == "phone":
                    errors[stage]["phone segments"] += segment_errors
                if stage == "raw":  # moved times pair with the truth as the frame times do
                    counted[name] += bool(word_errors)
                    if kind == "phone":
                        counted["phone segments"] += bool(segment_errors)
    return {
        stage: {name: {"utterances": counted[name], **time_error_summary(values)} for name, values in by_name.items()}
        for stage, by_name in errors.items()
    }


def readable(results: dict[str, Any]) -> str:
    lines = [
        f"{'decoder':<18} {'words':>6}  {'start: bias  median  p90  <=20/50 ms':<40} {'end: bias  median  p90  <=20/50 ms'}"
    ]
    for name, row in results.items():
        cells = []
        for side in ("start", "end"):
            s = row[side]
            cells.append(
                f"{s['mean_ms']:+6.1f} {s['median_abs_ms']:6.1f} {s['p90_abs_ms']:6.1f}  "
                f"{100 * s['within_20ms']:4.0f}% {100 * s['within_50ms']:4.0f}%"
            )
        lines.append(f"{name:<18} {row['words']:>6}  {cells[0]:<40} {cells[1]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--limit", type=int, default=200, help="espeak-ng utterances to speak (default 200)")
    parser.add_argument("--checkpoint", type=Path, default=Path("models/char.ckpt"))
    parser.add_argument("--phone-model", type=Path, default=Path("models/phone.ckpt"))
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes (default 2)")
    parser.add_argument(
        "--noise-snr-db", type=float, help="also score the speech with white noise at this SNR (e.g. 20)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/word_times.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    jobs = espeak_jobs(read_manifest(args.manifest), args.limit)
    if not jobs:
        raise SystemExit(f"{args.manifest} has no espeak-ng utterances to speak again")
    speech = timed_speech(jobs, workers=args.workers)
    texts = [job.text for job in jobs]
    results: dict[str, Any] = {}
    conditions = {
        "clean": None,
        **({f"white noise {args.noise_snr_db:g} dB": args.noise_snr_db} if args.noise_snr_db is not None else {}),
    }
    char_model = Recognizer.from_checkpoint(args.checkpoint, fusion=own_fusion(args.checkpoint), calibration=None)
    phone_model = Recognizer.from_checkpoint(args.phone_model, calibration=None)
    calibrations = {"char": own_calibration(args.checkpoint), "phone": own_calibration(args.phone_model)}
    by_condition = {
        condition: measure(char_model, phone_model, speech, texts, snr_db, calibrations)
        for condition, snr_db in conditions.items()
    }
    for stage in ("raw", "calibrated"):
        for condition, stages in by_condition.items():
            results[stage if condition == "clean" else f"{stage}, {condition}"] = stages[stage]
    for key, rows in results.items():
        print(f"{key} word times:\n{readable(rows)}")
    write_report(
        args.out,
        {
            "manifest": str(args.manifest),
            "checkpoint": str(args.checkpoint),
            "phone_model": str(args.phone_model),
            "word_times": results,
        },
    )


if __name__ == "__main__":
    main()
