"""The default storage: runs, task records, transitions and dead letters in one SQLite file.

sqlite-utils creates the schema and runs its migrations (the version lives in
the file; the two hot tables are raw DDL, to choose their keys exactly); the
hot path (`SqliteStorage.write`) is prepared SQL, one transaction per
scheduler step. The file is in WAL mode; ``durability`` picks ``synchronous``:

- ``fast``: ``synchronous=OFF``. Survives a killed process; an OS crash or
  power loss may lose recent steps or corrupt the file.
- ``normal`` (default): ``synchronous=NORMAL``. Survives a killed process; a
  power loss may lose the last steps but leaves a consistent file.
- ``durable``: ``synchronous=FULL``. Every committed step survives power loss.

A file that is not a dagexec state file (foreign, corrupt, newer schema) is
refused with `StateFileError` before anything is written to it.

What a scheduler step costs is mostly its commit: a handful of system calls
and one WAL frame per page it changes. So a step writes one tree and no index:
it appends each state change to the transition log as the task's whole record
(a step of up to `MULTI_ROW_MAX` rows is one multi-row INSERT, a transaction
by itself), keyed by ``runs.num << 32 | n``, so an entry is an append at the
end of the log's tree (SQLite's fast path) and a run's log is one range of it.
A task's record is its newest entry; a run's task list is its dependency
documents in ``run_fingerprints`` (with their digest in ``runs``, so a resume
of an unchanged DAG compares no dependency list), so creating a run writes no
row per task. ``tasks`` holds the records of runs written before schema 4.
Checkpoints run on a background thread with its own connection, so a step's
commit does not wait for them; the writer's own checkpoint every
`WAL_AUTOCHECKPOINT` pages lets the WAL start over.
"""

from __future__ import annotations

import json
import json.decoder
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import sqlite_utils

from dagexec_core import (
    Config,
    DeadLetter,
    DeadLetterNotFoundError,
    JsonSerializer,
    RecordRow,
    RunInfo,
    RunLockedError,
    RunNotFoundError,
    Serializer,
    StateFileError,
    StateFileMissingError,
    TaskRecord,
    TaskState,
    UsageError,
    fingerprint_digest,
    fingerprint_text,
    hookimpl,
)

log = logging.getLogger("dagexec.sqlite")

#: ``PRAGMA application_id`` of every dagexec state file ("dagx").
APPLICATION_ID = 0x64616778
#: The schema this code writes; a file with a higher version is refused.
SCHEMA_VERSION = 4
SQLITE_MAGIC = b"SQLite format 3\x00"

DURABILITY = {"fast": "OFF", "normal": "NORMAL", "durable": "FULL"}

#: A lock held from another host counts as abandoned once its heartbeat is this old.
LOCK_STALE_AFTER = 120.0
#: Seconds between heartbeats of the runs a process holds (a thread writes them, so long tasks keep the lock).
HEARTBEAT_EVERY = 10.0

#: Commits between two checkpoints of the WAL, run by a background thread (a step is 2-5 WAL frames).
CHECKPOINT_EVERY = 200
#: The writing connection's own automatic checkpoint (pages). The background checkpoints copy most of
#: the WAL, but never all of it while steps keep coming, so only the writer's own checkpoint lets the
#: WAL start over from its beginning: without it the WAL grows to this many pages (every new frame
#: then extends the file) and deleting it when the file closes took 40 ms at 8000 pages (33 MB).
WAL_AUTOCHECKPOINT = 1000

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 10, 11, 13, 26

_STATES = {s.value: s for s in TaskState}
#: The C scanner behind ``json.loads`` (see `SqliteStorage._load`).
_JSON_SCAN: Callable[[str, int], tuple[Any, int]] = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]

#: A log entry is the whole record of a task as one step left it (schema 4).
_LOG_COLUMNS = "(id, run_id, task, state, attempts, at, error, started_at, finished_at, output, trace_id)"
_LOG_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_LOG = f"INSERT INTO transitions {_LOG_COLUMNS} VALUES {_LOG_VALUES}"
#: Steps of up to this many rows are one multi-row INSERT, a transaction by itself (no BEGIN/COMMIT).
MULTI_ROW_MAX = 16
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


# ---------------------------------------------------------------------------
# schema and migrations
# ---------------------------------------------------------------------------


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
#: A run's transition-log ids are ``runs.num << LOG_ID_BITS`` plus the entry's number in the run.
LOG_ID_BITS = 32


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


# ---------------------------------------------------------------------------
# process liveness (the run lock)
# ---------------------------------------------------------------------------


def _proc_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields and fields[0] == b"Z":
        return "zombie"
    return fields[19].decode() if len(fields) > 19 else None


def _pid_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now_started = _proc_start(pid)
    if now_started == "zombie":
        return False
    return not (started and now_started and started != now_started)


# ---------------------------------------------------------------------------
# the storage
# ---------------------------------------------------------------------------


class SqliteStorage:
    """`Storage` in one SQLite file. Thread-safe: ``ctx.state`` is saved from worker threads."""

    persistent = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        durability: str = "normal",
        *,
        serializer: Serializer | None = None,
        dag_file: str | None = None,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        #: Open for reading only (``runs``, ``show``, ``dlq list``): nothing is created, migrated or written.
        self.read_only = read_only
        self.durability = durability
        self.serializer: Serializer = serializer or JsonSerializer()
        self.dag_file = dag_file
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self._started = _proc_start(self._pid)
        self._held: set[str] = set()  # runs whose lock this process holds
        self._beat_stop: threading.Event | None = None
        # run -> (status, finished_at, counts) before a resume that has not written yet
        self._before_resume: dict[str, tuple[Any, Any, Any]] = {}
        self._closed = False
        self._corrupt = False
        self._create = create
        self._conn: sqlite3.Connection | None = None
        # run -> id of its next transition-log entry (one process drives a run: the file's lock)
        self._log_seq: dict[str, int] = {}
        # run -> the names of its tasks (kept by the storage that created or resumed it)
        self._known: dict[str, set[str]] = {}
        self._commits = 0  # since the last checkpoint was asked for
        self._checkpoint_wake: threading.Event | None = None
        self._checkpoint_thread: threading.Thread | None = None

    # -- opening ---------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, opened on first use: errors then reach the caller as `StateFileError`."""
        if self._conn is None:
            with self._lock:
                if self._closed:
                    raise StateFileError(f"state file {str(self.path)!r} was closed")
                if self._conn is None:
                    self._conn = self._open(self._create)
        return self._conn

    def _open(self, create: bool) -> sqlite3.Connection:
        if self.durability not in DURABILITY:
            raise UsageError(
                f"unknown durability {self.durability!r}; choose one of {', '.join(DURABILITY)} "
                f"(see docs/reliability.md)"
            )
        path = self.path
        exists = path.exists()
        if exists and path.is_dir():
            raise StateFileError(
                f"state file {str(path)!r} is a directory; pass state= a file path such as {str(path / 'state.db')!r}"
            )
        if exists and path.stat().st_size > 0:
            try:
                with open(path, "rb") as f:
                    magic = f.read(len(SQLITE_MAGIC))
            except OSError as exc:
                raise StateFileError(f"cannot read state file {str(path)!r}: {exc}") from exc
            if magic != SQLITE_MAGIC:
                raise StateFileError(
                    f"{str(path)!r} is not a dagexec state file (not an SQLite database, or corrupt); "
                    f"it was left untouched: pass another state= path or move the file away"
                )
        elif not create or self.read_only:
            raise StateFileMissingError(f"no dagexec state file at {str(path)!r}; run a DAG first or pass --state PATH")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateFileError(
                    f"cannot create the directory of state file {str(path)!r}: {exc.strerror}; "
                    f"pass state= a writable path, or persist=False / --no-persist"
                ) from exc
        if self.read_only:
            return self._open_read_only(path)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            self._check_and_migrate(conn)
            conn.execute(f"PRAGMA synchronous = {DURABILITY[self.durability]}")
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_read_only(self, path: Path) -> sqlite3.Connection:
        """Open with SQLite's ``mode=ro``: works in a directory this process cannot write, creates nothing.

        Without a ``-wal`` file beside it (no process has the file open for writing, and the last one
        to close it moved every committed step into the file), the file is also opened ``immutable``:
        SQLite then needs no ``-shm`` file, which a read-only directory would not let it create. With a
        ``-wal`` file, the usual locks and the WAL are read, so a run under way is seen as it stands.
        """
        uri = path.resolve().as_uri() + "?mode=ro"
        if not Path(f"{path}-wal").exists():
            uri += "&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            self._check_and_migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_and_migrate(self, conn: sqlite3.Connection) -> None:
        """Refuse foreign, corrupt and newer files before writing anything; then bring the schema up to date."""
        path = self.path
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        except sqlite3.Error as exc:
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise self._error("open", exc) from exc
            raise StateFileError(
                f"{str(path)!r} is not a dagexec state file or is corrupt ({exc}); "
                f"it was left untouched: pass another state= path or move the file away"
            ) from exc
        if app_id != APPLICATION_ID and (app_id != 0 or tables):
            raise StateFileError(
                f"{str(path)!r} is an SQLite database of another application "
                f"(tables: {', '.join(sorted(tables)[:5]) or 'none'}); it was left untouched: "
                f"pass another state= path for dagexec"
            )
        if version > SCHEMA_VERSION:
            raise StateFileError(
                f"state file {str(path)!r} has schema version {version}, newer than this dagexec "
                f"understands ({SCHEMA_VERSION}); upgrade dagexec, or pass another state= path"
            )
        if self.read_only:
            if version < SCHEMA_VERSION:
                raise StateFileError(
                    f"state file {str(path)!r} has schema version {version}, older than this dagexec's "
                    f"({SCHEMA_VERSION}), and is opened read-only here; resume one of its runs (or run a DAG "
                    f"with it) once where it can be written, to upgrade it"
                )
            return
        if version == SCHEMA_VERSION:
            self._set_journal(conn)
            return
        try:
            self._set_journal(conn)
            db = sqlite_utils.Database(conn, execute_plugins=False)
            # the schema's commit at the file's own durability, not fsync'ed at SQLite's default (FULL)
            conn.execute(f"PRAGMA synchronous = {DURABILITY[self.durability]}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                # re-read under the write lock: another process may have migrated meanwhile
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for v in range(version + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[v](db)
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
                    )
                    conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (v, time.time()))
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error("create the schema of", exc) from exc

    @staticmethod
    def _set_journal(conn: sqlite3.Connection, wait: float = 30.0) -> None:
        """WAL mode. Switching to it needs the file to itself and SQLite does not wait for that, so a
        process opening a new file while another creates it retries until the file is WAL."""
        deadline = time.monotonic() + wait
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _error(self, doing: str, exc: BaseException) -> StateFileError:
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            self._corrupt = True  # never write to it again, not even to mark the run crashed
        text = str(exc)
        hint = ""
        low = text.lower()
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            hint = "; make its directory writable, pass another state= path, or run with persist=False / --no-persist"
        elif code == _SQLITE_FULL or "full" in low:
            hint = (
                "; the disk is full: free disk space (or pass another state= path), then resume the run; "
                "the interrupted step was rolled back"
            )
        elif code == _SQLITE_IOERR or "i/o error" in low:
            hint = (
                "; the operating system could not read or write the file: is the disk full, removed or failing? "
                "free disk space or pass another state= path, then resume the run"
            )
        elif "malformed" in low or "not a database" in low:
            hint = "; the file is corrupt: move it away and start a new run"
        elif "locked" in low or "busy" in low:
            hint = "; another process holds the file's write lock for too long"
        return StateFileError(f"cannot {doing} state file {str(self.path)!r}: {text}{hint}")

    def _damaged(self, what: str) -> StateFileError:
        """A row no dagexec wrote (edited by hand, or damaged): one line naming it, no traceback."""
        return StateFileError(
            f"state file {str(self.path)!r} is damaged: {what} (was it edited by hand?); fix or delete that row, "
            f"or move the file away and start a new run"
        )

    def _json(self, text: str, what: str, kind: type | None = None) -> Any:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise self._damaged(f"{what} is not JSON ({exc})") from None
        if kind is not None and not isinstance(value, kind):
            raise self._damaged(f"{what} is a JSON {type(value).__name__}, not an object")
        return value

    def _corrupt_error(self) -> StateFileError:
        return StateFileError(
            f"state file {str(self.path)!r} is corrupt and is no longer written to; move it away and start a new run"
        )

    @contextmanager
    def _tx(self, doing: str, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
        """One transaction, rolled back whole on any error (so no partial step is ever left)."""
        with self._lock:
            conn = self.conn
            if self._corrupt:
                raise self._corrupt_error()
            try:
                conn.execute(begin)
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # pragma: no cover - the connection is gone
                        pass
                if isinstance(exc, sqlite3.Error):
                    raise self._error(doing, exc) from exc
                raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc

    # -- runs ------------------------------------------------------------------

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

    def _holder(self, row: Sequence[Any]) -> str | None:
        """Describe the live process holding a run's lock, or None when it is free or abandoned."""
        pid, host, started, heartbeat = row
        if pid is None:
            return None
        if host == self._host:
            if not _pid_alive(int(pid), started):
                return None
        elif heartbeat is not None and time.time() - heartbeat > LOCK_STALE_AFTER:
            return None
        return f"process {pid} on {host}"

    def _hold(self, run_id: str) -> None:
        """Keep the heartbeat of a run this process now drives fresh, from a daemon thread."""
        with self._lock:
            self._held.add(run_id)
            if self._beat_stop is None:
                self._beat_stop = threading.Event()
                threading.Thread(
                    target=self._beat, args=(self._beat_stop,), name="dagexec-heartbeat", daemon=True
                ).start()

    def _release(self, run_id: str) -> None:
        with self._lock:
            self._held.discard(run_id)
            if not self._held and self._beat_stop is not None:
                self._beat_stop.set()
                self._beat_stop = None

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            try:
                with self._tx("refresh the run lock in") as conn:
                    now = time.time()
                    conn.executemany(
                        "UPDATE runs SET lock_heartbeat = ? WHERE run_id = ? AND lock_pid = ? AND lock_host = ?",
                        [(now, r, self._pid, self._host) for r in self._held],
                    )
            except Exception as exc:  # the next step's write reports a broken file; keep beating
                log.debug("heartbeat of %s failed: %s", self.path, exc)

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
            self._known[run_id] = set(names)
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
            conn.executemany(
                _INSERT_LOG,
                [
                    (seq + k, run_id, name, state, att, now, err, st, fin, out, trace)
                    for k, (name, state, att, st, fin, out, err, trace) in enumerate(rows)
                ],
            )
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
        lo = SqliteStorage._log_base(conn, run_id)
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

    # -- checkpoints -------------------------------------------------------------

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

    # -- reading -----------------------------------------------------------------

    _RUN_COLUMNS = (
        "run_id, dag_name, status, started_at, finished_at, task_count, counts, trace_id, meta, dag_file, "
        "lock_pid, lock_host, lock_started, lock_heartbeat, num, log_applied"
    )

    def _run_info(self, row: Sequence[Any], with_counts: bool = True) -> RunInfo:
        run_id, dag_name, status, started, finished, task_count, counts, trace_id, meta, dag_file = row[:10]
        if status == "running" and self._holder(row[10:14]) is None:
            status = "crashed"  # its driver died without finishing it: resumable
        if not with_counts:
            counts_map: dict[str, int] = {}
        elif counts is None or status in ("running", "crashed"):
            counts_map = self._count_states(run_id, row[14], row[15], task_count or 0)
        else:
            counts_map = self._json(counts, f"the task counts of run {run_id}", dict)
        meta_map = self._json(meta, f"the metadata of run {run_id}", dict) if meta else {}
        if dag_file:
            meta_map["dag_file"] = dag_file
        return RunInfo(
            run_id=run_id,
            dag_name=dag_name,
            status=status,
            started_at=started,
            finished_at=finished,
            task_count=task_count or 0,
            counts=counts_map,
            trace_id=trace_id,
            meta=meta_map,
        )

    def _count_states(self, run_id: str, num: int | None, mark: int | None, task_count: int) -> dict[str, int]:
        """Tasks per state: their newest log entries, else their ``tasks`` rows, else pending."""
        if num is None or mark is None:  # written before schema 4, never resumed since: all in ``tasks``
            return dict(self._query("SELECT state, count(*) FROM tasks WHERE run_id = ? GROUP BY state", (run_id,)))
        hi = (int(num) << LOG_ID_BITS) + (1 << LOG_ID_BITS) - 1
        counts = dict(
            self._query(
                "SELECT state, count(*) FROM ("
                "SELECT state FROM tasks WHERE run_id = ?1 AND name NOT IN "
                "(SELECT task FROM transitions WHERE id BETWEEN ?2 AND ?3) "
                "UNION ALL SELECT state FROM (SELECT task, state, max(id) FROM transitions "
                "WHERE id BETWEEN ?2 AND ?3 GROUP BY task)) GROUP BY state",
                (run_id, mark + 1, hi),
            )
        )
        missing = task_count - sum(counts.values())
        if missing > 0:
            counts["pending"] = counts.get("pending", 0) + missing
        return counts

    def list_runs(self, limit: int = 20) -> list[RunInfo]:
        rows = self._query(f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [self._run_info(r) for r in rows]

    def get_run(self, run_id: str, counts: bool = True) -> RunInfo:
        rows = self._query(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise self._not_found(run_id)
        return self._run_info(rows[0], counts)

    def _not_found(self, run_id: str) -> RunNotFoundError:
        return RunNotFoundError(
            f"no run {run_id!r} in state file {str(self.path)!r}; `dagexec runs` lists the runs it holds"
        )

    def load_records(self, run_id: str) -> dict[str, TaskRecord]:
        self.get_run(run_id)
        return self._load(run_id)

    def _task_names_and_parts(self, run_id: str) -> tuple[list[str], list[str]]:
        """A run's task names in order (its dependency documents' names, then any name with a ``tasks``
        row only), and the documents' texts, oldest first."""
        names: dict[str, None] = {}
        parts: list[str] = []
        for deps, listed in self._query(
            "SELECT deps, names FROM run_fingerprints WHERE run_id = ? ORDER BY part", (run_id,)
        ):
            try:
                part = json.loads(listed if listed is not None else deps)
                if not isinstance(part, (dict, list)):
                    raise ValueError(f"a JSON object or array was expected, not {type(part).__name__}")
            except ValueError as exc:
                raise StateFileError(
                    f"the stored task list of run {run_id} cannot be decoded ({exc}); the state file is "
                    f"damaged: start a new run"
                ) from exc
            names.update(dict.fromkeys(part))
            parts.append(deps)
        names.update(dict.fromkeys(r[0] for r in self._query("SELECT name FROM tasks WHERE run_id = ?", (run_id,))))
        return list(names), parts

    def _task_names(self, run_id: str) -> list[str]:
        return self._task_names_and_parts(run_id)[0]

    def _load(self, run_id: str, names: Sequence[str] | None = None, pending: bool = True) -> dict[str, TaskRecord]:
        """Every record of a run, outputs decoded (never unpickled).

        A run's tasks are the names in its dependency documents; a task's record is its newest entry
        in the run's log after ``log_applied``, else its ``tasks`` row (a run written before schema 4),
        else pending (left out with ``pending=False``).
        """
        if names is None:
            names = self._task_names(run_id)
        found: dict[str, Sequence[Any]] = {}
        # Rows before schema 4: a run's rows were written in task order, so they are read as one range of
        # the table in rowid order (no sort, no lookup through the key per row); ``+run_id`` keeps SQLite
        # off the key.
        lo, hi = self._query("SELECT min(rowid), max(rowid) FROM tasks WHERE run_id = ?", (run_id,))[0]
        if lo is not None:
            for r in self._query(
                "SELECT name, state, attempts, error, started_at, finished_at, output, trace_id FROM tasks "
                "WHERE rowid BETWEEN ? AND ? AND +run_id = ?",
                (lo, hi, run_id),
            ):
                found[r[0]] = r
        run = self._query("SELECT num, log_applied FROM runs WHERE run_id = ?", (run_id,))
        if run and run[0][0] is not None and run[0][1] is not None:
            # the log read in id order, newest last: one range of its tree, no sort
            top = (int(run[0][0]) << LOG_ID_BITS) + (1 << LOG_ID_BITS) - 1
            for r in self._query(
                "SELECT task, state, attempts, error, started_at, finished_at, output, trace_id FROM transitions "
                "WHERE id BETWEEN ? AND ?",
                (run[0][1] + 1, top),
            ):
                found[r[0]] = r
        not_started = TaskState.PENDING
        # JSON (the default) is read by the decoder's C scanner, without json.loads' per-call layers; a
        # text the scanner does not take whole goes through json.loads, which names what is wrong with it.
        scan = _JSON_SCAN if type(self.serializer) is JsonSerializer else None
        loads = self.serializer.loads
        states = _STATES
        completed = TaskState.COMPLETED
        records: dict[str, TaskRecord] = {}

        def record(row: Sequence[Any]) -> TaskRecord:
            name, state, attempts, error, started, finished, output, trace_id = row
            st = states.get(state)
            if st is None:
                raise self._damaged(f"task {name!r} of run {run_id} has the unknown state {state!r}")
            value = None
            if st is completed and output is not None and output != "null":
                try:
                    if scan is not None:
                        try:
                            value, end = scan(output, 0)
                        except (StopIteration, ValueError):
                            end = -1
                        if end != len(output):
                            value = loads(output)
                    else:
                        value = loads(output)
                except RecursionError:
                    # stored by a run that decoded it deeper in its stack than here? decode it on a fresh stack
                    value = _on_fresh_stack(loads, output, name, run_id)
                except ValueError as exc:
                    raise StateFileError(
                        f"the stored output of task {name!r} in run {run_id} cannot be decoded ({exc}); "
                        f"was it written with another serializer= ?"
                    ) from exc
            return TaskRecord(name, st, attempts, error, started, finished, value, trace_id)

        for n in names:
            row = found.pop(n, None)
            if row is not None:
                records[n] = record(row)
            elif pending:
                records[n] = TaskRecord(n, not_started, 0, None, None, None, None, None)
        for n, row in found.items():  # logged, but in no task list (a storage written to directly)
            records[n] = record(row)
        return records

    def transitions(self, run_id: str) -> list[dict[str, Any]]:
        """The append-only log of a run's state changes, oldest first (for timelines)."""
        found = self._query("SELECT num FROM runs WHERE run_id = ?", (run_id,))
        if not found or found[0][0] is None:
            return []
        lo = int(found[0][0]) << LOG_ID_BITS
        rows = self._query(
            "SELECT task, state, attempts, at, error FROM transitions WHERE id BETWEEN ? AND ? ORDER BY id",
            (lo, lo + (1 << LOG_ID_BITS) - 1),
        )
        return [{"task": t, "state": s, "attempts": a, "at": at, "error": e} for t, s, a, at, e in rows]

    # -- per-task state and run metadata ------------------------------------------

    def load_task_state(self, dag_name: str, task_name: str) -> Any:
        rows = self._query("SELECT value FROM task_state WHERE dag_name = ? AND task = ?", (dag_name, task_name))
        if not rows or rows[0][0] is None:
            return None
        return self._json(rows[0][0], f"the state of task {task_name!r} of DAG {dag_name!r}")

    def save_task_state(self, dag_name: str, task_name: str, value: Any) -> None:
        text = _dumps(value, f"the state of task {task_name!r}")
        with self._tx("save task state in") as conn:
            conn.execute(
                "INSERT INTO task_state (dag_name, task, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (dag_name, task) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (dag_name, task_name, text, time.time()),
            )

    def get_meta(self, run_id: str, key: str) -> Any:
        rows = self._query("SELECT value FROM run_meta WHERE run_id = ? AND key = ?", (run_id, key))
        return self._json(rows[0][0], f"run metadata {key!r} of run {run_id}") if rows and rows[0][0] else None

    def put_meta(self, run_id: str, key: str, value: Any) -> None:
        text = _dumps(value, f"run metadata {key!r}")
        with self._tx("save run metadata in") as conn:
            conn.execute(
                "INSERT INTO run_meta (run_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                (run_id, key, text),
            )

    # -- dead letters ---------------------------------------------------------------

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

    def __repr__(self) -> str:
        return f"<SqliteStorage {str(self.path)!r} durability={self.durability}>"

    # -- reports ---------------------------------------------------------------------

    def run_history(self, run_id: str) -> Any:
        """Every dependency list, log entry (oldest first) and meta value of a run: a `RunHistory`
        (the optional `Storage.run_history`).

        Read only, for ``dagexec report``: the log holds each step's whole record, so the entries give
        every attempt's start and end; entries written before schema 4 carry no start or end.
        """
        from dagexec_core import RunHistory

        self.get_run(run_id, counts=False)
        names, parts = self._task_names_and_parts(run_id)
        deps: dict[str, Sequence[str]] = {}
        for text in parts:
            part = json.loads(text)
            if isinstance(part, dict):
                deps.update(part)
        for name in names:
            deps.setdefault(name, ())
        entries: list[Any] = []
        num = self._query("SELECT num FROM runs WHERE run_id = ?", (run_id,))[0][0]
        if num is not None:
            lo = int(num) << LOG_ID_BITS
            entries = self._query(
                "SELECT task, state, attempts, at, started_at, finished_at, error, trace_id FROM transitions "
                "WHERE id BETWEEN ? AND ? ORDER BY id",
                (lo, lo + (1 << LOG_ID_BITS) - 1),
            )
        meta = {k: json.loads(v) for k, v in self._query("SELECT key, value FROM run_meta WHERE run_id = ?", (run_id,))}
        return RunHistory(deps, [tuple(e) for e in entries], meta)


class StoredFingerprint(Mapping[str, Sequence[str]]):
    """A run's stored dependency lists (task -> deps), decoded on first use.

    ``digest`` is the `fingerprint_digest` of the DAG the run was created with (None for a run
    migrated from schema 1): the engine compares it with its own DAG's before reading any list.
    """

    def __init__(self, parts: Sequence[str], digest: str | None, run_id: str = "") -> None:
        self.digest = digest
        self._parts = list(parts)
        self._run_id = run_id
        self._decoded: dict[str, Sequence[str]] | None = None

    def _map(self) -> dict[str, Sequence[str]]:
        if self._decoded is None:
            merged: dict[str, Sequence[str]] = {}
            for text in self._parts:
                try:
                    part = json.loads(text)
                except ValueError as exc:
                    raise StateFileError(
                        f"the stored dependencies of run {self._run_id} cannot be decoded ({exc}); "
                        f"the state file is damaged: start a new run"
                    ) from exc
                for name, deps in part.items():
                    merged.setdefault(name, deps)  # a task keeps the dependencies first recorded for it
            self._decoded = merged
        return self._decoded

    def __getitem__(self, name: str) -> Sequence[str]:
        return self._map()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._map())


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


def _on_fresh_stack(loads: Callable[[str], Any], text: str, name: str, run_id: str) -> Any:
    """Decode a deeply nested output in a thread of its own: the whole recursion limit is left for it."""
    result: list[Any] = []
    failed: list[BaseException] = []

    def decode() -> None:
        try:
            result.append(loads(text))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    thread = threading.Thread(target=decode, name="dagexec-decode")
    thread.start()
    thread.join()
    if failed:
        raise StateFileError(
            f"the stored output of task {name!r} in run {run_id} cannot be decoded "
            f"({type(failed[0]).__name__}: {failed[0]}); replay the task: dagexec resume {run_id} --replay {name}"
        )
    return result[0]


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be stored as JSON "
            f"({exc}); keep it to plain data (dict, list, str, numbers, bool, None)"
        ) from exc


# ---------------------------------------------------------------------------
# hooks
# ---------------------------------------------------------------------------


def open_storage(config: Config, *, create: bool = True) -> SqliteStorage:
    """The state file named by ``config`` (``state``, ``durability``, ``serializer``)."""
    state = str(config.getoption("state"))
    path = Path(state)
    if not path.is_absolute():
        path = Path.cwd() / path
    return SqliteStorage(
        path,
        str(config.getoption("durability") or "normal"),
        serializer=config.getoption("serializer"),
        dag_file=str(config.dag_path.resolve()) if config.dag_path else None,
        create=create and config.getoption("create_state", True) is not False,
        read_only=bool(config.getoption("read_only", False)),
    )


@hookimpl(trylast=True)
def dagexec_storage(config: Config) -> SqliteStorage | None:
    state = config.getoption("state")
    if not config.getoption("persist") or not state or state == ":memory:":
        return None
    storage = open_storage(config)
    config.stash.setdefault("dagexec.sqlite.opened", []).append(storage)
    return storage


@hookimpl
def dagexec_addoption(parser: Any) -> None:
    parser.add_argument(
        "--durability",
        choices=tuple(DURABILITY),
        default=None,
        help="fast, normal (default: survives a killed process) or durable (survives power loss)",
    )


@hookimpl
def dagexec_unconfigure(config: Config) -> None:
    for storage in config.stash.pop("dagexec.sqlite.opened", []):
        storage.close()
