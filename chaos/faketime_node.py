"""``python -m chaos.faketime_node run ...``: ``schedd`` for a node running under libfaketime.

Only ``time.sleep`` is replaced (libfaketime 0.9.10 + Python 3.11 bug, see ``chaos/faketime.py``);
then it is exactly ``python -m schedd``.
"""

from __future__ import annotations

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep

if __name__ == "__main__":
    from schedd.server.cmd import main

    main(prog_name="schedd")
