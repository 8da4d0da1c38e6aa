"""Test helpers for the pattern tests: storage shared between runs, collected spans."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dagexec_core import hookimpl
from dagexec_core.config import Config
from dagexec_core.stages import RecordRow
from dagexec_core.state import TaskRecord, TaskState
from dagexec_plugins.memory import MemoryStorage


class DurableMemoryStorage(MemoryStorage):
    """The in-memory storage, keeping rows and outputs like a persistent store.

    Lets one test resume a run in the same process through the real resume
    path (records reloaded, outputs decoded) without a state file.
    """

    persistent = True

    def write(self, run_id: str, rows: Sequence[RecordRow]) -> None:
        recs = self.records[run_id]
        for name, state, attempts, started, finished, output, error, trace_id in rows:
            value = json.loads(output) if output is not None else None
            recs[name] = TaskRecord(name, TaskState(state), attempts, error, started, finished, value, trace_id)


class SharedStorage:
    """A plugin handing the same storage object to every run it is given to."""

    def __init__(self, storage: MemoryStorage | None = None) -> None:
        self.storage = storage if storage is not None else DurableMemoryStorage()

    @hookimpl
    def dagexec_storage(self, config: Config) -> Any:
        return self.storage
