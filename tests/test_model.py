"""BiGRU-CTC model: shapes, padding invariance, normalization buffers, growing by residual layers."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from audiomodels.config import Chunking, ModelConfig
from audiomodels.model import AcousticModel


@pytest.fixture()
def model() -> AcousticModel:
    torch.manual_seed(0)
    return AcousticModel(ModelConfig(input_dim=12, num_labels=7, proj_dim=16, hidden_size=8, num_layers=2)).eval()


def test_output_shapes_and_log_probabilities(model: AcousticModel) -> None:
    features = torch.randn(3, 20, 12)
    log_probs, lengths = model(features, torch.tensor([20, 11, 5]))
    assert log_probs.shape == (3, 20, 7)
    assert lengths.tolist() == [20, 11, 5]
    assert torch.allclose(log_probs[0].exp().sum(-1), torch.ones(20), atol=1e-5)


@pytest.mark.parametrize("grad", [True, False], ids=["padded-under-autograd", "packed-forward-only"])
@pytest.mark.parametrize("chunking", [None, Chunking(4, 3)], ids=["full", "chunked"])
def test_batch_gives_the_same_outputs_as_each_item_alone(
    model: AcousticModel, grad: bool, chunking: Chunking | None
) -> None:
    lengths = [17, 4, 30, 9]
    items = [torch.randn(n, 12) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=123.0)  # loud padding
    with torch.set_grad_enabled(grad):
        batch_out, _ = model(padded, torch.tensor(lengths), chunking)
        for row, item in enumerate(items):
            alone, _ = model(item[None], torch.tensor([len(item)]), chunking)
            assert torch.allclose(batch_out[row, : len(item)], alone[0], atol=1e-5)


def test_normalization_buffers_are_applied_and_saved(model: AcousticModel) -> None:
    features = torch.randn(1, 10, 12) * 5 + 3
    before, _ = model(features, torch.tensor([10]))
    model.set_normalization(torch.full((4,), 3.0), torch.full((4,), 5.0))  # per-coefficient stats, stack of 3
    assert torch.equal(model.feature_mean, torch.full((12,), 3.0))
    after, _ = model(features, torch.tensor([10]))
    assert not torch.allclose(before, after)
    assert "feature_mean" in model.state_dict() and "feature_std" in model.state_dict()


def test_zero_length_sequences_are_rejected(model: AcousticModel) -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        model(torch.randn(2, 5, 12), torch.tensor([5, 0]))


def test_dropout_only_in_training_mode(model: AcousticModel) -> None:
    dropout_model = AcousticModel(ModelConfig(input_dim=12, num_labels=7, proj_dim=16, hidden_size=8, dropout=0.5))
    features, lengths = torch.randn(1, 10, 12), torch.tensor([10])
    dropout_model.eval()
    assert torch.equal(dropout_model(features, lengths)[0], dropout_model(features, lengths)[0])
    dropout_model.train()
    assert not torch.equal(dropout_model(features, lengths)[0], dropout_model(features, lengths)[0])


@pytest.mark.parametrize("chunking", [None, Chunking(4, 3)], ids=["full", "chunked"])
def test_a_grown_model_starts_as_the_model_it_grew_from(model: AcousticModel, chunking: Chunking | None) -> None:
    grown = AcousticModel(replace(model.config, residual_layers=2)).eval()
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(name.startswith(("layers.2.", "layers.3.", "residual_projections.")) for name in missing)
    features, lengths = torch.randn(2, 13, 12), torch.tensor([13, 6])
    assert torch.equal(grown(features, lengths, chunking)[0], model(features, lengths, chunking)[0])
    with torch.no_grad():
        grown.residual_projections[1].bias.fill_(0.5)
    assert not torch.allclose(grown(features, lengths, chunking)[0], model(features, lengths, chunking)[0])
    assert grown.num_parameters() > model.num_parameters()
