"""Apply's cost per firing in CPU instructions, counted by valgrind: steady on a noisy box.

Wall-clock and CPU-time figures of apply move by 1.3-1.7x from one minute to the next on a
shared machine, more than most changes to apply. The number of instructions executed does not
(it moves by well under 1% between runs), so two trees compare in one run each.

The workload is ``bench/apply_cost.py``'s: ``--jobs`` one-shot jobs due at one instant, one
worker with ``--slots`` free slots, the leader's own planner. The log it commits is recorded
with the tree under test (its planner writes the entries), then replayed into a fresh LMDB
store under ``valgrind --tool=callgrind`` twice: up to the first dispatcher tick, and to the
end. The difference, divided by the firings, is what every replica executes per firing to apply
the ticks (FireDue, grants, completions; the LMDB commits included).

    python bench/apply_instructions.py                       # this tree
    python bench/apply_instructions.py --tree ../old-tree    # and another tree, same workload
    python bench/apply_instructions.py --level 5 --level 6   # this tree at two feature levels
    python bench/apply_instructions.py --bulk                # CreateJobs batches, per job

Needs valgrind (``apt-get install valgrind``). Takes about a minute per tree.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

RECORD = """
import pickle, sys
import schedd
assert schedd.__file__.startswith({tree!r}), schedd.__file__
sys.path.insert(0, {bench!r})
import apply_cost
from schedd.state.store import Store
log = []
real = Store.apply_entry
def recording(self, data, index):
    log.append((index, data))
    return real(self, data, index)
Store.apply_entry = recording
apply_cost.one_round({jobs}, {slots}, level={level})
pickle.dump(log, open({out!r}, "wb"))
"""

RECORD_BULK = """
import hashlib, pickle
import schedd
assert schedd.__file__.startswith({tree!r}), schedd.__file__
from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.server import validate
from schedd.state.apply import encode, features
T0 = 1_800_000_000_000
level = features.SUPPORTED if {level!r} is None else {level!r}
log = [(1, encode(command_pb2.Command(
    now_ms=T0, set_feature_level=command_pb2.SetFeatureLevelCmd(level=level))))]
cron = types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron="*/5 * * * *")
for b in range({jobs} // 1000):
    req = api_pb2.CreateJobsRequest(jobs=[
        api_pb2.CreateJobRequest(name=f"j{{b:04d}}-{{i:04d}}", request_id=f"r{{b}}-{{i}}", schedule=cron)
        for i in range(1000)
    ])
    cmds = validate.create_jobs(req, T0)
    for item, cmd in cmds:  # stamped as the service stamps them
        cmd.principal = "bench"
        cmd.request_hash = hashlib.sha256(item.SerializeToString(deterministic=True)).digest()
    batch = command_pb2.Batch(commands=[cmd for _, cmd in cmds])
    log.append((b + 2, encode(command_pb2.Command(now_ms=T0, batch=batch))))
pickle.dump(log, open({out!r}, "wb"))
"""

REPLAY = """
import pickle, shutil, sys, tempfile
from schedd.pb import command_pb2
from schedd.state.store import Store
log = pickle.load(open({log!r}, "rb"))
full = sys.argv[1] == "full"
root = tempfile.mkdtemp()
store = Store(root)
for index, data in log:
    if not full and command_pb2.Command.FromString(data).WhichOneof("body") == "batch":
        break
    store.apply_entry(data, index)
store.close()
shutil.rmtree(root)
"""


def _instructions(python: str, env: dict[str, str], script: str, mode: str) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-c", script]
        + [mode],
        env=env,
        cwd=env["SCHEDD_BENCH_WORK"],  # not a source tree: `python -c` imports from its cwd
        capture_output=True,
        text=True,
        check=True,
    )
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{out.stderr[-2000:]}")
    return int(m.group(1))


def measure(
    tree: Path, jobs: int, slots: int, work: Path, level: int | None = None, bulk: bool = False
) -> float | None:
    """Instructions per firing to apply the ticks, with ``tree``'s schedd at feature ``level``
    (None: the highest that tree supports); None when the tree could not run it."""
    env = dict(os.environ, PYTHONPATH=str(tree), SCHEDD_BENCH_WORK=str(work))
    # The interpreter itself: valgrind would count a launcher script (pyenv shims are shell)
    python = os.path.realpath(sys.executable)
    log = work / f"log-{abs(hash((str(tree), level)))}.pkl"
    record = (RECORD_BULK if bulk else RECORD).format(
        tree=str(tree), bench=str(HERE), jobs=jobs, slots=slots, level=level, out=str(log)
    )
    done = subprocess.run([python, "-c", record], env=env, cwd=work, capture_output=True)
    if done.returncode != 0:  # (70: the store stopped at a level that tree does not support)
        return None
    replay = REPLAY.format(log=str(log))
    setup = _instructions(python, env, replay, "setup")
    full = _instructions(python, env, replay, "full")
    # (bulk: the first batch is not in "setup": every job of the log is counted)
    return (full - setup) / jobs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--slots", type=int, default=512)
    p.add_argument("--tree", action="append", default=[], help="another source tree to measure")
    p.add_argument(
        "--level",
        type=int,
        action="append",
        default=[],
        help="feature levels to measure each tree at (default: the highest it supports)",
    )
    p.add_argument(
        "--bulk",
        action="store_true",
        help="apply CreateJobs batches of 1,000 jobs (per job) instead of dispatcher ticks",
    )
    a = p.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    trees = [HERE.parent, *(Path(t).resolve() for t in a.tree)]
    levels: list[int | None] = list(a.level) or [None]
    with tempfile.TemporaryDirectory(prefix="schedd-apply-ir-") as work:
        results = [
            (t, lvl, measure(t, a.jobs, a.slots, Path(work), lvl, a.bulk))
            for t in trees
            for lvl in levels
        ]
    base = next((ir for _, _, ir in results if ir is not None), 1.0)
    for tree, lvl, ir in results:
        at = "its highest feature level" if lvl is None else f"feature level {lvl}"
        if ir is None:
            print(f"{tree} at {at}: failed (a level that tree does not support?)")
            continue
        what = "job to apply bulk creates" if a.bulk else "firing to apply the ticks"
        shape = "batches of 1,000" if a.bulk else f"{a.slots} slots"
        print(
            f"{tree} at {at}: {ir:,.0f} instructions per {what} "
            f"({ir / base:.2f}x the first); {a.jobs} jobs, {shape}"
        )


if __name__ == "__main__":
    main()
