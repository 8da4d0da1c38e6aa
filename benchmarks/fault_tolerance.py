"""Costs of the fault-tolerance stages; prints JSON.

    python benchmarks/fault_tolerance.py [--tasks N]

- ``retry``: N no-op tasks that succeed, against N that fail once and are
  retried (no delay), with the local executor and no persistence;
- ``breaker``: N no-op tasks in one breaker group, against none;
- ``process``: for each start method, the wall time of a run of N no-op sync
  tasks on 2 workers (worker start-up included) and of the kill of a task
  blocking past a 0.2s timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dagexec_core import Dag, RetryPolicy, run  # noqa: E402


def noop() -> None:
    return None


def blocks() -> None:
    while True:
        time.sleep(0.01)


class FailOnce:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def make(self, name: str) -> Any:
        def fn() -> None:
            if name not in self.seen:
                self.seen.add(name)
                raise ConnectionError("once")

        return fn


def timed(dag: Dag, **options: Any) -> float:
    t0 = time.perf_counter()
    report = run(dag, persist=False, **options)
    elapsed = time.perf_counter() - t0
    assert report.count("completed") + len(report.failed) == len(dag), report
    return elapsed


def bench_retry(n: int) -> dict[str, float]:
    ok = Dag("ok")
    for i in range(n):
        ok.add(f"t{i}", noop)
    flaky = Dag("flaky")
    once = FailOnce()
    for i in range(n):
        flaky.add(f"t{i}", once.make(f"t{i}"), retry=RetryPolicy(max_attempts=2, base=0))
    base = min(timed(ok) for _ in range(3))
    retried = min(timed(flaky) for _ in range(1))
    return {"ok_s": base, "fail_once_retried_s": retried, "per_retry_us": (retried - base) / n * 1e6}


def bench_breaker(n: int) -> dict[str, float]:
    plain, grouped = Dag("plain"), Dag("grouped")
    for i in range(n):
        plain.add(f"t{i}", noop)
        grouped.add(f"t{i}", noop, breaker="svc")
    a = min(timed(plain) for _ in range(3))
    b = min(timed(grouped) for _ in range(3))
    return {"plain_s": a, "breaker_s": b, "per_task_us": (b - a) / n * 1e6}


def bench_process(n: int, method: str) -> dict[str, float]:
    dag = Dag("proc")
    for i in range(n):
        dag.add(f"t{i}", noop)
    runs = timed(dag, executor="process", concurrency=2, process_start_method=method)
    kill = Dag("kill")
    kill.add("blocks", blocks, timeout=0.2)
    killed = timed(kill, executor="process", process_start_method=method)
    return {"noop_run_s": runs, "per_task_ms": runs / n * 1e3, "kill_run_s": killed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--process-tasks", type=int, default=200)
    args = parser.parse_args()
    out = {
        "retry": bench_retry(args.tasks),
        "breaker": bench_breaker(args.tasks),
        "process": {m: bench_process(args.process_tasks, m) for m in ("spawn", "forkserver", "fork")},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
