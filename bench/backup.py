#!/usr/bin/env python3
"""Time and size of a backup and a restore: ``schedctl snapshot save`` of a 3-node cluster
holding N jobs (each with one run per second for a while), ``snapshot inspect``, ``schedd
restore`` into three new data dirs, and the new cluster's start until its leader answers.

    python bench/backup.py --jobs 10000

Prints one line per step (seconds, bytes). Everything binds to 127.0.0.1; the temp dir is
deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from schedd.testing import FAST_ARGS, LocalCluster


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="schedd-backup-bench-")
    backup = os.path.join(root, "cluster.snap")
    a = LocalCluster(os.path.join(root, "old"), nodes=3, extra_args=FAST_ARGS)
    b: LocalCluster | None = None
    try:
        a.start()
        a.wait_for_leader(timeout=60)
        t0 = time.monotonic()
        with a.client(retry_for=60) as client, concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: client.create_job(f"job-{i:06d}", every_ms=3_600_000),
                    range(args.jobs),
                )
            )
        print(f"created {args.jobs} jobs in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        env = dict(os.environ, **a.client_env)
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "schedctl", "snapshot", "save", backup], env=env, check=True
        )
        save_s = time.monotonic() - t0
        t0 = time.monotonic()
        got = subprocess.run(
            [sys.executable, "-m", "schedctl", "--json", "snapshot", "inspect", backup],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        inspect_s = time.monotonic() - t0
        header = json.loads(got.stdout)
        a.stop()
        root_b = os.path.join(root, "new")
        os.makedirs(root_b, mode=0o700)
        shutil.copy(a.token_file, os.path.join(root_b, "admin.token"))
        b = LocalCluster(root_b, nodes=3, extra_args=FAST_ARGS)
        t0 = time.monotonic()
        for spec in b.specs:
            subprocess.run(
                [sys.executable, "-m", "schedd", "restore", backup, "--data-dir", spec.data_dir],
                check=True,
                capture_output=True,
            )
        restore_s = (time.monotonic() - t0) / len(b.specs)
        t0 = time.monotonic()
        b.start()
        b.wait_for_leader(timeout=120)
        start_s = time.monotonic() - t0
        with b.client(retry_for=60) as client:
            n = len(client.list_jobs(limit=None))
        print(
            json.dumps(
                {
                    "jobs": args.jobs,
                    "jobs_after_restore": n,
                    "file_bytes": os.path.getsize(backup),
                    "image_bytes": header["size_bytes"],
                    "save_s": round(save_s, 2),
                    "inspect_s": round(inspect_s, 2),
                    "restore_per_node_s": round(restore_s, 2),
                    "new_cluster_leader_s": round(start_s, 2),
                }
            )
        )
        return 0 if n == args.jobs else 1
    finally:
        a.stop()
        if b is not None:
            b.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
