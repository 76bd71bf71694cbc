"""Test-time adaptation: it makes the shipped model surer of its own speech frames on a real utterance,
never touches the shared model, and a batch adapts each utterance as if it came alone."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from audiomodels.adaptation import ADAPTED, Adaptation, parse_adaptation
from audiomodels.audio import load_audio
from audiomodels.recognizer import Recognizer
from tests.conftest import synthesize_wav

CHAR_MODEL = Path(__file__).resolve().parent.parent / "models" / "char.ckpt"


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.from_checkpoint(CHAR_MODEL)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    folder = tmp_path_factory.mktemp("adapt")
    texts = ("the quick brown fox jumps over the lazy dog", "open the door")
    return [load_audio(synthesize_wav(text, folder / f"{i}.wav"), target_rate=16000) for i, text in enumerate(texts)]


def test_adaptation_lowers_its_objective_and_changes_only_a_copy_of_the_input_projection(
    recognizer: Recognizer, speech: list[np.ndarray]
) -> None:
    model = recognizer.model
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    features, lengths = recognizer.featurizer.batch([speech[0]])
    adaptation = Adaptation(steps=5)
    blank = recognizer.labels.blank_id
    weights = adaptation.weights(model, features[0], int(lengths[0]), blank)

    with torch.no_grad():
        plain = model(features, lengths)[0][0]
        adapted = torch.func.functional_call(model, weights, (features, lengths))[0][0]
    assert adaptation.objective(adapted, blank) < adaptation.objective(plain, blank) - 0.01
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert all(parameter.grad is None for parameter in model.parameters())
    changed = {name for name, tensor in weights.items() if not torch.equal(tensor, before[name])}
    assert changed == set(ADAPTED)


def test_a_batch_adapts_each_utterance_as_if_it_came_alone(recognizer: Recognizer, speech: list[np.ndarray]) -> None:
    adapting = Recognizer(recognizer.config, recognizer.model, adaptation=Adaptation(steps=3))
    together = adapting.transcribe_batch([(samples, 16000) for samples in speech])
    alone = [adapting.transcribe(samples, 16000) for samples in speech]
    assert [t.text for t in together] == [t.text for t in alone]
    assert all(t.text for t in together)


def test_adaptation_with_warps_runs_every_pass_on_the_adapted_weights(
    recognizer: Recognizer, speech: list[np.ndarray]
) -> None:
    """With one warp factor of 1 the ensemble is the plain pass, so it must equal plain adaptation."""
    adaptation = Adaptation(steps=3)
    plain = Recognizer(recognizer.config, recognizer.model, adaptation=adaptation)
    ensemble = Recognizer(recognizer.config, recognizer.model, adaptation=adaptation, warps=(1.0,))
    [(plain_log_probs, _)] = plain.decodable_batch([(speech[1], 16000)])
    [(ensemble_log_probs, _)] = ensemble.decodable_batch([(speech[1], 16000)])
    torch.testing.assert_close(plain_log_probs, ensemble_log_probs, atol=1e-4, rtol=1e-4)  # warp 1 is the identity to float error
    [(unadapted, _)] = recognizer.decodable_batch([(speech[1], 16000)])
    assert not torch.allclose(unadapted, plain_log_probs)


def test_adaptation_settings_are_checked() -> None:
    for bad in ({"steps": 0}, {"learning_rate": 0.0}, {"temperature": -1.0}):
        with pytest.raises(ValueError, match="adaptation needs"):
            Adaptation(**bad)
    assert parse_adaptation("0") is None
    assert parse_adaptation("4") == Adaptation(steps=4)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_adaptation("-2")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_adaptation("many")
