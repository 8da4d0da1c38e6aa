"""`SqliteStorage`: runs and their records in one SQLite file (see the package docstring), and its dead letters.

The class is put together from its seams: opening the file (`base`), the run
lock (`lock`), the write path (`write`) and the reads (`read`); what is here
creates, resumes and finishes runs and keeps per-task state and metadata.
"""

from __future__ import annotations

import json
import json.decoder
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dagexec_core import (
    DeadLetter,
    DeadLetterNotFoundError,
    RunInfo,
    RunLockedError,
    TaskRecord,
    UsageError,
    fingerprint_digest,
    fingerprint_text,
)

from . import logs as task_logs
from .read import Reads, StoredFingerprint
from .schema import _INSERT_FINGERPRINT, LOG_ID_BITS, _names_text
from .write import WritePath


class SqliteStorage(Reads, WritePath):
    """`Storage` in one SQLite file. Thread-safe: ``ctx.state`` is saved from worker threads."""

    persistent = True

    def create_run(self, run: RunInfo, task_names: Sequence[str], dag_fingerprint: Mapping[str, Sequence[str]]) -> None:
        now = time.time()
        dag_file = run.meta.get("dag_file") if run.meta else None
        with self._tx("create a run in", "BEGIN IMMEDIATE") as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,)).fetchone():
                raise UsageError(f"run {run.run_id} already exists in {str(self.path)!r}; resume it instead")
            num = conn.execute("SELECT coalesce(max(num), 0) + 1 FROM runs").fetchone()[0]
            conn.execute(
                "INSERT INTO runs (run_id, dag_name, dag_file, status, started_at, task_count, trace_id, meta, "
                "lock_pid, lock_host, lock_started, lock_heartbeat, num, log_applied) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.dag_name,
                    dag_file or self.dag_file,
                    "running",
                    run.started_at,
                    len(task_names),
                    run.trace_id,
                    json.dumps(dict(run.meta or {})),
                    self._pid,
                    self._host,
                    self._started,
                    now,
                    num,
                    (num << LOG_ID_BITS) - 1,
                ),
            )
            text = fingerprint_text({n: dag_fingerprint.get(n, ()) for n in task_names})
            conn.execute(_INSERT_FINGERPRINT, (run.run_id, run.run_id, text, _names_text(task_names)))
            conn.execute("UPDATE runs SET dag_digest = ? WHERE run_id = ?", (fingerprint_digest(text=text), run.run_id))
        self._log_seq[run.run_id] = num << LOG_ID_BITS
        self._known[run.run_id] = set(task_names)
        self._hold(run.run_id)

    def resume_run(self, run_id: str) -> tuple[RunInfo, dict[str, TaskRecord], Mapping[str, Sequence[str]]]:
        now = time.time()
        with self._tx("resume a run in", "BEGIN IMMEDIATE") as conn:
            row = conn.execute(
                "SELECT lock_pid, lock_host, lock_started, lock_heartbeat, status, finished_at, counts, dag_digest "
                "FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise self._not_found(run_id)
            holder = self._holder(row[:4])
            if holder is not None:
                raise RunLockedError(
                    f"run {run_id} is being driven by {holder} (pid {row[0]}); wait for it to finish or "
                    f"stop it (kill {row[0]}), then resume again"
                )
            # Read everything before taking the lock: a file found corrupt meanwhile is left as it was.
            info = self.get_run(run_id, counts=False)  # the engine counts from the records itself
            names, parts = self._task_names_and_parts(run_id)  # a damaged file is found before the lock is written
            # tasks that never started are left out: the engine takes them as pending
            records = self._load(run_id, names, pending=False)
            self._mark_legacy_log(conn, run_id)
            fingerprint = StoredFingerprint(parts, row[7], run_id)  # dependency lists decoded only if asked
            self._known.pop(run_id, None)  # the run's names, read again by the first `add_tasks` (a map)
            self._log_seq[run_id] = self._next_log_seq(conn, run_id)
            conn.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, lock_pid = ?, lock_host = ?, "
                "lock_started = ?, lock_heartbeat = ? WHERE run_id = ?",
                (self._pid, self._host, self._started, now, run_id),
            )
        self._hold(run_id)
        self._before_resume[run_id] = (row[4], row[5], row[6])
        return attrs.evolve(info, status="running"), records, fingerprint

    def add_tasks(self, run_id: str, task_names: Sequence[str], deps: Mapping[str, Sequence[str]]) -> None:
        if not task_names:
            return
        known = self._known.get(run_id)
        if known is None:
            known = set(self._task_names(run_id))
        # a task the run already has keeps the dependencies first recorded for it
        new = [n for n in dict.fromkeys(task_names) if n not in known]
        if not new:
            return
        with self._tx("add tasks to") as conn:
            conn.execute("UPDATE runs SET task_count = task_count + ? WHERE run_id = ?", (len(new), run_id))
            text = fingerprint_text({n: deps.get(n, ()) for n in new})
            conn.execute(_INSERT_FINGERPRINT, (run_id, run_id, text, _names_text(new)))
        known.update(new)
        self._known[run_id] = known

    def finish_run(self, run_id: str, status: str, finished_at: float, counts: Mapping[str, int]) -> None:
        values: tuple[Any, Any, Any] = (status, finished_at, json.dumps(dict(counts)))
        before = self._before_resume.pop(run_id, None)
        if before is not None and status == "crashed":
            values = before  # a resume that failed before writing anything (DAG changed...) leaves the run as it was
        with self._tx("finish a run in") as conn:
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, counts = ?, lock_pid = NULL, lock_host = NULL, "
                "lock_started = NULL, lock_heartbeat = NULL WHERE run_id = ? AND (lock_pid IS NULL OR "
                "(lock_pid = ? AND lock_host = ?))",
                (*values, run_id, self._pid, self._host),
            )
        self._release(run_id)

    def set_trace_id(self, run_id: str, trace_id: str | None) -> None:
        """Store the run's trace id (``runs.trace_id``); the engine calls it once after ``dagexec_run_started``."""
        with self._tx("record the trace id in") as conn:
            conn.execute("UPDATE runs SET trace_id = ? WHERE run_id = ?", (trace_id, run_id))

    def save_task_state(self, dag_name: str, task_name: str, value: Any) -> None:
        text = _dumps(value, f"the state of task {task_name!r}")
        with self._tx("save task state in") as conn:
            conn.execute(
                "INSERT INTO task_state (dag_name, task, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (dag_name, task) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (dag_name, task_name, text, time.time()),
            )

    def put_meta(self, run_id: str, key: str, value: Any) -> None:
        text = _dumps(value, f"run metadata {key!r}")
        with self._tx("save run metadata in") as conn:
            conn.execute(
                "INSERT INTO run_meta (run_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                (run_id, key, text),
            )

    def dead_letter_queue(self) -> SqliteDeadLetterQueue:
        """The dead-letter queue kept in this file (the ``deadletter`` plugin asks for it)."""
        return SqliteDeadLetterQueue(self)

    def close(self) -> None:
        with self._lock:
            for run_id in list(self._held):
                self._release(run_id)
            self._closed = True
            self._stop_checkpointer()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- task logs and pruning (logs.py) ------------------------------------------------

    def write_logs(self, run_id: str, rows: Sequence[Any]) -> None:
        """The logs of the attempts a step ends (the optional `Storage.write_logs`), just before its write."""
        with self._tx("write task logs to") as conn:
            task_logs.write(conn, run_id, rows)

    def read_logs(
        self, run_id: str, task: str | None = None, attempt: int | None = None, after: int = 0, records: bool = True
    ) -> Any:
        """The logged attempts of a run, oldest first (the optional `Storage.read_logs`)."""
        self.get_run(run_id)
        with self._lock:
            return task_logs.read(self.conn, run_id, task, attempt, after, records)

    def prune(self, older_than: float | None = None, keep: int | None = None, vacuum: bool = False) -> list[str]:
        """Delete old finished runs with their records, dead letters, meta and logs (the optional `Storage.prune`)."""
        live = [r.run_id for r in self.list_runs(1 << 30) if r.status == "running"]
        with self._tx("prune", "BEGIN IMMEDIATE") as conn:
            gone = task_logs.prune(conn, older_than=older_than, keep=keep, protect=live)
        if vacuum:
            with self._lock:
                self.conn.execute("VACUUM")
        return gone

    def __repr__(self) -> str:
        return f"<SqliteStorage {str(self.path)!r} durability={self.durability}>"


_DL_COLUMNS = "id, run_id, dag_name, task, attempts, error_type, message, traceback, created_at, trace_id"


class SqliteDeadLetterQueue:
    """`DeadLetterQueue` in the ``dead_letters`` table of a state file."""

    def __init__(self, storage: SqliteStorage) -> None:
        self.storage = storage

    def push(self, entry: DeadLetter) -> str:
        with self.storage._tx("record a dead letter in") as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO dead_letters ({_DL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.id,
                    entry.run_id,
                    entry.dag_name,
                    entry.task,
                    entry.attempts,
                    entry.error_type,
                    entry.message,
                    entry.traceback,
                    entry.created_at,
                    entry.trace_id,
                ),
            )
        return entry.id

    def list(self, run_id: str | None = None) -> list[DeadLetter]:
        if run_id is None:
            rows = self.storage._query(f"SELECT {_DL_COLUMNS} FROM dead_letters ORDER BY created_at")
        else:
            rows = self.storage._query(
                f"SELECT {_DL_COLUMNS} FROM dead_letters WHERE run_id = ? ORDER BY created_at", (run_id,)
            )
        return [DeadLetter(*r) for r in rows]

    def get(self, entry_id: str) -> DeadLetter:
        rows = self.storage._query(f"SELECT {_DL_COLUMNS} FROM dead_letters WHERE id = ?", (entry_id,))
        if not rows:
            raise DeadLetterNotFoundError(
                f"no dead letter {entry_id!r} in {str(self.storage.path)!r}; `dagexec dlq list` shows the entries"
            )
        return DeadLetter(*rows[0])

    def remove(self, entry_id: str) -> None:
        with self.storage._tx("remove a dead letter from") as conn:
            conn.execute("DELETE FROM dead_letters WHERE id = ?", (entry_id,))


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be stored as JSON "
            f"({exc}); keep it to plain data (dict, list, str, numbers, bool, None)"
        ) from exc
