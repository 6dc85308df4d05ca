#!/usr/bin/env python3
"""Time and size of a backup and a restore: ``schedctl snapshot save`` of a 3-node cluster
holding N jobs (:mod:`populate`: recurring jobs never due during the run), ``snapshot
inspect``, ``schedd restore`` into three new data dirs, and the new cluster's start until its
leader answers and until ``list_jobs`` returns every job.

    python bench/backup.py --jobs 10000 [--repeat 3]

Prints progress on stderr and one JSON line on stdout: seconds and bytes per step, and next to
each wall time the CPU seconds it cost (user + system): ``*_cpu_s`` of the ``schedctl`` or
``schedd restore`` child processes (``getrusage(RUSAGE_CHILDREN)``), of the leader during the
save and of the new nodes until their leader answered (/proc/PID/stat). ``leader_copy_s`` is the
leader's own figure for taking the image (its ``event=snapshot_taken`` log line). With
``--repeat K`` the one populated cluster is saved K times, then each file is restored into a
new cluster and started; every figure is then the median, with ``KEY_range`` [min, max] and the
single runs under ``runs``. Everything binds to 127.0.0.1; the temp dir is deleted at the end
unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from common import process_cpu_s, progress
from populate import create_jobs

from schedd.testing import FAST_ARGS, LocalCluster


def children_cpu_s() -> float:
    """CPU seconds (user + system) of every child process waited for so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed_child(
    cmd: Sequence[str], **kw: object
) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``cmd`` to completion (check=True): wall seconds, its CPU seconds, the result."""
    cpu0, t0 = children_cpu_s(), time.monotonic()
    done = subprocess.run(list(cmd), check=True, **kw)  # type: ignore[call-overload]
    return time.monotonic() - t0, children_cpu_s() - cpu0, done


def nodes_cpu_s(cluster: LocalCluster) -> float:
    """CPU seconds the cluster's running node processes have used so far."""
    return sum(process_cpu_s(p.pid) or 0.0 for p in cluster.procs.values() if p.poll() is None)


def leader_copy_s(log_path: str) -> float | None:
    """The seconds of the last ``event=snapshot_taken`` line in a node log, None if none."""
    found = None
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                m = re.search(r"event=snapshot_taken .* seconds=([0-9.]+)", line)
                if m:
                    found = float(m.group(1))
    except OSError:
        pass
    return found


def save_once(a: LocalCluster, path: str) -> dict[str, Any]:
    """``schedctl snapshot save`` then ``inspect`` of ``path``: seconds, CPU seconds, header."""
    env = dict(os.environ, **a.client_env)
    leader = a.wait_for_leader(timeout=60)
    leader_pid = a.procs[leader].pid
    leader_cpu0 = process_cpu_s(leader_pid) or 0.0
    save_s, save_cpu_s, _ = timed_child(
        [sys.executable, "-m", "schedctl", "snapshot", "save", path], env=env
    )
    save_leader_cpu_s = (process_cpu_s(leader_pid) or 0.0) - leader_cpu0
    inspect_s, inspect_cpu_s, got = timed_child(
        [sys.executable, "-m", "schedctl", "--json", "snapshot", "inspect", path],
        env=env,
        capture_output=True,
        text=True,
    )
    header = json.loads(got.stdout)
    return {
        "file_bytes": os.path.getsize(path),
        "image_bytes": header["size_bytes"],
        "applied_index": header.get("applied_index"),
        "save_s": round(save_s, 2),
        "save_schedctl_cpu_s": round(save_cpu_s, 2),
        "save_leader_cpu_s": round(save_leader_cpu_s, 2),
        "leader_copy_s": leader_copy_s(a.spec(leader).log_path),
        "inspect_s": round(inspect_s, 2),
        "inspect_cpu_s": round(inspect_cpu_s, 2),
    }


def restore_once(backup: str, root: str, token_file: str) -> dict[str, Any]:
    """``schedd restore`` into 3 new data dirs under ``root``, then start that cluster: seconds
    and CPU seconds per step, and how many jobs ``list_jobs`` returns."""
    os.makedirs(root, mode=0o700)
    shutil.copy(token_file, os.path.join(root, "admin.token"))
    b = LocalCluster(root, nodes=3, extra_args=FAST_ARGS)
    try:
        restore_s = restore_cpu_s = 0.0
        for spec in b.specs:
            took, cpu, _ = timed_child(
                [sys.executable, "-m", "schedd", "restore", backup, "--data-dir", spec.data_dir],
                capture_output=True,
            )
            restore_s, restore_cpu_s = restore_s + took, restore_cpu_s + cpu
        t0 = time.monotonic()
        b.start()
        b.wait_for_leader(timeout=120)
        start_s = time.monotonic() - t0
        start_cpu_s = nodes_cpu_s(b)
        with b.client(timeout=60.0, retry_for=60) as client:
            t1 = time.monotonic()
            n = len(client.list_jobs(limit=None))
            list_s = time.monotonic() - t1
    finally:
        b.stop()
    return {
        "jobs_after_restore": n,
        "restore_per_node_s": round(restore_s / len(b.specs), 2),
        "restore_per_node_cpu_s": round(restore_cpu_s / len(b.specs), 2),
        "new_cluster_leader_s": round(start_s, 2),
        "new_cluster_cpu_s_until_leader": round(start_cpu_s, 2),
        "list_jobs_after_restore_s": round(list_s, 2),
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key: the median over ``runs``, with ``[min, max]`` under ``KEY_range`` when they
    differ (one run: its values)."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
        if not values:
            out[key] = runs[0][key]
            continue
        median = statistics.median(values)
        whole = all(isinstance(v, int) for v in values) and median == int(median)
        out[key] = int(median) if whole else round(median, 3)
        if len(values) > 1 and min(values) != max(values):
            out[f"{key}_range"] = [min(values), max(values)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument(
        "--repeat", type=int, default=1, help="saves, and restores + starts, of the one cluster"
    )
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    repeat = max(1, args.repeat)
    root = tempfile.mkdtemp(prefix="schedd-backup-bench-")
    a = LocalCluster(os.path.join(root, "old"), nodes=3, extra_args=FAST_ARGS)
    try:
        a.start()
        a.wait_for_leader(timeout=60)
        with a.client(timeout=30.0, retry_for=120.0) as client:
            created = create_jobs(client, args.jobs)
        saves = []
        for i in range(repeat):
            progress(f"snapshot save {i + 1}/{repeat}")
            saves.append(save_once(a, os.path.join(root, f"cluster-{i}.snap")))
        a.stop()
        restores = []
        for i in range(repeat):
            progress(f"schedd restore into 3 nodes and start them, {i + 1}/{repeat}")
            restores.append(
                restore_once(
                    os.path.join(root, f"cluster-{i}.snap"),
                    os.path.join(root, f"new-{i}"),
                    a.token_file,
                )
            )
        runs = [{**s_, **r} for s_, r in zip(saves, restores, strict=True)]
        summary = {
            "jobs": args.jobs,
            "create_s": created["create_s"],
            "create_per_s": created["create_per_s"],
            "repeat": repeat,
            **median_of(runs),
        }
        if repeat > 1:
            summary["runs"] = runs
        print(json.dumps(summary))
        return 0 if all(r["jobs_after_restore"] == args.jobs for r in runs) else 1
    finally:
        a.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
