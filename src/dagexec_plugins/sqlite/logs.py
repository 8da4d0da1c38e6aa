"""Task logs and pruning in the SQLite state file: the ``task_logs`` table and the functions on a connection.

One row per finished attempt that logged (``dagexec_core.tasklogs.LogRow``).
The table is created on the first write, so files written before it existed
are read as holding no logs, without a schema migration.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

DDL = (
    "CREATE TABLE IF NOT EXISTS task_logs ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, task TEXT NOT NULL, attempt INTEGER NOT NULL, "
    "written_at REAL NOT NULL, lines INTEGER NOT NULL, dropped INTEGER NOT NULL, records TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS task_logs_run ON task_logs (run_id, task, attempt)",
)

#: Tables whose rows belong to one run (``run_id``), deleted with it by `prune`.
RUN_TABLES = ("transitions", "tasks", "dead_letters", "run_meta", "run_fingerprints", "task_logs")


def has_table(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'task_logs'").fetchone() is not None
    )


def write(conn: sqlite3.Connection, run_id: str, rows: Sequence[tuple[str, int, str, int, int]]) -> None:
    """Insert the logs of finished attempts (inside the caller's transaction)."""
    for statement in DDL:
        conn.execute(statement)
    now = time.time()
    conn.executemany(
        "INSERT INTO task_logs (run_id, task, attempt, written_at, lines, dropped, records) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(run_id, task, attempt, now, lines, dropped, records) for task, attempt, records, lines, dropped in rows],
    )


def read(
    conn: sqlite3.Connection,
    run_id: str,
    task: str | None = None,
    attempt: int | None = None,
    after: int = 0,
    records: bool = True,
) -> list[dict[str, Any]]:
    """The logged attempts of a run, in the order they were written: dicts with ``id``, ``task``,
    ``attempt``, ``written_at``, ``lines``, ``dropped`` and (with ``records``) ``records``."""
    if not has_table(conn):
        return []
    sql = f"SELECT id, task, attempt, written_at, lines, dropped{', records' if records else ''} FROM task_logs "
    sql += "WHERE run_id = ? AND id > ?"
    params: list[Any] = [run_id, after]
    if task is not None:
        sql += " AND task = ?"
        params.append(task)
    if attempt is not None:
        sql += " AND attempt = ?"
        params.append(attempt)
    out = []
    for row in conn.execute(sql + " ORDER BY id", params).fetchall():
        entry = {
            "id": row[0],
            "task": row[1],
            "attempt": row[2],
            "written_at": row[3],
            "lines": row[4],
            "dropped": row[5],
        }
        if records:
            entry["records"] = json.loads(row[6])
        out.append(entry)
    return out


def prune(
    conn: sqlite3.Connection, *, older_than: float | None, keep: int | None, protect: Sequence[str] = ()
) -> list[str]:
    """Delete finished runs started before ``older_than`` (a timestamp) and/or beyond the newest ``keep``,
    with every row of theirs (inside the caller's transaction); return their ids. ``protect``: runs
    not to delete (driven right now)."""
    rows = conn.execute("SELECT run_id, started_at FROM runs ORDER BY started_at DESC").fetchall()
    doomed = []
    for n, (run_id, started_at) in enumerate(rows):
        if run_id in protect:
            continue
        too_old = older_than is not None and started_at < older_than
        beyond = keep is not None and n >= keep
        if (older_than is None or too_old) and (keep is None or beyond):
            doomed.append(run_id)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for start in range(0, len(doomed), 500):
        chunk = doomed[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for table in RUN_TABLES:
            if table in tables:
                conn.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", chunk)
    return doomed
