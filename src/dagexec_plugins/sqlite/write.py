"""The write path: one scheduler step, one transaction, appended to the transition log; WAL checkpoints.

The hot path of a persisted run (`WritePath.write`); see the package docstring
for what a step costs and why it writes one tree and no index.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from dagexec_core import RecordRow, UsageError

from .base import DURABILITY, StorageBase
from .schema import _INSERT_LOG_N, LOG_ID_BITS, MULTI_ROW_MAX

log = logging.getLogger("dagexec.sqlite")

#: Commits between two checkpoints of the WAL, run by a background thread (a step is 2-5 WAL frames).
CHECKPOINT_EVERY = 200


class WritePath(StorageBase):
    """The writing half of `SqliteStorage` (a mixin)."""

    def write(self, run_id: str, rows: Sequence[RecordRow]) -> None:
        """One scheduler step in one transaction: each row appended to the run's log as a whole record.

        The hot path: a step of up to `MULTI_ROW_MAX` rows is one multi-row INSERT, a transaction by
        itself, into one tree, at its end. Nothing else is written: a task's record is its newest log
        entry (`_load`), its ``tasks`` row only until it has one.
        """
        now = time.time()
        with self._lock:
            conn = self._conn or self.conn
            if self._corrupt:
                raise self._corrupt_error()
            if self._before_resume:
                self._before_resume.pop(run_id, None)
            seq = self._log_seq.get(run_id)
            try:
                if seq is not None and len(rows) <= MULTI_ROW_MAX:
                    params: list[Any] = []
                    k = seq
                    for name, state, att, st, fin, out, err, trace in rows:
                        params += (k, run_id, name, state, att, now, err, st, fin, out, trace)
                        k += 1
                    try:
                        conn.execute(_INSERT_LOG_N[len(rows)], params)
                    except sqlite3.IntegrityError:
                        # another storage object appended to this run's log meanwhile: append after it
                        seq = self._write_step(conn, run_id, rows, None, now)
                else:
                    try:
                        seq = self._write_step(conn, run_id, rows, seq, now)
                    except sqlite3.IntegrityError:
                        seq = self._write_step(conn, run_id, rows, None, now)
            except sqlite3.Error as exc:
                self._log_seq.pop(run_id, None)
                raise self._error("write to", exc) from exc
            self._log_seq[run_id] = seq + len(rows)
            self._commits += 1
            if self._commits >= CHECKPOINT_EVERY:
                self._request_checkpoint()

    def _write_step(
        self, conn: sqlite3.Connection, run_id: str, rows: Sequence[RecordRow], seq: int | None, now: float
    ) -> int:
        """`write` inside BEGIN/COMMIT, rolled back whole on any error; returns the first log id it used."""
        try:
            conn.execute("BEGIN")
            if seq is None:  # the first write of a run this storage did not create or resume
                seq = self._next_log_seq(conn, run_id)
            k = seq
            for start in range(0, len(rows), MULTI_ROW_MAX):
                chunk = rows[start : start + MULTI_ROW_MAX]
                params: list[Any] = []
                for name, state, att, st, fin, out, err, trace in chunk:
                    params += (k, run_id, name, state, att, now, err, st, fin, out, trace)
                    k += 1
                conn.execute(_INSERT_LOG_N[len(chunk)], params)
            conn.execute("COMMIT")
            return seq
        except BaseException:
            self._log_seq.pop(run_id, None)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:  # pragma: no cover - the connection is gone
                    pass
            raise

    @staticmethod
    def _next_log_seq(conn: sqlite3.Connection, run_id: str) -> int:
        """The id of the run's next log entry: one past its last, in the run's range of ids."""
        lo = WritePath._log_base(conn, run_id)
        row = conn.execute(
            "SELECT max(id) FROM transitions WHERE id BETWEEN ? AND ?", (lo, lo + (1 << LOG_ID_BITS) - 1)
        ).fetchone()
        return lo if row[0] is None else int(row[0]) + 1

    @staticmethod
    def _log_base(conn: sqlite3.Connection, run_id: str) -> int:
        row = conn.execute("SELECT num FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None or row[0] is None:
            raise UsageError(f"run {run_id!r} is not in this state file; create or resume it first")
        return int(row[0]) << LOG_ID_BITS

    @staticmethod
    def _mark_legacy_log(conn: sqlite3.Connection, run_id: str) -> None:
        """A run written before schema 4 keeps its records in ``tasks`` and log entries without them:
        mark all of its entries as already in ``tasks``, so only the entries logged from now on are
        read as records (in the caller's transaction)."""
        row = conn.execute("SELECT num, log_applied FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None or row[0] is None or row[1] is not None:
            return
        lo = int(row[0]) << LOG_ID_BITS
        top = conn.execute(
            "SELECT max(id) FROM transitions WHERE id BETWEEN ? AND ?", (lo, lo + (1 << LOG_ID_BITS) - 1)
        ).fetchone()[0]
        conn.execute("UPDATE runs SET log_applied = ? WHERE run_id = ?", (lo - 1 if top is None else top, run_id))

    def _request_checkpoint(self) -> None:
        """Ask the checkpoint thread to copy the WAL into the file (called under ``_lock``)."""
        self._commits = 0
        if self._checkpoint_wake is None:
            self._checkpoint_wake = threading.Event()
            self._checkpoint_thread = threading.Thread(
                target=self._checkpointer, args=(self._checkpoint_wake,), name="dagexec-checkpoint", daemon=True
            )
            self._checkpoint_thread.start()
        self._checkpoint_wake.set()

    def _checkpointer(self, wake: threading.Event) -> None:
        """Run PASSIVE checkpoints on a connection of its own: the writer never waits for one.

        A checkpoint copies committed frames only and never blocks a writer; its fsyncs follow the
        same ``synchronous`` as the writer's, so each durability mode keeps its guarantee.
        """
        conn: sqlite3.Connection | None = None
        try:
            while True:
                wake.wait()
                wake.clear()
                if self._closed or self._corrupt:
                    return
                try:
                    if conn is None:
                        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
                        conn.execute(f"PRAGMA synchronous = {DURABILITY[self.durability]}")
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's own autocheckpoint is the backstop
                    log.debug("checkpoint of %s failed: %s", self.path, exc)
        finally:
            if conn is not None:
                conn.close()

    def _stop_checkpointer(self) -> None:
        wake, thread = self._checkpoint_wake, self._checkpoint_thread
        self._checkpoint_wake = self._checkpoint_thread = None
        if wake is not None and thread is not None:
            wake.set()
            thread.join(timeout=30)
