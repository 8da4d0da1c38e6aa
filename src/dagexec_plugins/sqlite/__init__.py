"""The ``sqlite`` plugin, the default storage: runs, task records, transitions and dead letters in one SQLite file.

A new file gets the current schema as plain SQL (`schema.CREATE_SCHEMA`);
sqlite-utils runs the migrations that upgrade an older one (the version lives
in the file); the
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

The package follows the storage's seams: `schema` (the file's format),
`migrations` (upgrading it, the only user of sqlite-utils),
`base` (opening the file, transactions, errors), `lock` (the run lock),
`write` (the write path), `read` (reads) and `storage` (`SqliteStorage`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagexec_core import Config, hookimpl

from .base import DURABILITY, WAL_AUTOCHECKPOINT
from .lock import HEARTBEAT_EVERY, LOCK_STALE_AFTER
from .read import StoredFingerprint
from .schema import APPLICATION_ID, LOG_ID_BITS, MULTI_ROW_MAX, SCHEMA_VERSION, SQLITE_MAGIC
from .storage import SqliteDeadLetterQueue, SqliteStorage
from .write import CHECKPOINT_EVERY


def __getattr__(name: str) -> Any:
    """The migrations, importable from here as before the package, without importing sqlite-utils otherwise."""
    if name == "MIGRATIONS" or name.startswith("_migrate_to_"):
        from . import migrations

        return getattr(migrations, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


__all__ = [
    "APPLICATION_ID",
    "CHECKPOINT_EVERY",
    "DURABILITY",
    "HEARTBEAT_EVERY",
    "LOCK_STALE_AFTER",
    "LOG_ID_BITS",
    "MULTI_ROW_MAX",
    "SCHEMA_VERSION",
    "SQLITE_MAGIC",
    "SqliteDeadLetterQueue",
    "SqliteStorage",
    "StoredFingerprint",
    "WAL_AUTOCHECKPOINT",
    "open_storage",
]
