"""Who a caller is, which worker ids it may hold, and the limits that keep one caller from
hurting everyone: the pure parts, in-process."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from schedd.errors import AlreadyExists, InvalidArgument, ResourceExhausted
from schedd.pb import api_pb2
from schedd.server import validate
from schedd.server.identity import ANONYMOUS, principal, principal_from_auth
from schedd.server.leases import completion_verdict
from schedd.server.limits import Limits, RateGate, check_storage
from schedd.server.workers import Registry, WorkerSession


class _Context:
    def __init__(self, auth: Mapping[str, Sequence[bytes]] | None) -> None:
        self._auth = auth

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        if self._auth is None:
            raise RuntimeError("no transport security")
        return self._auth


def test_principal_prefers_the_spiffe_id_then_the_common_name() -> None:
    spiffe = b"spiffe://prod.example/worker/billing"
    assert (
        principal_from_auth(
            {
                "x509_subject_alternative_name": [b"billing.example", spiffe],
                "x509_common_name": [b"billing"],
            }
        )
        == spiffe.decode()
    )
    assert principal_from_auth({"x509_common_name": [b"billing"]}) == "cn:billing"
    # A certificate whose CN reads "anonymous" is still not the anonymous caller.
    assert principal_from_auth({"x509_common_name": [b"anonymous"]}) != ANONYMOUS
    assert principal_from_auth({"x509_common_name": [b"a\x00b\nc"]}) == "cn:a?b?c"


def test_callers_without_a_verified_certificate_are_anonymous() -> None:
    assert principal(_Context({})) == ANONYMOUS
    assert principal(_Context({"transport_security_type": [b"insecure"]})) == ANONYMOUS
    assert principal(_Context(None)) == ANONYMOUS


def session(worker_id: str, who: str) -> WorkerSession:
    return WorkerSession(worker_id, frozenset({"default"}), 1, principal=who)


def test_a_worker_id_cannot_be_taken_over_by_another_identity() -> None:
    registry = Registry()
    real = session("w1", "cn:billing")
    registry.attach(real)
    with pytest.raises(AlreadyExists) as info:
        registry.attach(session("w1", "cn:intruder"))
    assert "worker_id" in info.value.message and "w1" in info.value.message
    assert registry.get("w1") is real and not real.closed.is_set() and registry.current(real)


def test_the_same_identity_reconnecting_replaces_its_old_stream() -> None:
    registry = Registry()
    old = session("w1", "cn:billing")
    registry.attach(old)
    new = session("w1", "cn:billing")
    registry.attach(new)
    assert old.closed.is_set() and registry.get("w1") is new
    assert registry.current(new) and not registry.current(old)


def test_worker_streams_are_limited_per_identity_and_per_node() -> None:
    registry = Registry()
    for i in range(2):
        registry.attach(session(f"a{i}", "cn:a"), per_principal=2)
    with pytest.raises(ResourceExhausted) as info:
        registry.attach(session("a2", "cn:a"), per_principal=2)
    assert "--max-worker-streams" in info.value.message
    registry.attach(session("a1", "cn:a"), per_principal=2)  # a reconnect replaces: still 2
    registry.attach(session("b0", "cn:b"), per_principal=2)  # another identity has its own
    with pytest.raises(ResourceExhausted):
        registry.attach(session("c0", "cn:c"), per_principal=2, total=3)
    assert len(registry) == 3


def test_a_completion_is_answered_before_proposing_when_it_cannot_count() -> None:
    leased = dict(state_leased=True, already_succeeded=False, run_fence=7, holder="w1")
    assert completion_verdict(**leased, fence=7, success=True, worker_id="w1") is None
    code, message = completion_verdict(**leased, fence=6, success=True, worker_id="w1") or ("", "")
    assert code == "ABORTED" and "fence" in message
    code, message = completion_verdict(**leased, fence=7, success=True, worker_id="w2") or ("", "")
    assert code == "PERMISSION_DENIED" and "worker_id" in message
    done = dict(state_leased=False, already_succeeded=True, run_fence=7, holder="w1")
    assert completion_verdict(**done, fence=7, success=True, worker_id="w1") is None  # a resend
    assert completion_verdict(**done, fence=7, success=False, worker_id="w1") is not None


def test_texts_from_workers_are_cut_and_marked_never_refused() -> None:
    huge = api_pb2.Completion(
        run_id="r", fence=1, outcome=api_pb2.OUTCOME_FAILED, error="e" * (4 << 20)
    )
    c = validate.completion(huge)
    assert len(c.error.encode()) <= validate.MAX_ERROR_BYTES and c.error.endswith("cut]")
    assert huge.error == "e" * (4 << 20)  # the request itself is left alone
    with pytest.raises(InvalidArgument) as info:
        validate.completion(api_pb2.Completion(run_id="r", fence=1), "completions[0].")
    assert info.value.field == "completions[0].outcome"
    with pytest.raises(InvalidArgument):
        validate.request_id("a\x00b")


def test_storage_refuses_writes_before_the_map_is_full() -> None:
    lim = Limits()
    check_storage(50 << 20, 100 << 20, lim)
    with pytest.raises(ResourceExhausted) as info:
        check_storage(91 << 20, 100 << 20, lim)
    assert "--max-map-size" in info.value.message
    with pytest.raises(ResourceExhausted):  # 25% free, but less than one big entry
        check_storage(12 << 20, 16 << 20, lim)


def test_rate_gate_books_one_turn_per_interval_and_refuses_long_waits() -> None:
    gate = RateGate(3.0)
    assert gate.reserve(100.0, 0.0, 3.0) == (True, 0.0)
    assert gate.reserve(100.5, 0.0, 3.0) == (True, 2.5)  # waits for the next turn, booked
    ok, wait = gate.reserve(100.6, 0.0, 3.0)  # the turn after that is too far away
    assert not ok and wait == pytest.approx(2.4)
    gate.cancel(103.0)  # the booked caller gave up: its turn is free again
    assert gate.reserve(101.0, 0.0, 3.0) == (True, 2.0)
    young = RateGate(3.0)
    assert young.reserve(10.0, 12.0, 3.0) == (True, 2.0)  # a young leader waits until 12.0


def test_a_worker_that_does_not_read_its_stream_is_closed() -> None:
    from schedd.server.workers import MAX_OUTBOUND

    s = session("w1", "cn:a")
    for _ in range(MAX_OUTBOUND + 5):
        s.send(api_pb2.ServerMessage(lost=api_pb2.LeasesLost()))
    assert s.closed.is_set() and "does not read" in s.close_reason
    assert s.outbound.qsize() <= MAX_OUTBOUND + 1  # the closing None included
