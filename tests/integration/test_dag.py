"""Job dependencies (depends_on) on a real 3-node cluster, with real shell workers: a 3-level
DAG through a leader SIGKILL, the CLI (job create --after, job deps, job explain, delete refused
and forced), backfill with downstream, and the feature-level gate on an older cluster.

One module-scoped cluster serves every test but the gate's (docs/dependencies.md has the rules).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter

import pytest

from schedd import errors
from schedd.client import Client
from schedd.pb import types_pb2
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for

from .conftest import register, schedctl, start_shell_worker

pytestmark = pytest.mark.integration

R = types_pb2
ACTIVE = (R.RUN_STATE_PENDING, R.RUN_STATE_LEASED, R.RUN_STATE_WAITING)


def runs_of(client: Client, job: str) -> list[types_pb2.Run]:
    return [r.to_pb() for r in client.list_runs(job=job, limit=10_000)]


def succeeded(client: Client, job: str, after_ms: int = 0) -> list[types_pb2.Run]:
    return [
        r
        for r in runs_of(client, job)
        if r.state == R.RUN_STATE_SUCCEEDED and r.scheduled_ms > after_ms
    ]


def test_a_three_level_dag_runs_every_downstream_once_per_upstream_slot_through_a_leader_kill(
    cluster: LocalCluster, tmp_path
) -> None:
    """extract-a and extract-b every 2 s; merge (every 2 s) after both; publish (no schedule)
    after merge. The leader is SIGKILLed in the middle. Every merge slot runs exactly once,
    matched to the a and b runs of the same slot; publish runs exactly once per merge success;
    each succeeded run's winning fence did its effect."""
    effects = tmp_path / "effects.log"
    effects.touch()
    worker = start_shell_worker(
        cluster.endpoints_env,
        str(effects),
        str(tmp_path / "worker.log"),
        "--queue",
        "etl",
        "--concurrency",
        "4",
    )
    try:
        with cluster.client(timeout=5, retry_for=60) as client:
            for name in ("extract-a", "extract-b"):
                client.create_job(name, every_ms=2000, queue="etl", request_id=f"c-{name}")
            merge = client.create_job(
                "merge",
                every_ms=2000,
                queue="etl",
                depends_on=["extract-a", "extract-b"],
                request_id="c-merge",
            )
            client.create_job("publish", queue="etl", depends_on=["merge"], request_id="c-pub")
            assert merge.depends_on == ("extract-a", "extract-b")
            wait_for(lambda: len(succeeded(client, "publish")) >= 3, 60, "3 publish runs")

            old = cluster.wait_for_leader()
            killed_ms = int(time.time() * 1000)
            cluster.kill_node(old, signal.SIGKILL)
            cluster.wait_for_leader(timeout=30, exclude=old)
            wait_for(
                lambda: len(succeeded(client, "merge", killed_ms)) >= 3,
                60,
                "3 merge slots after the kill",
            )
            # stop: the downstream first, so every merge slot claimed has its upstream slots
            last = client.pause_job("merge").next_due_ms - 2000
            for name in ("extract-a", "extract-b"):
                client.pause_job(name)

            def settled() -> bool:
                return not any(
                    r.state in ACTIVE
                    for job in ("extract-a", "extract-b", "merge", "publish")
                    for r in runs_of(client, job)
                )

            wait_for(settled, 60, "every run of the DAG to finish")
            merges = [r for r in runs_of(client, "merge") if r.scheduled_ms <= last]
            slots = [r.scheduled_ms for r in merges]
            assert slots == list(range(merge.next_due_ms, last + 1, 2000)), "one record per slot"
            uid = {n: client.get_job(n).uid for n in ("extract-a", "extract-b")}
            for r in merges:
                assert r.state == R.RUN_STATE_SUCCEEDED, r
                assert sorted(r.upstream_runs) == sorted(
                    f"{n}:{uid[n]}:{r.scheduled_ms}" for n in ("extract-a", "extract-b")
                ), r
            pubs = runs_of(client, "publish")
            assert all(p.state == R.RUN_STATE_SUCCEEDED for p in pubs), pubs
            assert all(p.origin == R.RUN_ORIGIN_DEPENDENCY for p in pubs)
            fed = Counter(rid for p in pubs for rid in p.upstream_runs)
            assert all(n == 1 for n in fed.values()), f"a merge run started publish twice: {fed}"
            assert set(fed) == {r.run_id for r in runs_of(client, "merge")}, (
                "every merge success started publish exactly once"
            )
            lines = [line.split() for line in effects.read_text().splitlines() if line.strip()]
            done = {(rid, int(fence)) for rid, fence, _ in lines}
            for job in ("extract-a", "extract-b", "merge", "publish"):
                for r in runs_of(client, job):
                    assert (r.run_id, r.fence) in done, f"no effect for {r.run_id} fence {r.fence}"
        cluster.start_node(old)
        cluster.wait_converged(timeout=60)
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def test_the_cli_creates_shows_explains_and_deletes_dependencies(cluster: LocalCluster) -> None:
    ep = cluster.endpoints_env
    ok = schedctl(ep, "job", "create", "raw", "--every", "2s", "--queue", "nobody-serves-this")
    assert ok.returncode == 0, ok.stderr
    ok = schedctl(ep, "job", "create", "clean", "--every", "2s", "--after", "raw")
    assert ok.returncode == 0, ok.stderr
    assert "depends on        raw" in ok.stdout or "raw" in ok.stdout
    ok = schedctl(ep, "job", "create", "report", "--after", "clean", "--trigger-rule", "all_done")
    assert ok.returncode == 0, ok.stderr
    assert "none (runs when its upstreams are satisfied)" in ok.stdout

    bad = schedctl(ep, "job", "create", "loop", "--every", "1h", "--after", "loop")
    assert bad.returncode == 2 and "--after" in bad.stderr + bad.stdout, bad
    bad = schedctl(ep, "job", "update", "raw", "--after", "clean")
    assert bad.returncode != 0 and "cycle" in bad.stderr, bad.stderr

    with cluster.client(timeout=5, retry_for=30) as client:
        wait_for(
            lambda: any(r.state == R.RUN_STATE_WAITING for r in runs_of(client, "clean")),
            30,
            "a clean run waiting for raw",
        )
    explained = schedctl(ep, "job", "explain", "clean")
    assert explained.returncode == 0, explained.stderr
    assert "waiting for raw's run of" in explained.stdout, explained.stdout
    assert "no worker on queue nobody-serves-this" in explained.stdout, explained.stdout

    tree = schedctl(ep, "job", "deps", "clean")
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.splitlines()[0].startswith("clean")
    assert "upstream" in tree.stdout and "raw" in tree.stdout and "report" in tree.stdout
    mermaid = schedctl(ep, "job", "deps", "clean", "--format", "mermaid")
    assert mermaid.returncode == 0 and mermaid.stdout.startswith("flowchart LR"), mermaid
    assert mermaid.stdout.count("-->") == 2, mermaid.stdout
    dot = schedctl(ep, "job", "deps", "report", "--format", "dot")
    assert dot.returncode == 0 and '"raw" -> "clean"' in dot.stdout, dot.stdout

    refused = schedctl(ep, "job", "delete", "raw")
    assert refused.returncode == 1, refused
    assert "clean" in refused.stderr and "force" in refused.stderr, refused.stderr
    forced = schedctl(ep, "job", "delete", "raw", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "removed it from the dependencies (--after) of clean" in forced.stdout
    got = json.loads(schedctl(ep, "--json", "job", "get", "clean").stdout)
    assert got.get("depends_on", []) == []
    for name in ("report", "clean"):
        assert schedctl(ep, "job", "delete", name).returncode == 0


def test_backfill_with_downstream_creates_the_matching_downstream_runs_once(
    cluster: LocalCluster,
) -> None:
    with cluster.client(timeout=5, retry_for=30) as client:
        client.create_job("bf-up", cron="0 * * * *", queue="nobody-serves-this")
        client.create_job("bf-down", cron="30 * * * *", depends_on=["bf-up"])
        now = int(time.time() * 1000)
        hour = 3_600_000
        start = (now // hour - 3) * hour
        results = list(client.backfill("bf-up", start, start + 2 * hour, with_downstream=True))
        assert sum(r.created for r in results) == 3
        assert sum(r.downstream_created for r in results) == 3  # :30 of each backfilled hour
        again = list(client.backfill("bf-up", start, start + 2 * hour, with_downstream=True))
        assert sum(r.created + r.downstream_created for r in again) == 0, "once each"
        down = sorted(runs_of(client, "bf-down"), key=lambda r: r.scheduled_ms)
        assert [r.scheduled_ms - start for r in down] == [hour // 2, 3 * hour // 2, 5 * hour // 2]
        assert all(r.state == R.RUN_STATE_WAITING for r in down)
        assert [list(r.waiting_for) for r in down] == [["bf-up"]] * 3
        with pytest.raises(errors.FailedPrecondition, match="bf-down"):
            client.delete_job("bf-up")
        assert client.delete_job("bf-up", force=True) == ["bf-down"]
        # its runs stop waiting for the deleted upstream: nothing left to wait for, they run
        wait_for(
            lambda: all(r.state != R.RUN_STATE_WAITING for r in runs_of(client, "bf-down")),
            20,
            "bf-down's runs decided without bf-up",
        )
        client.delete_job("bf-down")


class OldVersion(LocalCluster):
    """Every node runs as the previous version (feature level 1; tests/integration/old_node.py)."""

    def command(self, spec):  # type: ignore[no-untyped-def]
        cmd = super().command(spec)
        return [sys.executable, "-m", "tests.integration.old_node", *cmd[3:]]


def test_dependencies_are_refused_until_the_cluster_runs_feature_level_4(tmp_path) -> None:
    old = OldVersion(str(tmp_path / "old"), nodes=1, extra_args=list(FAST_ARGS))
    register(old)
    old.start()
    try:
        old.wait_for_leader(timeout=30)
        with old.client(timeout=5, retry_for=30) as client:
            client.create_job("up", every_ms=60_000)
            with pytest.raises(errors.FailedPrecondition, match="feature level 4"):
                client.create_job("down", every_ms=60_000, depends_on=["up"])
            with pytest.raises(errors.NotFound):
                client.get_job("down")
            status = old.status(old.specs[0].node_id)
            assert status is not None and status.feature_level < 4
    finally:
        old.stop()
