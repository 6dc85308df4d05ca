"""The package map's import rules (docs/design.md, "Packages"), enforced.

The pure core (scheduling math, the state machine, the leader's planners, the Raft receiver
rule) must not reach for I/O, clocks, randomness, the environment or the network: that is what
lets apply be deterministic on every replica and the planners be tested with a fake clock. Each
module's imports are read from its source (module level and inside functions), so a lazy import
cannot slip past.
"""

from __future__ import annotations

import ast
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "schedd"

#: never imported by a pure module: I/O, clocks, randomness, environment, network, threads
IMPURE = {
    "grpc",
    "lmdb",
    "pysyncobj",
    "socket",
    "time",
    "random",
    "os",
    "subprocess",
    "threading",
    "asyncio",
    "uuid",
    "secrets",
    "urllib",
    "http",
    "shutil",
    "tempfile",
    "signal",
    "select",
    "mmap",
    "logging",
}
#: the impure parts of schedd itself
SHELL = {
    "schedd.client",
    "schedd.aio",
    "schedd.agent",
    "schedd.testing",
    "schedd.pytest_plugin",
    "schedd.clock",
    "schedd.state.store",
    "schedd.state.disk",
    "schedd.raft.adapter",
    "schedd.raft.journal",
    "schedd.raft.transport",
    "schedd.server.node",
    "schedd.server.service",
    "schedd.server.dispatcher",
    "schedd.server.cmd",
    "schedd.server.workers",
}

#: pure module (or package prefix) -> schedd modules it may import (prefixes)
PURE: dict[str, tuple[str, ...]] = {
    "schedd.errors": (),
    "schedd.models": ("schedd.errors", "schedd.pb", "schedd.rules"),
    "schedd.rules": ("schedd.errors", "schedd.pb"),
    # how a namespace prefixes stored names: shared by the API layer, apply and the planner
    "schedd.namespaces": ("schedd.errors", "schedd.pb"),
    # (explain names a run's queue and namespace: schedd.namespaces splits stored names, pure)
    "schedd.sched": ("schedd.errors", "schedd.pb", "schedd.sched", "schedd.namespaces"),
    "schedd.state.keys": (),
    # when the (local, unreplicated) LMDB map grows
    "schedd.state.mapsize": (),
    # apply must not read time-zone data either: the leader computes every due time
    "schedd.state.apply": (
        "schedd.pb",
        "schedd.rules",
        "schedd.namespaces",
        "schedd.state.keys",
        "schedd.state.apply",
        "schedd.sched.retry",
        "schedd.sched.misfire",
    ),
    "schedd.raft.replication": (),
    # who the members are and whether a change keeps a working majority
    "schedd.raft.membership": ("schedd.errors",),
    # when a node reports its gRPC health as SERVING (a working majority)
    "schedd.raft.quorum": (),
    # what a Raft frame may decode to (sizes, the restricted unpickler): no sockets, no pysyncobj
    "schedd.raft.wire": (),
    "schedd.server.leases": (),
    "schedd.server.supervise": (),  # schedd dev's restart policy: the caller passes the time
    "schedd.server.validate": (
        "schedd.errors",
        "schedd.pb",
        "schedd.rules",
        "schedd.namespaces",
        "schedd.sched",
        "schedd.security.roles",
    ),
    # who may call what: the decision, without grpc (schedd.server.auth is its shell)
    "schedd.security.roles": (),
    "schedd.server.commands": ("schedd.pb", "schedd.sched", "schedd.server.validate"),
    "schedd.server.planner": (
        "schedd.errors",
        "schedd.namespaces",
        "schedd.pb",
        "schedd.rules",  # (which runs a FireItem may lease: the same rule as apply's)
        "schedd.sched",
        "schedd.state.keys",
        "schedd.state.apply",
    ),
    # the clients' address helpers and the leader navigation shared by the SDK and the agent
    "schedd.sdk.endpoints": ("schedd.errors",),
    "schedd.sdk.navigation": ("schedd.sdk.endpoints",),
    # the dashboard's records-to-rows helpers and its rates: no I/O, the time is a parameter
    "schedd.web.viewmodel": ("schedd.errors", "schedd.models", "schedd.sched"),
    "schedd.web.figures": (),
}
EXTRA_FORBIDDEN = {"schedd.state.apply": {"zoneinfo"}}


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "schedd" or node.module.startswith("schedd."):
                # `from schedd.x import y`: the module y when it is one, else schedd.x itself
                base = ROOT.joinpath(*node.module.split("."))
                for a in node.names:
                    sub = base / a.name
                    out.add(
                        f"{node.module}.{a.name}"
                        if sub.is_dir() or sub.with_suffix(".py").exists()
                        else node.module
                    )
            else:
                out.add(node.module)
    return out


def rule_for(name: str) -> tuple[str, tuple[str, ...]] | None:
    best = None
    for prefix in PURE:
        if (name == prefix or name.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return None if best is None else (best, PURE[best])


def pure_modules() -> list[pathlib.Path]:
    paths = [p for p in PKG.rglob("*.py") if "v1" not in p.parts and rule_for(module_name(p))]
    return sorted(paths)


def violations(path: pathlib.Path) -> list[str]:
    name = module_name(path)
    rule = rule_for(name)
    assert rule is not None
    prefix, allowed = rule
    bad = []
    for imp in sorted(imports_of(path)):
        root = imp.split(".")[0]
        if root in IMPURE or root in EXTRA_FORBIDDEN.get(prefix, set()):
            bad.append(f"{name} imports {imp}")
        elif root == "schedd":
            known = any(imp == m or imp.startswith(m + ".") for m in SHELL)
            ok = any(imp == a or imp.startswith(a + ".") for a in allowed)
            if known or not ok:
                bad.append(f"{name} imports {imp}")
    return bad


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io(path: pathlib.Path) -> None:
    assert violations(path) == []


def test_every_listed_pure_module_exists() -> None:
    names = {module_name(p) for p in pure_modules()}
    for prefix in PURE:
        assert any(n == prefix or n.startswith(prefix + ".") for n in names), prefix


def test_the_rule_can_fail(tmp_path: pathlib.Path) -> None:
    """Negative control: a pure module with an I/O import and one reaching into the shell."""
    fake = PKG / "sched" / "_architecture_probe.py"
    fake.write_text(
        "import time\nfrom schedd.state.store import Store\n\ndef f():\n    import grpc\n"
    )
    try:
        assert violations(fake) == [
            "schedd.sched._architecture_probe imports grpc",
            "schedd.sched._architecture_probe imports schedd.state.store",
            "schedd.sched._architecture_probe imports time",
        ]
    finally:
        os.unlink(fake)


#: what the dashboard (schedd.web) may not import: it is a client of the gRPC API like any
#: other, so it never reads the state, the Raft log or the servicers' internals directly
WEB_FORBIDDEN = ("schedd.state", "schedd.raft", "schedd.server", "schedd.agent")


def web_violations(path: pathlib.Path) -> list[str]:
    name = module_name(path)
    return [
        f"{name} imports {imp}"
        for imp in sorted(imports_of(path))
        if any(imp == f or imp.startswith(f + ".") for f in WEB_FORBIDDEN)
    ]


@pytest.mark.parametrize(
    "path", sorted((PKG / "web").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_dashboard_is_an_api_client(path: pathlib.Path) -> None:
    assert web_violations(path) == []


def test_the_web_rule_can_fail() -> None:
    fake = PKG / "web" / "_architecture_probe.py"
    fake.write_text("from schedd.state.store import Store\nimport schedd.server.auth\n")
    try:
        assert web_violations(fake) == [
            "schedd.web._architecture_probe imports schedd.server.auth",
            "schedd.web._architecture_probe imports schedd.state.store",
        ]
    finally:
        os.unlink(fake)
