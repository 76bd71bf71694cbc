"""Latency-controlled (chunked) BiGRU: semantics, latency bound, streaming == offline, resampling."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiomodels.config import AcousticConfig, Chunking, ModelConfig
from audiomodels.model import AcousticModel
from audiomodels.recognizer import Recognizer
from audiomodels.streaming import ChunkedStream, ChunkInput, step_streams
from tests.test_features import chirp_with_noise
from training.config import TrainConfig
from training.train import training_chunking


@pytest.fixture(scope="module")
def model() -> AcousticModel:
    torch.manual_seed(0)
    config = ModelConfig(input_dim=12, num_labels=7, proj_dim=16, hidden_size=8, num_layers=2, residual_layers=1)
    return with_open_residuals(AcousticModel(config)).eval()


def with_open_residuals(model: AcousticModel) -> AcousticModel:
    """Residual layers start shut (zero projections); random projections make them count."""
    with torch.no_grad():
        for projection in model.residual_projections:
            projection.weight.normal_(std=0.3)
            projection.bias.normal_(std=0.3)
    return model


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    """A random small model behind the real featurizer (exactness does not need a trained one)."""
    torch.manual_seed(1)
    config = AcousticConfig(model=ModelConfig(proj_dim=32, hidden_size=16, num_layers=2, residual_layers=1, num_labels=29))
    return Recognizer(config, with_open_residuals(AcousticModel(config.model)))


def reference_chunked(model: AcousticModel, features: torch.Tensor, chunking: Chunking) -> torch.Tensor:
    """LC-BiGRU written out chunk by chunk and layer by layer, one utterance (T, D) -> (T, V)."""
    chunk, right = chunking.chunk, chunking.right_context
    frames = features.shape[0]
    states = [None] * len(model.layers)
    outputs = []
    for start in range(0, frames, chunk):
        main_end = min(start + chunk, frames)
        hidden = model.input_projection((features[start : min(main_end + right, frames)] - model.feature_mean) / model.feature_std)
        for index, layer in enumerate(model.layers):
            forward, _ = layer.forward_gru(hidden[None], states[index])
            states[index] = forward[:, main_end - start - 1][None].contiguous()  # carried from the chunk's last main frame
            backward, _ = layer.backward_gru(hidden.flip(0)[None])
            output = torch.cat([forward[0], backward[0].flip(0)], dim=-1)
            residual = index - model.config.num_layers  # residual layers add a projection of their output
            hidden = output if residual < 0 else hidden + model.residual_projections[residual](output)
        outputs.append(model.output_projection(hidden[: main_end - start]).log_softmax(-1))
    return torch.cat(outputs)


@pytest.mark.parametrize("chunking", [Chunking(1, 0), Chunking(4, 2), Chunking(5, 0), Chunking(7, 9), Chunking(40, 3)])
def test_batched_chunked_forward_equals_the_chunk_by_chunk_definition(model: AcousticModel, chunking: Chunking) -> None:
    lengths = [23, 8, 1, 16]
    items = [torch.randn(n, 12) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=50.0)  # loud padding
    with torch.no_grad():
        batch_out, _ = model(padded, torch.tensor(lengths), chunking)
        for row, item in enumerate(items):
            assert torch.allclose(batch_out[row, : len(item)], reference_chunked(model, item, chunking), atol=1e-5)


def test_one_chunk_without_look_ahead_is_full_context(model: AcousticModel) -> None:
    features = torch.randn(2, 30, 12)
    lengths = torch.tensor([30, 21])
    with torch.no_grad():
        full, _ = model(features, lengths)
        chunked, _ = model(features, lengths, Chunking(30, 0))
        small, _ = model(features, lengths, Chunking(10, 5))
    assert torch.allclose(full[0], chunked[0], atol=1e-6) and torch.allclose(full[1, :21], chunked[1, :21], atol=1e-6)
    assert not torch.allclose(full[0], small[0], atol=1e-3)  # smaller chunks really do see less


def test_outputs_never_depend_on_audio_past_the_latency_bound(model: AcousticModel) -> None:
    chunking = Chunking(6, 3)
    features = torch.randn(1, 40, 12)
    with torch.no_grad():
        before, _ = model(features, torch.tensor([40]), chunking)
        for frame in range(0, 40, 5):
            horizon = (frame // 6 + 1) * 6 + 3  # the frame's chunk end plus look-ahead
            changed = features.clone()
            changed[0, horizon:] += 10.0
            after, _ = model(changed, torch.tensor([40]), chunking)
            assert torch.allclose(after[0, : frame + 1], before[0, : frame + 1], atol=1e-6), frame


def test_checkpoints_with_one_bidirectional_gru_per_layer_still_load(model: AcousticModel) -> None:
    legacy = {}
    for name, tensor in model.state_dict().items():
        name = name.replace("forward_gru.", "").replace("backward_gru.weight_ih_l0", "weight_ih_l0_reverse")
        name = name.replace("backward_gru.weight_hh_l0", "weight_hh_l0_reverse")
        name = name.replace("backward_gru.bias_ih_l0", "bias_ih_l0_reverse").replace("backward_gru.bias_hh_l0", "bias_hh_l0_reverse")
        legacy[name] = tensor
    assert "layers.0.weight_ih_l0_reverse" in legacy
    reloaded = AcousticModel(model.config).eval()
    reloaded.load_state_dict(legacy)
    features = torch.randn(1, 12, 12)
    with torch.no_grad():
        assert torch.equal(reloaded(features, torch.tensor([12]))[0], model(features, torch.tensor([12]))[0])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    split_points=st.lists(st.integers(0, 32000), max_size=15),
    chunk=st.integers(1, 25),
    right=st.integers(0, 12),
    seconds=st.floats(0.1, 2.0),
)
def test_a_stream_fed_in_any_pieces_equals_the_offline_chunked_computation(
    recognizer: Recognizer, split_points: list[int], chunk: int, right: int, seconds: float
) -> None:
    chunking = Chunking(chunk, right)
    audio = chirp_with_noise(seconds, seed=chunk)
    offline = Recognizer(recognizer.config, recognizer.model, chunking=chunking)
    expected, lengths = offline.emissions([audio])
    stream = ChunkedStream(recognizer.featurizer, chunking)
    emitted = []

    def drain() -> None:
        while (ready := stream.ready()) is not None:
            ((log_probs, state),) = step_streams(recognizer.model, [ready])
            stream.advance(ready, state)
            emitted.append(log_probs)

    bounds = [0, *sorted(p for p in split_points if p < len(audio)), len(audio)]
    for start, end in itertools.pairwise(bounds):
        stream.accept(audio[start:end])
        drain()
    stream.end()
    drain()
    streamed = torch.cat(emitted) if emitted else torch.zeros(0, 29)
    assert streamed.shape[0] == int(lengths[0]) == stream.frames_emitted
    assert torch.allclose(streamed, expected[0, : lengths[0]], atol=1e-5)


def test_one_batched_step_equals_each_stream_stepped_alone(recognizer: Recognizer) -> None:
    chunking = Chunking(8, 4)
    streams = [ChunkedStream(recognizer.featurizer, chunking) for _ in range(4)]
    for index, (stream, seconds) in enumerate(zip(streams, (0.6, 0.5, 1.3, 0.95))):
        stream.accept(chirp_with_noise(seconds, seed=index))
        if index % 2:
            stream.end()  # ended streams bring short chunks without look-ahead
        for _ in range(index):  # and streams are at different positions with different states
            ready = stream.ready()
            stream.advance(ready, step_streams(recognizer.model, [ready])[0][1])
    chunks = [stream.ready() for stream in streams]
    assert all(chunk is not None for chunk in chunks) and len({len(c.main) for c in chunks}) > 1
    batched = step_streams(recognizer.model, chunks)
    for chunk, (log_probs, state) in zip(chunks, batched):
        ((alone_log_probs, alone_state),) = step_streams(recognizer.model, [chunk])
        assert torch.allclose(log_probs, alone_log_probs, atol=1e-5) and torch.allclose(state, alone_state, atol=1e-5)


def test_a_short_chunk_with_look_ahead_is_refused(recognizer: Recognizer) -> None:
    full = ChunkInput(torch.randn(8, 120), torch.randn(4, 120), None, Chunking(8, 4))
    short = ChunkInput(torch.randn(5, 120), torch.randn(2, 120), None, Chunking(8, 4))
    with pytest.raises(ValueError, match="full main part"):
        step_streams(recognizer.model, [full, short])


def test_training_chunking_is_seeded_per_step_and_follows_the_config() -> None:
    config = TrainConfig(chunked_prob=0.5, chunk_sizes=(10, 20), right_contexts=(0, 5))
    modes = [training_chunking(step, config) for step in range(400)]
    assert modes == [training_chunking(step, config) for step in range(400)]  # a resumed run repeats them
    chunked = [m for m in modes if m is not None]
    assert 150 < len(chunked) < 250
    assert {(m.chunk, m.right_context) for m in chunked} == {(10, 0), (10, 5), (20, 0), (20, 5)}
    assert all(training_chunking(step, TrainConfig()) is None for step in range(50))


def test_a_latency_becomes_chunk_plus_a_third_of_look_ahead() -> None:
    assert Chunking.for_latency(0.9, 0.03) == Chunking(20, 10)  # the shipped models' streaming mode
    assert Chunking.for_latency(0.45, 0.03) == Chunking(10, 5)
    assert Chunking.for_latency(0.31, 0.03) == Chunking(7, 3)  # whole frames only
    assert Chunking.for_latency(0.06, 0.03) == Chunking(2, 0)
    with pytest.raises(ValueError, match="under two model frames"):
        Chunking.for_latency(0.059, 0.03)


def test_a_warp_ensemble_stream_equals_the_offline_warp_ensemble(recognizer: Recognizer) -> None:
    """Streams stepped with a recognizer's warps (each with its own carried states, batched with a
    plain-length stream) give the offline chunked ensemble's log-probs."""
    chunking = Chunking(6, 3)
    ensemble = Recognizer(recognizer.config, recognizer.model, chunking=chunking, warps=(0.9, 1.0, 1.12))
    audios = [chirp_with_noise(seconds, seed=index) for index, seconds in enumerate((0.9, 0.55))]
    expected, lengths = ensemble.emissions(audios)
    streams = [ChunkedStream(recognizer.featurizer, chunking) for _ in audios]
    emitted: list[list[torch.Tensor]] = [[] for _ in audios]
    for stream, audio in zip(streams, audios):
        stream.accept(audio)
        stream.end()
    while ready := [(index, chunk) for index, stream in enumerate(streams) if (chunk := stream.ready()) is not None]:
        outputs = step_streams(recognizer.model, [chunk for _, chunk in ready], ensemble.warp_matrices)
        for (index, chunk), (log_probs, state) in zip(ready, outputs):
            assert state.shape[0] == 3  # one carried state per warp
            streams[index].advance(chunk, state)
            emitted[index].append(log_probs)
    for index, length in enumerate(lengths):
        torch.testing.assert_close(torch.cat(emitted[index]), expected[index, :length], atol=1e-5, rtol=0)
