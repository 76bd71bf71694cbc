"""bfloat16 inference (the batch job's default where the CPU has it) against float32, on real speech."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiomodels.audio import load_audio
from audiomodels.recognizer import Recognizer, native_bfloat16, resolve_precision
from training.metrics import ErrorCounts, char_errors

SHIPPED_CHAR = Path(__file__).resolve().parent.parent / "models" / "char.ckpt"


def test_precision_names_resolve_and_unknown_ones_are_refused() -> None:
    assert resolve_precision("auto") == ("bfloat16" if native_bfloat16() else "float32")
    assert resolve_precision("float32") == "float32"
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        resolve_precision("fp8")


def test_bfloat16_model_labels_real_speech_like_float32(speech_files: dict[str, Path]) -> None:
    exact = Recognizer.from_checkpoint(SHIPPED_CHAR)
    fast = Recognizer(exact.config, exact.model, precision="bfloat16")
    assert next(exact.model.parameters()).dtype == torch.float32  # the shared model was copied, not converted
    assert next(fast.model.parameters()).dtype == torch.bfloat16

    waveforms = [load_audio(path, target_rate=exact.sample_rate) for path in speech_files.values()]
    exact_log_probs, lengths = exact.emissions(waveforms)
    fast_log_probs, fast_lengths = fast.emissions(waveforms)
    assert fast_log_probs.dtype == torch.float32 and torch.equal(lengths, fast_lengths)
    valid = torch.arange(exact_log_probs.shape[1])[None, :] < lengths[:, None]
    same_label = (exact_log_probs.argmax(-1) == fast_log_probs.argmax(-1))[valid].float().mean()
    assert same_label > 0.97, f"only {same_label:.1%} of frames keep their best label"

    items = [(w, exact.sample_rate) for w in waveforms]
    exact_texts = [t.text for t in exact.transcribe_batch(items)]
    fast_texts = [t.text for t in fast.transcribe_batch(items)]
    counts = sum((char_errors(a, b) for a, b in zip(exact_texts, fast_texts, strict=True)), ErrorCounts())
    assert counts.rate <= 0.03, (exact_texts, fast_texts)
