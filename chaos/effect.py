"""What a chaos handler does for one firing; shared by the embedded agent (``chaos.worker``) and
the shell worker (``python -m chaos.effect`` as its command, reading ``SCHEDD_*``).

Per attempt: record ``handler start``; maybe fail before the effect (``fail_p`` in the job's
payload, first attempt only, so every firing eventually succeeds); maybe hang (``hang_p``,
``hang_s``: an agent handler waits on ``ctx.cancelled`` and gives up without an effect when its
lease is lost); write the effect to the fencing sink with the attempt's fence; record
``handler end``.

The harness arms one-shot behaviours with files in ``$CHAOS_CTL``:

* ``pause-<job>``: the next attempt of ``<job>`` claims it, publishes its worker's pid in
  ``pause-<job>.claimed`` and waits (bounded) for ``go-pause-<job>``; meanwhile the harness
  SIGSTOPs the worker past its lease. On resuming it writes its effect with its old fence and
  without looking at ``ctx.cancelled``, as a GC-paused process would: the sink must reject it.
* ``kill-<job>``: the next attempt writes its effect, then SIGKILLs its own worker process
  (the agent, or the shell worker that spawned this command) before the completion is sent.

Environment: ``CHAOS_SINK`` (SQLite path), ``CHAOS_HISTORY`` (JSONL), ``CHAOS_CTL`` (directory),
``CHAOS_SEED``, ``CHAOS_FENCING`` (``off`` for the negative control).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
import zlib
from typing import Any

from chaos.history import History
from chaos.sink import Sink

GO_WAIT_S = 60.0


class InjectedFailure(Exception):
    pass


def _rng(run_id: str, attempt: int) -> random.Random:
    seed = os.environ.get("CHAOS_SEED", "0")
    return random.Random(zlib.crc32(f"{seed}/{run_id}/{attempt}".encode()))


def _claim(ctl: str, name: str, info: dict[str, Any]) -> bool:
    """Take the one-shot arm file ``name`` (atomic rename); publish ``info`` if we got it."""
    if not ctl:
        return False
    try:
        os.rename(os.path.join(ctl, name), os.path.join(ctl, name + ".taken"))
    except FileNotFoundError:
        return False
    tmp = os.path.join(ctl, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.rename(tmp, os.path.join(ctl, name + ".claimed"))
    return True


def _wait_file(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


def handle(
    *,
    run_id: str,
    job: str,
    fence: int,
    attempt: int,
    scheduled_ms: int,
    worker: str,
    worker_pid: int,
    payload: str,
    cancelled: threading.Event | None,
) -> None:
    hist_path = os.environ.get("CHAOS_HISTORY", "")
    hist = History(hist_path, f"worker:{worker}") if hist_path else None
    base = dict(
        run_id=run_id,
        job=job,
        fence=fence,
        attempt=attempt,
        scheduled_ms=scheduled_ms,
        worker=worker,
        pid=os.getpid(),
        worker_pid=worker_pid,
    )
    if hist:
        hist.write("handler", "start", **base)
    ok, error = False, ""
    try:
        _body(base, payload, cancelled, hist)
        ok = True
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        raise
    finally:
        if hist:
            hist.write(
                "handler",
                "end",
                ok=ok,
                error=error,
                cancelled=bool(cancelled is not None and cancelled.is_set())
                or _TERMINATED.is_set(),
                **base,
            )
            hist.close()


def _body(
    base: dict[str, Any], payload: str, cancelled: threading.Event | None, hist: History | None
) -> None:
    ctl = os.environ.get("CHAOS_CTL", "")
    job, run_id, fence = base["job"], base["run_id"], base["fence"]
    try:
        b = json.loads(payload) if payload else {}
    except ValueError:
        b = {}
    sink = Sink(os.environ["CHAOS_SINK"], history=History(hist.path, "sink") if hist else None)
    try:
        if _claim(ctl, f"pause-{job}", base):
            if hist:
                hist.write("armed", "info", what="pause", **base)
            _wait_file(os.path.join(ctl, f"go-pause-{job}"), GO_WAIT_S)
            sink.write(
                run_id, fence, base["worker"]
            )  # a paused process does not know it was paused
            return
        r = _rng(run_id, base["attempt"])
        if base["attempt"] == 1 and r.random() < float(b.get("fail_p", 0)):
            raise InjectedFailure("injected failure before the effect")
        if r.random() < float(b.get("hang_p", 0)):
            hang = float(b.get("hang_s", 2.0))
            if cancelled is not None:
                if cancelled.wait(hang):
                    raise InjectedFailure("lease lost while hanging; no effect written")
            else:
                time.sleep(hang)
        if cancelled is not None and cancelled.is_set():
            raise InjectedFailure("lease lost before the effect; no effect written")
        kill = _claim(ctl, f"kill-{job}", base)
        sink.write(run_id, fence, base["worker"])
        if kill:
            if hist:
                hist.write("armed", "info", what="kill_after_effect", **base)
            os.kill(base["worker_pid"], signal.SIGKILL)
            time.sleep(30)  # the shell worker's child outlives its parent; do nothing more
            raise InjectedFailure("worker was killed")
    finally:
        sink.close()


_TERMINATED = threading.Event()


def _on_term(signum: int, frame: object) -> None:
    _TERMINATED.set()
    raise SystemExit(1)


def shell_main() -> int:
    """Entry point for the shell worker's command (``python -m chaos.effect``)."""
    signal.signal(signal.SIGTERM, _on_term)
    env = os.environ
    run_id = env["SCHEDD_RUN_ID"]
    try:
        handle(
            run_id=run_id,
            job=env["SCHEDD_JOB"],
            fence=int(env["SCHEDD_FENCE"]),
            attempt=int(env["SCHEDD_ATTEMPT"]),
            scheduled_ms=int(run_id.rsplit(":", 1)[1].rstrip("m")),
            worker=env.get("SCHEDD_WORKER_ID", "shell"),
            worker_pid=os.getppid(),
            payload=env.get("SCHEDD_PAYLOAD", ""),
            cancelled=None,
        )
    except InjectedFailure as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(shell_main())
