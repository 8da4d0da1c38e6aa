"""Where the start of `dagexec resume` goes: its phases, timed in one process.

    python benchmarks/resume_phases.py [--n 100000] [--repeat 3]

Starts the layered DAG of `cold.py` with state in a file and SIGKILLs it
half-way (as `run.py --cold` does), then, in a fresh process per sample,
does what `dagexec resume RUN_ID` does, timing each phase: importing the
engine, the first plugin manager (which imports every built-in plugin),
importing the DAG file (its own graph building, then `dag.add`), then
`run(dag, resume=RUN_ID)` to its first task body, split into
`dag.validate`, the engine's task table (`Run.__init__`), and opening the
stored run (`Run._open_resumed`: the storage's `resume_run`, the DAG's digest
and `plan_resume` in it).
Those inner phases are timed by wrapping the methods of those names; one
that no longer exists is left out. Prints JSON: the best of each phase.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def sample(directory: str, state: str, run_id: str) -> dict[str, float]:
    """One resume, in this (fresh) process."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(owner: Any, name: str, label: str) -> None:
        fn = getattr(owner, name, None)
        if fn is None:
            return

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[label] = timings.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, name, wrapper)

    t = time.perf_counter()
    import dagexec_core.engine as engine
    from dagexec_core import dag as dag_module

    timings["import the engine"] = time.perf_counter() - t
    t = time.perf_counter()
    from dagexec_core.plugins import build_plugin_manager

    build_plugin_manager()
    timings["first plugin manager (imports the built-in plugins)"] = time.perf_counter() - t
    import shapes

    timed(shapes, "build", "  of which: the DAG file's own graph building")
    timed(dag_module.Dag, "validate", "  dag.validate")
    timed(engine.Run, "__init__", "  Run.__init__ (the engine's task table)")
    timed(engine.Run, "_open_resumed", "  Run._open_resumed (with the storage's resume_run)")
    from dagexec_plugins.sqlite.storage import SqliteStorage

    timed(SqliteStorage, "resume_run", "    of which: the storage's resume_run")
    timed(dag_module.Dag, "fingerprint_digest", "    of which: the DAG's digest (Dag.fingerprint_digest)")
    timed(engine, "plan_resume", "    of which: plan_resume")
    from dagexec_core.cli_common import load_dags

    stamp = os.path.join(directory, "first-task")
    os.environ["BENCH_STAMP"] = stamp
    t = time.perf_counter()
    (dag,) = load_dags(Path(directory, "flow_retry.py")).values()
    timings["import the DAG file (graph building and dag.add)"] = time.perf_counter() - t
    from dagexec_core import run

    t_run, wall = time.perf_counter(), time.time()
    report = run(dag, state=state, resume=run_id, signals=False)
    first = float(Path(stamp).read_text())
    assert report.ok, report
    timings["run(dag, resume=RUN_ID) to the first task"] = first - wall
    timings["all of it: these phases, to the first task"] = (t_run - t_start) + (first - wall)
    return timings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--sample", nargs=3, metavar=("DIR", "STATE", "RUN_ID"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sample:
        print(json.dumps(sample(*args.sample)))
        return 0
    import cold

    env = {**os.environ, "BENCH_N": str(args.n), "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        flow, _ = cold.write_files(d, retry=2)
        state = os.path.join(d, "state.db")
        dagexec = str(Path(sys.executable).with_name("dagexec"))
        prep = cold.spawn([dagexec, "run", flow, "--state", state, "-q"], {**env, "BENCH_KILL_AT": str(args.n // 2)}, d)
        if prep["rc"] != -9:
            raise SystemExit(f"the run to resume was not killed (exit {prep['rc']}): {prep['stderr']}")
        listed = cold.spawn([dagexec, "runs", "--state", state, "--json"], env, d)
        run_id = json.loads(listed["stdout"])[0]["run_id"]
        for k in range(args.repeat):
            copy = os.path.join(d, f"copy{k}.db")
            for suffix in ("", "-wal"):
                if os.path.exists(state + suffix):
                    shutil.copyfile(state + suffix, copy + suffix)
            out = subprocess.run(
                [sys.executable, __file__, "--sample", d, copy, run_id],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            got = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps({k: round(v, 3) for k, v in got.items()}), file=sys.stderr)
            for key, value in got.items():
                best[key] = min(best.get(key, value), value)
    print(json.dumps({"n": args.n, "best_s": {k: round(v, 3) for k, v in best.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
