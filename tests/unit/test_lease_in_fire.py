"""Feature level 6 (FIRE_AND_LEASE): a tick leases the runs it fires in their FireItem.

The lease is the one a GrantItem in the same entry would have made; the run is written once and
never enters the pending index. Checked here against the two-command form on a busy mixed
workload (the same ticks on two replicas, one per form), and for the feature-level gate.
"""

from __future__ import annotations

import random
from collections import defaultdict

import hypothesis.strategies as st
from hypothesis import given, settings

from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sched.schedule import compile_schedule
from schedd.server import planner, validate
from schedd.state import keys
from schedd.state.apply import MemoryState, Result, apply, encode, features

T0 = 1_790_000_000_000
LEASED = types_pb2.RUN_STATE_LEASED


class Replica:
    def __init__(self, level: int) -> None:
        self.state = MemoryState()
        self.index = 0
        self.commit(
            command_pb2.Command(
                now_ms=T0, set_feature_level=command_pb2.SetFeatureLevelCmd(level=level)
            )
        )

    def commit(self, cmd: command_pb2.Command) -> Result:
        self.index += 1
        mutations, result = apply(self.state, encode(cmd), self.index)
        self.state.execute(mutations)
        self.mutations = mutations
        assert result.ok, result
        return result


def _jobs(rnd: random.Random, n: int) -> list[command_pb2.Command]:
    out = []
    for i in range(n):
        req = api_pb2.CreateJobRequest(name=f"j{i:03d}", payload=f'{{"i": {i}}}')
        kind = rnd.randrange(4)
        if kind == 0:
            req.schedule.kind = types_pb2.SCHEDULE_KIND_CRON
            req.schedule.cron = rnd.choice(["* * * * * *", "*/2 * * * * *"])
        elif kind == 1:
            req.schedule.kind = types_pb2.SCHEDULE_KIND_INTERVAL
            req.schedule.every_ms = rnd.choice([1000, 3000])
        else:
            req.schedule.kind = types_pb2.SCHEDULE_KIND_AT
            req.schedule.at_ms = T0 + rnd.randrange(0, 8_000)
        req.priority = rnd.choice([0, 0, 10])
        req.queue = rnd.choice(["default", "other"])
        if rnd.random() < 0.3:
            req.overlap = rnd.choice(
                [
                    types_pb2.OVERLAP_POLICY_FORBID,
                    types_pb2.OVERLAP_POLICY_BUFFER_ONE,
                    types_pb2.OVERLAP_POLICY_REPLACE,
                ]
            )
        if rnd.random() < 0.2:
            req.run_timeout_ms = 2_000
        if rnd.random() < 0.2:
            req.tags["zone"] = "a"
        if rnd.random() < 0.2:
            req.max_runs = 3
        out.append(validate.create_job(req, T0 - 10_000))
    return out


def _normal(state: MemoryState) -> dict[str, dict[bytes, bytes]]:
    """The state with fences and the feature level left out: the two forms number a tick's
    leases in another order (the FireItems' first)."""
    out = {db: dict(items) for db, items in state.data.items()}
    for rid, raw in out["runs"].items():
        run = types_pb2.Run.FromString(raw)
        run.fence = 0
        out["runs"][rid] = run.SerializeToString(deterministic=True)
    out["leases"] = {k: v[8:] for k, v in out["leases"].items()}
    del out["meta"][keys.FEATURE_LEVEL]  # (the one difference the two replicas start with)
    return out


def _grants(result: Result) -> dict[str, tuple[str, int, str]]:
    return {
        g.run.run_id: (g.run.worker_id, g.run.started_ms, g.payload)
        for sub in result.sub
        for g in sub.granted
    }


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_leasing_in_the_fire_item_leaves_what_a_grant_item_leaves(seed: int) -> None:
    """Two replicas, one per form, the same ticks (planned on each from its own state: the
    plans choose the same runs and workers): after every tick the states are equal but for the
    fences, the leases granted are the same, and the level-6 one wrote no pending-index entry
    for a run it leased."""
    rnd = random.Random(seed)
    two = Replica(features.FIRE_AHEAD)
    one = Replica(features.FIRE_AND_LEASE)
    for cmd in _jobs(rnd, 40):
        two.commit(cmd)
        one.commit(cmd)
    held: dict[bool, dict[str, list[tuple[str, int]]]] = {
        False: defaultdict(list),
        True: defaultdict(list),
    }
    cursors: dict[bool, dict[str, int]] = {False: defaultdict(int), True: defaultdict(int)}
    moved = 0
    now = T0
    for _ in range(20):
        now += rnd.choice([300, 1000, 2500])
        free = {w: rnd.randrange(1, 4) for w in ("w1", "w2", "w3")}
        done = {rid for rid in (r for runs in held[False].values() for r, _ in runs)}
        done = {rid for rid in sorted(done) if rnd.random() < 0.7}
        outs = {}
        for lease, rep in ((False, two), (True, one)):
            completions = []
            for w, runs in held[lease].items():
                keep = []
                for rid, fence in runs:
                    if rid in done:
                        completions.append(
                            command_pb2.CompleteItem(
                                run_id=rid, fence=fence, success=True, worker_id=w
                            )
                        )
                    else:
                        keep.append((rid, fence))
                held[lease][w] = keep
            workers = [
                planner.FreeWorker("w1", ("default",), {}, free["w1"]),
                planner.FreeWorker("w2", ("default", "other"), {"zone": "a"}, free["w2"]),
                planner.FreeWorker("w3", ("other",), {}, free["w3"]),
            ]
            plan = planner.plan_tick(
                rep.state,
                now,
                planner.PlanSettings(lease_in_fire=lease),
                completions=completions,
                expiries=[],
                workers=workers,
                cursor=cursors[lease],
                schedule_of=compile_schedule,
            )
            if lease:
                moved += sum(
                    1
                    for c in plan.commands
                    for item in c.fire_due.items
                    for w in item.lease_to
                    if w
                )
            if not plan.commands:
                outs[lease] = Result()
                continue
            result = rep.commit(plan.batch())
            for g in planner.after_commit(plan, result).granted:
                held[lease][g.worker_id].append((g.firing.run_id, g.firing.fence))
            outs[lease] = result
            kinds = [c.WhichOneof("body") for c in plan.commands]
            if lease and "fire_due" in kinds:
                # no pending-index write (not even a delete) for a run leased as it fired
                fired = [g.run.run_id.encode() for g in result.sub[kinds.index("fire_due")].granted]
                churn = [
                    m
                    for m in rep.mutations
                    if m.db in ("pending", "pending_q") and any(m.key.endswith(r) for r in fired)
                ]
                assert not churn, churn
        assert _grants(outs[False]) == _grants(outs[True])
        assert _normal(two.state) == _normal(one.state)
    assert moved > 0, "no tick leased a run in its FireItem: the test saw nothing"


def test_below_level_6_lease_to_is_ignored() -> None:
    """A FireItem's lease_to (which an older version cannot read) changes nothing before the
    cluster runs at FIRE_AND_LEASE: the run is PENDING, as on a replica of the older version."""
    for level, want in (
        (features.FIRE_AHEAD, types_pb2.RUN_STATE_PENDING),
        (features.FIRE_AND_LEASE, LEASED),
    ):
        rep = Replica(level)
        req = api_pb2.CreateJobRequest(
            name="once",
            schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=T0 + 1000),
        )
        rep.commit(validate.create_job(req, T0))
        plan = planner.plan_tick(
            rep.state,
            T0 + 1000,
            planner.PlanSettings(lease_in_fire=True),
            completions=[],
            expiries=[],
            workers=[planner.FreeWorker("w1", ("default",), {}, 1)],
            cursor=defaultdict(int),
            schedule_of=compile_schedule,
        )
        (cmd,) = plan.commands
        assert list(cmd.fire_due.items[0].lease_to) == ["w1"]
        result = rep.commit(plan.batch())
        (run_raw,) = rep.state.data["runs"].values()
        run = types_pb2.Run.FromString(run_raw)
        assert run.state == want, (level, run)
        assert bool(rep.state.data["leases"]) == (want == LEASED)
        assert bool(rep.state.data["pending"]) == (want != LEASED)
        assert len(planner.after_commit(plan, result).granted) == (1 if want == LEASED else 0)


def test_the_planner_keeps_the_grants_of_stored_runs() -> None:
    """Only the runs the tick fires move into lease_to; a stored PENDING run keeps its
    GrantItem, and the workers chosen do not change."""
    fire = command_pb2.FireItem(name="a", uid=7, slots_ms=[1000, 2000])
    grants = [
        command_pb2.GrantItem(run_id="a:7:2000", attempt=1, worker_id="w2"),
        command_pb2.GrantItem(run_id="old:3:5", attempt=2, worker_id="w1"),
        command_pb2.GrantItem(run_id="a:7:1000", attempt=2, worker_id="w1"),  # a retry
    ]
    rest = planner.lease_in_fire([fire], grants)
    assert list(fire.lease_to) == ["", "w2"]
    assert [g.run_id for g in rest] == ["old:3:5", "a:7:1000"]
