"""Shared fixtures: real speech from espeak-ng, made once per test session."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

# Small models run fastest single-threaded, and a second OpenMP thread spinning against other
# processes on a 2-core CI machine slows steps down by 10x or more.
torch.set_num_threads(1)

SPEECH_TEXTS = ("hello world", "the quick brown fox", "open the door", "seven green apples")


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
