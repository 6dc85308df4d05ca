"""Every Python code block of README.md and docs/*.md runs, as written, against a real cluster.

The cluster is a secure 3-node :class:`schedd.testing.LocalCluster`, and each block runs as its
own program (``python3 BLOCK.py`` in a fresh temporary directory) with the environment a
``schedd dev`` user has after ``source .schedd-dev/env``: ``SCHEDD_ENDPOINTS``, ``SCHEDD_CA``,
``SCHEDD_CERT``, ``SCHEDD_KEY`` and ``SCHEDD_TOKEN_FILE``. Blocks run in file order (README.md
first, then docs/ by name), so a block may use a job an earlier block of the same cluster made.

By default a block must exit 0 within 60 s. An HTML comment on the line just before the
opening fence (invisible on a rendered page) says otherwise:

``<!-- docs-test: worker -->``
    The block starts a long-running worker (``worker.run()``): it must log ``event=connected``
    (the agent's INFO line once it reached the leader; the block configures logging, as a user
    must) within 60 s, then gets SIGTERM and must exit 0 (the drain).
``<!-- docs-test: with client -->``
    A fragment that uses a connected ``client``, as the text around it says: it runs after
    ``import os; from schedd.client import Client; client = Client(os.environ["SCHEDD_ENDPOINTS"])``.
``<!-- docs-test: with worker -->``
    A fragment that registers handlers on a ``worker``: it runs after
    ``import os; from schedd.agent import Worker; worker = Worker(os.environ["SCHEDD_ENDPOINTS"],
    queues=["reports"])`` (not started: the block must define its handlers without error).
``<!-- docs-test: pytest -->``
    The block is a test module of the user's: it runs under ``python3 -m pytest`` and must pass.
``<!-- docs-test: skip REASON -->``
    Not run; REASON says why (a database or package that the test machine does not have).
    Every such block is listed in the test's output.

Shell blocks are not run here (``tests/integration/test_cli.py`` runs the commands).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from schedd.testing import LocalCluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT_S = 60.0

_BLOCK = re.compile(
    r"(?:^<!--\s*docs-test:\s*(?P<mode>[^>]*?)\s*-->\n)?^```(?:python|py)\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)
CLIENT_PRELUDE = (
    'import os\nfrom schedd.client import Client\nclient = Client(os.environ["SCHEDD_ENDPOINTS"])\n'
)
WORKER_PRELUDE = (
    "import os\nfrom schedd.agent import Worker\n"
    'worker = Worker(os.environ["SCHEDD_ENDPOINTS"], queues=["reports"])\n'
)
PRELUDES = {"with client": CLIENT_PRELUDE, "with worker": WORKER_PRELUDE}
MODES = ("run", "worker", "with client", "with worker", "pytest", "skip")


@dataclass(frozen=True)
class Block:
    """One Python code block: where it is, how it is run, its code."""

    path: Path
    line: int
    mode: str  # one of MODES
    reason: str  # skip's REASON
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    """Every Python block of the documentation, in run order."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for m in _BLOCK.finditer(text):
            mode = (m.group("mode") or "run").strip()
            reason = ""
            if mode.startswith("skip"):
                mode, reason = "skip", mode[4:].strip()
            line = text.count("\n", 0, m.start("code"))  # the fence's line, 1-based
            found.append(Block(path, line, mode, reason, m.group("code")))
    return found


BLOCKS = blocks()


def test_every_block_has_a_known_mode_and_skips_say_why() -> None:
    assert len(BLOCKS) >= 10  # the extraction works (README alone has two)
    for b in BLOCKS:
        assert b.mode in MODES, f"{b.id}: unknown docs-test mode {b.mode!r}"
        assert b.mode != "skip" or b.reason, f"{b.id}: a skipped block says why"


@pytest.fixture(scope="module")
def docs_cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from schedd.testing import FAST_ARGS

    c = LocalCluster(str(tmp_path_factory.mktemp("docs-cluster")), nodes=3, extra_args=FAST_ARGS)
    c.start()
    try:
        c.wait_for_leader(timeout=30)
        yield c
    finally:
        c.stop()


def _env(cluster: LocalCluster) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEDD_", "SCHEDCTL_"))}
    # The checkout's schedd, whichever one is installed.
    path = os.pathsep.join([str(ROOT), str(ROOT / "cli"), clean.get("PYTHONPATH", "")])
    return {**clean, **cluster.client_env, "PYTHONPATH": path.rstrip(os.pathsep)}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_runs(block: Block, docs_cluster: LocalCluster, tmp_path: Path) -> None:
    if block.mode == "skip":
        pytest.skip(f"docs-test: skip {block.reason}")
    env = _env(docs_cluster)
    code = PRELUDES.get(block.mode, "") + block.code
    script = tmp_path / ("test_block.py" if block.mode == "pytest" else "block.py")
    script.write_text(code)
    if block.mode == "worker":
        _run_worker(block, script, env, tmp_path)
        return
    argv = [sys.executable, str(script)]
    if block.mode == "pytest":
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    p = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert p.returncode == 0, f"{block.id} failed:\n{p.stdout}\n{p.stderr}"


def _run_worker(block: Block, script: Path, env: dict[str, str], cwd: Path) -> None:
    log = cwd / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script)], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while "event=connected" not in log.read_text():
            assert proc.poll() is None, f"{block.id} exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{block.id} never connected:\n{log.read_text()}"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, f"{block.id} did not drain cleanly:\n{log.read_text()}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
