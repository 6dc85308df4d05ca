"""The leader's validation of bulk creates, per job, in process: no cluster, no Raft.

``--calls`` ``CreateJobs`` requests of 1,000 jobs each (every job with its own name and request
id, one cron expression for all, as ``bench/populate.py`` creates them) go through
``validate.create_jobs``, the pure part of the CreateJobs RPC on the leader. Prints CPU
microseconds per job, the median of ``--repeat`` rounds.

    python bench/validate_cost.py
    python bench/validate_cost.py --stage command       # the whole entry the leader builds
    PYTHONPATH=<tree> python bench/validate_cost.py     # another tree, in the same minute
"""

from __future__ import annotations

import argparse
import statistics
import time

from schedd.pb import api_pb2, types_pb2
from schedd.server import validate
from schedd.server.service import create_jobs_command
from schedd.state.apply import encode

NOW_MS = 1_800_000_000_000


def requests(calls: int, cron: str) -> list[api_pb2.CreateJobsRequest]:
    out = []
    for c in range(calls):
        out.append(
            api_pb2.CreateJobsRequest(
                jobs=[
                    api_pb2.CreateJobRequest(
                        name=f"job-{c * 1000 + i:07d}",
                        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron=cron),
                        queue="default",
                        request_id=f"bulk-{c * 1000 + i}",
                    )
                    for i in range(1000)
                ]
            )
        )
    return out


class _Caller:
    """A gRPC context's stand-in for :func:`create_jobs_command`: an anonymous caller."""

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


def one_round(reqs: list[api_pb2.CreateJobsRequest], stage: str = "validate") -> float:
    c0 = time.process_time()
    jobs = 0
    for req in reqs:
        if stage == "validate":
            jobs += len(list(validate.create_jobs(req, NOW_MS)))
        else:  # the entry the leader proposes: validated, scoped, stamped, encoded
            cmd = create_jobs_command(req, NOW_MS, _Caller())  # type: ignore[arg-type]
            encode(cmd)
            jobs += len(cmd.batch.commands)
    return (time.process_time() - c0) / jobs * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=5, help="CreateJobs requests of 1,000 jobs")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--cron", default="0 3 1 1 *")
    p.add_argument(
        "--stage",
        choices=("validate", "command"),
        default="validate",
        help="validate: validate.create_jobs alone; command: the whole entry the leader "
        "builds (create_jobs_command: validation, request scoping, encoding)",
    )
    a = p.parse_args()
    reqs = requests(a.calls, a.cron)
    one_round(reqs, a.stage)  # warm the caches a long-running leader has warm
    rounds = [one_round(reqs, a.stage) for _ in range(a.repeat)]
    print(
        f"{a.stage}: {statistics.median(rounds):.1f} µs CPU per job (median of {a.repeat}; "
        f"min {min(rounds):.1f}, max {max(rounds):.1f}; {a.calls} calls of 1,000 jobs, "
        f"cron {a.cron!r})"
    )


if __name__ == "__main__":
    main()
