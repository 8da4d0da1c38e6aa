"""Profile one dagexec run of a benchmark shape with cProfile, sorted by own time.

    python benchmarks/profile_run.py --shape wide --n 10000 [--kind async] [--mode off]
        [--top 25] [--all] [--out FILE.prof]

By default only functions inside dagexec (``dagexec_core``, ``dagexec_plugins``)
are listed, then the top entries overall; ``--all`` lists every function.
cProfile roughly doubles the cost of each Python call, so read the shares,
not the absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shapes  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="wide", choices=shapes.SHAPES)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--kind", default="async", choices=("async", "sync"))
    p.add_argument("--mode", default="off", choices=("off", "normal", "durable"))
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--all", action="store_true", help="list every function, not only dagexec's")
    p.add_argument("--out", default=None, help="also dump the raw profile here (for snakeviz, pstats)")
    args = p.parse_args(argv)

    os.environ.setdefault("DAGEXEC_DISABLE_PLUGIN_AUTOLOAD", "1")
    from dagexec_core import Dag, run

    root, body = shapes.bodies(args.kind)
    dag = Dag(f"profile-{args.shape}")
    for name, deps in shapes.build(args.shape, args.n).items():
        dag.add(name, body if deps else root, deps=deps)
    options: dict[str, object] = {"concurrency": args.concurrency, "signals": False}
    with tempfile.TemporaryDirectory() as d:
        if args.mode == "off":
            options["persist"] = False
        else:
            options.update(state=os.path.join(d, "state.db"), durability=args.mode)
        prof = cProfile.Profile()
        prof.enable()
        report = run(dag, **options)  # type: ignore[arg-type]
        prof.disable()
    assert report.ok, report
    if args.out:
        prof.dump_stats(args.out)
    stats = pstats.Stats(prof, stream=io.StringIO())
    total = stats.total_tt  # type: ignore[attr-defined]
    print(
        f"{args.shape} N={args.n} {args.kind} mode={args.mode}: {total:.3f}s under cProfile, "
        f"{total / args.n * 1e6:.1f} us/task"
    )
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        inside = "dagexec_core" in file or "dagexec_plugins" in file
        rows.append((tt, ct, nc, inside, f"{Path(file).name}:{line}({func})"))
    rows.sort(reverse=True)
    print(f"\n{'tottime':>8} {'%':>5} {'us/task':>8} {'cumtime':>8} {'ncalls':>8}  function")
    shown = [r for r in rows if r[3] or args.all][: args.top]
    for tt, ct, nc, _inside, where in shown:
        print(f"{tt:8.3f} {tt / total * 100:5.1f} {tt / args.n * 1e6:8.2f} {ct:8.3f} {nc:8d}  {where}")
    if not args.all:
        print(f"\ntop {args.top // 2} overall (inside and outside dagexec):")
        for tt, ct, nc, _inside, where in rows[: args.top // 2]:
            print(f"{tt:8.3f} {tt / total * 100:5.1f} {tt / args.n * 1e6:8.2f} {ct:8.3f} {nc:8d}  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
