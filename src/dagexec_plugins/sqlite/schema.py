"""The state file's format: its identity, schema version, and the SQL of the transition log.

What every other module of the storage agrees on; the migrations that create
and upgrade the schema are in `migrations` (the only module that needs
sqlite-utils, imported only when a file is created or migrated).
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
