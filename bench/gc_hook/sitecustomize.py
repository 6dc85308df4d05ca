"""Counts and times every garbage collection of each Python process that starts with this
directory on its PYTHONPATH, when ``SCHEDD_GC_STATS`` names a file: at exit, each process
appends one JSON line (pid, argv, collections per generation, their wall and CPU seconds, the
process's CPU seconds, the thresholds). For any tree's nodes, old ones included:

    PYTHONPATH=$PWD/bench/gc_hook SCHEDD_GC_STATS=/tmp/gc.jsonl \\
        python bench/sustained.py --jobs 3000 --seconds 20 --server-path <tree>

(``--server-path`` is put before this directory on the nodes' PYTHONPATH.) The hook costs two
clock reads per collection.
"""

import atexit
import gc
import json
import os
import sys
import time

_path = os.environ.get("SCHEDD_GC_STATS")
if _path:
    _stats = {0: [0, 0.0, 0.0], 1: [0, 0.0, 0.0], 2: [0, 0.0, 0.0]}
    _t = [0.0, 0.0]

    def _on_gc(phase, info):
        if phase == "start":
            _t[0], _t[1] = time.perf_counter(), time.thread_time()
        else:
            s = _stats[info["generation"]]
            s[0] += 1
            s[1] += time.perf_counter() - _t[0]
            s[2] += time.thread_time() - _t[1]

    def _dump():
        line = {
            "pid": os.getpid(),
            "argv": sys.argv[:6],
            "collections": {g: n for g, (n, _, _) in _stats.items()},
            # wall time (what other threads waited) and the collecting thread's CPU time
            "seconds": {g: round(s, 4) for g, (_, s, _) in _stats.items()},
            "cpu_seconds": {g: round(c, 4) for g, (_, _, c) in _stats.items()},
            "cpu_s": round(time.process_time(), 3),
            "thresholds": gc.get_threshold(),
        }
        with open(_path, "a") as f:
            f.write(json.dumps(line) + "\n")

    gc.callbacks.append(_on_gc)
    atexit.register(_dump)
