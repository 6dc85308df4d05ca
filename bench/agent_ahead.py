"""The worker agent under a steady stream of firings committed ahead, in process: no cluster.

What a leader with ``--fire-ahead`` sends a worker whose jobs are all due on whole seconds:
every second, ``--jobs`` firings for the next whole second, in ``--messages`` messages spread
over the first half of the ``--ahead`` ms before it, each with ``start_at_ms`` on that second.
A real :class:`~schedd.agent.stream.Stream` and :class:`~schedd.agent.runner.Runner` (its own
pool of ``--concurrency`` threads) run a handler that records its start under a lock (as
bench/sustained.py's does); a thread acknowledges completions as the leader would. Prints the
handlers run, the CPU per firing of the whole process, and the start lag (handler start minus
``start_at_ms``) p50 / p99 / max over every firing of ``--seconds`` seconds.

    python bench/agent_ahead.py                                   # 3,000/s, 1 s ahead, 5,000 slots
    python bench/agent_ahead.py --jobs 500 --ahead 100 --concurrency 512
    python bench/agent_ahead.py --async-handler                   # the handler is an async def
    PYTHONPATH=<tree> python bench/agent_ahead.py                 # another tree's agent

``bench/sustained.py --concurrency 5000 --node-arg=--fire-ahead=1s`` measures the same with a
cluster; this leaves the nodes out, so two trees' agents compare within a minute.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from agent_rig import attached_agent, firings_message

from schedd.agent.core import Context
from schedd.pb import api_pb2


def run(
    jobs: int,
    ahead_ms: int,
    concurrency: int,
    seconds: int,
    messages: int,
    async_handler: bool = False,
) -> dict:
    log = logging.getLogger("bench.agent_ahead")
    log.setLevel(logging.WARNING)
    lags: list[float] = []
    lock = threading.Lock()

    def record(ctx: Context) -> None:
        with lock:
            lags.append(time.time() * 1000 - ctx.start_at_ms)

    async def record_async(ctx: Context) -> None:
        record(ctx)

    handle = record_async if async_handler else record
    shared, runner, stream, sess = attached_agent(concurrency, log, handle, lease_ttl_ms=60_000)
    stop = threading.Event()

    def acknowledge() -> None:  # the leader's CompletionAcks, once its entry commits
        while not stop.is_set():
            with shared.changed:
                records = shared.book.take_unsent()
                if not records:
                    shared.changed.wait(0.01)
                    continue
            acks = api_pb2.ServerMessage()
            for r in records:
                acks.acks.acks.append(api_pb2.CompletionAck(run_id=r.run_id, fence=r.fence))
            stream.on_message(sess, acks)

    acker = threading.Thread(target=acknowledge, daemon=True)
    acker.start()
    c0 = time.process_time()
    fence = 0
    first = (int(time.time()) + 2) * 1000
    for s in range(seconds):
        at = first + s * 1000
        for m in range(messages):
            send_at = at - ahead_ms + m * (ahead_ms // 2) // messages
            delay = send_at / 1000 - time.time()
            if delay > 0:
                time.sleep(delay)
            part = range(m * jobs // messages, (m + 1) * jobs // messages)
            msg = firings_message(
                part, at, first_fence=fence + 1, start_at_ms=at, lease_ttl_ms=60_000
            )
            fence += len(part)
            stream.on_message(sess, msg)
    deadline = time.monotonic() + 30
    while len(lags) < jobs * seconds and time.monotonic() < deadline:
        time.sleep(0.05)  # the last second's handlers finish
    cpu = time.process_time() - c0
    stop.set()
    acker.join()
    runner.shutdown()
    lags.sort()
    n = len(lags)
    return {
        "ran": n,
        "expected": jobs * seconds,
        "cpu_us_per_firing": round(cpu / max(1, n) * 1e6, 1),
        "lag_ms": {
            "p50": round(lags[n // 2], 1),
            "p99": round(lags[int(n * 0.99)], 1),
            "max": round(lags[-1], 1),
        }
        if n
        else {},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=3000, help="firings due on every whole second")
    p.add_argument("--ahead", type=int, default=1000, help="ms: the leader's --fire-ahead")
    p.add_argument("--concurrency", type=int, default=5000)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--messages", type=int, default=6, help="messages per second's firings")
    p.add_argument(
        "--async-handler", action="store_true", help="the handler is an async def (a task)"
    )
    a = p.parse_args()
    r = run(a.jobs, a.ahead, a.concurrency, a.seconds, a.messages, a.async_handler)
    lag = r["lag_ms"]
    print(
        f"agent, {a.jobs} firings/s committed {a.ahead} ms ahead, concurrency {a.concurrency}"
        f"{', async handler' if a.async_handler else ''}: "
        f"ran {r['ran']}/{r['expected']}, {r['cpu_us_per_firing']} µs CPU per firing, start "
        f"lag p50 {lag.get('p50')} ms, p99 {lag.get('p99')} ms, max {lag.get('max')} ms"
    )


if __name__ == "__main__":
    main()
