"""The embedded worker agent: ``Worker`` runs your handlers for the firings the leader sends.

Usage::

    from schedd.agent import Worker

    worker = Worker("127.0.0.1:7001,127.0.0.1:7002", queues=["default"], concurrency=4)

    @worker.handler("nightly-report")
    def report(ctx):                      # ctx: Context
        ctx.heartbeat("rendering")        # progress text, shown by GetRun while it runs
        write_report(ctx.scheduled_at, fence=ctx.fence)

    @worker.handler("ping")
    async def ping(ctx):                  # async handlers run on the worker's own event loop
        await notify(ctx.payload)

    worker.run()                          # until stop(), SIGINT or SIGTERM (drains)
    # or, embedded in a service: worker.start() ... worker.stop()

Delivery contract (what a handler can rely on):

* **At least once.** A firing may be delivered again (with a higher ``fence``) when a lease is
  lost: the worker was cut off from the leader, paused, or its completion never arrived. Make
  effects idempotent, or fence them: a sink that remembers the highest fence it accepted for a
  run and refuses lower ones gives exactly-once effect.
* **Outcome.** Returning means success. Raising means failure (error text = ``repr`` of the
  exception, traceback logged); raise ``HandlerFailure("text")`` to fail with exactly that text
  and no traceback. If ``ctx.cancelled`` was set by the time the handler returns,
  the attempt is reported **failed** even if it returned normally: the agent cannot tell a
  handler that finished from one that gave up early, and reporting a retry is the choice that
  never loses a firing.
* **Cancellation.** ``ctx.cancelled`` is set when the lease is lost (the leader said so, or the
  agent had no contact with a leader for longer than the lease TTL), when a drain times out, or
  on a forced stop; an async handler's task is also cancelled. Python cannot kill a thread: a
  sync handler that ignores it keeps its pool slot.
* **Drain.** ``stop()`` / SIGTERM: no new firings, running handlers finish (heartbeats go on)
  for up to ``drain_timeout``; the leases still held then are *released* (``Release``): the
  leader makes those runs PENDING again at once without using an attempt.
* **Fenced effects.** :func:`schedd.fencing.fenced_sqlite` refuses a stale attempt's write in
  your SQLite database; raising its ``StaleFence`` fails the attempt with one log line.
* **Completions** are kept until the leader acknowledges them (committed through Raft) and are
  resent after a reconnect; the fence makes a duplicate harmless. A result whose lease had
  already been lost is rejected with ``ABORTED`` and logged as discarded.

Structure (private modules; the package exports ``Worker``, ``Context``, ``Handler`` and
``HandlerFailure``):

* :mod:`schedd.agent.worker` — ``Worker``: arguments, wiring, start / run / stop, signals;
* :mod:`schedd.agent.stream` — finding the leader (the navigation core
  :mod:`schedd.sdk.navigation`, shared with the SDK), the Connect stream, the liveness probe,
  the heartbeat ticker;
* :mod:`schedd.agent.runner` — the handler pool: sync handlers on threads, async handlers on
  the worker's own event loop, cancellation, the drain;
* :mod:`schedd.agent.shared` — the state those threads share under one lock;
* :mod:`schedd.agent.core` — the pure core: ``LeaseBook`` (leases, completions, releases,
  with an injected monotonic clock), ``Context``, ``context_from_firing``, ``kv``;
* :mod:`schedd.agent.shell` — the shell-command worker of ``schedctl worker run``.
"""

from __future__ import annotations

from schedd.agent.core import Context, Handler, HandlerFailure
from schedd.agent.worker import Worker

__all__ = ["Context", "Handler", "HandlerFailure", "Worker"]
