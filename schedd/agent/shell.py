"""The shell-command worker behind ``schedctl worker run -- CMD ARGS...``.

For each firing it runs ``argv`` as a child process (no shell) with the parent's environment plus:

==========================  ==================================================================
``SCHEDD_JOB``              job name
``SCHEDD_RUN_ID``           run id (job + scheduled time; stable across attempts)
``SCHEDD_SCHEDULED_AT``     scheduled time, RFC 3339 UTC (``2026-01-02T03:04:05Z``)
``SCHEDD_ATTEMPT``          1 for the first delivery
``SCHEDD_FENCE``            fencing token: strictly increases across attempts; pass it to sinks
``SCHEDD_PAYLOAD``          the job's payload (JSON text, may be empty)
``SCHEDD_QUEUE``            the queue it came from
``SCHEDD_WORKER_ID``        this worker's id
==========================  ==================================================================

Exit code 0 is success; anything else is a failure reported as ``exit code N`` (plus the end
of what the child wrote to stderr, its last 2 KiB at most), with N sent as the completion's ``exit_code`` (which a job's
retry policy can list as non-retryable). A child killed by a signal reports no exit code; its
error text names the signal. The child's stdout and stderr pass through to ours. If the
lease is lost or the worker is stopping past its drain timeout, the child's process group gets
SIGTERM, then SIGKILL 5 s later; on a drain timeout the lease is also released, so the run is
dispatched again at once without using up an attempt (see docs/agent.md). Each child runs in its own session (process group), so a Ctrl-C
in the terminal reaches the worker, which drains, rather than killing every running child.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from schedd.agent import Context, HandlerFailure, Worker
from schedd.agent.core import MAX_ERROR_CHARS, kv
from schedd.sched.schedule import format_ms
from schedd.sdk.credentials import Credentials

__all__ = [
    "KILL_AFTER_S",
    "CommandFailed",
    "child_env",
    "command_problem",
    "describe_exit",
    "run_shell_worker",
    "shell_handler",
]

#: Seconds between SIGTERM and SIGKILL when a running child must stop.
KILL_AFTER_S = 5.0
_POLL_S = 0.05
#: Bytes of the end of a child's stderr kept for a failed run's error: the last lines are where
#: a command says why it failed; the whole stream still passes through to the worker's stderr.
STDERR_TAIL_BYTES = 2048


class CommandFailed(HandlerFailure):
    """The child exited non-zero; ``str()`` is the error text recorded on the run."""


def child_env(ctx: Context, base: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: ``base`` plus the ``SCHEDD_*`` variables for this firing."""
    env = dict(base)
    env.update(
        {
            "SCHEDD_JOB": ctx.job,
            "SCHEDD_RUN_ID": ctx.run_id,
            "SCHEDD_SCHEDULED_AT": format_ms(ctx.scheduled_ms),
            "SCHEDD_ATTEMPT": str(ctx.attempt),
            "SCHEDD_FENCE": str(ctx.fence),
            "SCHEDD_PAYLOAD": ctx.payload,
            "SCHEDD_QUEUE": ctx.queue,
            "SCHEDD_WORKER_ID": ctx.worker_id,
        }
    )
    return env


def describe_exit(returncode: int, stderr_tail: str = "") -> str:
    """``exit code N`` (a negative N is a signal, named), plus ``: <stderr tail>``: the end of
    what the child wrote to stderr, cut at the front so that the whole text fits in a run's
    error (``MAX_ERROR_CHARS``) with its last line intact."""
    text = f"exit code {returncode}"
    if returncode < 0:
        try:
            text += f" ({signal.Signals(-returncode).name})"
        except ValueError:
            pass
    tail = stderr_tail.strip()
    if tail:
        room = MAX_ERROR_CHARS - len(text) - 2
        if len(tail) > room:
            tail = "..." + tail[-(room - 3) :]
        text += f": {tail}"
    return text


def command_problem(argv0: str, path: str) -> str:
    """Why ``argv0`` cannot be started as a command ("" when it can): a name without a slash is
    looked up in ``path`` (the PATH a child gets), a path must be an executable file."""
    if os.sep in argv0:
        if not os.path.exists(argv0):
            return f"command {argv0!r} does not exist"
        if os.path.isdir(argv0) or not os.access(argv0, os.X_OK):
            return f"command {argv0!r} is not an executable file"
        return ""
    if shutil.which(argv0, path=path) is None:
        return f"command {argv0!r} not found in PATH={path}"
    return ""


def _tee(src: IO[bytes], dst: IO[bytes], tail: bytearray) -> None:
    """Copy the child's stderr to ours line by line, keeping its last ``STDERR_TAIL_BYTES``."""
    try:
        for raw in iter(src.readline, b""):
            try:
                dst.write(raw)
                dst.flush()
            except (OSError, ValueError):
                pass
            tail += raw
            del tail[:-STDERR_TAIL_BYTES]
    finally:
        src.close()


def _stderr_sink() -> IO[bytes]:
    buf = getattr(sys.stderr, "buffer", None)
    if buf is not None:
        return buf
    return open(os.devnull, "wb")  # noqa: SIM115 - only when stderr is not a real stream


def shell_handler(
    argv: Sequence[str], log: logging.Logger | None = None
) -> Callable[[Context], None]:
    """A handler that runs ``argv`` per firing. Failure contract: raises ``CommandFailed`` on a
    non-zero exit (with the end of the child's stderr) or when the command cannot be started
    (one line naming it: no traceback for what is the command's fault, not the worker's);
    never leaves a child behind unless it survives SIGKILL."""
    argv = list(argv)
    log = log or logging.getLogger("schedd.shellworker")

    def handle(ctx: Context) -> None:
        tail = bytearray()
        try:
            proc = subprocess.Popen(
                argv,
                env=child_env(ctx, os.environ),
                stdin=subprocess.DEVNULL,
                stdout=None,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:  # checked at start, but it may have gone since
            raise CommandFailed(f"cannot start {shlex.join(argv)}: {exc.strerror or exc}") from None
        assert proc.stderr is not None
        tee = threading.Thread(
            target=_tee,
            args=(proc.stderr, _stderr_sink(), tail),
            name=f"schedd-stderr-{proc.pid}",
            daemon=True,
        )
        tee.start()
        term_at: float | None = None
        killed = False
        while True:
            try:
                rc = proc.wait(timeout=_POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if ctx.cancelled.is_set() and term_at is None:
                term_at = time.monotonic()
                log.warning(
                    kv("child_terminate", run_id=ctx.run_id, pid=proc.pid, signal="SIGTERM")
                )
                _signal_group(proc, signal.SIGTERM)
            elif term_at is not None and not killed and time.monotonic() - term_at >= KILL_AFTER_S:
                killed = True
                log.warning(kv("child_kill", run_id=ctx.run_id, pid=proc.pid, signal="SIGKILL"))
                _signal_group(proc, signal.SIGKILL)
        tee.join(timeout=1.0)  # a grandchild may hold stderr open; do not wait for it
        if rc != 0:
            text = describe_exit(rc, tail.decode("utf-8", "replace"))
            raise CommandFailed(text, exit_code=rc if rc > 0 else None)

    return handle


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # the child leads its own session: reach its children too
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def run_shell_worker(
    endpoints: list[str],
    queues: list[str],
    concurrency: int,
    argv: list[str],
    worker_id: str | None = None,
    *,
    tags: dict[str, str] | None = None,
    drain_timeout: float = 10.0,
    credentials: Credentials | None = None,
    namespace: str | None = None,
) -> int:
    """Run the shell worker until SIGINT/SIGTERM (or ``stop`` from elsewhere).

    Returns 0 after a clean stop, 2 with a one-line error on stderr for bad arguments (empty
    ``argv``, a command that cannot be started: not in PATH, missing or not executable; no
    endpoints, concurrency < 1, bad ``tags`` or ``drain_timeout``). ``tags``: what
    this worker offers (jobs with tags go only to workers carrying them); ``drain_timeout``:
    seconds running commands get to finish on SIGTERM before their leases are released;
    ``credentials``: as for :class:`schedd.agent.Worker` (default: the ``SCHEDD_*`` variables).
    Configures logging to stderr at INFO (or ``SCHEDD_LOG_LEVEL``) when the process has no
    logging set up yet.
    """
    if not argv:
        print(
            "error: no command given; usage: schedctl worker run [--queue Q] -- CMD [ARGS...]",
            file=sys.stderr,
        )
        return 2
    # Checked once here rather than failing every firing: a typo is found before connecting.
    problem = command_problem(argv[0], os.environ.get("PATH", os.defpath))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        worker = Worker(
            endpoints,
            queues=queues or ["default"],
            concurrency=concurrency,
            worker_id=worker_id,
            logger=logging.getLogger("schedd.agent"),
            tags=tags,
            drain_timeout=drain_timeout,
            credentials=credentials,
            namespace=namespace,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        level = os.environ.get("SCHEDD_LOG_LEVEL", "INFO").upper()
        logging.basicConfig(
            level=getattr(logging, level, logging.INFO),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
    worker.default_handler(shell_handler(argv))
    shown_tags = ",".join(f"{k}={v}" for k, v in sorted(worker.tags.items()))
    print(
        f"schedd worker {worker.worker_id}: namespace={worker.namespace} "
        f"queues={','.join(worker.queues)} "
        + (f"tags={shown_tags} " if shown_tags else "")
        + f"concurrency={worker.concurrency} endpoints={','.join(worker.endpoints)} "
        f"command={shlex.join(argv)}",
        flush=True,
    )
    worker.run()
    return 0
