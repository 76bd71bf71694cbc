"""Calibrate a model after training (``speechlabel calibrate``): its word confidence maps, fitted
on dev words, and its word times' bias, measured on dev speech with true times.

The model decodes the ``--manifest`` utterances greedily and with beam search and its LM; each
word it recognizes is right or wrong against the reference (:func:`training.metrics.right_tokens`),
and one logistic regression per decoding mode learns P(right) from the word's measures
(:mod:`audiomodels.calibration`), the LM's word vocabulary among them where it has one. The
manifests' espeak-ng utterances (up to :data:`TIMED_UTTERANCES` each) are spoken again with the
true time of every word (:mod:`training.espeak_timing`), and the median errors of the model's
aligned word starts and ends on the fit's ones become the shift every word gets. All of it is
written beside the checkpoint (``NAME.calibration.json``), where every recognizer of that
checkpoint finds it, with a report: for the fit's utterances and any ``--heldout`` ones (unseen
voices: the numbers that say what a user can expect), the calibration error (ECE), the ranking
quality (AUC) and the Brier score of the raw and the fitted confidences, and the word time errors
before and after the shift.

Command line::

    speechlabel calibrate --checkpoint C --manifest dev.jsonl [--manifest ...] [--heldout test.jsonl ...]
                          [--beam-size 8] [--out C.calibration.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from audiomodels.alignment import align_labels
from audiomodels.checkpoint import CheckpointError
from audiomodels.calibration import (
    Calibration,
    LogisticMap,
    calibration_beside,
    file_sha256,
    word_features,
)
from audiomodels.files import file_version
from audiomodels.lm import LMError, own_fusion
from audiomodels.recognizer import Recognizer, Transcript
from training.espeak_timing import (
    SpeechJob,
    TimedSpeech,
    espeak_jobs,
    time_error_summary,
    timed_speech,
    transcript_time_errors,
)
from training.evaluate import batches_of, scored_utterance
from training.manifest import ManifestError, Utterance, read_manifest
from training.metrics import confidence_quality, right_tokens, separated_words

L2 = 1e-3  # ridge on the weights: keeps a feature that never varies (every word known) finite
TIMED_UTTERANCES = 200  # espeak-ng utterances per manifest spoken again to time words against


@dataclass
class WordOutcomes:
    """Recognized words of one decoding mode: their features (the vocabulary's last, when one is
    weighed), raw confidences, and whether each was right."""

    features: list[list[float]] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    right: list[bool] = field(default_factory=list)

    def add(self, other: WordOutcomes) -> None:
        self.features += other.features
        self.raw += other.raw
        self.right += other.right


def word_outcomes(
    recognizer: Recognizer,
    utterances: Sequence[Utterance],
    beam_size: int,
    vocabulary: frozenset[str] = frozenset(),
    batch_seconds: float = 120.0,
) -> WordOutcomes:
    """Decode ``utterances`` (greedy for ``beam_size`` 1, else beam search with the recognizer's
    LM) and score every recognized word, weighing ``vocabulary`` where it is not empty;
    utterances whose audio or reference cannot be used are skipped, as
    :func:`training.evaluate.evaluate` skips them."""
    separator = recognizer.labels.word_separator
    if separator is None:
        raise ValueError(
            f"word confidences need a label set with a word separator ({recognizer.labels.kind!r} has none)"
        )
    outcomes = WordOutcomes()
    for batch in tqdm(
        batches_of(utterances, batch_seconds), disable=not sys.stderr.isatty(), desc="words", unit="batch"
    ):
        loaded = []
        for index in batch:
            try:
                loaded.append(scored_utterance(recognizer, utterances[index]))
            except ValueError:
                continue
        outputs = recognizer.decodable_batch([(audio, recognizer.sample_rate) for _, audio in loaded], batch_seconds)
        for (reference, _), output in zip(loaded, outputs, strict=True):
            best = recognizer.ranked(output.log_probs, output.check_log_probs, beam_size=beam_size)[0]
            spans = align_labels(output.log_probs, best, blank=recognizer.labels.blank_id) if best else []
            words = recognizer.word_spans(spans)
            spoken = separated_words(reference, separator)
            texts = [recognizer.labels.decode(word.label_ids) for word in words]
            for word, text, is_right in zip(words, texts, right_tokens(spoken, texts), strict=True):
                outcomes.features.append(word_features(word, text in vocabulary if vocabulary else None))
                outcomes.raw.append(word.confidence)
                outcomes.right.append(is_right)
    return outcomes


def fit_logistic(features: np.ndarray, outcomes: np.ndarray, l2: float = L2, steps: int = 50) -> LogisticMap:
    """Maximum-likelihood logistic regression (Newton's method, a small ridge on the weights)."""
    design = np.hstack([features, np.ones((len(features), 1))])
    ridge = l2 * np.eye(design.shape[1])
    ridge[-1, -1] = 0.0  # not on the bias
    coefficients = np.zeros(design.shape[1])
    for _ in range(steps):
        predicted = 1 / (1 + np.exp(-np.clip(design @ coefficients, -30, 30)))
        gradient = design.T @ (predicted - outcomes) + ridge @ coefficients
        hessian = (design * (predicted * (1 - predicted))[:, None]).T @ design + ridge
        step = np.linalg.solve(hessian, gradient)
        coefficients -= step
        if np.abs(step).max() < 1e-9:
            break
    return LogisticMap(tuple(float(c) for c in coefficients[:-1]), float(coefficients[-1]))


def fit_maps(outcomes: dict[str, WordOutcomes]) -> dict[str, LogisticMap]:
    """One map per decoding mode."""
    maps = {}
    for mode, words in outcomes.items():
        if not words.right:
            raise ValueError(f"no words were recognized in {mode} decoding to fit a map on")
        maps[mode] = fit_logistic(np.array(words.features), np.array(words.right, dtype=float))
    return maps


def quality_report(calibration: Calibration, mode: str, words: WordOutcomes) -> dict[str, Any]:
    """Raw and fitted confidences' :func:`confidence_quality` on ``words`` of ``mode`` decoding."""
    fitted = [calibration.maps[mode].probability(row) for row in words.features]
    return {
        "raw": _rounded(confidence_quality(words.raw, words.right)),
        "calibrated": _rounded(confidence_quality(fitted, words.right)),
    }


def _rounded(quality: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 4) if isinstance(value, float) else value for name, value in quality.items()}


def calibrate(
    checkpoint: Path,
    manifests: Sequence[Path],
    heldout: Sequence[Path] = (),
    beam_size: int = 8,
    batch_seconds: float = 120.0,
) -> Calibration:
    """Fit the maps on ``manifests`` and report them there and on ``heldout``."""
    fusion = own_fusion(checkpoint)
    recognizer = Recognizer.from_checkpoint(checkpoint, fusion=fusion, calibration=None)
    modes = {"greedy": 1, "beam": beam_size} if fusion is not None else {"greedy": 1}
    words = fusion.lm.words if fusion is not None else None
    vocabulary = (
        frozenset(recognizer.labels.decode(spelling) for spelling in words.vocabulary) if words else frozenset()
    )
    fit_on = {mode: WordOutcomes() for mode in modes}
    per_split: dict[str, dict[str, WordOutcomes]] = {}
    timed: dict[str, list[SpeechJob]] = {}
    for manifest in [*manifests, *heldout]:
        utterances = read_manifest(manifest)
        timed[str(manifest)] = espeak_jobs(utterances, TIMED_UTTERANCES)
        per_split[str(manifest)] = {
            mode: word_outcomes(recognizer, utterances, size, vocabulary, batch_seconds) for mode, size in modes.items()
        }
        if manifest in manifests:
            for mode in modes:
                fit_on[mode].add(per_split[str(manifest)][mode])
    speech = {split: timed_speech(jobs, workers=2) if jobs else [] for split, jobs in timed.items()}
    aligned = {split: aligned_transcripts(recognizer, timed[split], speech[split]) for split in timed}
    raw = {split: time_errors(aligned[split], speech[split], recognizer) for split in timed}
    fit_words = [error for m in manifests for error in raw[str(m)][0]]
    fit_segments = [error for m in manifests for error in raw[str(m)][1]]
    calibration = Calibration(
        fit_maps(fit_on),
        vocabulary,
        (_median_shift([e[0] for e in fit_words]), _median_shift([e[1] for e in fit_words])),
        _median_shift([e[1] for e in fit_segments]),
        file_sha256(file_version(checkpoint)),
    )
    moved = {
        split: time_errors([moved_times(calibration, t) for t in aligned[split]], speech[split], recognizer)
        for split in timed
        if timed[split]
    }
    report = {
        "fitted_on": [str(m) for m in manifests],
        "heldout": [str(m) for m in heldout],
        "beam_size": beam_size if "beam" in modes else None,
        "splits": {
            split: {mode: quality_report(calibration, mode, outcomes) for mode, outcomes in by_mode.items()}
            for split, by_mode in per_split.items()
        },
        **{
            key: {
                split: {
                    "raw": time_error_summary(raw[split][side]),
                    "calibrated": time_error_summary(moved[split][side]),
                }
                for split in moved
                if raw[split][side]
            }
            for side, key in enumerate(("word_times", "segment_times"))
        },
    }
    return dataclasses.replace(calibration, report=report)


def _median_shift(errors_ms: list[float]) -> float:
    """Seconds that move the median of ``errors_ms`` to 0 (0 without errors)."""
    return round(-float(np.median(errors_ms)) / 1000, 4) if errors_ms else 0.0


def aligned_transcripts(recognizer: Recognizer, jobs: Sequence[SpeechJob], speech: Sequence[TimedSpeech]) -> list[Transcript]:
    """The recognizer's alignment of each job's text to its speech."""
    return [
        recognizer.align(truth.samples.astype(np.float32) / 32768, truth.rate, job.text)
        for job, truth in zip(jobs, speech, strict=True)
    ]


def time_errors(
    transcripts: Sequence[Transcript], speech: Sequence[TimedSpeech], recognizer: Recognizer
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Start and end errors (ms) of the transcripts' words, and of a phone model's label segments,
    against the synthesizer's true times (:func:`training.espeak_timing.transcript_time_errors`)."""
    words: list[tuple[float, float]] = []
    segments: list[tuple[float, float]] = []
    for transcript, truth in zip(transcripts, speech, strict=True):
        word_errors, segment_errors = transcript_time_errors(truth, transcript, recognizer.labels)
        words += word_errors
        segments += segment_errors
    return words, segments


def moved_times(calibration: Calibration, transcript: Transcript) -> Transcript:
    """A raw alignment's transcript as a recognizer with ``calibration`` returns it: the same
    alignment with its word and segment times moved, so the shift is scored without aligning again."""
    duration = transcript.duration_s
    words = calibration.word_times([(w.start_s, w.end_s) for w in transcript.words], duration)
    segments = calibration.segment_times([(s.start_s, s.end_s) for s in transcript.segments], duration)
    return dataclasses.replace(
        transcript,
        words=tuple(dataclasses.replace(w, start_s=a, end_s=b) for w, (a, b) in zip(transcript.words, words, strict=True)),
        segments=tuple(
            dataclasses.replace(s, start_s=a, end_s=b) for s, (a, b) in zip(transcript.segments, segments, strict=True)
        ),
    )


def readable(report: dict[str, Any]) -> str:
    """One line per split and decoding mode: raw -> calibrated confidence, ECE and AUC; then one
    per split with timed words (and phone segments): raw -> moved median error and share within
    20 ms of starts and ends."""
    lines = [f"{'split':<36} {'decoding':<8} {'words':>6} {'accuracy':>8} {'confidence':>17} {'ECE':>15} {'AUC':>13}"]
    for split, by_mode in report["splits"].items():
        for mode, quality in by_mode.items():
            raw, fitted = quality["raw"], quality["calibrated"]
            lines.append(
                f"{_split_name(report, split):<36} {mode:<8} {raw['words']:>6} "
                f"{raw['accuracy']:>8.3f} {raw['confidence']:>7.3f} -> {fitted['confidence']:.3f} "
                f"{raw['ece']:>6.3f} -> {fitted['ece']:.3f} {raw['auc']:>5.3f} -> {fitted['auc']:.3f}"
            )
    for key, title in (("word_times", "aligned word times"), ("segment_times", "aligned phone segments")):
        if report[key]:
            lines.append(f"{title:<36} {'count':>6}  {'start: median error, <=20 ms':<34} end")
        for split, times in report[key].items():
            cells = [
                f"{times['raw'][side]['median_ms']:+6.1f} -> {times['calibrated'][side]['median_ms']:+5.1f} ms, "
                f"{100 * times['raw'][side]['within_20ms']:3.0f}% -> {100 * times['calibrated'][side]['within_20ms']:3.0f}%"
                for side in ("start", "end")
            ]
            lines.append(f"{_split_name(report, split):<36} {times['raw']['words']:>6}  {cells[0]:<34} {cells[1]}")
    return "\n".join(lines)


CARD_SECTION = "## Calibration"


def with_calibration_section(card: str, file_name: str, calibration: Calibration) -> str:
    """A model card with its calibration section (written anew, in place of an earlier one): the
    shifts, and the held-out splits' raw -> calibrated ECE and end errors, from the report."""
    report = calibration.report
    start, end = calibration.word_shift_s
    lines = [
        f"{CARD_SECTION} (`{file_name}`, `speechlabel calibrate`)",
        "",
        f"- word confidences are P(word is right): maps fitted on {', '.join(f'`{m}`' for m in report['fitted_on'])}",
    ]
    for split in report["heldout"]:
        for mode, quality in report["splits"][split].items():
            raw, fitted = quality["raw"], quality["calibrated"]
            lines.append(
                f"- {_split_name(report, split)}, {mode}: ECE {raw['ece']:.3f} -> {fitted['ece']:.3f}, "
                f"AUC {raw['auc']:.3f} -> {fitted['auc']:.3f} ({raw['words']} words, accuracy {raw['accuracy']:.3f})"
            )
    segments = calibration.segment_end_shift_s
    lines.append(
        f"- word times moved by {1000 * start:+.1f} ms (starts) and {1000 * end:+.1f} ms (ends)"
        + (f", label segments' ends by {1000 * segments:+.1f} ms" if segments else "")
        + ": minus the median errors against espeak-ng's true times"
    )
    for key, what in (("word_times", "word"), ("segment_times", "segment")):
        for split, times in report[key].items():
            if split in report["heldout"]:
                raw, moved = times["raw"]["end"], times["calibrated"]["end"]
                lines.append(
                    f"- {_split_name(report, split)}, {what} ends: median error {raw['median_abs_ms']:.1f} -> "
                    f"{moved['median_abs_ms']:.1f} ms, within 20 ms {100 * raw['within_20ms']:.0f}% -> "
                    f"{100 * moved['within_20ms']:.0f}%"
                )
    kept = card.split(f"\n{CARD_SECTION}")[0].rstrip("\n")
    return f"{kept}\n\n" + "\n".join(lines) + "\n"


def _split_name(report: dict[str, Any], split: str) -> str:
    return f"{Path(split).parent.name}/{Path(split).name}" + (" (held out)" if split in report["heldout"] else "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``speechlabel calibrate``."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="model checkpoint to calibrate")
    parser.add_argument(
        "--manifest", type=Path, action="append", required=True, help="JSONL manifest to fit on (dev data; repeatable)"
    )
    parser.add_argument(
        "--heldout", type=Path, action="append", default=[], help="JSONL manifest to report on only (repeatable)"
    )
    parser.add_argument(
        "--beam-size",
        type=int,
        default=8,
        help="beam width of the beam-search map, with the LM beside the checkpoint (default 8)",
    )
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="audio per model call (default 120)")
    parser.add_argument(
        "--out", type=Path, help="where to write the maps (default: NAME.calibration.json beside the checkpoint)"
    )


def run(args: argparse.Namespace) -> int:
    if args.beam_size < 2:
        raise SystemExit("speechlabel calibrate: --beam-size must be at least 2 (greedy is always fitted)")
    try:
        calibration = calibrate(args.checkpoint, args.manifest, args.heldout, args.beam_size, args.batch_seconds)
    except (CheckpointError, ManifestError, LMError, OSError, ValueError) as error:
        raise SystemExit(f"speechlabel calibrate: {error}") from error
    out = args.out or calibration_beside(args.checkpoint)
    calibration.save(out)
    print(readable(calibration.report))
    print(f"wrote {out}")
    card = args.checkpoint.with_suffix(".md")
    if args.out is None and card.is_file():  # the card ListModels serves says what the calibration does
        card.write_text(with_calibration_section(card.read_text(), out.name, calibration))
        print(f"updated {card}")
    maps = {key: {"weights": m.weights, "bias": m.bias} for key, m in calibration.maps.items()}
    shifts = {"word_shift_s": calibration.word_shift_s, "segment_end_shift_s": calibration.segment_end_shift_s}
    print(json.dumps({"maps": maps, **shifts}))
    return 0
