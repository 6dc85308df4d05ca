"""The worker agent's own cost per firing, in process: no cluster, no network.

A real :class:`~schedd.agent.stream.Stream` and :class:`~schedd.agent.runner.Runner` (the
thread pool that runs handlers) over one ``Shared``, fed ``Firings`` messages the way a leader
sends them; a no-op handler; the completions taken as the request generator takes them; then
one ``CompletionAcks`` message per batch, as the leader answers. What is left out is gRPC's own
work (reading and writing the stream), which the cluster benchmark (bench/run.py) includes.

    python bench/agent_hotpath.py                     # 20,000 firings, 100 per message
    python bench/agent_hotpath.py --log-level INFO    # with the agent's INFO lines emitted
    python bench/agent_hotpath.py --held 512          # with 512 other leases held meanwhile
    python bench/agent_hotpath.py --unacked 5000      # 5,000 completions awaiting their ack
    python bench/agent_hotpath.py --gc-threshold 50000   # the worker process's collector tuned
    python bench/agent_hotpath.py --start-in 300 --firings 3000 --per-message 500 \
        --concurrency 5000                        # firings committed ahead, one start instant

Prints CPU microseconds per firing (process time, all threads) and firings/s, median of
``--repeat`` rounds. ``--log-level`` sets the agent logger's level with a handler that formats
every record it gets (as a deployment that logs to a file would); the default ``WARNING`` is
a worker whose application never configured INFO logging.

``--start-in MS``: every firing of a round carries ``start_at_ms`` MS from when the round
begins (a leader with ``--fire-ahead`` commits a whole second's aligned firings before it), all
messages are sent at once, and the round ends when every handler has run. Prints the CPU per
firing and the start lag (handler start minus ``start_at_ms``), p50 and p99 of all rounds.
"""

from __future__ import annotations

import argparse
import gc
import io
import logging
import statistics
import threading
import time

from agent_rig import attached_agent, firings_message

from schedd.agent.core import Context
from schedd.pb import api_pb2

CODE_OK = 0


def one_round(
    firings: int,
    per_msg: int,
    held: int,
    concurrency: int,
    logger: logging.Logger,
    unacked: int = 0,
):
    def handle(ctx: Context) -> None:
        pass

    shared, runner, stream, sess = attached_agent(concurrency, logger, handle)
    # Leases held all along (long-running handlers elsewhere): what a lease scan pays for.
    with shared.lock:
        for i in range(held):
            shared.book.acquire(f"held-{i}", 1, 10_000)
    msgs = []
    for start in range(0, firings, per_msg):
        jobs = range(start, min(firings, start + per_msg))
        msgs.append(firings_message(jobs, 1_700_000_000_000, first_fence=start + 1))
    waiting: list = []
    t0, c0 = time.perf_counter(), time.process_time()
    for n, msg in enumerate(msgs):
        if n % 20 == 0:  # the heartbeat the ticker would have written meanwhile
            with shared.lock:
                now = time.monotonic()
                shared.book.contact(now)
                shared.book.heartbeat_written(shared.book.live(), now)
        stream.on_message(sess, msg)
        # What Stream.requests does for each flush the runner asks for, then the leader's answer.
        records = []
        with shared.changed:
            while len(records) < len(msg.firings.firings):
                records += shared.book.take_unsent()
                if len(records) < len(msg.firings.firings):
                    shared.changed.wait(0.01)
        # The leader acknowledges a completion once its entry commits; under a burst, thousands
        # wait for that (``unacked``): the oldest beyond that many are acknowledged now.
        waiting.extend(records)
        ack_now = waiting[: max(0, len(waiting) - unacked)] if n < len(msgs) - 1 else list(waiting)
        del waiting[: len(ack_now)]
        acks = api_pb2.ServerMessage()
        for r in ack_now:
            acks.acks.acks.append(
                api_pb2.CompletionAck(run_id=r.run_id, fence=r.fence, code=CODE_OK)
            )
        stream.on_message(sess, acks)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    runner.shutdown()
    with shared.lock:
        left = len(shared.book.pending())
    assert left == 0, f"{left} completions unacknowledged"
    return cpu / firings * 1e6, firings / wall


def one_instant(
    firings: int, per_msg: int, concurrency: int, logger: logging.Logger, start_in_ms: int
) -> tuple[float, list[float]]:
    """One round of ``--start-in``: CPU µs per firing, and each handler's start lag in ms.
    Returns once the round's threads have ended, so that their exit is not the next round's
    CPU."""
    threads_before = threading.active_count()
    lags: list[float] = []
    lock = threading.Lock()

    def handle(ctx: Context) -> None:
        # Under a lock, as bench/sustained.py's handler records its starts: handlers that
        # start together then contend for it, as real ones do for their own locks.
        with lock:
            lags.append(time.time() * 1000 - ctx.start_at_ms)

    shared, runner, stream, sess = attached_agent(concurrency, logger, handle)
    c0 = time.process_time()
    at = int(time.time() * 1000) + start_in_ms
    for start in range(0, firings, per_msg):
        jobs = range(start, min(firings, start + per_msg))
        stream.on_message(sess, firings_message(jobs, at, first_fence=start + 1, start_at_ms=at))
    records = []
    with shared.changed:
        while len(records) < firings:
            records += shared.book.take_unsent()
            if len(records) < firings:
                shared.changed.wait(0.01)
    acks = api_pb2.ServerMessage()
    for r in records:
        acks.acks.acks.append(api_pb2.CompletionAck(run_id=r.run_id, fence=r.fence, code=CODE_OK))
    stream.on_message(sess, acks)
    cpu = time.process_time() - c0
    runner.shutdown()
    deadline = time.monotonic() + 30
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)  # the pool's threads end once they take their stop
    return cpu / firings * 1e6, lags


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--firings", type=int, default=20_000)
    p.add_argument("--per-message", type=int, default=100)
    p.add_argument("--held", type=int, default=0)
    p.add_argument("--unacked", type=int, default=0, help="completions awaiting their ack")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING"])
    p.add_argument(
        "--gc-threshold",
        type=int,
        default=0,
        help="set the young garbage collection threshold and freeze what exists first, as "
        "`schedd run` does for itself (0: Python's defaults)",
    )
    p.add_argument(
        "--start-in",
        type=int,
        default=0,
        help="ms: every firing of a round starts at one instant this far ahead (see above)",
    )
    args = p.parse_args()
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
        gc.collect()
        gc.freeze()
    logger = logging.getLogger("bench.agent_hotpath")
    logger.propagate = False
    logger.setLevel(args.log_level)
    handler = logging.StreamHandler(io.StringIO())  # formats every record, keeps it in memory
    handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s %(message)s"))
    logger.addHandler(handler)
    if args.start_in:
        timed = [
            one_instant(args.firings, args.per_message, args.concurrency, logger, args.start_in)
            for _ in range(args.repeat)
        ]
        lags = sorted(lag for _, round_lags in timed for lag in round_lags)
        print(
            f"agent, one start instant {args.start_in} ms ahead: "
            f"{statistics.median(c for c, _ in timed):.1f} µs CPU per firing (median of "
            f"{args.repeat}); start lag p50 {lags[len(lags) // 2]:.1f} ms, p99 "
            f"{lags[int(len(lags) * 0.99)]:.1f} ms, max {lags[-1]:.1f} ms ({args.firings} "
            f"firings, {args.per_message} per message, concurrency {args.concurrency})"
        )
        return
    rounds = [
        one_round(args.firings, args.per_message, args.held, args.concurrency, logger, args.unacked)
        for _ in range(args.repeat)
    ]
    cpu = statistics.median(r[0] for r in rounds)
    rate = statistics.median(r[1] for r in rounds)
    print(
        f"agent hot path: {cpu:.1f} µs CPU per firing, {rate:,.0f} firings/s "
        f"(median of {args.repeat}; {args.firings} firings, {args.per_message} per message, "
        f"{args.held} other leases held, {args.unacked} completions awaiting their ack, log level {args.log_level}, "
        f"gc thresholds {'/'.join(map(str, gc.get_threshold()))})"
    )


if __name__ == "__main__":
    main()
