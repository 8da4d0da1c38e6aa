"""Storage that keeps runs in this process only: ``persist=False``, ``--no-persist``, tests."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dagexec_core import (
    Config,
    HistoryEntry,
    RecordRow,
    RunHistory,
    RunInfo,
    RunNotFoundError,
    TaskRecord,
    TaskState,
    hookimpl,
)


class MemoryStorage:
    """Keeps everything in dicts. Rows are not built for it (``persistent`` is False)."""

    persistent = False

    def __init__(self) -> None:
        self.runs: dict[str, RunInfo] = {}
        self.records: dict[str, dict[str, TaskRecord]] = {}
        self.fingerprints: dict[str, dict[str, Sequence[str]]] = {}
        self.names: dict[str, Sequence[str]] = {}
        self.task_state: dict[tuple[str, str], Any] = {}
        self.meta: dict[tuple[str, str], Any] = {}

    def create_run(self, run: RunInfo, task_names: Sequence[str], dag_fingerprint: Mapping[str, Sequence[str]]) -> None:
        # Records are made on first write: a task never written is PENDING.
        self.runs[run.run_id] = run
        self.names[run.run_id] = task_names
        self.records[run.run_id] = {}
        self.fingerprints[run.run_id] = dict(dag_fingerprint)

    def _all_records(self, run_id: str) -> dict[str, TaskRecord]:
        recs = self.records[run_id]
        return {n: recs.get(n) or TaskRecord(n) for n in [*self.names[run_id], *recs]}

    def resume_run(self, run_id: str) -> tuple[RunInfo, dict[str, TaskRecord], Mapping[str, Sequence[str]]]:
        return self.get_run(run_id), self._all_records(run_id), self.fingerprints[run_id]

    def add_tasks(self, run_id: str, task_names: Sequence[str], deps: Mapping[str, Sequence[str]]) -> None:
        for n in task_names:
            self.records[run_id].setdefault(n, TaskRecord(n))
            self.fingerprints[run_id].setdefault(n, list(deps.get(n, ())))  # a known task keeps its first deps

    def write(self, run_id: str, rows: Sequence[RecordRow]) -> None:
        recs = self.records[run_id]
        for row in rows:
            name, state, attempts, started, finished, _output, error = row[:7]
            trace_id = row[7] if len(row) > 7 else None  # rows of the 7-element shape have no trace
            recs[name] = TaskRecord(name, TaskState(state), attempts, error, started, finished, trace_id=trace_id)

    def set_trace_id(self, run_id: str, trace_id: str | None) -> None:
        """The run's trace id (see `Storage.finish_run`)."""
        if run_id in self.runs:
            self.runs[run_id] = attrs.evolve(self.runs[run_id], trace_id=trace_id)

    def finish_run(self, run_id: str, status: str, finished_at: float, counts: Mapping[str, int]) -> None:
        if run_id in self.runs:
            self.runs[run_id] = attrs.evolve(
                self.runs[run_id], status=status, finished_at=finished_at, counts=dict(counts)
            )

    def list_runs(self, limit: int = 20) -> list[RunInfo]:
        return sorted(self.runs.values(), key=lambda r: r.started_at, reverse=True)[:limit]

    def get_run(self, run_id: str) -> RunInfo:
        try:
            return self.runs[run_id]
        except KeyError:
            raise RunNotFoundError(f"no run {run_id!r} in memory storage") from None

    def load_records(self, run_id: str) -> dict[str, TaskRecord]:
        self.get_run(run_id)
        return self._all_records(run_id)

    def load_task_state(self, dag_name: str, task_name: str) -> Any:
        return copy.deepcopy(self.task_state.get((dag_name, task_name)))

    def save_task_state(self, dag_name: str, task_name: str, value: Any) -> None:
        self.task_state[(dag_name, task_name)] = copy.deepcopy(value)

    def get_meta(self, run_id: str, key: str) -> Any:
        return self.meta.get((run_id, key))

    def put_meta(self, run_id: str, key: str, value: Any) -> None:
        self.meta[(run_id, key)] = value

    def run_history(self, run_id: str) -> RunHistory:
        """Dependencies, meta and each record's last attempt (`Storage.run_history`): no log is kept here."""
        entries: list[HistoryEntry] = []
        for r in self.load_records(run_id).values():
            if r.started_at is not None:
                entries.append((r.name, "running", r.attempts, r.started_at, r.started_at, None, None, r.trace_id))
            if r.state is not TaskState.PENDING and r.state is not TaskState.RUNNING:
                at = r.finished_at if r.finished_at is not None else r.started_at or 0.0
                entries.append(
                    (r.name, r.state.value, r.attempts, at, r.started_at, r.finished_at, r.error, r.trace_id)
                )
        entries.sort(key=lambda e: e[3])
        meta = {key: copy.deepcopy(value) for (rid, key), value in self.meta.items() if rid == run_id}
        return RunHistory(dict(self.fingerprints.get(run_id, {})), entries, meta)

    def close(self) -> None:
        pass


@hookimpl(trylast=True)
def dagexec_storage(config: Config) -> MemoryStorage | None:
    if config.getoption("persist") and config.getoption("state") != ":memory:":
        return None
    return MemoryStorage()
