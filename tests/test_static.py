"""Lint and type checks run with the tests, so the README's one test command covers them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    p = _run("ruff", "check", ".")
    assert p.returncode == 0, p.stdout + p.stderr


def test_ruff_format_is_clean() -> None:
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    p = _run("ruff", "format", "--check", ".")
    assert p.returncode == 0, "run `ruff format .` (or `make lint`):\n" + p.stdout + p.stderr


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    p = _run(sys.executable, "-m", "mypy")
    assert p.returncode == 0, p.stdout + p.stderr


def test_mypy_checks_protobuf_fields(tmp_path: Path) -> None:
    """mypy reads the committed .pyi stubs of schedd/v1 (with types-protobuf under them), so a
    misspelled protobuf field or a wrong field type is an error, not ``Any``."""
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from schedd.pb import api_pb2, types_pb2\n"
        "job = types_pb2.Job(name='x')\n"
        "job.nmae = 'y'\n"
        "run = types_pb2.Run()\n"
        "run.fence = '7'\n"
        "api_pb2.CreateJobRequest(jbo=job)\n"
    )
    env = dict(os.environ, MYPYPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "cli")]))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            os.path.join(ROOT, "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(probe),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = p.stdout + p.stderr
    assert 'Unexpected keyword argument "jbo" for "CreateJobRequest"' in out, out
    assert (
        'Incompatible types in assignment (expression has type "str", variable has type "int")'
        in out
    ), out
    assert '"Job" has no attribute "nmae"' in out, (
        out
        + "\nmypy treats protobuf messages as Any: is types-protobuf installed (the test extra)?"
    )
