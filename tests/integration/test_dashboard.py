"""The web dashboard in a real headless Chromium against a real secure 3-node cluster.

Each node serves the dashboard (``--http``) over HTTPS with its own certificate. The browser
signs in with a token, opens every view, and acts: pauses a job, triggers one and sees its run,
replays a dead letter, backfills; a reader token's pause is refused with the API's
PERMISSION_DENIED and changes nothing; after the leader is SIGKILLed the dashboard of a
surviving node follows the new leader without a reload. Screenshots of each view are saved
under the test's temporary directory (their paths are printed); with
``SCHEDD_DASHBOARD_SHOTS=DIR`` they are also copied to DIR (docs/dashboard/ was made so).

Chromium is Debian's (``/usr/bin/chromium``, installed by .ci/run), driven by the ``playwright``
package; without a chromium binary the browser tests are skipped, saying so.
"""

from __future__ import annotations

import http.cookiejar
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schedd.client import Client
from schedd.models import JobState, RunState
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for
from tests.integration.conftest import client_env, register

pytestmark = pytest.mark.integration

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and os.path.exists(p)), None
)


class Env:
    def __init__(self, cluster: LocalCluster, client: Client, shots: Path) -> None:
        self.cluster = cluster
        self.client = client
        self.shots = shots
        self.workers: list[subprocess.Popen[bytes]] = []
        with open(cluster.token_file) as f:
            self.admin_token = f.read().strip()

    def url(self, node_id: str, path: str = "") -> str:
        return self.cluster.dashboard_url(node_id) + path.lstrip("/")

    def follower(self) -> str:
        leader = self.cluster.wait_for_leader()
        return next(s.node_id for s in self.cluster.specs if s.node_id != leader)


def _worker(c: LocalCluster, queue: str, script: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "schedctl", "--endpoints", c.endpoints_env, "worker", "run"]
    cmd += ["--queue", queue, "--worker-id", f"w-{queue}", "--", "sh", "-c", script]
    return subprocess.Popen(
        cmd,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **c.worker_env},
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("dashboard")
    c = LocalCluster(str(root / "cluster"), nodes=3, extra_args=FAST_ARGS, http=True, metrics=True)
    register(c)
    c.start()
    client: Client | None = None
    e: Env | None = None
    try:
        c.wait_for_leader(timeout=30)
        client = c.client(timeout=5, retry_for=30)
        client.create_job("nightly-report", cron="0 2 * * *", tz="Europe/Berlin", queue="reports")
        client.create_job("hello", cron="*/2 * * * * *", queue="default")
        client.create_job("broken", cron="0 0 1 1 *", queue="fail", max_attempts=1)
        for i in range(12):
            client.create_job(f"batch-{i:02d}", every_ms=3_600_000, queue="batch")
        shots = root / "screenshots"
        shots.mkdir()
        e = Env(c, client, shots)
        e.workers.append(_worker(c, "default", "echo ok", root / "ok-worker.log"))
        e.workers.append(_worker(c, "fail", "echo boom >&2; exit 3", root / "fail-worker.log"))
        yield e
    finally:
        for w in e.workers if e else []:
            w.terminate()
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.kill()
        if client is not None:
            client.close()
        c.stop()


# ---- without a browser -------------------------------------------------------------------------


def _opener(cluster: LocalCluster) -> urllib.request.OpenerDirector:
    ctx = ssl.create_default_context(cafile=cluster.ca_file)  # the node's own certificate
    return urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ctx),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    )


def test_https_with_the_node_certificate_and_no_access_without_a_token(env: Env) -> None:
    op = _opener(env.cluster)
    r = op.open(env.url("n1", "jobs?status=paused"))  # verified against the cluster's CA
    assert r.url.startswith(env.url("n1", "login")) and "next=" in r.url
    body = r.read().decode()
    assert "Sign in" in body and "nightly-report" not in body
    with pytest.raises(urllib.error.HTTPError) as refused:
        op.open(urllib.request.Request(env.url("n1", "jobs/hello/pause"), data=b"", method="POST"))
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as bad:
        op.open(env.url("n1", "login?token=sdt_not-a-real-token"))
    assert bad.value.code == 401 and "refused" in bad.value.read().decode()
    assert env.client.get_job("hello").state == JobState.ACTIVE
    # the one-time URL signs in and leaves the token out of the address
    r = op.open(env.cluster.dashboard_login_url("n1"))
    assert r.url == env.url("n1", "jobs") and "nightly-report" in r.read().decode()
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    # a POST without the session's CSRF token changes nothing
    with pytest.raises(urllib.error.HTTPError) as csrf:
        op.open(urllib.request.Request(env.url("n1", "jobs/hello/pause"), data=b"x=1"))
    assert csrf.value.code == 403
    assert env.client.get_job("hello").state == JobState.ACTIVE


# ---- in the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no chromium binary (apt-get install chromium): browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            b.close()


def _page(browser: Any, env: Env, node_id: str, token: str) -> Any:
    # the dev CA is not in the browser's store (urllib checks the certificate above); the page's
    # Content-Security-Policy forbids eval, which the test's wait_for_function needs
    ctx = browser.new_context(
        ignore_https_errors=True, bypass_csp=True, viewport={"width": 1280, "height": 860}
    )
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    page.goto(env.url(node_id, "jobs"))
    assert "/login" in page.url
    page.fill("input[name=token]", token)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/jobs")
    return page


def _shot(env: Env, page: Any, name: str) -> None:
    path = env.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    copy_to = os.environ.get("SCHEDD_DASHBOARD_SHOTS")
    if copy_to:
        os.makedirs(copy_to, exist_ok=True)
        shutil.copy(path, os.path.join(copy_to, path.name))


def test_views_and_actions_in_the_browser(browser: Any, env: Env) -> None:
    page = _page(browser, env, "n1", env.admin_token)
    # jobs: every job with status, schedule and zone, next fire; a run of `hello` shows up live
    page.wait_for_selector("tr[data-job='nightly-report']")
    row = page.locator("tr[data-job='nightly-report']")
    assert "cron 0 2 * * * (Europe/Berlin)" in row.inner_text()
    assert "CET" in row.inner_text() or "CEST" in row.inner_text()
    page.wait_for_function(
        "document.querySelector(\"tr[data-job='hello']\").innerText.includes('succeeded')",
        timeout=20_000,
    )
    _shot(env, page, "jobs")

    # filters: queue and name search, server-side
    page.goto(env.url("n1", "jobs?queue=batch&q=batch-1"))
    names = page.locator("tr[data-job]").evaluate_all("rows => rows.map(r => r.dataset.job)")
    assert names == ["batch-10", "batch-11"]

    # bulk pause of two jobs, then the paused filter lists exactly them
    page.goto(env.url("n1", "jobs?queue=batch"))
    page.check("input[value='batch-00']")
    page.check("input[value='batch-01']")
    page.click("#bulk button[value=pause]")
    page.wait_for_selector(".flash.ok:has-text('pause: done for 2 job(s)')")
    page.goto(env.url("n1", "jobs?status=paused"))
    names = page.locator("tr[data-job]").evaluate_all("rows => rows.map(r => r.dataset.job)")
    assert names == ["batch-00", "batch-01"]

    # job detail: upcoming firings in the job's zone and in UTC, explain, pause, backfill
    page.goto(env.url("n1", "jobs/nightly-report"))
    upcoming = page.locator("table.upcoming").inner_text()
    assert "02:00:00 CET" in upcoming or "02:00:00 CEST" in upcoming
    assert "01:00:00 UTC" in upcoming or "00:00:00 UTC" in upcoming
    page.fill("input[name=at]", "-1d")
    page.click("button:has-text('Explain')")
    page.wait_for_selector("#explain")
    assert page.locator("#explain .badge").inner_text()  # a verdict word
    page.click("button:has-text('Pause')")
    page.wait_for_selector(".flash.ok:has-text('nightly-report paused')")
    assert page.locator("#job-status").inner_text() == "paused"
    assert env.client.get_job("nightly-report").state == JobState.PAUSED
    page.click("button:has-text('Resume')")
    page.wait_for_selector(".flash.ok:has-text('resumed')")
    page.fill("input[name=from]", "-3d")
    page.click("button:has-text('Backfill')")
    page.wait_for_selector(".flash.ok:has-text('backfill of nightly-report')")
    assert "3 runs created" in page.locator(".flash.ok").inner_text()
    page.fill("input[name=at]", "-1d")
    page.click("button:has-text('Explain')")
    page.wait_for_selector("#explain")
    _shot(env, page, "job-detail")

    # trigger `broken`: its run appears, fails (exit 3) with max attempts 1 and becomes dead
    page.goto(env.url("n1", "jobs/broken"))
    page.click("button:has-text('Trigger now')")
    page.wait_for_selector(".flash.ok:has-text('broken triggered')")
    page.wait_for_selector("table.runs .badge.dead", timeout=20_000)  # the live refresh shows it
    [dead] = env.client.list_runs(job="broken", state="dead")
    assert dead.attempt == 1 and dead.exit_code == 3

    # runs: the dead letter with its error, replayed from the dashboard
    page.goto(env.url("n1", "runs"))
    page.wait_for_selector(f"tr[data-run='{dead.run_id}']")
    _shot(env, page, "runs")
    page.click(f"tr[data-run='{dead.run_id}'] button:has-text('Retry')")
    page.wait_for_selector(f".flash.ok:has-text('run {dead.run_id} retried')")
    wait_for(
        lambda: (r := env.client.get_run(dead.run_id)).attempt == 2 and r.state == RunState.DEAD,
        20,
        "the replayed run ran again (and failed again)",
    )
    page.goto(env.url("n1", f"runs/{dead.run_id}"))
    detail = page.locator("dl.run").inner_text()
    assert "w-fail" in detail and "3" in detail and "boom" in detail
    _shot(env, page, "run-detail")

    # workers and cluster
    page.goto(env.url("n1", "workers"))
    page.wait_for_selector("tr[data-worker='w-default']")
    page.wait_for_selector("tr[data-worker='w-fail']")
    _shot(env, page, "workers")
    page.goto(env.url("n1", "cluster"))
    leader = env.cluster.wait_for_leader()
    assert f"leader: {leader}" in page.locator("#leader").inner_text()
    page.wait_for_function(
        "document.getElementById('firing-rate').innerText.endsWith('/s')", timeout=10_000
    )
    _shot(env, page, "cluster")
    page.context.close()


def test_a_reader_cannot_pause(browser: Any, env: Env) -> None:
    reader = env.client.create_token("dash-reader", ["reader"]).secret
    page = _page(browser, env, "n2", reader)
    page.goto(env.url("n2", "jobs/hello"))
    page.click("button:has-text('Pause')")
    page.wait_for_selector(".flash.error")
    text = page.locator(".flash.error").inner_text()
    assert "Permission denied (PERMISSION_DENIED)" in text and "writer" in text, text
    assert "Traceback" not in page.content()
    assert env.client.get_job("hello").state == JobState.ACTIVE
    _shot(env, page, "permission-denied")
    page.context.close()


def test_follows_a_new_leader_without_a_reload(browser: Any, env: Env) -> None:
    node = env.follower()
    page = _page(browser, env, node, env.admin_token)
    page.goto(env.url(node, "cluster"))
    old = env.cluster.wait_for_leader()
    assert f"leader: {old}" in page.locator("#leader").inner_text()
    env.cluster.kill_node(old)  # SIGKILL
    new = env.cluster.wait_for_leader(exclude=old)
    page.wait_for_function(
        f"document.getElementById('leader').innerText.includes('leader: {new}')",
        timeout=30_000,
    )
    assert page.locator(f"tr[data-node='{old}']").count() == 0  # shown as down: no status
    assert "down" in page.locator("table.nodes").inner_text()
    _shot(env, page, "cluster-after-failover")
    # writes follow the new leader too
    page.goto(env.url(node, "jobs/hello"))
    page.click("button:has-text('Trigger now')")
    page.wait_for_selector(".flash.ok:has-text('hello triggered')")
    page.context.close()
    env.cluster.start_node(old)
    env.cluster.wait_converged(timeout=30)


def test_dashboard_env_helpers_know_the_cluster(env: Env) -> None:
    assert client_env(env.cluster.endpoints_env)["SCHEDD_ENDPOINTS"] == env.cluster.endpoints_env
