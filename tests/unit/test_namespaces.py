"""Namespaces as stored-name prefixes (schedd.namespaces), their quotas in apply
(schedd.state.apply.quotas) and the per-caller limits (schedd.server.limits). Pure, in-process."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedd import namespaces
from schedd.errors import InvalidArgument, ResourceExhausted
from schedd.pb import command_pb2, types_pb2
from schedd.rules import NAME_RE
from schedd.server.limits import ScanSlots, TokenBucket, WriteRates, scan_slot
from schedd.state import keys
from schedd.state.apply import MemoryState, encode

ns_names = st.from_regex(namespaces.NAMESPACE_RE, fullmatch=True)
job_names = st.from_regex(NAME_RE, fullmatch=True)


@given(ns_names, job_names)
def test_a_stored_name_splits_back_and_its_run_ids_name_the_namespace(ns: str, name: str) -> None:
    stored = namespaces.qualify(ns, name)
    assert namespaces.split(stored) == (ns, name)
    rid = keys.run_id(stored, 7, 1_000)
    assert namespaces.of_run_id(rid) == ns
    assert namespaces.in_namespace(rid.encode(), ns)
    assert rid.encode().startswith(namespaces.prefix(ns))


@given(ns_names, ns_names, job_names, job_names)
def test_names_of_two_namespaces_never_collide(a: str, b: str, x: str, y: str) -> None:
    if a != b:
        assert namespaces.qualify(a, x) != namespaces.qualify(b, y)
        assert not namespaces.in_namespace(namespaces.qualify(a, x), b)


def test_the_default_namespace_is_the_unprefixed_key_space() -> None:
    assert namespaces.qualify("default", "nightly") == "nightly"
    assert namespaces.qualify("", "nightly") == "nightly"
    assert namespaces.split("nightly") == ("default", "nightly")
    assert namespaces.of_run_id("nightly:3:1000m") == "default"


@pytest.mark.parametrize("bad", ["Team", "a/b", "-x", "x" * 64, "a b"])
def test_a_malformed_namespace_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="^hello.namespace: "):
        namespaces.namespace(bad, "hello.namespace")


def test_presenting_a_job_shows_bare_names_and_the_namespace() -> None:
    job = types_pb2.Job(name="t/a", queue="t/q", on_success="t/b", on_failure="")
    namespaces.present_job(job)
    assert (job.name, job.queue, job.on_success, job.namespace) == ("a", "q", "b", "t")
    assert not job.depends_on and not job.dependents
    linked = types_pb2.Job(name="t/c", depends_on=["t/a", "t/b"], dependents=["t/d"])
    namespaces.present_job(linked)
    assert (list(linked.depends_on), list(linked.dependents)) == (["a", "b"], ["d"])
    firing = namespaces.present_firing(types_pb2.Firing(job="t/a", queue="t/q", run_id="t/a:1:2"))
    assert (firing.job, firing.queue, firing.namespace, firing.run_id) == ("a", "q", "t", "t/a:1:2")


# ---- quotas in apply --------------------------------------------------------------------------


def _create(state: MemoryState, index: int, name: str) -> str:
    cmd = command_pb2.Command(now_ms=1_000 + index)
    cmd.create_job.job.CopyFrom(types_pb2.Job(name=name, queue="q", next_due_ms=10**12))
    return state.apply(encode(cmd), index).code


def _quota(state: MemoryState, index: int, ns: str, max_jobs: int, max_runs: int) -> str:
    cmd = command_pb2.Command(now_ms=1_000 + index)
    cmd.set_namespace.namespace.CopyFrom(
        types_pb2.Namespace(name=ns, max_jobs=max_jobs, max_runs=max_runs)
    )
    return state.apply(encode(cmd), index).code


def _trigger(state: MemoryState, index: int, name: str) -> str:
    cmd = command_pb2.Command(now_ms=1_000 + index)
    cmd.trigger_job.name = name
    return state.apply(encode(cmd), index).code


def _record(state: MemoryState, ns: str) -> types_pb2.Namespace:
    return types_pb2.Namespace.FromString(state.data["namespaces"][ns.encode()])


def test_a_quota_counts_what_exists_and_refuses_beyond_it_without_changing_state() -> None:
    s = MemoryState()
    assert _create(s, 1, "t/a") == "OK"
    assert _create(s, 2, "other") == "OK"  # default namespace: not counted for t
    assert _trigger(s, 3, "t/a") == "OK"
    assert _quota(s, 4, "t", 2, 2) == "OK"
    assert (_record(s, "t").jobs, _record(s, "t").runs) == (1, 1)
    assert _create(s, 5, "t/b") == "OK"
    before = s.digest(audit=False)
    assert _create(s, 6, "t/c") == "RESOURCE_EXHAUSTED"
    assert s.digest(audit=False) == before
    assert _trigger(s, 7, "t/a") == "OK"
    before = s.digest(audit=False)
    assert _trigger(s, 8, "t/b") == "RESOURCE_EXHAUSTED"
    assert s.digest(audit=False) == before
    assert (_record(s, "t").jobs, _record(s, "t").runs) == (2, 2)
    # a namespace without a record has no limit
    assert all(_create(s, 10 + i, f"u/j{i}") == "OK" for i in range(5))


def test_a_scheduled_slot_over_the_run_quota_is_recorded_as_skipped() -> None:
    s = MemoryState()
    assert _create(s, 1, "t/a") == "OK"
    assert _quota(s, 2, "t", 0, 1) == "OK"
    job = types_pb2.Job.FromString(s.data["jobs"][b"t/a"])
    fire = command_pb2.Command(now_ms=job.next_due_ms)
    fire.fire_due.items.add(
        name="t/a", uid=job.uid, from_due_ms=job.next_due_ms, slots_ms=[job.next_due_ms],
        next_due_ms=job.next_due_ms + 60_000,
    )  # fmt: skip
    assert s.apply(encode(fire), 3).ok
    fire2 = command_pb2.Command(now_ms=job.next_due_ms + 60_000)
    fire2.fire_due.items.add(
        name="t/a", uid=job.uid, from_due_ms=job.next_due_ms + 60_000,
        slots_ms=[job.next_due_ms + 60_000], next_due_ms=job.next_due_ms + 120_000,
    )  # fmt: skip
    assert s.apply(encode(fire2), 4).ok
    runs = [types_pb2.Run.FromString(v) for v in s.data["runs"].values()]
    states = sorted((r.scheduled_ms, r.state, r.skip_reason) for r in runs)
    assert states == [
        (job.next_due_ms, types_pb2.RUN_STATE_PENDING, 0),
        (job.next_due_ms + 60_000, types_pb2.RUN_STATE_SKIPPED, types_pb2.SKIP_REASON_QUOTA),
    ]


# ---- per-caller limits ------------------------------------------------------------------------


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)
    assert b.take(0.5) == 0.0


def test_write_rates_are_per_principal_and_name_the_flag() -> None:
    w = WriteRates(rate=1.0, burst=2)
    w.check("a", 0.0)
    w.check("a", 0.0)
    with pytest.raises(ResourceExhausted, match="--write-rate"):
        w.check("a", 0.0)
    w.check("b", 0.0)  # another caller is not affected
    w.check("a", 1.0)
    WriteRates(rate=0, burst=1).check("a", 0.0)  # 0 = no limit


def test_write_rates_forget_idle_callers_beyond_their_cap() -> None:
    w = WriteRates(rate=1.0, burst=1, max_principals=3)
    for i in range(10):
        w.check(f"p{i}", float(i * 10))
    assert len(w._buckets) <= 3


def test_a_scan_beyond_the_slots_is_refused_at_once() -> None:
    slots = ScanSlots(1)
    with scan_slot(slots, "ListRuns"):
        with pytest.raises(ResourceExhausted, match="--max-scans"):
            with scan_slot(slots, "ListJobs"):
                pass
    with scan_slot(slots, "ListJobs"):  # given back
        pass
