"""Loading a script from benchmarks/ (not a package) as a module, for tests of its functions.

A script run as ``python benchmarks/X.py`` finds its neighbours (``report``) because its own
folder leads ``sys.path``; a loaded script gets the same while it is in use."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from training.manifest import Utterance, write_manifest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@contextmanager
def benchmark_module(script: str) -> Iterator[ModuleType]:
    """``benchmarks/<script>`` imported under a private name; in sys.modules while in use (dataclasses need it)."""
    name = f"bench_{Path(script).stem}"
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))
        del sys.modules[name]


def speech_manifest(speech_files: dict[str, Path], directory: Path) -> tuple[Path, list[Utterance]]:
    """The conftest's espeak-ng utterances as a test split a benchmark reads: its path and records."""
    utterances = [Utterance(path, 1.0, text, extra={"voice": "espeak-ng:en-us"}) for text, path in speech_files.items()]
    manifest = directory / "test.jsonl"
    write_manifest(manifest, utterances, relative_to=directory)
    return manifest, utterances
