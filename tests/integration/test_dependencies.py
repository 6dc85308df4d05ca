"""The SDK, the agent and schedctl import without the server's packages or a code generator.

Installed with ``pip install --no-deps schedd`` plus grpcio, protobuf, click and pyyaml (the
SDK-only install of docs/design.md, "Dependencies"), they must work. The server's packages
(the ``server`` extra) are hidden here by a meta-path hook, as if they were not installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from schedd.server.cmd import SERVER_MODULES

pytestmark = pytest.mark.integration  # starts Python subprocesses

ROOT = Path(__file__).resolve().parents[2]

# Import roots of the `server` extra, and of the generator (a test-only dependency).
HIDDEN = sorted(SERVER_MODULES) + ["grpc_tools"]

BLOCKER = f"""
import sys
HIDDEN = {HIDDEN!r}
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
        return None
sys.meta_path.insert(0, Hide())
"""

SDK_MODULES = [
    "schedd",
    "schedd.client",
    "schedd.aio",
    "schedd.agent",
    "schedd.models",
    "schedd.errors",
    "schedd.fencing",
    "schedd.agent.shell",
    "schedd.testing",
    "schedd.pytest_plugin",
    "schedd.pb",
    "schedd.server.cmd",
    "schedctl.main",
]
# Daemon modules an SDK import must not drag in (each needs a hidden package, directly or not).
SERVER_ONLY = [
    "schedd.state.store",
    "schedd.server.node",
    "schedd.raft",
    "schedd.server.dispatcher",
    "schedd.server.service",
    "schedd.web.app",
]


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "cli")]))
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sdk_agent_and_cli_import_without_server_packages() -> None:
    code = f"""
import importlib
for name in {SDK_MODULES!r}:
    importlib.import_module(name)
import schedd
assert schedd.Client is not None and schedd.AsyncClient is not None
leaked = sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN)
assert not leaked, leaked
server = sorted(m for m in sys.modules if any(m == s or m.startswith(s + ".") for s in {SERVER_ONLY!r}))
assert not server, f"an SDK import loaded daemon modules: {{server}}"
print("ok")
"""
    p = _python(code)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout + p.stderr


def test_the_blocker_really_hides_the_server() -> None:
    p = _python("import schedd.state.store")
    assert p.returncode != 0 and "hidden by the test" in p.stderr


def test_schedctl_runs_without_server_packages() -> None:
    p = _python(
        "import sys; from schedctl.main import main; sys.argv = ['schedctl', '--help']; main()"
    )
    assert p.returncode == 0, p.stderr
    assert "Usage: schedctl" in p.stdout


def test_schedd_run_and_dev_say_in_one_line_what_to_install() -> None:
    for argv in (["run", "--node-id", "n1"], ["dev"]):
        p = _python(
            f"import sys; from schedd.server.cmd import main; sys.argv = ['schedd', *{argv!r}]; main()"
        )
        assert p.returncode == 2, (argv, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, p.stderr
        assert "pip install 'schedd[server]'" in lines[0]
        assert "lmdb" in lines[0] and "pysyncobj" in lines[0]


def _project() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _names(reqs: list[str]) -> list[str]:
    return [re.split(r"[\s<>=~!\[;]", r, maxsplit=1)[0].lower() for r in reqs]


def test_server_extra_names_the_server_packages() -> None:
    project = _project()["project"]
    assert isinstance(project, dict)
    server = project["optional-dependencies"]["server"]
    assert sorted(_names(server)) == sorted(SERVER_MODULES.values())
    assert "pysyncobj==0.3.17" in server


def test_base_keeps_the_server_so_the_readme_commands_work() -> None:
    """`pip install -e . && schedd dev --demo` (README) needs the server in the base
    dependencies: the `server` extra repeats them, and nothing else is there but the SDK's."""
    data = _project()
    project = data["project"]
    assert isinstance(project, dict)
    base = project["dependencies"]
    server = project["optional-dependencies"]["server"]
    assert set(server) <= set(base), "every `server` requirement must also be in the base"
    sdk = sorted(n for n in _names(base) if n not in _names(server))
    assert sdk == ["click", "grpcio", "protobuf", "pyyaml"]


def test_no_generator_at_build_or_run_time() -> None:
    data = _project()
    build = data["build-system"]
    project = data["project"]
    assert isinstance(build, dict) and isinstance(project, dict)
    assert "grpcio-tools" not in _names(build["requires"])
    assert "grpcio-tools" not in _names(project["dependencies"])
    assert not (ROOT / "setup.py").exists()
