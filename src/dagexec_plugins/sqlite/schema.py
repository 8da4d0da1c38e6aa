"""The state file's format: its identity, schema version, and the SQL of the transition log.

What every other module of the storage agrees on, and `CREATE_SCHEMA`: the
current schema as plain SQL, which a new file is given in one transaction.
The migrations that upgrade an older file are in `migrations` (the only
module that needs sqlite-utils, imported only when a file is upgraded).
"""

from __future__ import annotations

import json
import json.decoder
from collections.abc import Sequence

#: ``PRAGMA application_id`` of every dagexec state file ("dagx").
APPLICATION_ID = 0x64616778
#: The schema this code writes; a file with a higher version is refused.
SCHEMA_VERSION = 4
SQLITE_MAGIC = b"SQLite format 3\x00"
#: A run's transition-log ids are ``runs.num << LOG_ID_BITS`` plus the entry's number in the run.
LOG_ID_BITS = 32

#: A log entry is the whole record of a task as one step left it (schema 4).
_LOG_COLUMNS = "(id, run_id, task, state, attempts, at, error, started_at, finished_at, output, trace_id)"
_LOG_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: Steps of up to this many rows are one multi-row INSERT, a transaction by itself (no BEGIN/COMMIT);
#: a longer step is several, in chunks of this many, inside BEGIN/COMMIT. A row costs SQLite about
#: 15 % less in a 64-row statement than through ``executemany`` (which steps the statement per row),
#: and 64 covers a step at the default concurrency of 32: 32 completions and 32 launches.
#: 64 rows x 11 columns = 704 parameters, under SQLite's oldest limit of 999.
MULTI_ROW_MAX = 64
_INSERT_LOG_N = {
    k: f"INSERT INTO transitions {_LOG_COLUMNS} VALUES " + ", ".join([_LOG_VALUES] * k)
    for k in range(1, MULTI_ROW_MAX + 1)
}
_INSERT_FINGERPRINT = (
    "INSERT INTO run_fingerprints (run_id, part, deps, names) "
    "VALUES (?, (SELECT coalesce(max(part), -1) + 1 FROM run_fingerprints WHERE run_id = ?), ?, ?)"
)


def _names_text(names: Sequence[str]) -> str:
    """``run_fingerprints.names``: a document's task names, in order, as a JSON array."""
    return json.dumps(list(dict.fromkeys(names)), separators=(",", ":"))


#: Every task record as it stands, log entries not applied yet included: what to query the file with
#: from outside dagexec (``SELECT name, state FROM task_records WHERE run_id = ?``).
_TASK_RECORDS_VIEW = f"""
WITH names AS (
    SELECT f.run_id AS run_id, j.key AS name FROM run_fingerprints AS f, json_each(f.deps) AS j
    GROUP BY f.run_id, j.key
),
logged AS (
    SELECT l.run_id, l.task, l.state, l.attempts, l.error, l.started_at, l.finished_at, l.output, l.trace_id,
           max(l.id) AS id
    FROM runs AS r JOIN transitions AS l
      ON l.id BETWEEN r.log_applied + 1 AND (r.num << {LOG_ID_BITS}) + {(1 << LOG_ID_BITS) - 1}
    WHERE r.log_applied IS NOT NULL
    GROUP BY l.run_id, l.task
)
SELECT n.run_id AS run_id, n.name AS name,
       CASE WHEN p.id IS NULL THEN coalesce(t.state, 'pending') ELSE p.state END AS state,
       CASE WHEN p.id IS NULL THEN coalesce(t.attempts, 0) ELSE p.attempts END AS attempts,
       CASE WHEN p.id IS NULL THEN t.started_at ELSE p.started_at END AS started_at,
       CASE WHEN p.id IS NULL THEN t.finished_at ELSE p.finished_at END AS finished_at,
       CASE WHEN p.id IS NULL THEN t.output ELSE p.output END AS output,
       CASE WHEN p.id IS NULL THEN t.error ELSE p.error END AS error,
       CASE WHEN p.id IS NULL THEN t.trace_id ELSE p.trace_id END AS trace_id
FROM names AS n
LEFT JOIN tasks AS t ON t.run_id = n.run_id AND t.name = n.name
LEFT JOIN logged AS p ON p.run_id = n.run_id AND p.task = n.name
"""


#: The schema of version `SCHEMA_VERSION`, statement for statement as `migrations.MIGRATIONS` leave an empty
#: file (the text of each ``sqlite_master`` entry included, so a created and a migrated file cannot be told
#: apart: tests/test_sqlite_storage.py compares them). A new file gets these, not the migrations: creating one
#: then needs no sqlite-utils (which imports pandas when it is installed). Change both together.
CREATE_SCHEMA: tuple[str, ...] = (
    'CREATE TABLE "runs" (\n   "run_id" TEXT PRIMARY KEY,\n   "dag_name" TEXT NOT NULL,\n   "dag_file" TEXT,\n'
    '   "status" TEXT NOT NULL,\n   "started_at" REAL NOT NULL,\n   "finished_at" REAL,\n   "task_count" INTEGER,\n'
    '   "counts" TEXT,\n   "trace_id" TEXT,\n   "meta" TEXT,\n   "lock_pid" INTEGER,\n   "lock_host" TEXT,\n'
    '   "lock_started" TEXT,\n   "lock_heartbeat" REAL\n, "dag_digest" TEXT, "num" INTEGER, "log_applied" INTEGER)',
    'CREATE TABLE "dead_letters" (\n   "id" TEXT PRIMARY KEY,\n   "run_id" TEXT,\n   "dag_name" TEXT,\n   "task" TEXT,\n'
    '   "attempts" INTEGER,\n   "error_type" TEXT,\n   "message" TEXT,\n   "traceback" TEXT,\n   "created_at" REAL,\n'
    '   "trace_id" TEXT\n)',
    'CREATE INDEX "dead_letters_run"\n    ON "dead_letters" ("run_id")',
    'CREATE TABLE "task_state" (\n   "dag_name" TEXT,\n   "task" TEXT,\n   "value" TEXT,\n   "updated_at" REAL,\n'
    '   PRIMARY KEY ("dag_name", "task")\n)',
    'CREATE TABLE "run_meta" (\n   "run_id" TEXT,\n   "key" TEXT,\n   "value" TEXT,\n   PRIMARY KEY ("run_id", "key")\n)',
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)",
    "CREATE UNIQUE INDEX runs_num ON runs (num)",
    'CREATE TABLE "run_fingerprints" (\n   "run_id" TEXT,\n   "part" INTEGER,\n   "deps" TEXT, "names" TEXT,\n'
    '   PRIMARY KEY ("run_id", "part")\n)',
    "CREATE TABLE tasks (\n    run_id TEXT NOT NULL,\n    name TEXT NOT NULL,\n    seq INTEGER,\n    state TEXT NOT NULL,\n"
    "    attempts INTEGER NOT NULL,\n    started_at FLOAT,\n    finished_at FLOAT,\n    output TEXT,\n"
    "    error TEXT, trace_id TEXT,\n    PRIMARY KEY (run_id, name)\n)",
    "CREATE TABLE transitions (\n    id INTEGER PRIMARY KEY,\n    run_id TEXT NOT NULL,\n    task TEXT,\n    state TEXT,\n"
    '    attempts INTEGER,\n    at FLOAT,\n    error TEXT\n, "started_at" REAL, "finished_at" REAL, "output" TEXT, '
    '"trace_id" TEXT)',
    'CREATE VIEW "task_records" AS ' + _TASK_RECORDS_VIEW,
)
