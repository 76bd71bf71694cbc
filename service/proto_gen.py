"""Generate the Python gRPC stubs in ``service/gen`` from ``protos/`` (the one way stubs are made).

The stubs are committed, so serving needs neither grpcio-tools nor a build step; a test
regenerates them into a temporary directory and fails if they differ (``check_current``).
protoc writes absolute imports (``from speechlabel.v1 import ...``) that only work with the
output directory on ``sys.path``; they are rewritten to live under ``service.gen``.

    python -m service.proto_gen           # rewrite service/gen
    python -m service.proto_gen --check   # exit 1 if service/gen is stale
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"
GEN_DIR = REPO / "service" / "gen"
GEN_PACKAGE = "service.gen"


def proto_files() -> list[Path]:
    """Every ``.proto`` under ``protos/``, sorted (stable output)."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path = GEN_DIR) -> list[Path]:
    """Run protoc (python, pyi and grpc plugins) into ``out_dir``; returns the files written."""
    from grpc_tools import protoc  # dev dependency: only needed when the protos change

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    written = sorted(p for p in out_dir.rglob("*") if p.suffix in (".py", ".pyi"))
    top_level = {f.relative_to(out_dir).parts[0] for f in written if f.parent != out_dir}
    for generated in written:
        _rewrite_imports(generated, top_level)
    packages = {out_dir} | {d for f in written for d in f.parents if d.is_relative_to(out_dir)}
    for package in sorted(packages):
        init = package / "__init__.py"
        if not init.exists():
            init.write_text("")
            written.append(init)
    return sorted(written)


def _rewrite_imports(path: Path, top_level: set[str]) -> None:
    """``from speechlabel.v1 import x`` -> ``from service.gen.speechlabel.v1 import x``."""
    text = path.read_text()
    for name in top_level:
        text = text.replace(f"from {name}.", f"from {GEN_PACKAGE}.{name}.")
    path.write_text(text)


def check_current(gen_dir: Path = GEN_DIR) -> list[str]:
    """Names of generated files that are missing, extra or different; empty when current."""
    with tempfile.TemporaryDirectory() as temp:
        fresh = Path(temp)
        generate(fresh)
        expected = {p.relative_to(fresh) for p in fresh.rglob("*") if p.suffix in (".py", ".pyi")}
        actual = {p.relative_to(gen_dir) for p in gen_dir.rglob("*") if p.suffix in (".py", ".pyi")}
        differ = [
            str(name)
            for name in sorted(expected & actual)
            if not filecmp.cmp(fresh / name, gen_dir / name, shallow=False)
        ]
        return sorted({str(n) for n in expected ^ actual} | set(differ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether service/gen is current")
    args = parser.parse_args(argv)
    if args.check:
        stale = check_current()
        if stale:
            print(f"stale generated stubs: {', '.join(stale)}; run python -m service.proto_gen", file=sys.stderr)
            return 1
        return 0
    for path in generate():
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
