"""``python -m chaos``: run fault scenarios against a real schedd cluster and check the history.

    python -m chaos list
    python -m chaos run leader-kill [--seed N] [--duration S] [--nodes 3|5]
    python -m chaos all [--smoke] [--seed N] [--duration S] [--nodes 3|5]
    python -m chaos check chaos/out/<run dir>

Exit status 0 when every scenario passed (a negative control passes when the checker finds the
duplicates it must find), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from chaos import checker, scenarios


def _print_outcome(o: scenarios.Outcome, nodes: int, verbose: bool) -> None:
    print(scenarios.table([scenarios.row(o, nodes)]))
    if o.skipped:
        print(f"  SKIPPED: {o.skipped}")
        sys.stdout.flush()
        return
    r = o.report
    print(f"  {o.seconds:.0f}s, history: {r.out}/history.jsonl")
    shown = r.violations if verbose else r.violations[:10]
    for v in shown:
        expected = o.scenario.control or (
            o.scenario.demonstrates and v.startswith(o.scenario.demonstrates)
        )
        print(f"  {'expected (demonstration): ' if expected else 'VIOLATION: '}{v}")
    if len(r.violations) > len(shown):
        print(f"  ... {len(r.violations) - len(shown)} more in {r.out}/report.json")
    for n in r.notes:
        print(f"  note: {n}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the scenarios")
    for name in ("run", "all"):
        sp = sub.add_parser(name)
        if name == "run":
            sp.add_argument("scenario", choices=sorted(scenarios.SCENARIOS))
        else:
            sp.add_argument("--smoke", action="store_true", help="only the CI smoke set")
        sp.add_argument("--seed", type=int, default=1)
        sp.add_argument(
            "--duration", type=float, default=30.0, help="seconds of faults per scenario"
        )
        sp.add_argument("--nodes", type=int, default=3, choices=(3, 5))
        sp.add_argument("-v", "--verbose", action="store_true")
    cp = sub.add_parser("check", help="re-run the checker on a run directory")
    cp.add_argument("dir")
    args = p.parse_args(argv)

    if args.cmd == "list":
        for s in scenarios.SCENARIOS.values():
            print(f"{s.name:28} {'smoke' if s.smoke else '     '}  {s.desc}")
        return 0
    if args.cmd == "check":
        rep = checker.check(args.dir)
        for v in rep.violations:
            print(f"VIOLATION: {v}")
        print(
            f"expected={rep.expected} delivered={rep.delivered} effective={rep.effective} "
            f"dups={rep.duplicates} lost={rep.lost} fenced={rep.fenced} failover={rep.failover}"
        )
        return 0 if rep.ok else 1
    names = (
        [args.scenario]
        if args.cmd == "run"
        else [s.name for s in (scenarios.SMOKE if args.smoke else scenarios.SCENARIOS.values())]
    )
    rows, ok = [], True
    for name in names:
        print(
            f"== {name} (seed {args.seed}, {args.duration:g}s of faults, {args.nodes} nodes)",
            flush=True,
        )
        o = scenarios.run(name, seed=args.seed, duration=args.duration, nodes=args.nodes)
        _print_outcome(o, args.nodes, args.verbose)
        rows.append(scenarios.row(o, args.nodes))
        ok = ok and o.passed
    if len(rows) > 1:
        print("\n" + scenarios.table(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
