"""Fixtures that start real schedd processes (3 nodes on 127.0.0.1, random ports, temp dirs)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for  # noqa: F401  (re-exported for older imports; use tests._util)

FAST = list(FAST_ARGS)

#: endpoint -> the SCHEDD_* variables of the cluster it belongs to (TLS roots, certificate,
#: token): the helpers below take endpoint strings, as the CLI does, and find the credentials here
_CLIENT_ENV: dict[str, dict[str, str]] = {}


def register(c: LocalCluster) -> LocalCluster:
    for ep in c.endpoints:
        _CLIENT_ENV[ep] = c.client_env
    return c


def client_env(endpoints: str) -> dict[str, str]:
    """The credentials variables of the cluster ``endpoints`` belong to, with the endpoints."""
    first = endpoints.split(",")[0].strip()
    return {**_CLIENT_ENV.get(first, {}), "SCHEDD_ENDPOINTS": endpoints}


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalCluster]]:
    made: list[LocalCluster] = []

    def make(
        nodes: int = 3, extra_args: list[str] | None = None, secure: bool = True
    ) -> LocalCluster:
        c = LocalCluster(
            str(tmp_path_factory.mktemp("cluster")),
            nodes=nodes,
            extra_args=extra_args or FAST,
            secure=secure,
        )
        made.append(register(c))
        c.start()
        c.wait_for_leader(timeout=30)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(str(tmp_path_factory.mktemp("shared-cluster")), nodes=3, extra_args=FAST)
    register(c)
    c.start()
    try:
        c.wait_for_leader(timeout=30)
        yield c
    finally:
        c.stop()


def schedctl(endpoints: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real schedctl command line."""
    env = dict(os.environ, **client_env(endpoints))
    return subprocess.run(
        [sys.executable, "-m", "schedctl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def start_shell_worker(
    endpoints: str, effects: str, log_path: str, *extra: str
) -> subprocess.Popen[bytes]:
    """A real shell worker whose command appends 'run_id fence' to ``effects``."""
    script = f'echo "$SCHEDD_RUN_ID $SCHEDD_FENCE $SCHEDD_ATTEMPT" >> {effects}'
    cmd = [
        sys.executable,
        "-m",
        "schedctl",
        "--endpoints",
        endpoints,
        "worker",
        "run",
        *extra,
        "--",
        "sh",
        "-c",
        script,
    ]
    return subprocess.Popen(
        cmd,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, **client_env(endpoints)),
    )
