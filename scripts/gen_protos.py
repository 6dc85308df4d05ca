#!/usr/bin/env python3
"""Regenerate the committed protobuf/gRPC code in schedd/v1 from proto/schedd/v1/*.proto.

    python3 scripts/gen_protos.py           # rewrite schedd/v1 (after editing a .proto)
    python3 scripts/gen_protos.py --check   # exit 1 if the committed code is stale

The generated modules (``*_pb2.py``, ``*_pb2_grpc.py``), their type stubs (``*_pb2.pyi``) and
``__init__.py`` are committed, so installing or importing schedd never runs a code generator.
They are made by one pinned generator: the ``grpcio-tools==X.Y.Z`` of the ``test`` extra in
pyproject.toml (``pip install -e '.[test]'`` installs it). This script refuses to run with any
other grpcio-tools version, since another version writes different code. tests/test_generated.py
runs ``--check`` with the tests, so CI fails while the committed code is stale.

Development tool only: nothing in the schedd package imports it.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import re
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE = "schedd/v1"
COMMAND = "python3 scripts/gen_protos.py"
GENERATOR = "grpcio-tools"
# Files in schedd/v1 that this script owns: anything else there (a cache) is left alone.
OWNED = re.compile(r".*\.pyi?")
INIT = f'"""Generated from proto/{PACKAGE} by scripts/gen_protos.py; do not edit."""\n'


class GeneratorError(Exception):
    """The installed generator is missing or is not the pinned version."""


def pinned_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The exact ``grpcio-tools==`` version of the ``test`` extra in pyproject.toml."""
    with open(pyproject, "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for req in extras.get("test", []):
        m = re.fullmatch(rf"\s*{re.escape(GENERATOR)}\s*==\s*([0-9][^\s;,]*)\s*", req)
        if m:
            return m.group(1)
    raise GeneratorError(f"pyproject.toml: the 'test' extra must pin {GENERATOR}==X.Y.Z exactly")


def generator_problem(installed: str | None, pinned: str) -> str | None:
    """Why the installed generator cannot reproduce the committed code, or None if it can."""
    fix = (
        f"python3 -m pip install '{GENERATOR}=={pinned}'  (or: python3 -m pip install -e '.[test]')"
    )
    if installed is None:
        return f"{GENERATOR} is not installed; the generated code is made with {GENERATOR}=={pinned}: {fix}"
    if installed != pinned:
        return (
            f"{GENERATOR} {installed} is installed, but the committed code is generated with "
            f"{GENERATOR}=={pinned} (pinned in pyproject.toml, extra 'test'), and another version "
            f"writes different code: {fix}"
        )
    return None


def installed_version() -> str | None:
    try:
        return importlib.metadata.version(GENERATOR)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_generator() -> None:
    problem = generator_problem(installed_version(), pinned_version())
    if problem:
        raise GeneratorError(problem)


def generate(proto_dir: Path = PROTO_DIR) -> dict[str, bytes]:
    """Run protoc over ``proto_dir/schedd/v1/*.proto``; the generated files by name."""
    from grpc_tools import protoc

    files = sorted((proto_dir / PACKAGE).glob("*.proto"))
    if not files:
        raise GeneratorError(f"no .proto files in {proto_dir / PACKAGE}")
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    with tempfile.TemporaryDirectory(prefix="schedd-protos-") as out:
        args = [
            "protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--pyi_out={out}",
            *map(str, files),
        ]
        if protoc.main(args) != 0:
            raise GeneratorError("protoc failed (its message is above)")
        pkg = Path(out) / PACKAGE
        result = {p.name: p.read_bytes() for p in sorted(pkg.iterdir()) if p.is_file()}
    result["__init__.py"] = INIT.encode()
    return result


def differences(generated: dict[str, bytes], package_dir: Path) -> list[str]:
    """How ``package_dir`` differs from ``generated``: one line per file (a short diff for an
    edited file)."""
    committed = (
        {
            p.name: p.read_bytes()
            for p in package_dir.glob("*")
            if p.is_file() and OWNED.fullmatch(p.name)
        }
        if package_dir.is_dir()
        else {}
    )
    out: list[str] = []
    for name in sorted(generated.keys() | committed.keys()):
        want, have = generated.get(name), committed.get(name)
        if have is None:
            out.append(f"missing: {PACKAGE}/{name}")
        elif want is None:
            out.append(f"not generated any more: {PACKAGE}/{name}")
        elif want != have:
            diff = difflib.unified_diff(
                have.decode(errors="replace").splitlines(),
                want.decode(errors="replace").splitlines(),
                f"committed/{name}",
                f"generated/{name}",
                lineterm="",
                n=1,
            )
            lines = list(diff)
            shown = "\n".join(lines[:20]) + ("\n..." if len(lines) > 20 else "")
            out.append(f"differs: {PACKAGE}/{name}\n{shown}")
    return out


def write(generated: dict[str, bytes], package_dir: Path) -> list[str]:
    """Make ``package_dir`` hold exactly the generated files; the names changed."""
    package_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for p in package_dir.glob("*"):
        if p.is_file() and OWNED.fullmatch(p.name) and p.name not in generated:
            p.unlink()
            changed.append(f"removed {PACKAGE}/{p.name}")
    for name, data in generated.items():
        path = package_dir / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            changed.append(f"wrote {PACKAGE}/{name}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the committed code instead of writing; exit 1 if stale",
    )
    args = parser.parse_args(argv)
    package_dir = ROOT / PACKAGE
    try:
        check_generator()
        generated = generate()
    except GeneratorError as e:
        print(f"gen_protos: {e}", file=sys.stderr)
        return 2
    if args.check:
        diffs = differences(generated, package_dir)
        if diffs:
            print("\n".join(diffs), file=sys.stderr)
            print(
                f"gen_protos: {PACKAGE} is stale (it does not match proto/{PACKAGE}): run {COMMAND} "
                "and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"gen_protos: {PACKAGE} is up to date ({len(generated)} files)")
        return 0
    changed = write(generated, package_dir)
    print("\n".join(changed) if changed else f"gen_protos: {PACKAGE} was already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
