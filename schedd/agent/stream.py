"""The agent's stream to the leader: finding it, one Connect stream at a time, and the ticker.

:class:`Stream` owns three kinds of threads' work:

* **the stream loop** (:meth:`Stream.run`, thread ``schedd-agent-stream``): opens one Connect
  stream after another. Where it goes next and how long it waits first is the
  :class:`schedd.sdk.navigation.Navigator` shared with the SDK: a follower's ``schedd-leader``
  hint is followed (the first hop at once, the next after a back-off), else the endpoints are
  rotated with a 50 ms → 1 s back-off (at most 250 ms in an outage's first 5 s; restarting
  after each welcomed stream), and a node that looked frozen is skipped for 5 s (followers
  still naming it are asked 50 ms apart). One hop
  in a row is free (``FREE_HOPS``). Each stream (:meth:`Stream.session_to`) waits for its
  connection, sends Hello and dispatches the server's messages (Welcome, Firings,
  CompletionAcks, LeasesLost) until it breaks.
* **gRPC's request consumer** pulls :meth:`Stream.requests`, which turns the session's queued
  intents into Heartbeat / Completions / Release messages when gRPC asks for the next one. gRPC
  asks only after the last write completed: that is how a heartbeat's write is confirmed
  before its leases are renewed.
* **the ticker** (:meth:`Stream.run_ticker`, thread ``schedd-agent-ticker``): every heartbeat
  interval it queues a heartbeat, queues resends of unacked completions and starts a liveness
  probe; it aborts a stream that got no Welcome in time, and expires leases that have had no
  confirmed renewal for a TTL (even while disconnected), cancelling their handlers.

Everything shared goes through :class:`schedd.agent.shared.Shared` and its one lock; handlers
are started and cancelled through :class:`schedd.agent.runner.Runner`. The channel is made by
an injectable factory, so the shell logic is unit-tested with fake channels.

Private module: :class:`schedd.agent.Worker` is the API.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

from schedd.agent.core import (
    AckKind,
    LostLease,
    OutageLog,
    Outcome,
    code_name,
    context_from_firing,
    kv,
)
from schedd.agent.runner import Runner
from schedd.agent.shared import Active, Intent, Session, Shared
from schedd.sdk.endpoints import leader_hint
from schedd.sdk.navigation import SUSPECT_S, Navigator, move_after

__all__ = ["SessionEnd", "Stream", "insecure_channel"]

#: The longest the ticker sleeps when nothing is due.
TICK_MAX_S = 0.25
#: TCP + HTTP/2 handshake. A frozen node accepts TCP but never answers.
CONNECT_TIMEOUT_S = 3.0
#: Hello sent, no Welcome within this: give up on this node.
WELCOME_TIMEOUT_S = 5.0
#: While no leader can be reached, one ``no_leader`` warning per this many seconds.
NO_LEADER_LOG_EVERY_S = 10.0
#: For this many seconds of an outage, no reconnect waits longer than this: the new leader is
#: found within a quarter second of its election (1 s back-offs found it up to 1 s late).
FAST_BACKOFF = (5.0, 0.25)
#: Hints followed at once in a row. One, where the SDK allows ``len(endpoints) + 1``: every hop
#: costs a worker a connection and a Hello, and after a failover every worker hops at once.
FREE_HOPS = 1


class SessionEnd(NamedTuple):
    """How one stream ended."""

    welcomed: bool  # the leader welcomed it (it was a working stream)
    hint: str  # the leader a node named ("" = none)
    why: str  # for the log
    frozen: bool  # the node looked frozen: no connection in time, or no answer to the probe


#: The options of a stream's channel. No keepalive pings: see insecure_channel.
CHANNEL_OPTIONS = [("grpc.enable_retries", 0)]


def insecure_channel(target: str) -> Any:
    """The channel of one stream (a fresh one per stream: a broken connection is never reused).
    The worker passes a channel factory built from its credentials; this plaintext one is the
    default for tests that drive a Stream directly."""
    import grpc

    # No keepalive pings: gRPC resets the keepalive timer on every write, so with heartbeats
    # flowing it never pings, and pings between sparse heartbeats earn a too_many_pings GOAWAY
    # from a default server. Liveness comes from the probe (Stream.start_probe).
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


class Stream:
    """The stream loop, the request generator, the message handlers, the probe and the ticker
    of one worker; see the module docstring. ``channel`` makes the channel for a target
    (default :func:`insecure_channel`)."""

    def __init__(
        self,
        shared: Shared,
        runner: Runner,
        *,
        endpoints: Sequence[str],
        worker_id: str,
        queues: Sequence[str],
        concurrency: int,
        tags: Mapping[str, str],
        channel: Callable[[str], Any] = insecure_channel,
        metadata: Sequence[tuple[str, str]] = (),
        namespace: str = "",
    ) -> None:
        self._namespace = namespace
        self._shared = shared
        self._runner = runner
        self._worker_id = worker_id
        self._queues = list(queues)
        self._concurrency = concurrency
        self._tags = dict(tags)
        self._channel = channel
        self._md = {"metadata": tuple(metadata)} if metadata else {}
        self.nav = Navigator(
            endpoints, max_free_hops=FREE_HOPS, suspect_for=SUSPECT_S, fast=FAST_BACKOFF
        )

    # ---- the stream loop -------------------------------------------------------------------

    def run(self) -> None:
        """Open streams until ``Shared.closing`` is set; never raises for network trouble.
        Logs ``disconnected`` when a welcomed stream ends, ``no_leader`` every 10 s while no
        leader can be reached, ``connect_failed`` (debug) for every other failed attempt."""
        shared = self._shared
        log = shared.log
        outage = OutageLog(NO_LEADER_LOG_EVERY_S)
        while not shared.closing.is_set():
            target = self.nav.target
            end = self.session_to(target)
            if shared.closing.is_set():
                break
            now = shared.clock()
            if end.welcomed:
                self.nav.connected()
                outage.lost(now)
                log.warning(
                    kv(
                        "disconnected",
                        target=target,
                        reason=end.why,
                        leader_hint=end.hint or None,
                        action="reconnecting",
                    )
                )
            else:
                seconds = outage.failed(now)
                if seconds is not None:
                    log.warning(
                        kv("no_leader", seconds=seconds, last_target=target, last_error=end.why)
                    )
                else:
                    log.debug(
                        kv(
                            "connect_failed",
                            target=target,
                            reason=end.why,
                            leader_hint=end.hint or None,
                        )
                    )
            # A hint naming our own target is a node re-elected in a new term: ask it again.
            delay = self.nav.failed(
                move_after(end.hint, target), hint=end.hint, now=now, frozen=end.frozen
            )
            if delay:
                shared.closing.wait(delay)

    def session_to(self, target: str) -> SessionEnd:
        """Run one stream to ``target`` until it breaks, dispatching what the server sends."""
        import grpc

        from schedd.pb import api_grpc, api_pb2

        shared = self._shared
        session = Session(target)
        channel = self._channel(target)
        hint = ""
        why = "stream ended"
        try:
            why = self.await_connection(channel)
            if why:
                return SessionEnd(False, "", why, why.startswith("no connection within"))
            status = api_grpc.ClusterServiceStub(channel).GetNodeStatus
            session.probe = lambda: status.future(
                api_pb2.NodeStatusRequest(), timeout=self.probe_timeout_s(), **self._md
            )
            session.started_at = shared.clock()
            call = api_grpc.WorkerServiceStub(channel).Connect(self.requests(session), **self._md)
            session.call = call
            with shared.lock:
                shared.session = session
            for msg in call:
                self.on_message(session, msg)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            why = f"{getattr(code, 'name', code)}: {e.details() if hasattr(e, 'details') else e}"
            md = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
            hint = leader_hint(md)
        finally:
            with shared.lock:
                if shared.session is session:
                    shared.session = None
                session.close()
            channel.close()
            shared.wake.set()  # the ticker re-plans (and exits when closing)
        return SessionEnd(session.welcomed, hint or session.hint, why, session.unresponsive)

    def await_connection(self, channel: Any) -> str:
        """Wait until ``channel`` is connected: '' when ready, else why not. A refused connection
        fails at once; a node that accepts TCP but never answers (frozen) fails after
        ``CONNECT_TIMEOUT_S``; a stop in progress ends the wait."""
        import grpc

        shared = self._shared
        settled = threading.Event()
        seen: list[Any] = [None]
        final = (
            grpc.ChannelConnectivity.READY,
            grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN,
        )

        def on_change(state: Any) -> None:
            seen[0] = state
            if state in final:
                settled.set()

        channel.subscribe(on_change, try_to_connect=True)
        try:
            give_up = shared.clock() + CONNECT_TIMEOUT_S
            while not settled.wait(0.05):
                if shared.closing.is_set():
                    return "worker closing"
                if shared.clock() >= give_up:
                    return f"no connection within {CONNECT_TIMEOUT_S:g} s"
        finally:
            channel.unsubscribe(on_change)
        if seen[0] is grpc.ChannelConnectivity.READY:
            return ""
        return f"connection failed ({getattr(seen[0], 'name', seen[0])})"

    # ---- what we write ---------------------------------------------------------------------

    def requests(self, session: Session) -> Iterator[Any]:
        """The request stream (pulled by gRPC's consumer thread): Hello, then one message per
        queued intent. Code after a ``yield`` runs only once gRPC asks for the next message,
        i.e. after the yielded one was written: a heartbeat renews its leases only then."""
        from schedd.pb import api_pb2

        shared = self._shared
        book = shared.book
        with shared.lock:
            running = book.start_session()
        yield api_pb2.WorkerMessage(
            hello=api_pb2.Hello(
                worker_id=self._worker_id,
                queues=self._queues,
                concurrency=self._concurrency,
                running=[api_pb2.Lease(run_id=r, fence=f) for r, f in running],
                tags=self._tags,
                namespace=self._namespace,
                # The leader grants this worker only firings of these jobs ("*": any job).
                jobs=self._runner.handler_names(),
                # Runner.run starts no handler before Firing.start_at_ms: the leader may
                # commit our firings ahead of their due time (--fire-ahead).
                waits_for_start=True,
            )
        )
        while True:
            intent = session.q.get()
            if intent is Intent.CLOSE or session.closed:
                return
            with shared.lock:
                if intent is Intent.HEARTBEAT:
                    leases, sent_at = book.live(), shared.clock()
                    msg = api_pb2.WorkerMessage(
                        heartbeat=api_pb2.Heartbeat(
                            leases=[
                                api_pb2.Lease(
                                    run_id=r, fence=f, progress=self._runner.progress_locked((r, f))
                                )
                                for r, f in leases
                            ]
                        )
                    )
                elif intent is Intent.RELEASE:
                    leases, sent_at = [], 0.0
                    keys = book.take_releases()
                    draining = shared.draining.is_set()
                    if not keys and (session.drain_announced or not draining):
                        continue
                    session.drain_announced = session.drain_announced or draining
                    msg = api_pb2.WorkerMessage(
                        release=api_pb2.Release(
                            leases=[api_pb2.Lease(run_id=r, fence=f) for r, f in keys],
                            reason=(
                                "worker stopping" + (" (drain timeout)" if keys else "")
                                if draining
                                else "no handler for the job on this worker"
                            ),
                            # Only a stopping worker asks for no new firings on this stream.
                            drain=draining,
                        )
                    )
                    shared.log.info(
                        kv(
                            "release_sent",
                            leases=len(keys),
                            target=session.target,
                            drain=draining,
                            note="the leader makes these runs pending again"
                            if keys
                            else "the leader sends no new firings",
                        )
                    )
                else:
                    leases, sent_at = [], 0.0
                    recs = book.take_unsent()
                    if not recs:
                        continue
                    msg = api_pb2.WorkerMessage(
                        completions=api_pb2.Completions(
                            completions=[
                                api_pb2.Completion(
                                    run_id=c.run_id,
                                    fence=c.fence,
                                    outcome=cast(Any, int(c.outcome)),
                                    error=c.error,
                                    exit_code=c.exit_code,
                                )
                                for c in recs
                            ]
                        )
                    )
            if intent is Intent.FLUSH and shared.log.isEnabledFor(logging.DEBUG):
                shared.log.debug(kv("completions_sent", count=len(msg.completions.completions)))
            yield msg
            if intent is Intent.HEARTBEAT:
                with shared.lock:
                    book.contact(sent_at)
                    if leases:
                        book.heartbeat_written(leases, sent_at)
            elif intent is Intent.RELEASE:
                with shared.changed:  # a drain waits for its releases to be written
                    shared.changed.notify_all()

    # ---- what we read ----------------------------------------------------------------------

    def on_message(self, session: Session, msg: Any) -> None:
        """Dispatch one ``ServerMessage``; an unknown body (a newer server) is ignored."""
        body = msg.WhichOneof("body")
        if body == "welcome":
            self.on_welcome(session, msg.welcome)
        elif body == "firings":
            refused: list[tuple[Any, str]] = []
            for firing in msg.firings.firings:
                self.on_firing(firing, refused)
            if refused:
                self._log_refused(refused)
        elif body == "acks":
            self.on_acks(msg.acks.acks)
        elif body == "lost":
            keys = [(le.run_id, le.fence) for le in msg.lost.leases]
            with self._shared.lock:
                lost = self._shared.book.server_lost(keys, msg.lost.reason)
            self._runner.cancel(lost)
        else:
            self._shared.log.debug(kv("unknown_server_message", body=body))

    def on_welcome(self, session: Session, w: Any) -> None:
        """The leader accepted the stream: adopt its TTL and heartbeat interval, apply its
        re-attached / lost leases, resend every unacked completion, and, when stopping, tell
        it again (a new leader does not know)."""
        shared = self._shared
        with shared.lock:
            shared.book.contact(shared.clock())
            lost = shared.book.on_welcome(
                w.lease_ttl_ms,
                [(le.run_id, le.fence) for le in w.reattached],
                [(le.run_id, le.fence) for le in w.lost],
            )
            if w.heartbeat_interval_ms > 0:
                shared.hb_ms = int(w.heartbeat_interval_ms)
            session.hb_interval_s = shared.hb_ms / 1000.0
            session.next_hb = shared.clock() + session.hb_interval_s
            session.next_probe = session.next_hb
            session.node_id = w.node_id
            session.welcomed = True
            session.kick(Intent.FLUSH)  # resend every unacked completion
            if shared.draining.is_set() or shared.book.has_unsent_releases():
                session.kick(Intent.RELEASE)  # stopping: no new firings, and give back what we must
        shared.log.info(
            kv(
                "connected",
                node_id=w.node_id,
                target=session.target,
                queues=",".join(self._queues),
                # What this worker will run, so a job without a handler is noticed at start.
                handlers=",".join(self._runner.handler_names()) or "(none)",
                lease_ttl_ms=w.lease_ttl_ms,
                heartbeat_ms=w.heartbeat_interval_ms,
                reattached=len(w.reattached),
                lost=len(lost),
            )
        )
        self._runner.cancel(lost)
        shared.wake.set()

    def on_firing(self, firing: Any, refused: list[tuple[Any, str]] | None = None) -> None:
        """Start a handler for ``firing``, unless it is a duplicate, its lease expired while it
        waited in the socket (the process was frozen), or the worker is draining or has no
        handler for its job (then it is released back at once, without using an attempt).
        A refusal is logged at once, or, with ``refused`` (one message's firings), appended
        there for :meth:`_log_refused`."""
        shared = self._shared
        log = shared.log
        key = (firing.run_id, firing.fence)
        # A firing this worker has no handler for (the leader grants by Hello.jobs, so only a
        # leader that predates it, or handlers changed since Hello, sends one) goes back like a
        # firing refused while stopping: released, no attempt used, not a dead letter.
        refuse = (
            "worker stopping"
            if shared.draining.is_set()
            else ""
            if self._runner.lookup(firing.job) is not None
            else f"no handler for job {firing.job!r} on this worker"
        )
        if refuse:
            with shared.lock:
                shared.book.release([key], refuse)
                shared.kick_locked(Intent.RELEASE)
            if refused is None:
                self._log_refused([(firing, refuse)])
            else:
                refused.append((firing, refuse))
            return
        with shared.lock:
            expired: list[LostLease] = []
            lapsed = False  # this firing's own lease among the expired ones
            if not shared.book.acquire(firing.run_id, firing.fence, firing.lease_ttl_ms):
                dup = True
            else:
                dup = False
                expired = shared.book.expire()
                # (nearly always empty: no generator is built per firing for it)
                lapsed = bool(expired) and any(x.key == key for x in expired)
                if lapsed:
                    # Frozen since before it arrived: the leader has expired this lease already.
                    shared.book.finish(
                        firing.run_id,
                        firing.fence,
                        Outcome.FAILED,
                        "not started: the lease expired before the firing was read",
                    )
                else:
                    ctx = context_from_firing(firing, self._worker_id)
                    shared.active[key] = Active(ctx)
        if dup:
            log.info(kv("firing_duplicate", run_id=firing.run_id, fence=firing.fence))
            return
        if lapsed:
            log.warning(
                kv(
                    "firing_expired",
                    run_id=firing.run_id,
                    fence=firing.fence,
                    job=firing.job,
                    note="not started: no contact with a leader for longer than its lease",
                )
            )
            self._runner.cancel([x for x in expired if x.key != key])
            return
        if expired:
            self._runner.cancel(expired)
        # Per-firing lines are DEBUG and built only when wanted: at thousands of firings a
        # second, formatting them was a large share of the agent's CPU (bench/agent_hotpath.py).
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                kv(
                    "firing_received",
                    run_id=firing.run_id,
                    job=firing.job,
                    fence=firing.fence,
                    attempt=firing.attempt,
                    scheduled_ms=firing.scheduled_ms,
                )
            )
        self._runner.submit(ctx)

    def _log_refused(self, refused: list[tuple[Any, str]]) -> None:
        """One warning per reason for the firings of one message that were refused: a worker
        stopping under load is sent a message of hundreds of firings before the leader reads
        its drain, and a line for each of them buried the log (693 lines in one bench run)."""
        by_reason: dict[str, list[Any]] = {}
        for firing, reason in refused:
            by_reason.setdefault(reason, []).append(firing)
        for reason, firings in by_reason.items():
            first = firings[0]
            more = (
                {"count": len(firings), "last_run_id": firings[-1].run_id}
                if len(firings) > 1
                else {}
            )
            self._shared.log.warning(
                kv(
                    "firing_refused",
                    run_id=first.run_id,
                    fence=first.fence,
                    job=first.job,
                    reason=reason,
                    **more,
                    note="not started; released back to the leader",
                )
            )

    def on_acks(self, acks: Iterable[Any]) -> None:
        """Apply ``CompletionAck`` s to the book and log each outcome; a retryable code wakes
        the ticker, which resends once the book's retry delay has passed."""
        shared = self._shared
        log = shared.log
        results = []
        with shared.changed:
            for a in acks:
                results.append(shared.book.on_ack(a.run_id, a.fence, a.code, a.message))
            shared.changed.notify_all()
        debug = log.isEnabledFor(logging.DEBUG)
        for r in results:
            rec = r.record
            if r.kind is AckKind.OK and rec is not None:
                if debug:
                    log.debug(
                        kv(
                            "completion_acked",
                            run_id=rec.run_id,
                            fence=rec.fence,
                            outcome=rec.outcome.name,
                        )
                    )
            elif r.kind is AckKind.STALE and rec is not None:
                log.warning(
                    kv(
                        "completion_rejected",
                        run_id=rec.run_id,
                        fence=rec.fence,
                        code="ABORTED",
                        outcome=rec.outcome.name,
                        note="the lease had been lost; the result was discarded",
                    )
                )
            elif r.kind is AckKind.RETRY and rec is not None:
                log.info(
                    kv(
                        "completion_retry",
                        run_id=rec.run_id,
                        fence=rec.fence,
                        code=code_name(r.code),
                        message=r.message,
                    )
                )
            elif r.kind is AckKind.REJECTED and rec is not None:
                log.error(
                    kv(
                        "completion_rejected",
                        run_id=rec.run_id,
                        fence=rec.fence,
                        code=code_name(r.code),
                        message=r.message,
                        note="the result was discarded",
                    )
                )
        if any(r.kind is AckKind.RETRY for r in results):
            shared.wake.set()

    # ---- liveness probe --------------------------------------------------------------------

    def probe_timeout_s(self) -> float:
        """How long a probe may take: about two heartbeat intervals, at least 1 s, and at most
        a third of the lease TTL (so a frozen leader is left while our leases are still valid)."""
        hb_s = self._shared.hb_ms / 1000.0
        return max(1.0, min(2 * hb_s, self._shared.book.ttl_ms / 3000.0))

    def start_probe(self, sess: Session) -> None:
        """Ask the node we stream to for its status over the same connection, once per
        heartbeat interval. Heartbeat writes succeed into the kernel buffer even when the leader
        is frozen (SIGSTOP, GC pause) or silently cut off, and gRPC keepalive never pings while
        we write; a round trip is the only proof of life. No answer within the probe timeout, or
        an answer saying the node no longer leads, tears the stream down so the stream loop
        finds the current leader while our leases are still valid there."""
        import grpc

        shared = self._shared
        log = shared.log
        assert sess.probe is not None
        sent_at = shared.clock()
        try:
            fut = sess.probe()
        except Exception as e:  # channel closed under us: the session is ending anyway
            sess.probe_inflight = False
            log.debug(kv("probe_not_sent", target=sess.target, error=repr(e)))
            return

        def done(f: Any) -> None:
            sess.probe_inflight = False
            if sess.closed:
                return
            try:
                status = f.result()
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    sess.probe = None  # an older server: rely on the stream alone
                    return
                log.warning(
                    kv(
                        "leader_unresponsive",
                        target=sess.target,
                        node_id=sess.node_id,
                        error=getattr(code, "name", str(code)),
                        waited_ms=int((shared.clock() - sent_at) * 1000),
                        action="reconnecting",
                    )
                )
                sess.unresponsive = True
                sess.abort()
                return
            except Exception as e:  # CancelledError when the session ended first
                log.debug(kv("probe_failed", target=sess.target, error=repr(e)))
                return
            if status.role and status.role != "leader":
                log.warning(
                    kv(
                        "leader_stepped_down",
                        target=sess.target,
                        node_id=status.node_id,
                        role=status.role,
                        leader_hint=status.leader_grpc or None,
                        action="reconnecting",
                    )
                )
                sess.hint = status.leader_grpc or ""
                sess.abort()

        fut.add_done_callback(done)

    # ---- ticker ----------------------------------------------------------------------------

    def run_ticker(self) -> None:
        """The ticker thread: :meth:`tick` until it says stop, sleeping in between (woken early
        through ``Shared.wake``)."""
        shared = self._shared
        while (wait := self.tick(shared.clock())) is not None:
            shared.wake.wait(wait)
            shared.wake.clear()

    def tick(self, now: float) -> float | None:
        """One pass of the ticker at ``now``: expire leases (cancelling their handlers); on a
        welcomed stream queue a heartbeat when due, a flush when completions wait, and start a
        probe when due; abort a stream that got no Welcome within ``WELCOME_TIMEOUT_S``. Returns
        the seconds until the next pass, or None once closing with no stream left."""
        shared = self._shared
        with shared.lock:
            if shared.closing.is_set() and shared.session is None:
                return None
            lost = shared.book.expire()
            sess = shared.session
            wake_at = now + TICK_MAX_S
            probe = stale = False
            if sess is not None and sess.welcomed and not sess.closed:
                if now >= sess.next_hb:
                    sess.kick(Intent.HEARTBEAT)
                    sess.next_hb = now + sess.hb_interval_s
                if shared.book.has_unsent():
                    sess.kick(Intent.FLUSH)
                if sess.probe is not None and not sess.probe_inflight and now >= sess.next_probe:
                    probe = sess.probe_inflight = True
                    sess.next_probe = now + sess.hb_interval_s
                wake_at = min(wake_at, sess.next_hb, sess.next_probe)
            elif sess is not None and not sess.closed:
                stale = now - sess.started_at > WELCOME_TIMEOUT_S
            nxt = shared.book.next_expiry()
            if nxt is not None:
                wake_at = min(wake_at, nxt + 0.001)
        if lost:
            self._runner.cancel(lost)
        if probe and sess is not None:
            self.start_probe(sess)
        if stale and sess is not None:
            shared.log.warning(
                kv(
                    "no_welcome",
                    target=sess.target,
                    seconds=WELCOME_TIMEOUT_S,
                    action="trying another node",
                )
            )
            sess.abort()
        if shared.closing.is_set() and sess is None:
            return None
        return max(0.005, wake_at - now)
