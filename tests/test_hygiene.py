"""Test-suite hygiene, checked statically on the source of tests/ (no test is run or imported).

1. Every test that starts processes carries the ``integration`` marker (on the test, its class or
   the module's ``pytestmark``), so ``pytest -m "not integration"`` really is the in-process run,
   and none of them is in tests/unit (``make test-fast``).
   A test starts processes when it, a helper it calls or a fixture it requests (through any
   number of helpers and fixtures, in its module, a conftest.py or another module of tests/)
   uses ``subprocess``, ``multiprocessing``, ``os.fork``/``os.system``/``os.spawn*``/``os.exec*``,
   asyncio's subprocess functions, ``schedd.testing`` (``LocalCluster``, ``local_cluster``), the
   ``schedd_cluster`` fixture, or the chaos harness (``Harness``, ``scenarios.run``).
2. A ``time.sleep``/``asyncio.sleep`` outside a loop says why on its line or the line above: a
   test that waits for something uses ``tests._util.wait_for``; a sleep that is part of what is
   tested (an outage, a window in which nothing may happen) stays, with a comment. Sleeps inside
   loops are poll or pacing intervals and need no comment.

Each rule is also run on small hand-written test trees (``tmp_path``) that must be reported: the
negative controls that show the checks can see what they look for.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import pytest

TESTS = Path(__file__).resolve().parent

# Names, imported names and attribute chains whose use starts a process. A module's own
# function or class of the same name (test_sdk_calls.py's Harness) is judged by its code instead.
STARTER_NAMES = {
    "subprocess",
    "Popen",
    "multiprocessing",
    "create_subprocess_exec",
    "create_subprocess_shell",
    "LocalCluster",
    "local_cluster",
}
STARTER_IMPORTS = {("chaos.harness", "Harness"), ("chaos.scenarios", "run"), ("chaos", "harness")}
STARTER_ATTRS = {
    ("os", "system"),
    ("os", "fork"),
    ("os", "forkpty"),
    ("os", "popen"),
    ("os", "posix_spawn"),
    ("os", "posix_spawnp"),
    ("scenarios", "run"),
    ("harness", "Harness"),
}
STARTER_ATTR_PREFIXES = {("os", "spawn"), ("os", "exec")}
# Fixtures from plugins (not defined in tests/) that start processes.
PLUGIN_FIXTURES = {"schedd_cluster"}  # schedd.pytest_plugin

# Tests that the rule would flag but that start no process, each with the reason.
NOT_INTEGRATION = {
    "test_static.py::test_ruff_is_clean": "runs the ruff linter, not schedd",
    "test_static.py::test_mypy_is_clean": "runs the mypy type checker, not schedd",
    "test_static.py::test_ruff_format_is_clean": "runs the ruff formatter in check mode, not schedd",
    "test_static.py::test_mypy_checks_protobuf_fields": "runs the mypy type checker on a probe file, not schedd",
    "test_generated.py::test_committed_code_is_fresh": "runs the protobuf generator, not schedd",
    "test_generated.py::test_a_stale_file_is_reported_with_the_command_to_run": "runs the protobuf generator, not schedd",
    "test_generated.py::test_importing_schedd_pb_writes_nothing": "imports schedd.pb in a fresh interpreter; no schedd process",
    "chaos/test_ondemand.py::test_setup_skip_is_a_skip_not_a_failure": "the scenario's setup raises Skip before the harness starts anything",
    "chaos/test_ondemand.py::test_clock_jump_skips_without_libfaketime": "libfaketime is missing, so the scenario is skipped before the harness starts anything",
}


# ---- the checker ------------------------------------------------------------------------------

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _chain(node: ast.AST) -> tuple[str, ...]:
    """``a.b.c`` -> ("a", "b", "c"); () for anything that is not a dotted name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return (node.id, *reversed(parts))
    return ()


def _has_integration_mark(node: ast.AST) -> bool:
    """Whether ``node`` (a decorator or a pytestmark value) contains ``*.mark.integration``."""
    return any(_chain(n)[-2:] == ("mark", "integration") for n in ast.walk(node))


def _pytestmark_marks_integration(body: list[ast.stmt]) -> bool:
    for stmt in body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AugAssign | ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        if value is not None and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets
        ):
            if _has_integration_mark(value):
                return True
    return False


def _fixture_name(fn: FunctionNode) -> str | None:
    for dec in fn.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if _chain(target)[-1:] == ("fixture",):
            if isinstance(dec, ast.Call):
                for kw in dec.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                        return str(kw.value.value)
            return fn.name
    return None


def _is_test(node: ast.stmt) -> TypeGuard[FunctionNode]:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")


def _params(fn: FunctionNode) -> list[str]:
    a = fn.args
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


def _code_nodes(defn: FunctionNode | ast.ClassDef) -> Iterator[ast.AST]:
    """Every node of a definition's body, decorators and defaults, annotations left out (a
    type named in an annotation starts nothing)."""
    roots: list[ast.AST] = [*defn.body, *defn.decorator_list]
    if not isinstance(defn, ast.ClassDef):
        roots += [*defn.args.defaults, *(d for d in defn.args.kw_defaults if d is not None)]
    stack = roots[::-1]
    while stack:
        node = stack.pop()
        yield node
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns"):
                continue
            children = value if isinstance(value, list) else [value]
            stack.extend(c for c in reversed(children) if isinstance(c, ast.AST))


@dataclass
class Module:
    path: Path
    tree: ast.Module
    functions: dict[str, FunctionNode | ast.ClassDef] = field(default_factory=dict)  # module level
    fixtures: dict[str, str] = field(default_factory=dict)  # fixture name -> function
    imports: dict[str, tuple[Path, str]] = field(default_factory=dict)  # local name -> (file, name)
    # local name -> (module, name) for imports from outside tests/
    external: dict[str, tuple[str, str]] = field(default_factory=dict)


class Checker:
    """Answers "does this function start processes?" for the modules of one tests/ tree."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._modules: dict[Path, Module] = {}
        self._starts: dict[tuple[Path, str], bool] = {}

    def module(self, path: Path) -> Module:
        path = path.resolve()
        if path not in self._modules:
            tree = ast.parse(path.read_text(), str(path))
            mod = Module(path, tree)
            for stmt in tree.body:
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    mod.functions[stmt.name] = stmt
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                    fixture = _fixture_name(stmt)
                    if fixture is not None:
                        mod.fixtures[fixture] = stmt.name
                elif isinstance(stmt, ast.ImportFrom):
                    source = self._resolve(path, stmt)
                    for alias in stmt.names:
                        if source is not None:
                            mod.imports[alias.asname or alias.name] = (source, alias.name)
                        else:
                            mod.external[alias.asname or alias.name] = (
                                stmt.module or "",
                                alias.name,
                            )
            self._modules[path] = mod
        return self._modules[path]

    def _resolve(self, importer: Path, stmt: ast.ImportFrom) -> Path | None:
        """The file under the tests/ tree an ``from X import y`` reads, if any."""
        if stmt.level:
            base = importer.parent
            for _ in range(stmt.level - 1):
                base = base.parent
        else:
            base = self.root.parent
        parts = (stmt.module or "").split(".") if stmt.module else []
        candidate = base.joinpath(*parts).with_suffix(".py") if parts else None
        if (
            candidate is not None
            and candidate.is_file()
            and candidate.resolve().is_relative_to(self.root)
        ):
            return candidate.resolve()
        return None

    def conftests(self, path: Path) -> list[Module]:
        """The conftest.py modules that apply to a file: its directory's and its parents' in tests/."""
        found = []
        directory = path.resolve().parent
        while directory.is_relative_to(self.root):
            conftest = directory / "conftest.py"
            if conftest.is_file():
                found.append(self.module(conftest))
            if directory == self.root:
                break
            directory = directory.parent
        return found

    def fixture_starts(self, path: Path, name: str) -> bool:
        """Whether the fixture ``name`` seen from the file ``path`` starts processes."""
        if name in PLUGIN_FIXTURES:
            return True
        for mod in [self.module(path), *self.conftests(path)]:
            if name in mod.fixtures:
                return self.starts(mod.path, mod.fixtures[name])
            if name in mod.imports:  # a fixture imported into the module
                source, original = mod.imports[name]
                return self.starts(source, original)
        return False

    def starts(self, path: Path, name: str) -> bool:
        """Whether the module-level function or class ``name`` of ``path`` starts processes."""
        key = (path.resolve(), name)
        if key not in self._starts:
            self._starts[key] = False  # a recursion guard; the answer replaces it below
            mod = self.module(path)
            fn = mod.functions.get(name)
            self._starts[key] = fn is not None and self.function_starts(mod, fn)
        return self._starts[key]

    def function_starts(self, mod: Module, fn: FunctionNode | ast.ClassDef) -> bool:
        if not isinstance(fn, ast.ClassDef) and any(
            self.fixture_starts(mod.path, p) for p in _params(fn)
        ):
            return True
        for node in _code_nodes(fn):
            if isinstance(node, ast.Name):
                if node.id in mod.functions:
                    if node.id != fn.name and self.starts(mod.path, node.id):
                        return True
                elif node.id in mod.imports:
                    if self.starts(*mod.imports[node.id]):
                        return True
                elif node.id in STARTER_NAMES or mod.external.get(node.id) in STARTER_IMPORTS:
                    return True
            elif isinstance(node, ast.Attribute):
                chain = _chain(node)
                if chain[:2] in STARTER_ATTRS or any(
                    chain[:1] == p[:1] and len(chain) > 1 and chain[1].startswith(p[1])
                    for p in STARTER_ATTR_PREFIXES
                ):
                    return True
                if chain and chain[-1] in STARTER_NAMES:  # asyncio.create_subprocess_exec, ...
                    return True
        return False

    def tests(self, path: Path) -> Iterator[tuple[str, FunctionNode, bool]]:
        """(test id, function, marked integration) for every test function of a file."""
        mod = self.module(path)
        module_marked = _pytestmark_marks_integration(mod.tree.body)
        for stmt in mod.tree.body:
            if _is_test(stmt):
                marked = module_marked or any(_has_integration_mark(d) for d in stmt.decorator_list)
                yield stmt.name, stmt, marked
            elif isinstance(stmt, ast.ClassDef) and stmt.name.startswith("Test"):
                class_marked = (
                    module_marked
                    or any(_has_integration_mark(d) for d in stmt.decorator_list)
                    or _pytestmark_marks_integration(stmt.body)
                )
                for item in stmt.body:
                    if _is_test(item):
                        marked = class_marked or any(
                            _has_integration_mark(d) for d in item.decorator_list
                        )
                        yield f"{stmt.name}::{item.name}", item, marked

    def unmarked_process_tests(self) -> dict[str, bool]:
        """Every test id that starts processes -> whether it is marked integration."""
        out = {}
        for path in sorted(self.root.rglob("test_*.py")):
            mod = self.module(path)
            rel = path.resolve().relative_to(self.root).as_posix()
            for test_id, fn, marked in self.tests(path):
                if self.function_starts(mod, fn):
                    out[f"{rel}::{test_id}"] = marked
        return out


def unexplained_sleeps(root: Path) -> list[str]:
    """``file:line`` of every time.sleep/asyncio.sleep call outside a loop with no comment on
    its line or the line above."""
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source, str(path))
        loops: list[tuple[int, int]] = [
            (n.lineno, n.end_lineno or n.lineno)
            for n in ast.walk(tree)
            if isinstance(n, ast.For | ast.AsyncFor | ast.While)
        ]
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and _chain(node.func) in {("time", "sleep"), ("asyncio", "sleep")}
            ):
                continue
            if any(start <= node.lineno <= end for start, end in loops):
                continue
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
            if "#" not in here and not above.startswith("#"):
                found.append(f"{path.relative_to(root).as_posix()}:{node.lineno}: {here.strip()}")
    return found


# ---- the checks on this repository ------------------------------------------------------------


def test_every_test_that_starts_processes_is_marked_integration() -> None:
    found = Checker(TESTS).unmarked_process_tests()
    missing = sorted(t for t, marked in found.items() if not marked and t not in NOT_INTEGRATION)
    assert not missing, (
        "these tests start processes but lack the integration marker "
        "(add `pytestmark = pytest.mark.integration`, or list them in "
        "NOT_INTEGRATION with the reason):\n" + "\n".join(missing)
    )


def test_unit_tests_start_no_process() -> None:
    """tests/unit is the in-process suite (`make test-fast`): a test that starts processes
    belongs in tests/integration."""
    found = Checker(TESTS).unmarked_process_tests()
    assert not [t for t in found if t.startswith("unit/")]


def test_each_exception_still_exists_and_is_still_needed() -> None:
    found = Checker(TESTS).unmarked_process_tests()
    stale = sorted(t for t in NOT_INTEGRATION if found.get(t) is not False)
    assert not stale, f"NOT_INTEGRATION entries that are gone, marked, or start nothing: {stale}"


def test_every_bare_sleep_says_why() -> None:
    found = unexplained_sleeps(TESTS)
    assert not found, (
        "wait for the condition with tests._util.wait_for, or say in a comment why "
        "the sleep is part of the test:\n" + "\n".join(found)
    )


def test_the_integration_marker_is_registered() -> None:
    import tomllib

    config = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())
    markers = config["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("integration:") for m in markers)


# ---- negative controls: hand-written trees the checks must report -----------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "tests"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(text))
    return root


def _flagged(root: Path) -> list[str]:
    return sorted(t for t, marked in Checker(root).unmarked_process_tests().items() if not marked)


DIRECT = """
    import subprocess
    import sys
    {mark}

    def test_runs_the_cli() -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def test_pure() -> None:
        assert "subprocess" != "Popen"   # strings start nothing
"""


@pytest.mark.parametrize(
    ("mark", "flagged"),
    [
        ("", ["unit/test_x.py::test_runs_the_cli"]),
        ("import pytest\npytestmark = pytest.mark.integration", []),
        ("import pytest\npytestmark = [pytest.mark.chaos, pytest.mark.integration]", []),
        ("import pytest\npytestmark = pytest.mark.chaos", ["unit/test_x.py::test_runs_the_cli"]),
    ],
    ids=["unmarked", "marked", "marked-in-a-list", "another-marker"],
)
def test_control_a_direct_subprocess(tmp_path: Path, mark: str, flagged: list[str]) -> None:
    root = _tree(tmp_path, {"unit/test_x.py": textwrap.dedent(DIRECT).replace("{mark}", mark)})
    assert _flagged(root) == flagged


def test_control_a_conftest_fixture_and_an_imported_helper(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "integration/conftest.py": """
            import pytest
            from schedd.testing import LocalCluster

            def _start(root):
                return LocalCluster(root).start()

            @pytest.fixture
            def cluster(tmp_path):
                yield _start(str(tmp_path))

            @pytest.fixture
            def client(cluster):            # starts processes through another fixture
                return cluster.client

            @pytest.fixture
            def numbers():
                return [1, 2]

            def run_cli(*args):
                import subprocess
                return subprocess.run(args)
        """,
            "integration/test_a.py": """
            import pytest
            from .conftest import run_cli

            def test_uses_the_fixture(cluster): ...
            def test_uses_a_fixture_of_the_fixture(client): ...
            def test_pure_fixture(numbers): ...
            def test_imported_helper():
                run_cli("true")

            @pytest.mark.integration
            def test_marked(cluster): ...

            class TestGroup:
                def test_in_a_class(self, cluster): ...
        """,
            "integration/test_b.py": """
            from tests.integration.conftest import run_cli

            def helper():
                return run_cli("x")

            def test_through_a_local_helper():
                helper()
        """,
            "chaos/test_c.py": """
            import asyncio
            import os
            from chaos import scenarios

            async def test_asyncio_subprocess():
                await asyncio.create_subprocess_exec("true")

            def test_os_spawn():
                os.spawnlp(os.P_WAIT, "true", "true")

            def test_chaos_scenario(tmp_path):
                scenarios.run("leader-kill", out_root=str(tmp_path))

            def test_plugin_fixture(schedd_cluster): ...
        """,
        },
    )
    assert _flagged(root) == [
        "chaos/test_c.py::test_asyncio_subprocess",
        "chaos/test_c.py::test_chaos_scenario",
        "chaos/test_c.py::test_os_spawn",
        "chaos/test_c.py::test_plugin_fixture",
        "integration/test_a.py::TestGroup::test_in_a_class",
        "integration/test_a.py::test_imported_helper",
        "integration/test_a.py::test_uses_a_fixture_of_the_fixture",
        "integration/test_a.py::test_uses_the_fixture",
        "integration/test_b.py::test_through_a_local_helper",
    ]


def test_control_unexplained_sleeps(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "integration/test_s.py": """
        import asyncio
        import time

        def test_waits() -> None:
            time.sleep(3)
            time.sleep(2)  # the outage under test
            # nothing may fire in this window
            time.sleep(1)
            while True:
                time.sleep(0.1)

        async def test_async_waits() -> None:
            await asyncio.sleep(1)
    """
        },
    )
    assert unexplained_sleeps(root) == [
        "integration/test_s.py:6: time.sleep(3)",
        "integration/test_s.py:14: await asyncio.sleep(1)",
    ]
