"""What a batch job reads: command-line inputs expanded to audio paths, their identity, and sharding.

Inputs may be files, directories (searched recursively for audio extensions), globs and JSONL
manifests (their ``audio_filepath`` fields, relative paths resolved against the manifest's
directory as :func:`training.manifest.read_manifest` does). A path reached twice is kept once,
at its first position, so every input appears exactly once in the output. A file given by name
that does not exist is kept: it gets an ``error`` record rather than vanishing from the output.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".webm", ".mka"})
MANIFEST_EXTENSIONS = frozenset({".jsonl", ".json"})


class InputError(ValueError):
    """An input argument that names nothing usable (a glob with no match, a malformed manifest)."""


def expand_inputs(specs: Iterable[str]) -> list[str]:
    """Audio paths of all inputs, in argument order (directory and glob contents sorted), deduplicated."""
    seen: set[str] = set()
    paths = []
    for path in (p for spec in specs for p in _expand(spec)):
        identity = os.path.normpath(os.path.abspath(path))
        if identity not in seen:
            seen.add(identity)
            paths.append(path)
    return paths


def _expand(spec: str) -> Iterator[str]:
    path = Path(spec)
    if path.is_dir():
        yield from sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    elif path.suffix.lower() in MANIFEST_EXTENSIONS and path.is_file():
        yield from manifest_paths(path)
    elif not path.exists() and any(c in spec for c in "*?["):
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise InputError(f"{spec!r} matches no files")
        for match in matches:  # each as if given by name
            yield from _expand(match)
    else:
        yield spec


def manifest_paths(path: Path) -> list[str]:
    """The ``audio_filepath`` of every line of a JSONL manifest (other fields are not needed here).

    Only ``audio_filepath`` is required, unlike training manifests, which also need ``text`` and
    ``duration``: a list of audio to transcribe has no transcripts yet.
    """
    base = path.parent.absolute()
    paths = []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                paths.append(str((base / json.loads(line)["audio_filepath"]).resolve()))
            except (ValueError, KeyError, TypeError) as error:
                raise InputError(f"{path}:{number}: not a manifest line with 'audio_filepath' ({error!r})") from error
    return paths


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise InputError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise InputError(f"--shard {text}: need 0 <= I < N")
    return shard


def in_shard(path: str, index: int, count: int) -> bool:
    """Whether ``path`` belongs to shard ``index`` of ``count``.

    Decided by a hash of the path as listed, not by its position, so machines that list the
    corpus in a different order, or after files were added, still split it the same way.
    """
    digest = hashlib.sha1(path.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count == index


def file_identity(path: str) -> tuple[int, int] | None:
    """``(size, mtime_ns)``: a file counts as already done only while these are unchanged."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def output_stem(path: str) -> str:
    """A flat, collision-free name for a file's per-file outputs: ``<stem>.<8 hex of the path hash>``.

    Depends on the path alone, so shards writing to separate directories never clash when merged.
    """
    return f"{Path(path).stem}.{hashlib.sha1(path.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def shard_inputs(paths: Sequence[str], shard: tuple[int, int] | None) -> list[str]:
    """The inputs of one shard (all of them when ``shard`` is None)."""
    return list(paths) if shard is None else [p for p in paths if in_shard(p, *shard)]
