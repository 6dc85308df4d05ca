"""How fast the dashboard's job list renders with many jobs.

Starts a secure 3-node cluster whose nodes serve the dashboard (HTTPS), fills it with N jobs
(:mod:`populate`: recurring jobs never due during the run, 32 create calls in flight), signs in
with the admin token and times HTTP GETs of the job list's first page (what a person opening
the dashboard gets), from this machine over loopback: the figure is the node's time to answer
(TLS, one ListJobs call, one ListRuns call per row in parallel, rendering) plus a loopback
round trip. Also timed: a filtered page that matches nothing (the server reads up to 20,000
jobs before it answers) and the next page from the middle of the list.

    python bench/dashboard.py --jobs 10000 --repeat 50
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import shutil
import ssl
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import progress  # noqa: E402
from populate import create_jobs  # noqa: E402

from schedd.testing import LocalCluster  # noqa: E402


def _timed(opener: urllib.request.OpenerDirector, url: str, repeat: int) -> dict[str, float]:
    took = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with opener.open(url, timeout=60) as r:
            body = r.read()
            assert r.status == 200 and b"data-job=" in body or b"No jobs" in body, url
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    return {
        "median_ms": round(statistics.median(took), 1),
        "p95_ms": round(took[min(len(took) - 1, int(0.95 * len(took)))], 1),
        "max_ms": round(took[-1], 1),
        "n": len(took),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="schedd-bench-dashboard-")
    cluster = LocalCluster(root, nodes=3, http=True)
    out: dict[str, object] = {"jobs": args.jobs}
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=60)
        with cluster.client(timeout=30, retry_for=60) as client:
            out["populate"] = create_jobs(client, args.jobs)
        node = cluster.specs[0].node_id
        ctx = ssl.create_default_context(cafile=cluster.ca_file)
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        )
        opener.open(cluster.dashboard_login_url(node), timeout=30).read()
        base = cluster.dashboard_url(node)
        _timed(opener, base + "jobs", 3)  # warm up channels and templates
        progress(f"timing the first page of {args.jobs} jobs, {args.repeat} GETs")
        out["first_page"] = _timed(opener, base + "jobs", args.repeat)
        middle = f"job-{args.jobs // 2:06d}"
        out["middle_page"] = _timed(opener, base + f"jobs?after={middle}", args.repeat)
        out["filter_no_match"] = _timed(
            opener, base + "jobs?status=paused", max(3, args.repeat // 10)
        )
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
