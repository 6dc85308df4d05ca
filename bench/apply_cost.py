"""The leader's planning and every replica's apply, per firing, in process: no Raft, no network.

A real LMDB store in a temp dir holds ``--jobs`` one-shot jobs (created as the service creates
them: ``validate.create_job``) all due at one instant. Then the dispatcher's pure planner runs
tick after tick against it, as on the leader, with one worker of ``--slots`` free slots:
each tick's entry (FireDue + GrantLeases, then the completions of the runs granted by the tick
before) is applied to the store, as every replica applies it. Prints CPU microseconds per
firing for planning (leader only) and for apply (each replica), median of ``--repeat`` rounds.

    python bench/apply_cost.py                      # 5,000 jobs, 512 slots
    python bench/apply_cost.py --jobs 20000 --repeat 5
    python bench/apply_cost.py --slots 64 --compare-index   # the backlog from LMDB vs in memory
    python bench/apply_cost.py --level 5                    # ticks as before feature level 6

``--compare-index`` runs each round twice, interleaved: the planner reading the PENDING backlog
from LMDB, and from the leader's in-memory index (schedd.server.pending), whose upkeep is then
part of apply (the leader's only; a follower keeps no index).

Compare two trees in the same minute with ``PYTHONPATH=<tree> python bench/apply_cost.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from collections import defaultdict

from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sched.schedule import compile_schedule
from schedd.server import planner, validate
from schedd.server.pending import PendingIndex
from schedd.state.apply import encode, features
from schedd.state.store import Store

T0 = 1_800_000_000_000


def one_round(
    jobs: int, slots: int, index: bool = False, level: int | None = None
) -> tuple[float, float, int]:
    """``level``: the cluster's feature level (default: the highest this tree supports, as a
    cluster of this version runs); from 6 on the ticks lease the runs they fire in the FireItem."""
    root = tempfile.mkdtemp(prefix="schedd-apply-cost-")
    store = Store(root)
    pending = PendingIndex(store) if index else None
    level = features.SUPPORTED if level is None else level
    try:
        index = 1
        store.apply_entry(
            encode(
                command_pb2.Command(
                    now_ms=T0 - 120_000,
                    set_feature_level=command_pb2.SetFeatureLevelCmd(level=level),
                )
            ),
            index,
        )
        for i in range(jobs):
            index += 1
            req = api_pb2.CreateJobRequest(
                name=f"job-{i:07d}",
                schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=T0),
                queue="default",
            )
            store.apply_entry(encode(validate.create_job(req, T0 - 60_000)), index)
        settings = planner.PlanSettings(max_grants_per_tick=slots)
        if level >= 6:  # (FIRE_AND_LEASE; a tree without it has no such setting)
            settings = dataclasses.replace(settings, lease_in_fire=True)
        cursor: dict[str, int] = defaultdict(int)
        schedules: dict[bytes, object] = {}

        def schedule_of(s):  # type: ignore[no-untyped-def]
            key = s.SerializeToString(deterministic=True)
            if key not in schedules:
                schedules[key] = compile_schedule(s)
            return schedules[key]

        if pending is not None:
            pending.start().join()
            assert pending.ready
        completions: list[command_pb2.CompleteItem] = []
        plan_s = apply_s = 0.0
        done = 0
        now = T0 + 5
        while done < jobs:
            free = slots - len(completions) if not completions else slots
            c0 = time.process_time()
            plan = planner.plan_tick(
                store,
                now,
                settings,
                completions=completions,
                expiries=[],
                workers=[planner.FreeWorker("w", ("default",), {}, free)],
                cursor=cursor,
                schedule_of=schedule_of,
                pending=pending,
            )
            c1 = time.process_time()
            if not plan.commands:
                raise RuntimeError(f"nothing to do with {done}/{jobs} done")
            index += 1
            result = store.apply_entry(encode(plan.batch()), index)
            c2 = time.process_time()
            out = planner.after_commit(plan, result)
            done += len(completions)
            completions = [
                command_pb2.CompleteItem(
                    run_id=g.firing.run_id, fence=g.firing.fence, success=True, worker_id="w"
                )
                for g in out.granted
            ]
            plan_s += c1 - c0
            apply_s += c2 - c1
            now += 2
        return plan_s / jobs * 1e6, apply_s / jobs * 1e6, index
    finally:
        if pending is not None:
            pending.stop()
        store.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--slots", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--level",
        type=int,
        default=None,
        help="the cluster's feature level (default: the highest this tree supports)",
    )
    p.add_argument(
        "--compare-index",
        action="store_true",
        help="also plan from the in-memory pending index, interleaved with the LMDB reads",
    )
    a = p.parse_args()
    modes = [False, True] if a.compare_index else [False]
    rounds: dict[bool, list[tuple[float, float, int]]] = {m: [] for m in modes}
    for _ in range(a.repeat):
        for m in modes:
            rounds[m].append(one_round(a.jobs, a.slots, index=m, level=a.level))
    for m in modes:
        plan = statistics.median(r[0] for r in rounds[m])
        apply = statistics.median(r[1] for r in rounds[m])
        how = (
            " (backlog from the in-memory index)"
            if m
            else (" (backlog read from LMDB)" if a.compare_index else "")
        )
        print(
            f"per firing: planning {plan:.1f} µs (leader), apply {apply:.1f} µs (each replica)"
            f"{how}; {a.jobs} jobs, {a.slots} slots, median of {a.repeat}"
        )


if __name__ == "__main__":
    main()
