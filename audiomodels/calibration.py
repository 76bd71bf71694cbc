"""What a model's raw outputs mean, measured after training: word confidences that are
probabilities (the chance that a word is right), and word times moved by the model's bias.

A word's raw confidence, the geometric mean of its labels' posteriors along the alignment, ranks
words well but is no probability: CTC's posteriors are peaky, so the shipped char model's greedy
words averaged 0.88 on the held-out test split while 62% of them were right. A logistic map
fitted on dev words by ``speechlabel calibrate`` (:mod:`training.calibrate`) turns a word's
measures into P(right): its raw confidence and its weakest label's posterior (as logits), its
number of labels (log) and, where the model's LM has a word vocabulary, whether the word is in it
(a spelling no training text had is mostly a misspelling). Greedy words and words of beam search
with the LM behave differently, so each decoding mode has its map.

A word's times are its first label's first frame and its last label's last frame, and CTC's
spikes end before the sound does: on espeak-ng speech, whose true word times the synthesizer
reports (:mod:`training.espeak_timing`), the shipped char model's word ends came 26 ms early
(median) and its starts 6 ms late on dev. ``calibrate`` measures those medians and recognizers
move every word's start and end by them (:meth:`Calibration.word_times`), within its neighbours.
A phone model's label segments, each phone's frames, end early the same way (31 ms, median, on
dev), so their ends move by their own measured median (:meth:`Calibration.segment_times`).

All of it lives beside the checkpoint as ``NAME.calibration.json``, with the vocabulary, the fit's
report and the checkpoint's SHA-256: a file fitted for another checkpoint (the model was
retrained) is ignored with a warning, since its numbers would be wrong for the new model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from audiomodels.alignment import WordSpan
from audiomodels.files import FileVersion, atomic_write_text, file_version

FORMAT = 1
FEATURES = ("score", "weakest", "labels")  # every map's features; then "known" where there is a vocabulary
MODES = ("greedy", "beam")  # beam: beam search with the LM (beam search without one reads like greedy)
_EDGE = 1e-4  # posteriors are clipped to [_EDGE, 1 - _EDGE] before their logit

log = logging.getLogger(__name__)


class CalibrationError(ValueError):
    """A calibration file that cannot be used (corrupt, another format, maps of the wrong size)."""


def _logit(probability: float) -> float:
    clipped = min(max(probability, _EDGE), 1 - _EDGE)
    return math.log(clipped / (1 - clipped))


def word_features(span: WordSpan, known: bool | None) -> list[float]:
    """What a map weighs of one word: the :data:`FEATURES`, then 1/0 for in/out of the vocabulary
    when ``known`` is not None."""
    features = [_logit(span.confidence), _logit(span.weakest), math.log(len(span.label_ids))]
    return features if known is None else [*features, float(known)]


@dataclass(frozen=True)
class LogisticMap:
    """P(right) = sigmoid(weights · features + bias)."""

    weights: tuple[float, ...]
    bias: float

    def probability(self, features: Sequence[float]) -> float:
        if len(features) != len(self.weights):
            raise CalibrationError(f"a map of {len(self.weights)} features was given {len(features)}")
        z = self.bias + math.fsum(w * x for w, x in zip(self.weights, features))
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


@dataclass(frozen=True)
class Calibration:
    """One checkpoint's maps by decoding mode (:data:`MODES`) and the word vocabulary they weigh
    (the LM's words when it was fitted, as the label set spells them; empty: the maps weigh no
    vocabulary). The vocabulary travels with the maps, so a word gets the same confidence whether
    or not the recognizer has loaded an LM, and the one the maps were fitted with."""

    maps: dict[str, LogisticMap]
    vocabulary: frozenset[str] = frozenset()
    # seconds added to word starts and ends: minus the median error measured against true times
    word_shift_s: tuple[float, float] = (0.0, 0.0)
    segment_end_shift_s: float = 0.0  # seconds added to label segments' ends (measured for phones only)
    checkpoint_sha256: str = ""
    report: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        features = len(FEATURES) + bool(self.vocabulary)
        for mode, mapping in self.maps.items():
            if mode not in MODES or len(mapping.weights) != features:
                raise CalibrationError(
                    f"map {mode!r} of {len(mapping.weights)} weights, expected one of {MODES} of {features}"
                )

    def confidence(self, mode: str, span: WordSpan, word: str) -> float:
        """P(``word``, aligned as ``span``, is right) for a word of ``mode`` decoding."""
        if mode not in self.maps:
            raise CalibrationError(f"no confidence map for {mode!r} decoding (has {sorted(self.maps)})")
        known = word in self.vocabulary if self.vocabulary else None
        return self.maps[mode].probability(word_features(span, known))

    def word_times(self, spans: Sequence[tuple[float, float]], duration_s: float) -> list[tuple[float, float]]:
        """Words' (start, end) in seconds moved by :attr:`word_shift_s`, each kept within the audio
        and its neighbours: a start no earlier than the word before ends, an end no later than
        the word after starts (as moved), and never before its own start."""
        start_shift, end_shift = self.word_shift_s
        moved = [(max(0.0, start + start_shift), min(duration_s, end + end_shift)) for start, end in spans]
        kept = []
        for index, (start, end) in enumerate(moved):
            if index:
                start = max(start, kept[-1][1])
            if index + 1 < len(moved):
                end = min(end, moved[index + 1][0])
            kept.append((round(start, 3), round(max(end, start), 3)))
        return kept

    def segment_times(self, spans: Sequence[tuple[float, float]], duration_s: float) -> list[tuple[float, float]]:
        """Label segments' (start, end) with each end moved by :attr:`segment_end_shift_s`, up to the
        next segment's start and the audio's end, never before its own start."""
        moved = []
        for index, (start, end) in enumerate(spans):
            limit = spans[index + 1][0] if index + 1 < len(spans) else duration_s
            moved.append((start, round(max(start, min(end + self.segment_end_shift_s, limit, duration_s)), 3)))
        return moved

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "word_shift_s": list(self.word_shift_s),
            "segment_end_shift_s": self.segment_end_shift_s,
            "features": [*FEATURES, "known"] if self.vocabulary else list(FEATURES),
            "checkpoint_sha256": self.checkpoint_sha256,
            "maps": {mode: {"weights": list(m.weights), "bias": m.bias} for mode, m in self.maps.items()},
            "report": self.report,
            "vocabulary": sorted(self.vocabulary),
        }

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise CalibrationError(f"{path}: calibration file format {data.get('format')!r}, expected {FORMAT}")
            maps = {
                mode: LogisticMap(tuple(float(w) for w in m["weights"]), float(m["bias"]))
                for mode, m in data["maps"].items()
            }
            start_shift, end_shift = (float(value) for value in data.get("word_shift_s", (0.0, 0.0)))
            return cls(
                maps,
                frozenset(data.get("vocabulary", ())),
                (start_shift, end_shift),
                float(data.get("segment_end_shift_s", 0.0)),
                str(data.get("checkpoint_sha256", "")),
                data.get("report", {}),
            )
        except CalibrationError as error:
            raise CalibrationError(f"{path}: {error}" if str(path) not in str(error) else str(error)) from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise CalibrationError(f"{path}: not a readable calibration file ({error})") from error


def calibration_beside(checkpoint: str | os.PathLike) -> Path:
    """Where a model's calibration lives: ``NAME.calibration.json`` beside ``NAME.ckpt``."""
    return Path(checkpoint).with_suffix(".calibration.json")


def own_calibration(checkpoint: str | os.PathLike) -> Calibration | None:
    """The checkpoint's confidence maps (:func:`calibration_beside`); None, with a warning, when
    the file is unreadable or was fitted for another checkpoint; None without one."""
    path = calibration_beside(checkpoint)
    if not path.is_file():
        return None
    try:
        calibration = Calibration.load(path)
    except CalibrationError as error:
        log.warning("word confidences stay uncalibrated: %s", error)
        return None
    if calibration.checkpoint_sha256 != file_sha256(file_version(checkpoint)):
        log.warning(
            "word confidences stay uncalibrated: %s was fitted for another %s (run speechlabel calibrate)",
            path.name,
            Path(checkpoint).name,
        )
        return None
    return calibration


@lru_cache(maxsize=8)
def file_sha256(version: FileVersion) -> str:
    """SHA-256 of a file's bytes, once per file version."""
    digest = hashlib.sha256()
    with open(version[0], "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
