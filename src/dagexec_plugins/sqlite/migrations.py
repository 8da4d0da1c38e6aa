"""Schema creation and migrations, with sqlite-utils: cold code, run only when a file is created or upgraded.

A run that opens an up-to-date file never imports this module, nor
sqlite-utils (which imports pandas when it is installed).
"""

from __future__ import annotations

import json
import json.decoder
import sqlite3
from collections.abc import Callable
from typing import Any

import sqlite_utils

from dagexec_core import fingerprint_text

from .schema import _TASK_RECORDS_VIEW, LOG_ID_BITS


def _migrate_to_1(db: sqlite_utils.Database) -> None:
    db.table("runs").create(
        {
            "run_id": str,
            "dag_name": str,
            "dag_file": str,
            "status": str,
            "started_at": float,
            "finished_at": float,
            "task_count": int,
            "counts": str,  # JSON, written when the run finishes
            "trace_id": str,
            "meta": str,  # JSON
            "lock_pid": int,
            "lock_host": str,
            "lock_started": str,  # the holder's process start time, against pid reuse
            "lock_heartbeat": float,
        },
        pk="run_id",
        not_null=["dag_name", "status", "started_at"],
    )
    db.table("tasks").create(
        {
            "run_id": str,
            "name": str,
            "seq": int,
            "state": str,
            "attempts": int,
            "started_at": float,
            "finished_at": float,
            "output": str,  # JSON text (or the registered serializer's)
            "error": str,
            "deps": str,  # JSON list: the DAG fingerprint checked on resume
        },
        pk=("run_id", "name"),
        not_null=["state", "attempts"],
    )
    db.table("transitions").create(
        {"id": int, "run_id": str, "task": str, "state": str, "attempts": int, "at": float, "error": str},
        pk="id",
    )
    db.table("transitions").create_index(["run_id"], index_name="transitions_run")
    db.table("dead_letters").create(
        {
            "id": str,
            "run_id": str,
            "dag_name": str,
            "task": str,
            "attempts": int,
            "error_type": str,
            "message": str,
            "traceback": str,
            "created_at": float,
            "trace_id": str,
        },
        pk="id",
    )
    db.table("dead_letters").create_index(["run_id"], index_name="dead_letters_run")
    db.table("task_state").create(
        {"dag_name": str, "task": str, "value": str, "updated_at": float}, pk=("dag_name", "task")
    )
    db.table("run_meta").create({"run_id": str, "key": str, "value": str}, pk=("run_id", "key"))


_TASKS_V2 = """
CREATE TABLE tasks (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    started_at FLOAT,
    finished_at FLOAT,
    output TEXT,
    error TEXT,
    PRIMARY KEY (run_id, name)
)
"""
_TRANSITIONS_V2 = """
CREATE TABLE transitions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    task TEXT,
    state TEXT,
    attempts INTEGER,
    at FLOAT,
    error TEXT
)
"""


def _migrate_to_2(db: sqlite_utils.Database) -> None:
    """Fewer, cheaper B-tree writes per scheduler step; dependency lists out of ``tasks``.

    - ``runs.num``: a small number per run (unique, in creation order), the high bits of its log ids.
    - ``transitions``: keyed by ``id = num << LOG_ID_BITS | n`` (n = 0, 1, ... per run), without the
      ``transitions_run`` index: an entry of the newest run is an append at the end of one tree, and
      a run's log is one range of it.
    - ``tasks``: rebuilt without ``deps``, its rows in the order they were written (a run's tasks
      stay together in task order, so a step's updates share pages).
    - ``run_fingerprints``: a run's dependency lists as JSON documents (``{task: [deps]}``), part 0
      written with the run, one more part per call adding tasks; the first part naming a task wins.
    - ``runs.dag_digest``: the `fingerprint_digest` of part 0 (NULL for runs migrated from version 1,
      whose resume compares every list).
    """
    conn = db.conn
    db.table("runs").add_column("dag_digest", str)
    db.table("runs").add_column("num", int)
    conn.execute("UPDATE runs SET num = (SELECT count(*) FROM runs AS r WHERE r.rowid <= runs.rowid)")
    conn.execute("CREATE UNIQUE INDEX runs_num ON runs (num)")
    db.table("run_fingerprints").create({"run_id": str, "part": int, "deps": str}, pk=("run_id", "part"))
    runs = [r[0] for r in conn.execute("SELECT DISTINCT run_id FROM tasks WHERE run_id IS NOT NULL")]
    for run_id in runs:
        deps: dict[str, Any] = {}
        for name, text in conn.execute("SELECT name, deps FROM tasks WHERE run_id = ? ORDER BY seq", (run_id,)):
            deps[name] = json.loads(text) if text else []
        conn.execute(
            "INSERT INTO run_fingerprints (run_id, part, deps) VALUES (?, 0, ?)", (run_id, fingerprint_text(deps))
        )
    conn.execute("ALTER TABLE tasks RENAME TO tasks_v1")
    conn.execute(_TASKS_V2)
    conn.execute(
        "INSERT INTO tasks (run_id, name, seq, state, attempts, started_at, finished_at, output, error) "
        "SELECT run_id, name, seq, state, attempts, started_at, finished_at, output, error FROM tasks_v1 "
        "WHERE run_id IS NOT NULL AND name IS NOT NULL ORDER BY run_id, seq"
    )
    conn.execute("DROP TABLE tasks_v1")
    conn.execute("ALTER TABLE transitions RENAME TO transitions_v1")
    conn.execute("DROP INDEX IF EXISTS transitions_run")
    conn.execute(_TRANSITIONS_V2)
    conn.execute(
        "INSERT INTO transitions (id, run_id, task, state, attempts, at, error) "
        f"SELECT (runs.num << {LOG_ID_BITS}) + row_number() OVER (PARTITION BY t.run_id ORDER BY t.id) - 1, "
        "t.run_id, t.task, t.state, t.attempts, t.at, t.error "
        "FROM transitions_v1 AS t JOIN runs ON runs.run_id = t.run_id"
    )
    conn.execute("DROP TABLE transitions_v1")


def _migrate_to_3(db: sqlite_utils.Database) -> None:
    """``tasks.trace_id``: the OpenTelemetry trace of the invocation that last wrote the record (NULL when
    untraced, and for every record written before version 3). A column added at the end: no row is rewritten."""
    db.conn.execute("ALTER TABLE tasks ADD COLUMN trace_id TEXT")


def _migrate_to_4(db: sqlite_utils.Database) -> None:
    """The transition log carries whole records, and is all a scheduler step writes.

    - ``transitions`` gains ``started_at``, ``finished_at``, ``output`` and ``trace_id``: an entry is the
      task's whole record as the step left it, so a step is one append to one tree (one WAL page,
      usually), and a task's record is its newest entry.
    - ``tasks`` gets no rows for runs created from version 4 on: a run's tasks are the names in its
      ``run_fingerprints`` documents, pending until they have a log entry; ``run_fingerprints.names``
      lists a document's names (a JSON array, read without decoding every dependency list; NULL in
      documents written before).
    - ``runs.log_applied``: the id of the last log entry that is not a record. A run created from
      version 4 on has ``num << 32`` minus one (every entry is a record). A run written before has its
      records in ``tasks`` and entries without them: NULL until it is first resumed, then its last entry.
    - the ``task_records`` view: every record as it stands, for anyone reading the file with SQL.

    Columns added at the end: no row is rewritten.
    """
    log = db.table("transitions")
    for column, kind in (("started_at", float), ("finished_at", float), ("output", str), ("trace_id", str)):
        log.add_column(column, kind)
    db.table("runs").add_column("log_applied", int)
    db.table("run_fingerprints").add_column("names", str)
    db.create_view("task_records", _TASK_RECORDS_VIEW)


#: ``version -> step`` bringing a file from ``version - 1`` to ``version``.
MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    1: _migrate_to_1,
    2: _migrate_to_2,
    3: _migrate_to_3,
    4: _migrate_to_4,
}


def open_database(conn: sqlite3.Connection) -> sqlite_utils.Database:
    """sqlite-utils over the storage's own connection, for `MIGRATIONS`."""
    return sqlite_utils.Database(conn, execute_plugins=False)
