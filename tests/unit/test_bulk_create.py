"""Bulk job creation (CreateJobs), without a cluster: the all-or-nothing validation and its
per-item errors (schedd.server.validate.create_jobs), the entry the service proposes
(schedd.server.service.create_jobs_command), what apply makes of it (request ids and audit
records per sub-command of a Batch), and the SDK's side (schedd.sdk.core.create_jobs)."""

from __future__ import annotations

import json
import re
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from schedd import errors, rules
from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sdk import core
from schedd.server import validate
from schedd.server.service import create_jobs_command, scope_request
from schedd.state import keys
from schedd.state.apply import MemoryState, encode

T0 = 1_700_000_000_000


class _Context:
    def auth_context(self) -> dict[str, Any]:
        return {}


def item(name: str, cron: str = "0 * * * *", rid: str = "", **fields: Any) -> Any:
    return api_pb2.CreateJobRequest(
        name=name,
        request_id=rid,
        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron=cron),
        **fields,
    )


def bulk(*items: Any, namespace: str = "") -> api_pb2.CreateJobsRequest:
    return api_pb2.CreateJobsRequest(jobs=list(items), namespace=namespace)


def entry(req: api_pb2.CreateJobsRequest, now: int = T0) -> bytes:
    return encode(create_jobs_command(req, now, _Context()))  # type: ignore[arg-type]


def codes(result: Any) -> list[str]:
    return [r.code for r in result.sub]


# ---- validation: all or nothing, each bad item named ----------------------------------------


def test_valid_items_become_the_create_commands_they_would_be_alone() -> None:
    req = bulk(item("a", rid="r-a"), item("b"), namespace="team-a")
    out = validate.create_jobs(req, T0)
    assert [c.create_job.job.name for _, c in out] == ["team-a/a", "team-a/b"]
    alone = validate.create_job(item("a", rid="r-a", namespace="team-a"), T0)
    assert out[0][1] == alone
    assert [i.namespace for i, _ in out] == ["team-a", "team-a"]
    assert validate.create_jobs(bulk(), T0) == []


def test_every_bad_item_is_named_by_index_and_field() -> None:
    req = bulk(
        item("ok"),
        item("bad-cron", cron="61 * * * *"),
        item("ok2"),
        item("", cron="* * * * *"),
        item("ok", rid="x"),
        item("other", namespace="team-b"),
    )
    with pytest.raises(errors.InvalidArgument) as e:
        validate.create_jobs(req, T0)
    msg = e.value.message
    assert e.value.field == "jobs[1].schedule.cron"
    assert msg.startswith("jobs[1].schedule.cron: '61 * * * *': minute field")
    assert "; jobs[3].name: " in msg
    assert "; jobs[4].name: 'ok' is also the name of jobs[0]" in msg
    assert "; jobs[5].namespace: 'team-b' is not the call's namespace 'default'" in msg
    assert "jobs[0]." not in msg and "jobs[2]." not in msg


def test_two_items_with_one_request_id_are_invalid() -> None:
    with pytest.raises(errors.InvalidArgument, match=r"jobs\[2\]\.request_id: 'r' is also"):
        validate.create_jobs(bulk(item("a", rid="r"), item("b"), item("c", rid="r")), T0)


def test_the_caps_name_the_limit() -> None:
    many = bulk(*(item(f"j{i}") for i in range(validate.MAX_CREATE_JOBS + 1)))
    with pytest.raises(errors.InvalidArgument, match=r"^jobs: 1001 jobs in one call, .* 1000"):
        validate.create_jobs(many, T0)
    big = bulk(*(item(f"j{i}", payload=json.dumps("x" * 60_000)) for i in range(40)))
    with pytest.raises(errors.InvalidArgument, match=r"^jobs: the request is \d+ bytes, over"):
        validate.create_jobs(big, T0)
    assert validate.MAX_CREATE_JOBS == rules.MAX_CREATE_JOBS == 1000


def test_a_long_list_of_errors_is_cut_and_counted() -> None:
    req = bulk(*(item(f"j{i}", cron="bad") for i in range(50)))
    with pytest.raises(errors.InvalidArgument) as e:
        validate.create_jobs(req, T0)
    assert e.value.message.count("jobs[") == validate.MAX_ITEM_ERRORS
    assert e.value.message.endswith("; and 30 more invalid jobs")


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=40),
    bad=st.sets(st.integers(min_value=0, max_value=39), max_size=30),
)
def test_the_error_names_exactly_the_bad_items(n: int, bad: set[int]) -> None:
    bad = {i for i in bad if i < n}
    req = bulk(*(item(f"j{i}", cron="61 * * * *" if i in bad else "0 * * * *") for i in range(n)))
    if not bad:
        assert len(validate.create_jobs(req, T0)) == n
        return
    with pytest.raises(errors.InvalidArgument) as e:
        validate.create_jobs(req, T0)
    named = [int(i) for i in re.findall(r"jobs\[(\d+)\]\.schedule\.cron", e.value.message)]
    assert named == sorted(bad)[: validate.MAX_ITEM_ERRORS]
    assert e.value.field == f"jobs[{min(bad)}].schedule.cron"


_NAMES = st.sampled_from(["a", "b", "job-1", "x" * 200, "", "bad name", "ns/x", "c"])
_PAYLOADS = st.sampled_from(["", '{"k": 1}', "not json", "x" * 70_000])
_SCHEDULES = st.sampled_from(
    [
        types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron="*/5 * * * *"),
        types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron="0 3 * * *", jitter_ms=60_000),
        types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron="61 * * * *"),
        types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_INTERVAL, every_ms=5000, jitter_ms=999),
        types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_INTERVAL, every_ms=10),
        types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=T0 + 5000, jitter_ms=3000),
        types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=T0 - 3_600_000),
        types_pb2.Schedule(),
    ]
)


@st.composite
def _shapes(draw: st.DrawFn) -> api_pb2.CreateJobRequest:
    """What an item is validated by apart from its name, request id and payload."""
    req = api_pb2.CreateJobRequest(
        schedule=draw(_SCHEDULES),
        priority=draw(st.sampled_from([0, 0, 10_000])),
        queue=draw(st.sampled_from(["", "", "bad queue"])),
    )
    if draw(st.booleans()):
        req.max_catchup = draw(st.sampled_from([0, 3]))
    for f in ("on_success", "depends_on"):
        target = draw(st.sampled_from(["", "", "a", "b"]))
        if target and f == "depends_on":
            req.depends_on.append(target)
        elif target:
            req.on_success = target
    return req


@st.composite
def _bulk(draw: st.DrawFn) -> list[api_pb2.CreateJobRequest]:
    """Up to 12 items over at most three shapes, so most items share one with an earlier."""
    shapes = draw(st.lists(_shapes(), min_size=1, max_size=3))
    items = []
    for _ in range(draw(st.integers(0, 12))):
        req = api_pb2.CreateJobRequest()
        req.CopyFrom(draw(st.sampled_from(shapes)))
        req.name = draw(_NAMES)
        req.request_id = draw(st.sampled_from(["", "r1", "r2", "bad\nid"]))
        req.payload = draw(_PAYLOADS)
        items.append(req)
    return items


@settings(max_examples=300, deadline=None)
@given(items=_bulk(), namespace=st.sampled_from(["", "team-a"]))
def test_items_of_one_shape_validate_as_each_would_in_full(
    items: list[api_pb2.CreateJobRequest], namespace: str
) -> None:
    """Items alike but for name, request id and payload reuse the first one's validated job:
    the commands, or the error (its field and every item it names), are those of validating
    each item in full. Jitter hashes the name, a chain target or upstream is compared with it."""
    req = bulk(*items, namespace=namespace)

    def outcome(reuse: bool) -> Any:
        try:
            return [
                (i.SerializeToString(), c.SerializeToString(deterministic=True))
                for i, c in validate.create_jobs(req, T0, reuse_shapes=reuse)
            ]
        except errors.InvalidArgument as e:
            return (e.field, e.message)

    assert outcome(True) == outcome(False)


def test_jittered_items_of_one_shape_get_each_their_own_due_time() -> None:
    sched = types_pb2.Schedule(
        kind=types_pb2.SCHEDULE_KIND_CRON, cron="0 3 * * *", jitter_ms=3_600_000
    )
    req = bulk(*(api_pb2.CreateJobRequest(name=f"j{i}", schedule=sched) for i in range(20)))
    dues = {c.create_job.job.next_due_ms for _, c in validate.create_jobs(req, T0)}
    assert len(dues) > 10


# ---- apply: one entry, an outcome per item, request ids per item ------------------------------


def test_one_entry_creates_every_job_and_answers_per_item() -> None:
    state = MemoryState()
    assert state.apply(entry(bulk(item("taken"))), 1).ok
    result = state.apply(entry(bulk(item("a", rid="r-a"), item("taken"), item("b"))), 2)
    assert codes(result) == ["OK", "ALREADY_EXISTS", "OK"]
    assert "already exists" in result.sub[1].message
    assert result.sub[0].job is not None and result.sub[0].job.uid == 2
    assert state.get_job("a") is not None and state.get_job("b") is not None


def test_a_retried_bulk_call_creates_nothing_and_answers_the_first_outcomes() -> None:
    state = MemoryState()
    assert state.apply(entry(bulk(item("taken"))), 1).ok
    req = bulk(item("a", rid="r-a"), item("taken", rid="r-t"), item("b", rid="r-b"))
    first = state.apply(entry(req), 2)
    jobs_before = dict(state.data["jobs"])
    again = state.apply(entry(req, now=T0 + 5000), 3)  # the retry: stamped later by the leader
    assert codes(again) == codes(first) == ["OK", "ALREADY_EXISTS", "OK"]
    assert [r.message for r in again.sub] == [r.message for r in first.sub]
    assert [r.job.uid if r.job else 0 for r in again.sub] == [2, 0, 2]
    assert state.data["jobs"] == jobs_before


def test_an_item_retried_alone_or_in_another_call_gets_its_first_outcome() -> None:
    state = MemoryState()
    assert state.apply(entry(bulk(item("a", rid="r-a"), item("b", rid="r-b"))), 1).ok
    alone = validate.create_job(item("a", rid="r-a"), T0 + 1)
    scope_request(alone, _Context(), "CreateJob", item("a", rid="r-a"))  # type: ignore[arg-type]
    assert state.apply(encode(alone), 2).job.uid == 1  # type: ignore[union-attr]
    other = state.apply(entry(bulk(item("b", rid="r-b"), item("c", rid="r-c"))), 3)
    assert codes(other) == ["OK", "OK"]
    assert [r.job.uid for r in other.sub] == [1, 3]  # type: ignore[union-attr]
    # the same id for another request: refused for that item only
    reused = state.apply(entry(bulk(item("d", rid="r-a"), item("e", rid="r-e"))), 4)
    assert codes(reused) == ["FAILED_PRECONDITION", "OK"]
    assert "already used for a different request" in reused.sub[0].message
    assert state.get_job("d") is None


def test_each_item_has_its_own_audit_record_and_request_record() -> None:
    state = MemoryState()
    state.apply(entry(bulk(item("a"))), 6)
    state.apply(entry(bulk(item("b", rid="r-b"), item("c"), item("a"))), 7)
    recs = sorted(state.data["audit"].items())[1:]
    assert [k for k, _ in recs] == [keys.be64(7) + bytes([0, 0, 0, i]) for i in range(3)]
    parsed = [types_pb2.AuditRecord.FromString(v) for _, v in recs]
    assert [(r.index, r.target, r.code, r.request_id) for r in parsed] == [
        (7, "b", "OK", "r-b"),
        (7, "c", "OK", ""),
        (7, "a", "ALREADY_EXISTS", ""),
    ]
    assert {r.principal for r in parsed} == {"anonymous"}
    assert keys.from_be64(state.data["meta"][keys.AUDIT_COUNT]) == 4
    assert len(state.data["requests"]) == 1


def test_the_audit_trail_keeps_its_cap_across_a_bulk_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    from schedd.state.apply import audit

    monkeypatch.setattr(audit, "MAX_RECORDS", 5)
    state = MemoryState()
    state.apply(entry(bulk(item("x"), item("y"))), 1)
    state.apply(entry(bulk(*(item(f"j{i}") for i in range(4)))), 2)
    kept = sorted(state.data["audit"])
    assert len(kept) == 5 and keys.from_be64(state.data["meta"][keys.AUDIT_COUNT]) == 5
    assert kept[0] == keys.be64(1) + bytes(3) + b"\x01"  # the oldest (x) went


def test_a_dispatcher_batch_applies_as_before() -> None:
    """Sub-commands without a principal (the dispatcher's) write no audit or request records,
    as every batch did before feature level 3."""
    state = MemoryState()
    sub = validate.create_job(item("a"), T0)
    sub.request_id = "ignored-before"  # not stamped by a service: no principal
    batch = command_pb2.Command(now_ms=T0, batch=command_pb2.Batch(commands=[sub]))
    assert state.apply(encode(batch), 1).sub[0].ok
    assert state.data["audit"] == {}


def test_a_quota_refuses_the_items_over_it_only() -> None:
    state = MemoryState()
    cmd = command_pb2.Command(now_ms=T0)
    cmd.set_namespace.namespace.CopyFrom(types_pb2.Namespace(name="team-a", max_jobs=2))
    assert state.apply(encode(cmd), 1).ok
    result = state.apply(entry(bulk(item("a"), item("b"), item("c"), namespace="team-a")), 2)
    assert codes(result) == ["OK", "OK", "RESOURCE_EXHAUSTED"]


def test_a_job_may_chain_to_one_created_before_it_in_the_same_call() -> None:
    state = MemoryState()
    result = state.apply(entry(bulk(item("first"), item("then", on_success="first"))), 1)
    assert codes(result) == ["OK", "OK"]
    result = state.apply(entry(bulk(item("x", on_success="y"), item("y"))), 2)
    assert codes(result) == ["INVALID_ARGUMENT", "OK"]


# ---- the SDK's side ----------------------------------------------------------------------------


def test_the_sdk_builds_one_request_with_a_request_id_per_job() -> None:
    call = core.create_jobs(
        [
            {"name": "a", "cron": "0 * * * *", "queue": "q", "request_id": "mine"},
            {"name": "b", "every_ms": 60_000},
            item("c"),
        ]
    )
    assert call.method == "CreateJobs" and call.idempotent
    reqs = call.request.jobs
    assert [r.name for r in reqs] == ["a", "b", "c"]
    assert reqs[0].request_id == "mine" and reqs[0].queue == "q"
    assert all(r.request_id for r in reqs)
    resp = api_pb2.CreateJobsResponse(
        results=[
            api_pb2.CreateJobResult(code=0, job=types_pb2.Job(name="a")),
            api_pb2.CreateJobResult(code=6, message="name: a job named 'b' already exists"),
            api_pb2.CreateJobResult(code=0, job=types_pb2.Job(name="c")),
        ]
    )
    out = call.result(resp)
    assert [(r.index, r.name, r.code, r.ok) for r in out] == [
        (0, "a", "OK", True),
        (1, "b", "ALREADY_EXISTS", False),
        (2, "c", "OK", True),
    ]
    assert out[1].job is None and isinstance(out[1].error, errors.AlreadyExists)
    assert out[0].job is not None and out[0].job.name == "a" and out[0].error is None


def test_the_sdk_names_a_bad_spec_and_the_cap_before_sending() -> None:
    with pytest.raises(errors.InvalidArgument, match=r"^jobs\[1\]\.name: is required"):
        core.create_jobs([{"name": "a", "cron": "* * * * *"}, {"cron": "* * * * *"}])
    with pytest.raises(errors.InvalidArgument, match=r"^jobs\[0\]\.colour: is not a job option"):
        core.create_jobs([{"name": "a", "cron": "* * * * *", "colour": "red"}])
    with pytest.raises(errors.InvalidArgument, match="over the limit of 1000"):
        core.create_jobs({"name": f"j{i}", "every_ms": 1000} for i in range(1001))


def test_job_batches_keep_order_and_both_limits() -> None:
    items = [item(f"j{i}") for i in range(2500)]
    chunks = core.job_batches(items)
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert [i.name for c in chunks for i in c] == [i.name for i in items]
    big = [item(f"p{i}", payload=json.dumps("x" * 60_000)) for i in range(100)]
    chunks = core.job_batches(big)
    assert len(chunks) > 1 and sum(len(c) for c in chunks) == 100
    for c in chunks:
        assert api_pb2.CreateJobsRequest(jobs=c).ByteSize() <= rules.MAX_CREATE_JOBS_BYTES
    assert core.job_batches([]) == []
