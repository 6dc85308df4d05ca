"""A built wheel, installed into a fresh venv, imports the SDK without a code generator, from a
read-only location; with ``--no-deps`` plus the SDK's four packages (at their lowest allowed
versions) the SDK, the agent and schedctl work without the server's packages.

Builds the wheel from the files git knows (committed or not ignored), so a generated module that
was never committed fails here. Needs PyPI (pip downloads the dependencies): about a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SDK_IMPORTS = (
    "import schedd, schedd.client, schedd.aio, schedd.agent, schedd.models, schedd.errors, "
    "schedd.fencing, schedd.testing, schedctl.main"
)
SERVER = ("lmdb", "pysyncobj", "cryptography", "grpc_health", "grpc_reflection")


def _env() -> dict[str, str]:
    """The environment for the venv's commands: nothing that puts the source tree on the path.
    (Its Python runs with -I, so neither does the current directory.)"""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def _run(*cmd: str | Path, timeout: float = 300) -> str:
    p = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=_env()
    )
    assert p.returncode == 0, f"{cmd}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def _source_copy(dest: Path) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the wheel is built from the files git knows)")
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _sdk_requirements() -> list[str]:
    """The base dependencies that are not the server's, with grpcio and protobuf pinned to their
    lower bounds (what the committed generated code needs at least)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    server = set(project["optional-dependencies"]["server"])
    out = []
    for req in project["dependencies"]:
        if req in server:
            continue
        m = re.fullmatch(r"(grpcio|protobuf)\s*>=\s*([0-9.]+).*", req)
        out.append(f"{m.group(1)}=={m.group(2)}" if m else req)
    return out


def _read_only_python(
    python: Path, dirs: list[Path], code: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` with ``dirs`` read-only: a read-only bind mount in a private mount
    namespace as root (root ignores file modes), else the modes."""
    env = _env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # let Python try to write bytecode, as it usually does
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("as root, a read-only install location needs unshare(1)")
        mounts = " && ".join(f"mount --bind -o ro '{d}' '{d}'" for d in dirs)
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$0" -I -c "$1"', str(python), code],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    for d in dirs:
        subprocess.run(["chmod", "-R", "a-w", str(d)], check=True)
    try:
        return subprocess.run(
            [str(python), "-I", "-c", code], capture_output=True, text=True, timeout=120, env=env
        )
    finally:
        for d in dirs:
            subprocess.run(["chmod", "-R", "u+w", str(d)], check=True)


def _tree(d: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime) for p in sorted(d.rglob("*"))
    }


@pytest.mark.timeout(900)
def test_wheel_in_a_fresh_venv(tmp_path: Path) -> None:
    src = _source_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", src, "--no-deps", "-w", wheels, "-q", timeout=600)
    (wheel,) = wheels.glob("schedd-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    pip = (py, "-m", "pip", "-q", "--disable-pip-version-check")

    # 1. SDK only: the wheel without its dependencies, then grpcio, protobuf (lowest allowed), click, pyyaml.
    _run(*pip, "install", "--no-deps", wheel, timeout=600)
    _run(*pip, "install", *_sdk_requirements(), timeout=600)
    missing = [*SERVER, "grpc_tools"]
    out = _run(
        py,
        "-I",
        "-c",
        f"""
import importlib.util, sys
{SDK_IMPORTS}
assert schedd.Client and schedd.AsyncClient
print([m for m in {missing!r} if importlib.util.find_spec(m) is not None])
print(schedd.client.__file__)
""",
    )
    installed, location = out.splitlines()
    assert installed == "[]", f"not an SDK-only venv: {installed}"
    assert location.startswith(str(venv)), location
    _run(venv / "bin" / "schedctl", "--help")
    p = subprocess.run(
        [venv / "bin" / "schedd", "dev"], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert p.returncode == 2 and "pip install 'schedd[server]'" in p.stderr, p.stderr

    # 2. The wheel with its dependencies: the server comes along, the generator does not.
    _run(*pip, "install", wheel, timeout=600)
    out = _run(
        py,
        "-I",
        "-c",
        """
import importlib.metadata, importlib.resources
import schedd.client, schedd.agent, schedd.server.node, schedd.web.app
web = importlib.resources.files("schedd.web")
assert (web / "templates" / "jobs.html").is_file() and (web / "static" / "dash.js").is_file()
try:
    print(importlib.metadata.version("grpcio-tools"))
except importlib.metadata.PackageNotFoundError:
    print("no grpcio-tools")
""",
    )
    assert out.strip() == "no grpcio-tools"

    # 3. A read-only install location, without any cached bytecode: importing writes nothing.
    site = Path(
        _run(py, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    packages = [site / "schedd", site / "schedctl"]
    for d in packages:
        for cache in list(d.rglob("__pycache__")):
            shutil.rmtree(cache)
    before = {d: _tree(d) for d in packages}
    p = _read_only_python(
        py,
        packages,
        f"""
import os
{SDK_IMPORTS}
import schedd.server.node
from schedd.pb import types_pb2
assert types_pb2.Job(name="x").name == "x"
try:
    open(os.path.join(os.path.dirname(schedd.__file__), "probe"), "w")
except OSError:
    print("read-only")
""",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "read-only", (
        "the install location was writable: " + p.stdout + p.stderr
    )
    assert {d: _tree(d) for d in packages} == before
