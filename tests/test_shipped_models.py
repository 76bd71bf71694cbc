"""The files in models/: within the size the product promises, loadable, each LM built for its model's labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiomodels.audio import load_audio
from audiomodels.checkpoint import load_checkpoint
from audiomodels.context import PhraseBias
from audiomodels.labels import LabelSet, phonemize
from audiomodels.lm import NgramLM, lm_beside
from audiomodels.recognizer import Recognizer
from tests.conftest import synthesize_wav

MODELS = Path(__file__).resolve().parent.parent / "models"
MAX_BYTES = 25_000_000  # per shipped file (the budget for a model; its LM gets the same)


@pytest.mark.parametrize("name", ["char", "phone"])
def test_shipped_model_and_its_lm_fit_the_budget_and_belong_together(name: str) -> None:
    checkpoint_path = MODELS / f"{name}.ckpt"
    lm_path = lm_beside(checkpoint_path)
    assert checkpoint_path.stat().st_size <= MAX_BYTES and lm_path.stat().st_size <= MAX_BYTES
    checkpoint = load_checkpoint(checkpoint_path)
    assert checkpoint.config.labels.kind == name
    assert checkpoint.metadata["evaluation"]["test"]  # exported with held-out scores, not a raw run checkpoint
    lm = NgramLM.load(lm_path)
    lm.check_labels(LabelSet.from_config(checkpoint.config.labels).symbols)
    assert checkpoint.metadata["lm"]["ngrams"] == len(lm.log_probs)  # the card describes this very LM


def test_the_phone_model_aligns_and_takes_hints_from_words(tmp_path: Path) -> None:
    """Phone alignment is asked for with the words spoken; espeak-ng's phones of them are aligned."""
    recognizer = Recognizer.from_checkpoint(MODELS / "phone.ckpt")
    samples = load_audio(synthesize_wav("open the door", tmp_path / "door.wav"), target_rate=16000)
    aligned = recognizer.align(samples, 16000, "Open the door.")
    assert " ".join(s.label for s in aligned.segments) == phonemize("open the door")
    assert len(aligned.words) == 3
    assert all(a.end_s <= b.start_s for a, b in zip(aligned.segments, aligned.segments[1:]))
    bias = PhraseBias.from_phrases(["the door"], recognizer.labels)
    assert bias.phrases == (tuple(recognizer.labels.encode(phonemize("the door"))),)
