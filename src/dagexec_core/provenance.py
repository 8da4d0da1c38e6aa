"""Which code a stored run may import: digests of its DAG file and the dagplugins.py files beside it.

A state file is data, not code. A run keeps the path of the DAG file it was
started from and a SHA-256 digest of that file and of every ``dagplugins.py``
that applied to it. ``dagexec resume RUN_ID`` and ``dagexec dlq replay`` import
the remembered file only when it is still there and unchanged; otherwise they
refuse, naming the file, and import nothing. Naming the file on the command
line is the user's decision to run that code, and the run then remembers it.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

from .errors import UsageError
from .plugins import find_dagplugins
from .stages import RunInfo, Storage

#: Run metadata key (`Storage.put_meta`): the code a resume named, replacing what the run was created with.
META_KEY = "dagexec.dag_code"
#: Key of `RunInfo.meta` holding the code the run was created with.
INFO_KEY = "dag_code"


def code_of(dag_path: Path) -> dict[str, Any]:
    """``{"path": DAG file, "files": {file: sha256}}`` for the DAG file and the dagplugins.py that apply to it."""
    path = dag_path.resolve()
    files = {str(p): _sha256(p) for p in [path, *find_dagplugins(path)]}
    return {"path": str(path), "files": files}


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def recorded_code(storage: Storage, info: RunInfo) -> dict[str, Any] | None:
    """The code a stored run last ran with, or None when it keeps no digest (a run started before they were kept)."""
    found = storage.get_meta(info.run_id, META_KEY) or info.meta.get(INFO_KEY)
    if isinstance(found, dict) and isinstance(found.get("path"), str) and isinstance(found.get("files"), dict):
        return found
    return None


def check_unchanged(info: RunInfo, recorded: dict[str, Any] | None, name_it: str) -> Path:
    """The remembered DAG file, when it and its dagplugins.py are as the run knew them; else `UsageError`.

    ``name_it`` is the command that names the file instead (``dagexec resume RUN FILE``).
    """
    run_id = info.run_id
    if recorded is None:
        where = info.meta.get("dag_file")
        if not where:
            raise UsageError(
                f"run {run_id} does not remember its DAG file (it was started from the API without one); "
                f"name it: {name_it}"
            )
        raise UsageError(
            f"run {run_id} keeps no digest of its DAG file {where} (it was started by an older dagexec), so "
            f"nothing was imported; to run that file, name it: {name_it.replace('FILE', shlex.quote(str(where)))}"
        )
    path = Path(recorded["path"])
    if not path.is_file():
        raise UsageError(
            f"run {run_id} was started from {path}, which is no longer there (moved or deleted); nothing was "
            f"imported; name the DAG file to resume with: {name_it}"
        )
    now = code_of(path)["files"]
    before: dict[str, Any] = recorded["files"]
    for file in sorted(set(before) | set(now)):
        if before.get(file) != now.get(file):
            what = (
                "appeared"
                if file not in before
                else "is gone"
                if now.get(file) is None
                else "changed since the run last ran"
            )
            raise UsageError(
                f"{file} {what}; run {run_id} would import it, so nothing was imported; if the change is meant, "
                f"name the file: {name_it.replace('FILE', shlex.quote(str(path)))}"
            )
    return path
