"""dagexec on a real Dask cluster against plain ``client.submit``; prints JSON.

    python benchmarks/dask_cluster.py [--tasks 1000] [--work-ms 0,20] [--concurrency 32] [--repeat 3]

Starts a ``dask scheduler`` and two single-threaded ``dask worker`` processes
on 127.0.0.1 (as the tests do), then, on that same cluster and interleaved:

- ``plain``: ``client.submit`` of a function defined in this script, kept at
  ``--concurrency`` futures in flight (``as_completed``, one submit per
  completion), results gathered, client connection included;
- ``dagexec``: ``run(dag, executor="dask")`` of a DAG file (written to a
  temporary folder, imported as the CLI does, its work function in a helper
  module beside it, so it travels by value) with ``--tasks`` independent
  tasks, the same concurrency, durable state in a SQLite file, connection
  included;

each for every ``--work-ms`` (CPU spent per task: a busy loop on the thread's CPU clock). Then the same
DAG with the ``local`` executor (threads in one process) at the largest work,
for the speed-up the two workers give. Each figure is the best of
``--repeat``; the target is dagexec ≤ 1.3× plain.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the cluster launcher the tests use

LIMIT = 1.3

HELPER = '''
import time


def busy(ms):
    """Spend ``ms`` milliseconds of this thread's CPU (holding the GIL, as Python code does)."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
    return ms
'''


def busy(ms: float) -> float:
    end = time.thread_time() + ms / 1000  # CPU time: threads sharing the GIL each spend the full amount
    while time.thread_time() < end:
        pass
    return ms


def write_flow(folder: Path, n: int, ms: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "work.py").write_text(HELPER)
    path = folder / f"flow_{n}_{str(ms).replace('.', '_')}.py"
    path.write_text(
        "from dagexec_core import Dag\n\nimport work\n\n"
        f'dag = Dag("bench")\n\n\ndef task():\n    return work.busy({ms})\n\n\n'
        f'for i in range({n}):\n    dag.add(f"t{{i}}", task)\n'
    )
    return path


def plain(address: str, n: int, ms: float, concurrency: int) -> float:
    from distributed import Client, as_completed

    started = time.perf_counter()
    with Client(address, set_as_default=False) as client:
        todo = iter(range(n))
        futures = [client.submit(busy, ms, pure=False) for _ in islice(todo, concurrency)]
        done = as_completed(futures, with_results=True, loop=client.loop)
        count = 0
        for _, _value in done:
            count += 1
            if next(todo, None) is not None:
                done.add(client.submit(busy, ms, pure=False))
    assert count == n
    return time.perf_counter() - started


def dagexec(path: Path, executor: str, address: str, concurrency: int, state: Path) -> float:
    from dagexec_core import run
    from dagexec_core.cli_common import load_dags

    (dag,) = load_dags(path).values()
    options: dict[str, Any] = {"executor": executor}
    if executor == "dask":
        options["dask_address"] = address
    started = time.perf_counter()
    report = run(dag, state=str(state), concurrency=concurrency, signals=False, **options)
    elapsed = time.perf_counter() - started
    assert report.ok, report.failed
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--work-ms", default="0,20", help="CPU milliseconds per task, comma-separated (default 0,20)")
    p.add_argument("--concurrency", type=int, default=32, help="tasks in flight, for both (default 32)")
    p.add_argument("--repeat", type=int, default=3, help="samples per figure; the best is reported (default 3)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    works = [float(x) for x in args.work_ms.split(",") if x.strip()]
    os.environ["DAGEXEC_DISABLE_PLUGIN_AUTOLOAD"] = "1"

    from dask_support import Cluster

    with tempfile.TemporaryDirectory(prefix="dagexec-dask-bench-") as tmp:
        root = Path(tmp)
        cluster = Cluster(root / "cluster")
        try:
            address = cluster.start_scheduler()
            cluster.start_worker("w1")
            cluster.start_worker("w2")
            cluster.wait_for_workers(2)
            flows = {ms: write_flow(root / "flow", args.tasks, ms) for ms in works}
            warm = write_flow(root / "flow", 20, 0)
            plain(address, 20, 0, args.concurrency)  # workers import what both need once
            dagexec(warm, "dask", address, args.concurrency, root / "warm.db")
            cases = []
            for ms in works:
                plains, ours = [], []
                for k in range(args.repeat):
                    plains.append(plain(address, args.tasks, ms, args.concurrency))
                    ours.append(dagexec(flows[ms], "dask", address, args.concurrency, root / f"s{ms}-{k}.db"))
                ratio = min(ours) / min(plains)
                cases.append(
                    {
                        "work_ms": ms,
                        "plain_submit_s": round(min(plains), 3),
                        "dagexec_dask_s": round(min(ours), 3),
                        "ratio": round(ratio, 3),
                        "limit": LIMIT,
                        "ok": ratio <= LIMIT,
                        "samples": {"plain": [round(x, 3) for x in plains], "dagexec": [round(x, 3) for x in ours]},
                    }
                )
            top = max(works)
            local = min(
                dagexec(flows[top], "local", address, args.concurrency, root / f"local-{k}.db")
                for k in range(args.repeat)
            )
            dask_best = next(c["dagexec_dask_s"] for c in cases if c["work_ms"] == top)
        finally:
            cluster.stop()
    doc = {
        "meta": {
            "command": "python benchmarks/dask_cluster.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "tasks": args.tasks,
            "concurrency": args.concurrency,
            "repeat": args.repeat,
            "workers": "2 dask worker processes, 1 thread each, --no-nanny, on this machine",
            "cpus": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        },
        "cases": cases,
        "speedup": {
            "work_ms": top,
            "local_executor_s": round(local, 3),
            "dagexec_dask_s": dask_best,
            "speedup": round(local / dask_best, 2),
        },
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
