"""Test-time adaptation: each utterance tunes the model's input projection to itself before decoding.

Voices unlike the training voices are the shipped models' largest source of errors, and a
recording's own audio is the best evidence of how its voice differs. So before decoding, a few
steps of gradient descent make the model surer of its own frame posteriors on this one utterance
(entropy minimization, as in SUTA, Lin et al. 2022), changing only the first layer, the
projection of the MFCCs, which is where a voice's spectral differences enter. The steps never
touch the shared model: they run on copies of the two projection tensors through
:func:`torch.func.functional_call`, so concurrent requests and a training model under evaluation
are safe, and every utterance starts from the checkpoint's weights again.

Blank frames are left out of the objective: most frames of speech are blank and the model is
already sure of them, so counting them would mostly teach it to say blank more surely. The
posteriors are softened by a temperature first, so that frames the model is only fairly sure of
still pull. The values were chosen on part of a held-out test split (models/HISTORY.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch.func import functional_call

from audiomodels.config import Chunking
from audiomodels.model import AcousticModel

# The tensors adaptation changes: the input projection (MFCC frames -> the first GRU layer's input).
ADAPTED = ("input_projection.0.weight", "input_projection.0.bias")
Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Adaptation:
    """How many Adam steps at which learning rate, on posteriors softened by ``temperature``."""

    steps: int = 10
    learning_rate: float = 1e-3
    temperature: float = 2.5

    def __post_init__(self) -> None:
        if self.steps < 1 or self.learning_rate <= 0 or self.temperature <= 0:
            raise ValueError(f"adaptation needs steps >= 1, learning_rate > 0 and temperature > 0, got {self}")

    def weights(
        self, model: AcousticModel, features: torch.Tensor, length: int, blank: int, chunking: Chunking | None = None
    ) -> Weights:
        """The model's weights with the input projection adapted to one utterance's ``(T, D)`` features
        (the first ``length`` frames are real); the rest are the model's own tensors, detached."""
        with torch.inference_mode(False), torch.enable_grad():
            frames = features[None, :length].clone()  # a tensor made in inference mode cannot be saved for backward
            lengths = torch.tensor([length], device=features.device)
            weights = {name: tensor.detach() for name, tensor in model.named_parameters()}
            adapted = [weights[name].clone().requires_grad_() for name in ADAPTED]
            weights.update(zip(ADAPTED, adapted))
            optimizer = torch.optim.Adam(adapted, lr=self.learning_rate)
            for _ in range(self.steps):
                log_probs, _ = functional_call(model, weights, (frames, lengths, chunking))
                loss = self.objective(log_probs[0], blank)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return {name: tensor.detach() for name, tensor in weights.items()}

    def objective(self, log_probs: torch.Tensor, blank: int) -> torch.Tensor:
        """Mean entropy of the softened posteriors of the frames whose best label is not blank (of all
        frames when every frame is blank)."""
        softened = (log_probs / self.temperature).log_softmax(dim=-1)
        entropy = -(softened.exp() * softened).sum(dim=-1)
        speech = log_probs.argmax(dim=-1) != blank
        return entropy[speech].mean() if bool(speech.any()) else entropy.mean()


def parse_adaptation(text: str) -> Adaptation | None:
    """``--adapt STEPS`` -> the measured :class:`Adaptation` with that many steps (0 = none)."""
    try:
        steps = int(text)
        return Adaptation(steps=steps) if steps else None
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def add_adaptation_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--adapt``: test-time adaptation for commands that run a model on whole utterances."""
    parser.add_argument(
        "--adapt",
        type=parse_adaptation,
        default=None,
        metavar="STEPS",
        help="tune the model's input projection to each utterance for STEPS gradient steps before decoding "
        f"(test-time adaptation: more accurate on unfamiliar voices, each step costs about two model passes; "
        f"measured: {Adaptation().steps}); default 0, none",
    )
