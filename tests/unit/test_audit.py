"""The audit trail written by apply (schedd.state.apply.audit): client commands with a principal
are recorded with their outcome, the scheduler's own entries are not, and the trail is capped."""

from __future__ import annotations

import pytest

from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.server.validate import create_job
from schedd.state import keys
from schedd.state.apply import MemoryState, audit, encode

T0 = 1_700_000_000_000


def _create(name: str, principal: str = "token:ci", now: int = T0) -> bytes:
    req = api_pb2.CreateJobRequest(
        name=name, schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron="0 3 * * *")
    )
    cmd = create_job(req, now)
    cmd.principal = principal
    return encode(cmd)


def _records(state: MemoryState) -> list[types_pb2.AuditRecord]:
    return [types_pb2.AuditRecord.FromString(v) for _, v in sorted(state.data["audit"].items())]


def test_client_commands_are_recorded_with_who_what_when_and_outcome() -> None:
    s = MemoryState()
    s.apply(_create("nightly"), 1)
    s.apply(_create("nightly", principal="spiffe://schedd/admin/alice", now=T0 + 5), 2)  # exists
    delete = command_pb2.Command(now_ms=T0 + 9, principal="token:ci")
    delete.delete_job.name = "nope"
    s.apply(encode(delete), 3)
    recs = _records(s)
    assert [(r.index, r.principal, r.action, r.target, r.code) for r in recs] == [
        (1, "token:ci", "create_job", "nightly", "OK"),
        (2, "spiffe://schedd/admin/alice", "create_job", "nightly", "ALREADY_EXISTS"),
        (3, "token:ci", "delete_job", "nope", "NOT_FOUND"),
    ]
    assert recs[1].at_ms == T0 + 5 and "exists" in recs[1].message


def test_scheduler_entries_and_commands_without_a_principal_are_not_recorded() -> None:
    s = MemoryState()
    s.apply(_create("a", principal=""), 1)  # an entry from before principals were stamped
    barrier = command_pb2.Command(now_ms=T0)
    barrier.barrier.node_id = "n1"
    s.apply(encode(barrier), 2)
    assert _records(s) == []


def test_a_token_record_names_the_token_never_its_hash() -> None:
    s = MemoryState()
    c = command_pb2.Command(now_ms=T0, principal="token:bootstrap")
    c.create_token.token.name = "ci"
    c.create_token.token.secret_sha256 = b"\x01" * 32
    s.apply(encode(c), 1)
    (rec,) = _records(s)
    assert rec.target == "ci" and b"\x01" * 32 not in rec.SerializeToString()


def test_the_trail_keeps_the_newest_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "MAX_RECORDS", 3)
    s = MemoryState()
    for i in range(1, 8):
        s.apply(_create(f"j{i}"), i)
    assert [r.target for r in _records(s)] == ["j5", "j6", "j7"]
    assert keys.from_be64(s.data["meta"][keys.AUDIT_COUNT]) == 3


def test_replicas_write_the_same_trail() -> None:
    a, b = MemoryState(), MemoryState()
    for i, entry in enumerate([_create("x"), _create("y", "cn:bob"), _create("x")], start=1):
        a.apply(entry, i)
        b.apply(entry, i)
    assert a.digest() == b.digest() and len(_records(a)) == 3
