"""Atomic, durable file replacement shared by checkpoints, manifests, the batch job's log and reports.

Readers see either the old file or the complete new one, never a torn write, even after a crash:
write a temporary file in the same directory, fsync it, rename it over the target, fsync the
directory so the rename itself survives power loss.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Replace ``path`` with what ``write`` puts into the binary stream it is given."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes 0600; models and outputs must be readable by a service user
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with UTF-8 ``text``."""
    atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike, data: object) -> None:
    """Replace ``path`` with ``data`` as indented UTF-8 JSON (benchmark results, reports)."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


FileVersion = tuple[Path, int, int]  # resolved path, modification time (ns), size


def file_version(path: Path) -> FileVersion:
    """What tells one version of an existing file from the next: the key of the caches that load
    a model or LM file once and share it until the file changes."""
    stat = path.stat()
    return path.resolve(), stat.st_mtime_ns, stat.st_size
