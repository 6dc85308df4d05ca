#!/usr/bin/env python3
"""Record the apply corpus that tests/unit/test_apply_golden.py replays.

    python3 scripts/gen_apply_corpus.py            # add the sources the corpus lacks
    python3 scripts/gen_apply_corpus.py --check    # exit 1 if this tree's apply disagrees with it

The sources, each run with fixed seeds, so a rerun on the same code records the same logs:

* the apply model (tests/unit/test_apply_model.py): interval jobs with every misfire and
  overlap policy, pauses, resumes, triggers, ticks, completions, expiries, duplicates, replays;
* the dependency model (tests/unit/test_deps_model.py): DAGs, trigger rules, waiting runs;
* a dispatcher workload written here: many jobs (cron every second, intervals, one-shots,
  priorities, tags, retries, timeouts, chains, bulk creates) through the leader's own planner,
  with successes, failures and expiries, as a busy leader commits them;
* the apply model and the dispatcher workload again at feature level 6, where a tick leases
  the runs it fires in their FireItem;
* the dependency model again at feature level 7, where a replay re-opens a run that several
  failed upstreams skipped.

A recording is only ever added or removed, never changed: the entries an older version wrote
must replay to the same states on every later version.

Every replica (a ``MemoryState``) the sources create is recorded with the log it applied, a
digest of every result and the digest of its final state.

The corpus pins what apply writes: regenerate it only for a change that is meant to write
differently and is safe in a cluster of mixed versions (a new feature level), never to make
the test pass. Development tool only: nothing in the schedd package imports it.
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

from schedd.pb import api_pb2, command_pb2, types_pb2  # noqa: E402
from schedd.sched.schedule import compile_schedule  # noqa: E402
from schedd.server import planner, validate  # noqa: E402
from schedd.state.apply import MemoryState, Result, encode  # noqa: E402
from tests.unit.test_apply_golden import (  # noqa: E402
    CORPUS,
    Recording,
    read_corpus,
    replay,
    results_hash,
    write_corpus,
)

T0 = 1_790_000_000_000


class _Recorder:
    """Wraps MemoryState.apply: every replica's (index, entry) and results, by replica."""

    def __init__(self) -> None:
        self.logs: dict[int, tuple[MemoryState, list[tuple[int, bytes]], list[Result]]] = {}
        self._real = MemoryState.apply

    def __enter__(self) -> _Recorder:
        real, logs = self._real, self.logs

        def apply(state: MemoryState, data: bytes, index: int) -> Result:
            result = real(state, data, index)
            entry = logs.setdefault(id(state), (state, [], []))
            entry[1].append((index, data))
            entry[2].append(result)
            return result

        MemoryState.apply = apply  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        MemoryState.apply = self._real  # type: ignore[method-assign]

    def take(self, source: str) -> list[Recording]:
        out = [
            Recording(f"{source}/{n}", tuple(entries), results_hash(results), state.digest())
            for n, (state, entries, results) in enumerate(self.logs.values())
            if entries
        ]
        self.logs.clear()
        return out


def _model(machine: type, source: str, examples: int, steps: int) -> list[Recording]:
    s = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    with _Recorder() as rec:
        run_state_machine_as_test(machine, settings=s)
        return rec.take(source)


def _job_request(rnd: random.Random, i: int, names: list[str]) -> api_pb2.CreateJobRequest:
    kind = rnd.choice(["cron", "cron", "interval", "at", "at"])
    req = api_pb2.CreateJobRequest(
        name=f"job-{i:04d}",
        queue=rnd.choice(["default", "default", "batch"]),
        payload=f'{{"n": {i}}}',
        priority=rnd.choice([0, 0, 0, 5, 50]),
        max_attempts=rnd.choice([1, 2, 3]),
    )
    if kind == "cron":
        req.schedule.kind = types_pb2.SCHEDULE_KIND_CRON
        req.schedule.cron = rnd.choice(["* * * * * *", "*/2 * * * * *", "*/5 * * * * *"])
    elif kind == "interval":
        req.schedule.kind = types_pb2.SCHEDULE_KIND_INTERVAL
        req.schedule.every_ms = rnd.choice([1000, 2000, 3000])
        if rnd.random() < 0.3:
            req.schedule.jitter_ms = 500
    else:
        req.schedule.kind = types_pb2.SCHEDULE_KIND_AT
        req.schedule.at_ms = T0 + rnd.randrange(0, 20_000)
    if rnd.random() < 0.2:
        req.tags["gpu"] = "yes"
    if rnd.random() < 0.2:
        req.run_timeout_ms = 5_000
    if rnd.random() < 0.2:
        req.dispatch_timeout_ms = 3_000
    if rnd.random() < 0.2:
        req.overlap = rnd.choice(
            [
                types_pb2.OVERLAP_POLICY_FORBID,
                types_pb2.OVERLAP_POLICY_BUFFER_ONE,
                types_pb2.OVERLAP_POLICY_REPLACE,
            ]
        )
    if rnd.random() < 0.15:
        req.misfire = rnd.choice([types_pb2.MISFIRE_POLICY_SKIP, types_pb2.MISFIRE_POLICY_FIRE_ALL])
    if rnd.random() < 0.1:
        req.retry.initial_backoff_ms = 1000
    if names and rnd.random() < 0.1:
        req.on_success = rnd.choice(names)
    if names and rnd.random() < 0.05:
        req.on_failure = rnd.choice(names)
    if rnd.random() < 0.1:
        req.keep_runs = 3
    return req


def _dispatcher(seed: int, jobs: int, seconds: int, level: int = 5) -> list[Recording]:
    """A busy leader: ``jobs`` jobs, two workers per queue, a tick every 50-400 ms, completions
    of the runs granted in earlier ticks (most succeed), now and then a lost worker's leases
    expire."""
    rnd = random.Random(seed)
    with _Recorder() as rec:
        state = MemoryState()
        index = 0

        def commit(cmd: command_pb2.Command) -> Result:
            nonlocal index
            index += 1
            return state.apply(encode(cmd), index)

        names: list[str] = []
        now = T0 - 30_000
        bulk: list[api_pb2.CreateJobRequest] = []
        for i in range(jobs):
            req = _job_request(rnd, i, names)
            if i % 3 == 0:
                commit(validate.create_job(req, now))
            else:
                req.request_id = f"bulk-{i}"
                bulk.append(req)
                if len(bulk) == 10:
                    cmds = validate.create_jobs(api_pb2.CreateJobsRequest(jobs=bulk), now)
                    batch = command_pb2.Command(
                        now_ms=now, batch=command_pb2.Batch(commands=[c for _, c in cmds])
                    )
                    for _, c in cmds:
                        c.principal = "admin"
                    commit(batch)
                    bulk = []
            names.append(req.name)
            now += 7
        commit(
            command_pb2.Command(
                now_ms=now, set_feature_level=command_pb2.SetFeatureLevelCmd(level=level)
            )
        )
        settings = planner.PlanSettings(
            max_grants_per_tick=64, lease_ttl_ms=5_000, lease_in_fire=level >= 6
        )
        cursor: dict[str, int] = defaultdict(int)
        schedules: dict[bytes, object] = {}

        def schedule_of(s: types_pb2.Schedule):  # type: ignore[no-untyped-def]
            key = s.SerializeToString(deterministic=True)
            if key not in schedules:
                schedules[key] = compile_schedule(s)
            return schedules[key]

        held: dict[str, list[tuple[str, int]]] = defaultdict(list)  # worker -> (run, fence)
        workers = [
            ("w-a", ("default",), {}),
            ("w-b", ("default", "batch"), {"gpu": "yes"}),
            ("w-c", ("batch",), {}),
        ]
        now = T0
        while now < T0 + seconds * 1000:
            now += rnd.choice([50, 100, 250, 400, 1000])
            completions = []
            expiries = []
            for w, runs in held.items():
                lost = rnd.random() < 0.02
                keep = []
                for rid, fence in runs:
                    if lost:
                        expiries.append(
                            command_pb2.ExpireItem(run_id=rid, fence=fence, reason="lease expired")
                        )
                    elif rnd.random() < 0.8:
                        ok = rnd.random() < 0.85
                        completions.append(
                            command_pb2.CompleteItem(
                                run_id=rid,
                                fence=fence,
                                success=ok,
                                error="" if ok else "boom",
                                worker_id=w,
                            )
                        )
                    else:
                        keep.append((rid, fence))
                held[w] = keep
            free = [
                planner.FreeWorker(w, qs, tags, max(0, 8 - len(held[w]))) for w, qs, tags in workers
            ]
            plan = planner.plan_tick(
                state,
                now,
                settings,
                completions=completions,
                expiries=expiries,
                workers=free,
                cursor=cursor,
                schedule_of=schedule_of,
            )
            if not plan.commands:
                continue
            result = commit(plan.batch())
            for g in planner.after_commit(plan, result).granted:
                held[g.worker_id].append((g.firing.run_id, g.firing.fence))
            if rnd.random() < 0.05:
                name = rnd.choice(names)
                commit(
                    command_pb2.Command(
                        now_ms=now, trigger_job=command_pb2.TriggerJobCmd(name=name)
                    )
                )
            if rnd.random() < 0.03:
                name = rnd.choice(names)
                commit(
                    command_pb2.Command(now_ms=now, pause_job=command_pb2.PauseJobCmd(name=name))
                )
            if rnd.random() < 0.05:
                finished = [
                    k.decode()
                    for k, v in state.data["runs"].items()
                    if types_pb2.Run.FromString(v).state == types_pb2.RUN_STATE_SUCCEEDED
                ]
                commit(
                    command_pb2.Command(
                        now_ms=now,
                        prune_runs=command_pb2.PruneRunsCmd(
                            run_ids=finished[:5], request_ids=["bulk-1"], request_ttl_ms=1
                        ),
                    )
                )
        return rec.take(f"dispatcher-{seed}")


#: source name -> how to record it. A source is recorded once, when it is added here; later
#: runs keep its recordings as they are (see the module docstring).
def _sources() -> dict[str, Callable[[], list[Recording]]]:
    # by name: the models are tests, which this repository does not type-check
    models = importlib.import_module("tests.unit.test_apply_model")
    deps_model = importlib.import_module("tests.unit.test_deps_model").DagModel
    return {
        "apply-model": lambda: _model(models.ApplyModel, "apply-model", examples=150, steps=50),
        "deps-model": lambda: _model(deps_model, "deps-model", examples=100, steps=40),
        "dispatcher": lambda: [
            r for seed in (1, 2, 3) for r in _dispatcher(seed, jobs=300, seconds=120)
        ],
        # feature level 6 (FIRE_AND_LEASE): ticks lease the runs they fire in the FireItem
        "apply-model-6": lambda: _model(
            models.LeaseInFireModel, "apply-model-6", examples=60, steps=50
        ),
        "dispatcher-6": lambda: [
            r for seed in (4, 5) for r in _dispatcher(seed, jobs=300, seconds=120, level=6)
        ],
        # feature level 7 (REOPEN_EVERY_FAILED): the dependency model now runs at this
        # version's level (its older recordings, under "deps-model", are at level 0)
        "deps-model-7": lambda: _model(deps_model, "deps-model-7", examples=60, steps=40),
    }


def source_of(rec: Recording) -> str:
    return rec.name.split("/")[0]


def record(keep: list[Recording]) -> list[Recording]:
    """``keep``, and the recordings of every source it has none of."""
    have = {source_of(r) for r in keep}
    out = list(keep)
    for source, make in _sources().items():
        if source not in have:
            out += [
                Recording(f"{source}/{n}", r.entries, r.results, r.digest)
                for n, r in enumerate(make())
            ]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="replay the corpus; write nothing")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="record every source anew (drops the recordings older versions made)",
    )
    a = p.parse_args()
    if a.check:
        bad = [r.name for r in read_corpus() if replay(r) != (r.results, r.digest)]
        print(f"{len(bad)} recorded logs replay differently" + (f": {bad[:5]}" if bad else ""))
        return 1 if bad else 0
    keep = [] if a.fresh or not CORPUS.exists() else read_corpus()
    recs = record(keep)
    write_corpus(CORPUS, recs)
    entries = sum(len(r.entries) for r in recs)
    print(
        f"wrote {CORPUS.relative_to(ROOT)}: {len(recs)} replicas ({len(recs) - len(keep)} new), "
        f"{entries} entries, {CORPUS.stat().st_size} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
