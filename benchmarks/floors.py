"""The floors: the least any asyncio scheduler can do for the same DAG.

`drive` is a bare asyncio + `graphlib.TopologicalSorter` loop
(prepare / get_ready / done) bounded by the same concurrency as dagexec:
async bodies run as `asyncio.create_task` on the loop, sync bodies through
`loop.run_in_executor` on a `ThreadPoolExecutor` of that size. With a
`SqliteTransitions` writer it also persists what a durable scheduler must:
every task RUNNING at launch and COMPLETED with its JSON output at the end,
in one transaction per scheduler step, written before the step's launches
(so a record is durable in RUNNING before its body starts and in COMPLETED
before any dependent starts, as DESIGN §4 asks of dagexec).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from graphlib import TopologicalSorter
from typing import Any

from shapes import Graph, bodies

SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, dag TEXT, status TEXT, started_at REAL, finished_at REAL);
CREATE TABLE tasks (
    run_id TEXT, name TEXT, state TEXT, attempts INTEGER, started_at REAL, finished_at REAL,
    output TEXT, error TEXT, PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
"""

Row = tuple[str, int, float | None, float | None, str | None, str, str]


class SqliteTransitions:
    """The same transitions dagexec persists, batched one transaction per scheduler step."""

    def __init__(self, path: str, durability: str, run_id: str = "floor") -> None:
        self.run_id = run_id
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute(f"PRAGMA synchronous={'FULL' if durability == 'durable' else 'NORMAL'}")
        self.con.executescript(SCHEMA)

    def create(self, names: list[str]) -> None:
        with self.con:
            self.con.execute("BEGIN")
            self.con.execute("INSERT INTO runs VALUES (?, 'bench', 'running', ?, NULL)", (self.run_id, time.time()))
            self.con.executemany(
                "INSERT INTO tasks VALUES (?, ?, 'pending', 0, NULL, NULL, NULL, NULL)",
                [(self.run_id, n) for n in names],
            )

    def write(self, rows: list[Row]) -> None:
        with self.con:
            self.con.execute("BEGIN")
            self.con.executemany(
                "UPDATE tasks SET state = ?, attempts = ?, started_at = ?, finished_at = ?, output = ? "
                "WHERE run_id = ? AND name = ?",
                rows,
            )

    def finish(self) -> None:
        with self.con:
            self.con.execute(
                "UPDATE runs SET status = 'completed', finished_at = ? WHERE run_id = ?", (time.time(), self.run_id)
            )
        self.con.close()


async def drive(graph: Graph, kind: str, concurrency: int, writer: SqliteTransitions | None = None) -> int:
    """Run every task of ``graph`` once; returns how many ran."""
    root_body, body = bodies(kind)
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=concurrency) if kind == "sync" else None
    if writer is not None:
        writer.create(list(graph))
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    ready: deque[str] = deque()
    running: dict[asyncio.Future[Any], str] = {}
    started: dict[str, float] = {}
    finished: list[asyncio.Future[Any]] = []
    wakeup = asyncio.Event()
    run_id = writer.run_id if writer is not None else ""
    count = 0

    def on_done(fut: asyncio.Future[Any]) -> None:
        finished.append(fut)
        wakeup.set()

    while sorter.is_active():
        rows: list[Row] = []
        if finished:
            done, finished[:] = finished[:], []
            now = time.time()
            for fut in done:
                name = running.pop(fut)
                value = fut.result()
                sorter.done(name)
                if writer is not None:
                    rows.append(("completed", 1, started.pop(name), now, json.dumps(value), run_id, name))
        ready.extend(sorter.get_ready())
        launch: list[str] = []
        while ready and len(running) + len(launch) < concurrency:
            launch.append(ready.popleft())
        if writer is not None:
            now = time.time()
            for name in launch:
                started[name] = now
                rows.append(("running", 1, now, None, None, run_id, name))
            if rows:
                writer.write(rows)
        for name in launch:
            fn = root_body if not graph[name] else body
            fut: asyncio.Future[Any]
            if pool is None:
                fut = loop.create_task(fn())  # type: ignore[arg-type]
            else:
                fut = loop.run_in_executor(pool, fn)
            fut.add_done_callback(on_done)
            running[fut] = name
        count += len(launch)
        if not finished and sorter.is_active():
            wakeup.clear()
            await wakeup.wait()
    if pool is not None:
        pool.shutdown(wait=False)
    if writer is not None:
        writer.finish()
    return count
