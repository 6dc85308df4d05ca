"""The worker agent's pure core: LeaseBook with a fake clock, context building, shell helpers.

No network, no threads: every test drives the book the way the agent's stream loop would.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedd.agent import Context, Worker
from schedd.agent.core import (
    CODE_ABORTED,
    CODE_OK,
    CODE_UNAVAILABLE,
    AckKind,
    CompletionRecord,
    LeaseBook,
    Outcome,
    context_from_firing,
    kv,
)
from schedd.agent.shell import child_env, command_problem, describe_exit, run_shell_worker
from schedd.clock import FakeClock
from schedd.sdk.endpoints import backoff_delays, parse_endpoints

TTL_MS = 10_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def book(clock: FakeClock) -> LeaseBook:
    b = LeaseBook(clock.monotonic, default_ttl_ms=TTL_MS)
    b.start_session()
    b.on_welcome(TTL_MS, [], [])
    return b


# ---- leases ----------------------------------------------------------------------------------


def test_a_firing_read_after_a_freeze_is_already_expired(book: LeaseBook, clock: FakeClock) -> None:
    """The process was frozen (SIGSTOP, GC) with a firing in its socket: the lease it carries is
    no younger than the last heartbeat the leader got, so it expires at once, not TTL later."""
    book.contact(clock.monotonic())
    clock.advance(TTL_MS / 1000 * 3)  # frozen: no heartbeat written meanwhile
    assert book.acquire("r1", 5)
    assert [(x.run_id, x.fence) for x in book.expire()] == [("r1", 5)]
    book.contact(clock.monotonic())  # heartbeats flow again: new firings start fresh
    assert book.acquire("r2", 6)
    assert book.expire() == []


def test_acquire_rejects_duplicates_while_held_or_pending(book: LeaseBook) -> None:
    assert book.acquire("r1", 5)
    assert not book.acquire("r1", 5)
    assert book.acquire("r1", 7)  # a newer fence for the same run is a different lease
    book.finish("r1", 5, Outcome.SUCCEEDED)
    assert not book.acquire("r1", 5)  # completion pending: a resent firing is not re-run
    assert book.live() == [("r1", 7)]


def test_heartbeat_renews_only_after_write_and_from_send_time(
    clock: FakeClock, book: LeaseBook
) -> None:
    book.acquire("r1", 1)
    clock.advance(8)
    sent_at = clock.monotonic()
    leases = book.live()
    clock.advance(1)  # the write completes a second later
    book.heartbeat_written(leases, sent_at)
    clock.advance(8.5)  # 9.5 s after the heartbeat was handed to the stream
    assert book.expire() == []
    clock.advance(0.6)  # 10.1 s after send time: lost, even though the write completed later
    lost = book.expire()
    assert [(le.run_id, le.fence) for le in lost] == [("r1", 1)]
    assert "no contact" in lost[0].reason


def test_leases_past_ttl_without_contact_are_lost_exactly_once(
    clock: FakeClock, book: LeaseBook
) -> None:
    book.acquire("a", 1)
    clock.advance(3)
    book.acquire("b", 2)
    assert book.next_expiry() == pytest.approx(clock.monotonic() - 3 + 10)
    clock.advance(7)  # a: exactly ttl -> not yet ("longer than ttl")
    assert book.expire() == []
    clock.advance(0.001)
    assert [le.key for le in book.expire()] == [("a", 1)]
    assert book.expire() == []  # reported once
    assert book.live() == [("b", 2)]  # lost leases are no longer heartbeated
    assert book.is_held("a", 1) and book.is_lost("a", 1)  # the handler may still be running
    clock.advance(3)
    assert [le.key for le in book.expire()] == [("b", 2)]
    assert book.next_expiry() is None


def test_lost_lease_is_not_renewed_by_a_late_heartbeat(clock: FakeClock, book: LeaseBook) -> None:
    book.acquire("a", 1)
    leases = book.live()
    clock.advance(11)
    assert book.expire()
    book.heartbeat_written(leases, clock.monotonic())
    assert book.live() == []


def test_firing_ttl_overrides_default(clock: FakeClock, book: LeaseBook) -> None:
    book.acquire("short", 1, ttl_ms=2000)
    book.acquire("default", 2)
    clock.advance(2.5)
    assert [le.key for le in book.expire()] == [("short", 1)]


def test_server_revocation_loses_only_held_leases(book: LeaseBook) -> None:
    book.acquire("a", 1)
    book.acquire("b", 2)
    lost = book.server_lost([("a", 1), ("zzz", 9)], "expired on the leader")
    assert [(le.key, le.reason) for le in lost] == [(("a", 1), "expired on the leader")]
    assert book.server_lost([("a", 1)], "again") == []
    assert book.live() == [("b", 2)]


# ---- completions -----------------------------------------------------------------------------


def test_completion_is_kept_until_acked(book: LeaseBook) -> None:
    book.acquire("r", 3)
    rec = book.finish("r", 3, Outcome.SUCCEEDED)
    assert not book.is_held("r", 3)
    assert book.take_unsent() == [rec]
    assert book.take_unsent() == []  # sent once per stream
    assert book.pending() == [rec]
    assert not book.idle()
    res = book.on_ack("r", 3, CODE_OK)
    assert res.kind is AckKind.OK and res.record == rec
    assert book.pending() == [] and book.idle()
    assert book.on_ack("r", 3, CODE_OK).kind is AckKind.UNKNOWN  # duplicate ack


def test_unacked_completion_is_resent_after_reconnect(clock: FakeClock, book: LeaseBook) -> None:
    book.acquire("r", 3)
    book.acquire("s", 4)
    done = book.finish("r", 3, Outcome.FAILED, "ValueError('x')")
    assert book.take_unsent() == [done]
    # the stream breaks before the ack; a new stream opens
    hello = book.start_session()
    assert hello == [("s", 4)]  # only running handlers are offered for re-attachment
    book.on_welcome(TTL_MS, reattached=[("s", 4)], lost=[])
    assert book.take_unsent() == [done]  # resent
    assert book.on_ack("r", 3, CODE_OK).kind is AckKind.OK
    assert book.pending() == []


def test_stale_fence_ack_discards_and_transient_ack_retries(
    clock: FakeClock, book: LeaseBook
) -> None:
    book.acquire("a", 1)
    book.acquire("b", 2)
    book.acquire("c", 3)
    for run, fence in (("a", 1), ("b", 2), ("c", 3)):
        book.finish(run, fence, Outcome.SUCCEEDED)
    assert len(book.take_unsent()) == 3
    assert book.on_ack("a", 1, CODE_ABORTED, "stale fence").kind is AckKind.STALE
    assert book.on_ack("b", 2, 5, "run not found").kind is AckKind.REJECTED
    assert book.on_ack("c", 3, CODE_UNAVAILABLE, "no quorum").kind is AckKind.RETRY
    assert [r.run_id for r in book.pending()] == ["c"]
    assert book.take_unsent() == []  # waits for the retry delay
    clock.advance(book.retry_delay_s)
    assert [r.run_id for r in book.take_unsent()] == ["c"]


def test_completion_of_a_lost_lease_is_still_sent(clock: FakeClock, book: LeaseBook) -> None:
    """The leader's fence check decides, not our guess: the lease may still be valid there."""
    book.acquire("a", 1)
    clock.advance(11)
    assert book.expire()
    book.finish("a", 1, Outcome.FAILED, "cancelled: lease lost")
    assert [r.key for r in book.take_unsent()] == [("a", 1)]


def test_long_error_is_truncated(book: LeaseBook) -> None:
    rec = book.finish("a", 1, Outcome.FAILED, "x" * 10_000)
    assert len(rec.error) <= 2000 and rec.error.endswith("[truncated]")


# ---- Welcome: reattach / lost ----------------------------------------------------------------


def test_welcome_reattaches_and_loses(clock: FakeClock, book: LeaseBook) -> None:
    for i in range(4):
        book.acquire(f"r{i}", i + 1)
    clock.advance(5)  # disconnected for 5 s
    hello_at = clock.monotonic()
    offered = book.start_session()
    assert offered == [("r0", 1), ("r1", 2), ("r2", 3), ("r3", 4)]
    clock.advance(0.2)
    lost = book.on_welcome(20_000, reattached=[("r0", 1), ("r1", 2)], lost=[("r2", 3)])
    # r3 was neither re-attached nor listed: the leader did not renew it, so it is lost too
    assert sorted(le.key for le in lost) == [("r2", 3), ("r3", 4)]
    assert book.live() == [("r0", 1), ("r1", 2)]
    assert book.ttl_ms == 20_000
    # re-attached leases are renewed as of the Hello; their own ttl (10 s) still applies
    assert book.next_expiry() == pytest.approx(hello_at + 10)
    book.acquire("new", 9)
    clock.advance(15)
    assert {le.key for le in book.expire()} == {("r0", 1), ("r1", 2)}
    assert book.live() == [("new", 9)]  # acquired after Welcome with the 20 s ttl


def test_welcome_for_lease_finished_during_handshake(clock: FakeClock, book: LeaseBook) -> None:
    book.acquire("a", 1)
    book.start_session()
    rec = book.finish("a", 1, Outcome.SUCCEEDED)  # finished between Hello and Welcome
    assert book.on_welcome(TTL_MS, [], [("a", 1)]) == []  # nothing running to cancel
    assert book.take_unsent() == [rec]  # the completion still goes out; the ack decides


def test_locally_lost_lease_is_not_offered_in_hello(clock: FakeClock, book: LeaseBook) -> None:
    book.acquire("a", 1)
    clock.advance(11)
    book.expire()
    assert book.start_session() == []


# ---- a property: no completion is ever dropped without a final ack ---------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(0, 5)),
        st.tuples(st.just("finish"), st.integers(0, 5)),
        st.tuples(st.just("send"), st.just(0)),
        st.tuples(st.just("reconnect"), st.just(0)),
        st.tuples(st.just("ack"), st.integers(0, 5), st.sampled_from([0, 10, 14, 5])),
        st.tuples(st.just("tick"), st.integers(0, 12)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_ops)
def test_property_pending_until_final_ack(ops: list[tuple]) -> None:
    clock = FakeClock()
    book = LeaseBook(clock.monotonic, default_ttl_ms=TTL_MS)
    finished: set[tuple[str, int]] = set()
    final: set[tuple[str, int]] = set()
    for op in ops:
        if op[0] == "acquire":
            book.acquire(f"r{op[1]}", op[1] + 1)
        elif op[0] == "finish":
            key = (f"r{op[1]}", op[1] + 1)
            if book.is_held(*key):
                book.finish(*key, Outcome.SUCCEEDED)
                finished.add(key)
                final.discard(key)
        elif op[0] == "send":
            clock.advance(1)
            sent = [rec.key for rec in book.take_unsent()]
            assert len(sent) == len(set(sent))
        elif op[0] == "reconnect":
            book.start_session()
            book.on_welcome(TTL_MS, book.live(), [])
        elif op[0] == "ack":
            key = (f"r{op[1]}", op[1] + 1)
            res = book.on_ack(*key, op[2])
            if res.kind in (AckKind.OK, AckKind.STALE, AckKind.REJECTED):
                final.add(key)
        elif op[0] == "tick":
            clock.advance(op[1])
            for le in book.expire():
                assert book.is_held(*le.key)  # only held leases can be lost
        # invariant: every finished attempt without a final ack is still pending
        pending = {r.key for r in book.pending()}
        assert pending == finished - final
        # invariant: a lease is either held (running) or pending (finished), never both
        assert not any(book.is_held(*k) for k in pending)
    # after a reconnect everything pending is offered again
    book.start_session()
    book.on_welcome(TTL_MS, [], [])
    clock.advance(1)
    assert {r.key for r in book.take_unsent()} == finished - final


# ---- a property: the expiry floor never hides an expired lease -------------------------------

_expiry_ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(0, 7), st.sampled_from([0, 3000, 20000])),
        st.tuples(st.just("finish"), st.integers(0, 7)),
        st.tuples(st.just("heartbeat"), st.integers(0, 3)),
        st.tuples(st.just("lost"), st.integers(0, 7)),
        st.tuples(st.just("advance"), st.integers(0, 12_000)),
        st.tuples(st.just("expire"), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_expiry_ops)
def test_property_expire_matches_a_full_scan(ops: list[tuple]) -> None:
    """``expire`` skips the scan while no deadline can have passed; it must still report
    exactly the leases a full scan would, and ``next_expiry`` never lies after the earliest
    live deadline."""
    clock = FakeClock()
    book = LeaseBook(clock.monotonic, default_ttl_ms=TTL_MS)
    sent_at: list[float] = []
    for op in ops:
        if op[0] == "acquire":
            book.acquire(f"r{op[1]}", 1, op[2])
        elif op[0] == "finish" and book.is_held(f"r{op[1]}", 1):
            book.finish(f"r{op[1]}", 1, Outcome.SUCCEEDED)
        elif op[0] == "heartbeat":
            sent_at.append(clock.monotonic())
            # a heartbeat handed over some steps ago is written now
            at = sent_at[max(0, len(sent_at) - 1 - op[1])]
            book.contact(at)
            book.heartbeat_written(book.live(), at)
        elif op[0] == "lost":
            book.server_lost([(f"r{op[1]}", 1)], "revoked")
        elif op[0] == "advance":
            clock.advance(op[1] / 1000.0)
        else:
            now = clock.monotonic()
            want = sorted(
                k
                for k, h in book._held.items()
                if h.lost_reason is None and now - h.renewed_at > h.ttl_s
            )
            assert sorted(x.key for x in book.expire()) == want
        deadlines = [h.renewed_at + h.ttl_s for h in book._held.values() if h.lost_reason is None]
        nxt = book.next_expiry()
        if deadlines:
            assert nxt is not None and nxt <= min(deadlines)


# ---- context, helpers ------------------------------------------------------------------------


def _firing(**kw: object) -> SimpleNamespace:
    base = dict(
        run_id="backup@1767322800000",
        job="backup",
        scheduled_ms=1_767_322_800_123,
        attempt=2,
        fence=42,
        payload='{"a":1}',
        queue="default",
        lease_ttl_ms=15_000,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_context_from_firing() -> None:
    ctx = context_from_firing(_firing(), "w1")
    assert ctx.scheduled_at == datetime(2026, 1, 2, 3, 0, 0, 123_000, tzinfo=UTC)
    assert ctx.scheduled_at.tzinfo is UTC
    assert (ctx.run_id, ctx.job, ctx.attempt, ctx.fence, ctx.payload, ctx.queue, ctx.worker_id) == (
        "backup@1767322800000",
        "backup",
        2,
        42,
        '{"a":1}',
        "default",
        "w1",
    )
    assert isinstance(ctx.cancelled, threading.Event) and not ctx.cancelled.is_set()
    with pytest.raises(AttributeError):
        ctx.fence = 43  # type: ignore[misc]


def test_context_from_real_protobuf_firing() -> None:
    from schedd.pb import types_pb2

    f = types_pb2.Firing(run_id="j@0", job="j", scheduled_ms=0, attempt=1, fence=7, queue="q")
    ctx = context_from_firing(f, "w")
    assert ctx.scheduled_at == datetime(1970, 1, 1, tzinfo=UTC) and ctx.fence == 7


def test_kv_quotes_values_that_need_it() -> None:
    assert (
        kv("firing_received", run_id="a@1", fence=3) == "event=firing_received run_id=a@1 fence=3"
    )
    assert kv("x", error='ValueError("a b")', skip=None, empty="") == (
        'event=x error="ValueError(\\"a b\\")" empty=""'
    )


def test_parse_endpoints() -> None:
    assert parse_endpoints("a:1, b:2,,a:1") == ["a:1", "b:2"]
    assert parse_endpoints(["a:1,b:2", "c:3"]) == ["a:1", "b:2", "c:3"]
    with pytest.raises(ValueError, match="endpoints"):
        parse_endpoints(" , ")


def test_reconnect_backoff_doubles_to_one_second() -> None:
    it = backoff_delays()
    assert [next(it) for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_worker_registration_and_validation() -> None:
    w = Worker("127.0.0.1:1", queues=["a", "b", "a"], concurrency=2, worker_id="w1")
    assert w.queues == ["a", "b"] and w.worker_id == "w1"

    @w.handler("job")
    def h(ctx: Context) -> None:
        pass

    with pytest.raises(ValueError, match="already has a handler"):
        w.handler("job")(h)
    w.handler("*")(h)
    with pytest.raises(ValueError, match="default"):
        w.default_handler(h)
    with pytest.raises(ValueError, match="concurrency"):
        Worker("h:1", concurrency=0)
    with pytest.raises(ValueError, match="queues"):
        Worker("h:1", queues=[])
    assert Worker("h:1").worker_id.count("-") >= 2
    w.stop()  # never started: a no-op that marks it stopped
    w.stop()
    assert w.stopped
    with pytest.raises(RuntimeError):
        w.start()


def test_completion_record_outcome_matches_wire_enum() -> None:
    from schedd.pb import api_pb2

    assert int(Outcome.SUCCEEDED) == api_pb2.OUTCOME_SUCCEEDED
    assert int(Outcome.FAILED) == api_pb2.OUTCOME_FAILED
    assert CompletionRecord("r", 1, Outcome.FAILED).key == ("r", 1)


# ---- shell worker helpers --------------------------------------------------------------------


def test_child_env() -> None:
    ctx = context_from_firing(_firing(scheduled_ms=1_767_322_800_000), "w9")
    env = child_env(ctx, {"PATH": "/bin", "SCHEDD_JOB": "overridden"})
    assert env["PATH"] == "/bin"
    assert env["SCHEDD_JOB"] == "backup"
    assert env["SCHEDD_RUN_ID"] == "backup@1767322800000"
    assert env["SCHEDD_SCHEDULED_AT"] == "2026-01-02T03:00:00Z"
    assert env["SCHEDD_ATTEMPT"] == "2"
    assert env["SCHEDD_FENCE"] == "42"
    assert env["SCHEDD_PAYLOAD"] == '{"a":1}'
    assert env["SCHEDD_WORKER_ID"] == "w9"


def test_describe_exit() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(1, "  boom: disk full \n") == "exit code 1: boom: disk full"
    assert describe_exit(-15) == "exit code -15 (SIGTERM)"
    long = describe_exit(2, "x" * 3000 + "\nthe last line")
    assert len(long) <= 2000 and long.startswith("exit code 2: ...")
    assert long.endswith("x\nthe last line")  # the end is kept: that is where the reason is


def test_command_problem_names_the_command_and_path(tmp_path: Path) -> None:
    assert command_problem("sh", os.defpath) == ""
    assert command_problem("no-such-cmd-x", "/usr/bin:/bin") == (
        "command 'no-such-cmd-x' not found in PATH=/usr/bin:/bin"
    )
    assert "does not exist" in command_problem("/no/such/cmd", os.defpath)
    plain = tmp_path / "plain.sh"
    plain.write_text("echo hi\n")
    assert "not an executable file" in command_problem(str(plain), os.defpath)
    assert "not an executable file" in command_problem(str(tmp_path) + "/", os.defpath)


def test_shell_worker_rejects_empty_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_shell_worker(["127.0.0.1:1"], ["default"], 1, []) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no command" in err
    assert run_shell_worker(["127.0.0.1:1"], ["default"], 0, ["true"]) == 2
    assert "concurrency" in capsys.readouterr().err
    assert run_shell_worker(["127.0.0.1:1"], ["default"], 1, ["true"], tags={"": "x"}) == 2
    assert "tags" in capsys.readouterr().err
    assert run_shell_worker(["127.0.0.1:1"], ["default"], 1, ["true"], drain_timeout=-1) == 2
    assert "drain_timeout" in capsys.readouterr().err
    assert run_shell_worker(["127.0.0.1:1"], ["default"], 1, ["true"], jobs=["no/slash"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --job: handler:")


def test_a_handler_name_that_is_not_a_job_name_is_refused_at_registration() -> None:
    """It is announced in Hello.jobs, which the leader would refuse at every connect."""
    w = Worker(["127.0.0.1:1"], queues=["q"])
    with pytest.raises(ValueError, match="handler"):
        w.handler("a/b")
    w.handler("*")(lambda ctx: None)
    w.handler("ok-name")(lambda ctx: None)


# ---- releases (drain), progress, tags ---------------------------------------------------------


def test_release_loses_the_lease_and_queues_it_once_per_stream(
    clock: FakeClock, book: LeaseBook
) -> None:
    assert book.acquire("r1", 5) and book.acquire("r2", 6)
    lost = book.release([("r1", 5)], "worker stopping (drain timeout)")
    assert [(le.key, le.reason) for le in lost] == [(("r1", 5), "worker stopping (drain timeout)")]
    assert book.live() == [("r2", 6)]  # no longer heartbeated nor offered in Hello
    assert book.release([("r1", 5)], "again") == []  # lost at most once
    assert book.has_unsent_releases()
    assert book.take_releases() == [("r1", 5)]
    assert book.take_releases() == [] and not book.has_unsent_releases()
    assert book.start_session() == [("r2", 6)]  # a new stream: the release is sent again
    assert book.take_releases() == [("r1", 5)]


def test_released_lease_finishes_without_a_completion(book: LeaseBook) -> None:
    assert book.acquire("r1", 5)
    book.release([("r1", 5)], "drain")
    book.finish("r1", 5, Outcome.FAILED, "cancelled")
    assert book.pending() == [] and book.take_unsent() == []
    book.take_releases()
    assert book.idle()
    assert not book.acquire("r1", 5)  # a resent firing of a released lease


def test_refused_firing_is_released_without_being_held(book: LeaseBook) -> None:
    assert book.release([("r9", 3)], "worker stopping") == []
    assert book.take_releases() == [("r9", 3)] and book.held_count() == 0


def test_release_does_not_drop_a_finished_attempts_completion(book: LeaseBook) -> None:
    assert book.acquire("r1", 5)
    book.finish("r1", 5, Outcome.SUCCEEDED)
    book.release([("r1", 5)], "drain")  # too late: the result stands
    assert not book.has_unsent_releases()
    assert [r.key for r in book.pending()] == [("r1", 5)]


def test_context_progress() -> None:
    ctx = context_from_firing(_firing(), "w1")
    assert ctx.progress == ""
    ctx.heartbeat("3/10 files")
    assert ctx.progress == "3/10 files"
    ctx.heartbeat("x" * 5000)
    assert len(ctx.progress) == 1000
    with pytest.raises(TypeError, match="progress"):
        ctx.heartbeat(3)  # type: ignore[arg-type]


def test_context_wait_cancelled_returns_once_set() -> None:
    import asyncio

    ctx = context_from_firing(_firing(), "w1")

    async def main() -> bool:
        asyncio.get_running_loop().call_later(0.05, ctx.cancelled.set)
        await asyncio.wait_for(ctx.wait_cancelled(poll_s=0.01), timeout=5)
        return ctx.cancelled.is_set()

    assert asyncio.run(main())


def test_worker_tags_validation() -> None:
    assert Worker("h:1", tags={"region": "eu", "gpu": "yes"}).tags == {"region": "eu", "gpu": "yes"}
    assert Worker("h:1").tags == {}
    with pytest.raises(ValueError, match="tags"):
        Worker("h:1", tags={"": "x"})
    with pytest.raises(ValueError, match="tags"):
        Worker("h:1", tags={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="tags"):
        Worker("h:1", tags=["a"])  # type: ignore[arg-type]
