"""`RunReport`: the outcome of a run, as `run()` returns it and ``dagexec_run_finished`` receives it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .state import COMPLETED, FAILED_STATES, TaskRecord, TaskState

if TYPE_CHECKING:
    from .engine import Run


class RunReport:
    """The outcome of a run. Records and outputs are built on first access."""

    def __init__(self, run: Run, status: str) -> None:
        self.run_id = run.run_id
        self.dag_name = run.dag.name
        self.status = status
        #: The run is kept in a state file (it can be resumed and replayed).
        self.persisted: bool = run.persist
        self.started_at = run.started_at
        self.finished_at = time.time()
        self._run = run
        self._records: dict[str, TaskRecord] | None = None
        self._outputs: dict[str, Any] | None = None
        self.metrics: dict[str, Any] = run.metrics_snapshot()

    @property
    def ok(self) -> bool:
        """Every task completed, or was skipped with nothing failed (a branch not taken, a trigger rule)."""
        return self._run.all_done_ok()

    @property
    def records(self) -> dict[str, TaskRecord]:
        if self._records is None:
            self._records = {t.name: self._run.record(i) for i, t in enumerate(self._run.tasks)}
        return self._records

    @property
    def outputs(self) -> dict[str, Any]:
        if self._outputs is None:
            r = self._run
            self._outputs = {t.name: r.outputs[i] for i, t in enumerate(r.tasks) if r.states[i] is COMPLETED}
        return self._outputs

    @property
    def failed(self) -> list[str]:
        r = self._run
        return [t.name for i, t in enumerate(r.tasks) if r.states[i] in FAILED_STATES]

    def count(self, state: TaskState | str) -> int:
        return self._run.count(TaskState(state))

    def counts(self) -> dict[str, int]:
        return self._run.counts()

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at

    def __repr__(self) -> str:
        return f"<RunReport {self.run_id} {self.status} {self.counts()}>"


__all__ = ["RunReport"]
