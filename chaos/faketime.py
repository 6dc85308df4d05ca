"""libfaketime for one node: find the library, check that it works here, build the node's env.

A node started with :func:`node_env` has ``LD_PRELOAD=libfaketime.so.1`` and reads its wall-clock
offset from a per-node *timestamp file* (``+0``, ``+60s``, ``-60s``; re-read at most once a
second, ``FAKETIME_CACHE_DURATION=1``), so the harness can step that one process's clock forward
or backward while it runs: an NTP step, not a restart. ``FAKETIME_DONT_FAKE_MONOTONIC=1`` keeps
CLOCK_MONOTONIC (and _RAW) real: schedd's lease expiry and pysyncobj's timers and message
timestamps all follow the monotonic clock, and that is one of the things under test.

libfaketime 0.9.10 (Debian 12) breaks ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` when
monotonic time is not faked (upstream issue #426): Python 3.11's ``time.sleep`` then fails with
EINVAL. Such a node therefore runs through ``python -m chaos.faketime_node``, which replaces
``time.sleep`` with a monotonic ``select`` loop before importing schedd. Nothing else is changed
(Event/Lock/Condition waits, select, epoll and socket timeouts were checked to work).

Install: ``apt-get install -y faketime`` (root). Without it the clock scenario is skipped.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

CANDIDATES = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
]
INSTALL_HINT = "install it with `apt-get install -y faketime` (Debian package, needs root)"

_checked: tuple[str | None, str] | None = None


def library() -> str | None:
    env = os.environ.get("CHAOS_LIBFAKETIME")
    if env:
        return env if os.path.exists(env) else None
    for path in CANDIDATES + sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")):
        if os.path.exists(path):
            return path
    return None


def check() -> tuple[str | None, str]:
    """(library path, "") when libfaketime works here as the scenario needs, else (None, why)."""
    global _checked
    if _checked is not None:
        return _checked
    lib = library()
    if lib is None:
        _checked = (None, f"libfaketime not found; {INSTALL_HINT}")
        return _checked
    probe = (
        "import time, select; m0 = time.monotonic(); w0 = time.time(); "
        "select.select([], [], [], 0.05); print(w0, m0)"
    )
    env = dict(os.environ, LD_PRELOAD=lib, FAKETIME="+3600s", FAKETIME_DONT_FAKE_MONOTONIC="1")
    try:
        out = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=20
        )
        import time

        wall, mono = (float(x) for x in out.stdout.split())
        now, mnow = time.time(), time.monotonic()
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        _checked = (None, f"libfaketime at {lib} does not work here: {e}")
        return _checked
    if not 3500 < wall - now < 3700:
        _checked = (
            None,
            f"libfaketime at {lib} did not shift the wall clock (offset {wall - now:.1f}s)",
        )
    elif abs(mono - mnow) > 60:
        _checked = (
            None,
            f"libfaketime at {lib} shifted the monotonic clock; the scenario needs it real",
        )
    else:
        _checked = (lib, "")
    return _checked


def write_offset(path: str, seconds: float) -> None:
    """Set the wall-clock offset of the process(es) reading ``path`` (atomic replace)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{seconds:+g}s\n" if seconds else "+0\n")
    os.replace(tmp, path)


def node_env(lib: str, timestamp_file: str) -> dict[str, str]:
    return {
        "LD_PRELOAD": lib,
        "FAKETIME_TIMESTAMP_FILE": timestamp_file,
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
