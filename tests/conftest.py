"""Shared fixtures: real speech from espeak-ng and a tiny model trained on it, made once per test session."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from audiomodels.audio import load_audio
from audiomodels.checkpoint import load_checkpoint, save_checkpoint
from audiomodels.config import AcousticConfig, FeatureConfig, ModelConfig
from audiomodels.features import FeatureStats, Featurizer
from audiomodels.labels import LabelSet
from audiomodels.model import AcousticModel
from audiomodels.recognizer import Recognizer
from service.limits import Limits
from service.registry import ModelRegistry
from tests.grpc_harness import LoopbackServer
from training.data import collate
from training.train import compute_loss

# Small models run fastest single-threaded, and a second OpenMP thread spinning against other
# processes on a 2-core CI machine slows steps down by 10x or more.
torch.set_num_threads(1)

SPEECH_TEXTS = ("hello world", "the quick brown fox", "open the door", "seven green apples")
MAX_TRAINING_STEPS = 400


def synthesize_wav(text: str, path: Path, voice: str = "en-us") -> Path:
    """Speak ``text`` with espeak-ng into a WAV file (22.05 kHz PCM16, espeak-ng's native rate)."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="session")
def speech_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few short espeak-ng utterances, text -> WAV path."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed; run `make install`")
    directory = tmp_path_factory.mktemp("speech")
    return {text: synthesize_wav(text, directory / f"{index}.wav") for index, text in enumerate(SPEECH_TEXTS)}


@pytest.fixture(scope="session")
def trained(speech_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """Overfit a tiny model on the four utterances (seconds on CPU); returns (checkpoint path, loss curve).

    Training stops as soon as greedy decoding recovers every text, checked every 20 steps after 100.
    """
    torch.manual_seed(0)
    labels = LabelSet.char()
    features_config = FeatureConfig()
    config = AcousticConfig(
        features=features_config,
        labels=labels.to_config(),
        model=ModelConfig(input_dim=features_config.model_input_dim, num_labels=len(labels),
                          proj_dim=96, hidden_size=96, num_layers=2, dropout=0.0),
    )
    featurizer = Featurizer(features_config)
    waveforms = [load_audio(path) for path in speech_files.values()]
    items = [(featurizer(w), torch.tensor(labels.encode(text))) for w, text in zip(waveforms, speech_files)]
    stats = FeatureStats(features_config.n_mfcc)
    for waveform in waveforms:
        stats.update(featurizer.mfcc(torch.from_numpy(waveform)))
    model = AcousticModel(config.model)
    model.set_normalization(*stats.mean_std())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = collate(items)
    losses = []
    for step in range(MAX_TRAINING_STEPS):
        loss = compute_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if step > 100 and step % 20 == 0 and _decodes_all(model, config, waveforms, list(speech_files)):
            break
    path = tmp_path_factory.mktemp("model") / "tiny.ckpt"
    save_checkpoint(path, config, model, metadata={"steps": step + 1})
    return path, losses


def _decodes_all(model: AcousticModel, config: AcousticConfig, waveforms: list[np.ndarray], texts: list[str]) -> bool:
    recognizer = Recognizer(config, model)
    ok = [t.text == text for t, text in zip(recognizer.transcribe_batch([(w, 16000) for w in waveforms]), texts)]
    model.train()
    return all(ok)


@pytest.fixture(scope="session")
def model_dir(trained: tuple[Path, list[float]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server models directory: the tiny model as ``tiny.ckpt`` with dev metrics, and its model card."""
    checkpoint = load_checkpoint(trained[0])
    directory = tmp_path_factory.mktemp("models")
    metadata = {**checkpoint.metadata, "step": checkpoint.metadata["steps"], "metrics": {"dev_cer": 0.0}}
    save_checkpoint(directory / "tiny.ckpt", checkpoint.config, checkpoint.build_model(), metadata)
    (directory / "tiny.md").write_text("# tiny\nA four-utterance test model.\n")
    return directory


@pytest.fixture(scope="session")
def grpc_server(model_dir: Path) -> Iterator[LoopbackServer]:
    """The real server with small limits so that every limit is cheap to hit."""
    limits = Limits(
        max_message_bytes=1 << 20, max_audio_s=20.0, max_chunk_bytes=64 * 1024, max_stream_s=60.0,
        max_utterance_s=10.0, max_streams=2, stream_idle_timeout_s=1.5,
    )
    server = LoopbackServer(ModelRegistry.load_dir(model_dir), limits=limits, workers=1)
    yield server
    server.close()


ENGLISH_KOKORO_NAMES = tuple(
    f"{accent}{sex}_{word}" for accent in "ab" for sex in "fm" for word in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")
)


@pytest.fixture
def fake_kokoro_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """28 English style tables named like Kokoro's, table i filled with the value i (for the voice logic, not speech)."""
    from training import kokoro

    for index, name in enumerate(ENGLISH_KOKORO_NAMES):
        np.full((kokoro.MAX_TOKENS, kokoro.STYLE_DIM), index, np.float32).tofile(tmp_path / f"{name}.bin")
    monkeypatch.setenv("SPEECHLABEL_KOKORO_VOICES", str(tmp_path))
    return kokoro.voice_tables()
