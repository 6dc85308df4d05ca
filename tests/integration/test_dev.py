"""``schedd dev`` as a user runs it, a real subprocess: it supervises its nodes (a killed node
is reported and restarted, ``cluster status`` shows the new PID), its banner does not claim a
leader it cannot keep track of, and its demo job and worker keep to their own queue and stop
firing when dev is started again without ``--demo``.

Every test here failed before the change it pins (see CHANGELOG, "First hour").
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._util import wait_for

pytestmark = pytest.mark.integration


def _base_port() -> int:
    """A base port whose gRPC (base..base+2), Raft (base+100..) and dashboard (base+300..)
    ports are free now."""
    for _ in range(50):
        base = random.randrange(20000, 40000)
        ports = [base + off + i for off in (0, 100, 300) for i in range(3)]
        free = True
        for p in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError("no free ports")


class Dev:
    """A running ``schedd dev``; its output lines are collected as they come."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "schedd",
                "dev",
                "--dir",
                str(root),
                "--base-port",
                str(_base_port()),
                "--no-metrics",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("SCHEDD_")},
        )
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        try:
            wait_for(lambda: self.saw("press Ctrl-C") or self.proc.poll() is not None, 60, "dev")
        except AssertionError:
            self.proc.kill()
            raise AssertionError(
                f"schedd dev not ready within 60 s; it printed:\n{self.text}"
            ) from None
        if not self.saw("press Ctrl-C"):  # it exited: say how, with all it printed
            reader.join(5)
            raise AssertionError(f"schedd dev exited with {self.proc.returncode}:\n{self.text}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def saw(self, part: str) -> bool:
        return any(part in line for line in self.lines)

    def env(self) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDD_")}
        for line in (self.root / "env").read_text().splitlines():
            line = line.removeprefix("export ").strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                out[k] = v.strip("'\"")
        return out

    def schedctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "schedctl", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=60,
        )

    def status(self) -> dict[str, dict[str, object]]:
        proc = self.schedctl("--json", "cluster", "status")
        doc = json.loads(proc.stdout or "[]")
        return {d["status"]["node_id"]: d["status"] for d in doc if d["reachable"]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def dev_root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "dev"


def test_dev_reports_and_restarts_a_killed_node(dev_root: Path) -> None:
    dev = Dev(dev_root)
    try:
        assert dev.saw("leader at start: ") and dev.saw("schedctl cluster status")
        assert not any(line.startswith("leader: ") for line in dev.lines)
        before = dev.status()
        assert set(before) == {"n1", "n2", "n3"}, dev.text
        pid = int(before["n2"]["pid"])  # type: ignore[call-overload]
        assert pid > 0 and int(before["n2"]["started_ms"]) > 0  # type: ignore[call-overload]
        table = dev.schedctl("cluster", "status").stdout
        assert "PID" in table and "UPTIME" in table and str(pid) in table
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: dev.saw("n2 exited (killed by signal 9 (SIGKILL))"), 20, dev.text)
        [line] = [ln for ln in dev.lines if ln.startswith("n2 exited")]
        assert str(dev_root / "n2" / "node.log") in line or "node.log" in line
        wait_for(lambda: dev.saw("n2: restarted (pid "), 30, dev.text)
        assert any("schedd" in ln and "run" in ln for ln in dev.lines if "n2: restarted" in ln)

        def new_pid() -> bool:
            st = dev.status().get("n2")
            return st is not None and int(st["pid"]) not in (0, pid)  # type: ignore[call-overload]

        wait_for(new_pid, 30, "cluster status shows n2 with a new PID")
    finally:
        dev.stop()


def _demo_fires_in_the_dashboard(dev: Dev) -> None:
    """The banner's dashboard link signs in (plain HTTP on 127.0.0.1) and lands on the job list
    without the token in the address; the demo job shows up there, firing."""
    [line] = [ln for ln in dev.lines if ln.startswith("dashboard: ")]
    url = line.removeprefix("dashboard: ").strip()
    assert url.startswith("http://127.0.0.1:") and "/login?token=sdt_" in url, line
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(url, timeout=10) as r:
        assert r.url.endswith("/jobs") and "token" not in r.url

    def demo_succeeded() -> bool:
        with opener.open(url.split("/login")[0] + "/jobs?q=demo", timeout=10) as r:
            page = r.read().decode()
        row = page.partition('data-job="demo"')[2].partition("</tr>")[0]
        return "succeeded" in row

    wait_for(demo_succeeded, 30, "the demo job's last outcome in the dashboard")


def test_demo_has_its_own_queue_and_stops_firing_without_demo(dev_root: Path) -> None:
    dev = Dev(dev_root, "--demo")
    try:
        job = json.loads(dev.schedctl("--json", "job", "get", "demo").stdout)
        assert job["queue"] == "demo" and job["state"] == "JOB_STATE_ACTIVE"
        _demo_fires_in_the_dashboard(dev)
    finally:
        dev.stop()
    dev = Dev(dev_root)
    try:
        assert dev.saw("demo: paused job 'demo'"), dev.text
        job = json.loads(dev.schedctl("--json", "job", "get", "demo").stdout)
        assert job["state"] == "JOB_STATE_PAUSED"
    finally:
        dev.stop()
    dev = Dev(dev_root, "--demo")  # --demo resumes it
    try:
        job = json.loads(dev.schedctl("--json", "job", "get", "demo").stdout)
        assert job["state"] == "JOB_STATE_ACTIVE"
    finally:
        dev.stop()
