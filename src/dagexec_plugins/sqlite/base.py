"""Opening a state file: refusing foreign, corrupt and newer files, WAL mode, transactions, error messages.

`StorageBase` is what the write path (`write`), the reads (`read`) and the
storage itself (`storage`) share.
"""

from __future__ import annotations

import json
import json.decoder
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagexec_core import (
    JsonSerializer,
    RunNotFoundError,
    Serializer,
    StateFileError,
    StateFileMissingError,
    UsageError,
)

from .lock import RunLock, _proc_start
from .schema import APPLICATION_ID, CREATE_SCHEMA, SCHEMA_VERSION, SQLITE_MAGIC

DURABILITY = {"fast": "OFF", "normal": "NORMAL", "durable": "FULL"}

#: Commits between two checkpoints of the WAL, run by a background thread (a step is 2-5 WAL frames).
CHECKPOINT_EVERY = 200
#: The writing connection's own automatic checkpoint (pages). The background checkpoints copy most of
#: the WAL, but never all of it while steps keep coming, so only the writer's own checkpoint lets the
#: WAL start over from its beginning: without it the WAL grows to this many pages (every new frame
#: then extends the file) and deleting it when the file closes took 40 ms at 8000 pages (33 MB).
WAL_AUTOCHECKPOINT = 1000

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 10, 11, 13, 26


class StorageBase(RunLock):
    """The file of a `SqliteStorage`: its connection, schema check, transactions and errors."""

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
            # room in the statement cache for a multi-row INSERT of each step size (`MULTI_ROW_MAX`)
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30.0, cached_statements=256
            )
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
            # the schema's commit at the file's own durability, not fsync'ed at SQLite's default (FULL)
            conn.execute(f"PRAGMA synchronous = {DURABILITY[self.durability]}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                # re-read under the write lock: another process may have created or migrated it meanwhile
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    # a new file: the current schema in plain SQL, the steps recorded as if migrated
                    for statement in CREATE_SCHEMA:
                        conn.execute(statement)
                    now = time.time()
                    conn.executemany(
                        "INSERT INTO schema_migrations VALUES (?, ?)",
                        [(v, now) for v in range(1, SCHEMA_VERSION + 1)],
                    )
                elif version < SCHEMA_VERSION:
                    # sqlite-utils (and pandas) only when an older file is upgraded: never on a run's write path
                    from .migrations import MIGRATIONS, open_database

                    db = open_database(conn)
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

    def _not_found(self, run_id: str) -> RunNotFoundError:
        return RunNotFoundError(
            f"no run {run_id!r} in state file {str(self.path)!r}; `dagexec runs` lists the runs it holds"
        )
