"""A chaos worker built on the embedded agent (``schedd.agent.Worker``):
``python -m chaos.worker --id a1 --endpoints H:P,... --queues default,agent --concurrency 4``.

Every firing runs ``chaos.effect.handle`` (fenced sink write, injected failures and hangs, armed
pause/kill); see that module for the environment it needs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from chaos import effect
from schedd.agent import Context, HandlerFailure, Worker


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.worker")
    p.add_argument("--id", required=True)
    p.add_argument("--endpoints", required=True)
    p.add_argument("--queues", default="default")
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    worker = Worker(
        args.endpoints,
        queues=args.queues.split(","),
        concurrency=args.concurrency,
        worker_id=args.id,
    )

    @worker.default_handler
    def run(ctx: Context) -> None:
        try:
            effect.handle(
                run_id=ctx.run_id,
                job=ctx.job,
                fence=ctx.fence,
                attempt=ctx.attempt,
                scheduled_ms=ctx.scheduled_ms,
                worker=args.id,
                worker_pid=os.getpid(),
                payload=ctx.payload,
                cancelled=ctx.cancelled,
            )
        except effect.InjectedFailure as e:
            raise HandlerFailure(str(e)) from None

    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
