"""The committed protobuf/gRPC code in schedd/v1 is what the pinned generator makes from proto/.

Runs with the default ``python3 -m pytest`` (CI): editing a .proto without regenerating, or
hand-editing schedd/v1, fails here with the command that fixes it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_protos.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_script()


def test_committed_code_is_fresh() -> None:
    # Fails, rather than skips, without the pinned generator: this check is the only thing that
    # ties schedd/v1 to proto/. The script says which version to install.
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_stale_file_is_reported_with_the_command_to_run(tmp_path: Path) -> None:
    if gen.installed_version() != gen.pinned_version():
        pytest.skip("needs the pinned grpcio-tools (test_committed_code_is_fresh says which)")
    proto = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", proto)
    types_proto = proto / "schedd" / "v1" / "types.proto"
    text = types_proto.read_text()
    types_proto.write_text(
        re.sub(r"(message Firing \{)", r"\1\n  string added_by_test = 99;", text, count=1)
    )
    diffs = gen.differences(gen.generate(proto), ROOT / "schedd" / "v1")
    names = [d.splitlines()[0] for d in diffs]
    assert "differs: schedd/v1/types_pb2.py" in names
    assert "differs: schedd/v1/types_pb2.pyi" in names
    assert any("added_by_test" in d for d in diffs)

    # End to end on a copy of the tree: --check fails and names the command.
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, tree / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tree)
    shutil.copytree(proto, tree / "proto")
    shutil.copytree(
        ROOT / "schedd" / "v1", tree / "schedd" / "v1", ignore=shutil.ignore_patterns("__pycache__")
    )
    (tree / "schedd" / "v1" / "leftover_pb2.py").write_text("# from a removed .proto\n")
    p = subprocess.run(
        [sys.executable, str(tree / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1
    assert "run python3 scripts/gen_protos.py" in p.stderr
    assert "not generated any more: schedd/v1/leftover_pb2.py" in p.stderr

    # Regenerating fixes it, and removes what is not generated any more.
    p = subprocess.run(
        [sys.executable, str(tree / "scripts" / "gen_protos.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert not (tree / "schedd" / "v1" / "leftover_pb2.py").exists()
    p = subprocess.run(
        [sys.executable, str(tree / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr


def test_another_generator_version_is_named_not_diffed() -> None:
    pinned = gen.pinned_version()
    msg = gen.generator_problem("1.80.0", pinned)
    assert msg is not None
    assert "grpcio-tools 1.80.0 is installed" in msg and f"grpcio-tools=={pinned}" in msg
    assert f"pip install 'grpcio-tools=={pinned}'" in msg
    assert "not installed" in gen.generator_problem(None, pinned)
    assert gen.generator_problem(pinned, pinned) is None


def test_the_generator_is_pinned_exactly_in_the_test_extra() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", gen.pinned_version())


def test_generated_code_matches_the_pinned_generator_and_the_runtime_bounds() -> None:
    """The committed code checks versions when imported: the grpc modules want grpcio at least
    the grpcio-tools that made them, the pb2 modules a protobuf runtime at least their gencode
    version. pyproject's lower bounds must say the same, or a fresh install can fail to import."""
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]

    def lower_bound(name: str) -> str:
        for req in deps:
            m = re.match(rf"{re.escape(name)}\s*>=\s*([0-9.]+)", req)
            if m:
                return m.group(1)
        raise AssertionError(f"no {name}>= in [project] dependencies")

    v1 = ROOT / "schedd" / "v1"
    grpc_versions = {
        re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", p.read_text()).group(1)  # type: ignore[union-attr]
        for p in v1.glob("*_pb2_grpc.py")
    }
    assert grpc_versions == {gen.pinned_version()}
    assert lower_bound("grpcio") == gen.pinned_version()

    gencode = set()
    for p in v1.glob("*_pb2.py"):
        m = re.search(
            r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),"
            r"\s*(\d+),",
            p.read_text(),
        )
        assert m, f"{p.name}: no protobuf gencode version check"
        gencode.add(".".join(m.groups()))
    assert gencode == {lower_bound("protobuf")}


def test_importing_schedd_pb_writes_nothing() -> None:
    """No generation at import: schedd.pb only imports the committed modules."""
    pb = (ROOT / "schedd" / "pb.py").read_text()
    assert "_protogen" not in pb and "grpc_tools" not in pb
    assert not (ROOT / "schedd" / "_protogen.py").exists()
    for path in (ROOT / "schedd").rglob("*.py"):  # fcntl does not exist on Windows
        assert not re.search(r"^\s*(import|from) fcntl", path.read_text(), re.M), path
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "cli")]),
        PYTHONDONTWRITEBYTECODE="1",
    )
    # (grpc itself imports the grpc_tools package when it is installed, but never its protoc.)
    code = (
        "import sys; import schedd.pb, schedd.client, schedd.agent; "
        "assert 'grpc_tools.protoc' not in sys.modules, 'protoc imported'"
    )
    before = sorted(p.name for p in (ROOT / "schedd" / "v1").iterdir())
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert sorted(p.name for p in (ROOT / "schedd" / "v1").iterdir()) == before
