"""Cost of the workflow patterns: dynamic map vs static tasks, loop checkpoints, event hand-off.

    python benchmarks/patterns.py [--n 10000] [--state PATH]

Prints one JSON object. With ``--state`` the persisted figures use that
SQLite file (default: a temporary one); without the sqlite plugin they are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import tempfile
import time
from typing import Any

from dagexec_core import Dag, run
from dagexec_core.patterns import event_task, loop


async def _double(item: int) -> int:
    return item * 2


def map_dag(n: int) -> Dag:
    dag = Dag("map_bench")
    dag.add("items", lambda: list(range(n)))
    dag.map(_double, over="items")
    return dag


def static_dag(n: int) -> Dag:
    dag = Dag("static_bench")
    dag.add("items", lambda: list(range(n)))
    for i in range(n):
        dag.add(f"double_{i}", _double, deps=["items"], static_kwargs={"item": i})
    dag.add("collect", lambda **kw: len(kw), deps=[f"double_{i}" for i in range(n)])
    return dag


def timed(dag: Dag, **kwargs: Any) -> float:
    t0 = time.perf_counter()
    report = run(dag, signals=False, **kwargs)
    elapsed = time.perf_counter() - t0
    assert report.ok, report.counts()
    return elapsed


def loop_dag(n: int) -> Dag:
    dag = Dag("loop_bench")

    async def body(iteration: int, previous: Any) -> int:
        return (previous or 0) + 1

    loop(dag, "count", body, max_iterations=n)
    return dag


def event_dag(n: int) -> Dag:
    dag = Dag("event_bench")
    for i in range(n):
        event_task(dag, f"wait_{i}", f"e{i}", timeout=60)

        async def emit(ctx: Any, i: int = i) -> None:
            ctx.emit(f"e{i}", i)

        dag.add(f"emit_{i}", emit)
    return dag


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--state", default=None)
    args = parser.parse_args()
    n = args.n
    out: dict[str, Any] = {"n": n}
    us = 1e6 / n
    out["map_memory_us_per_element"] = round(timed(map_dag(n), persist=False, concurrency=64) * us, 1)
    out["static_memory_us_per_task"] = round(timed(static_dag(n), persist=False, concurrency=64) * us, 1)
    out["loop_memory_us_per_iteration"] = round(timed(loop_dag(n), persist=False) * us, 1)
    out["event_memory_us_per_pair"] = round(timed(event_dag(n // 10), persist=False) * 1e6 / (n // 10), 1)
    if importlib.util.find_spec("dagexec_plugins.sqlite") is not None:
        state = args.state or os.path.join(tempfile.mkdtemp(), "state.db")
        out["map_sqlite_us_per_element"] = round(timed(map_dag(n), state=state, concurrency=64) * us, 1)
        out["static_sqlite_us_per_task"] = round(timed(static_dag(n), state=state, concurrency=64) * us, 1)
        out["loop_sqlite_us_per_iteration"] = round(timed(loop_dag(n // 10), state=state) * 1e6 / (n // 10), 1)
        out["event_sqlite_us_per_pair"] = round(timed(event_dag(n // 10), state=state) * 1e6 / (n // 10), 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(asyncio.sleep(0))  # warm the event loop policy
    main()
