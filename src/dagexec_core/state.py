"""Task states, the one table of legal transitions, and the immutable task record."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .errors import IllegalTransitionError


class TaskState(enum.StrEnum):
    """The life cycle of one task in one run; stored as the lower-case value."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def failed(self) -> bool:
        return self in FAILED_STATES


S = TaskState

#: The states as module names, for the engine's and the resume planner's hot loops (one global lookup).
PENDING = TaskState.PENDING
READY = TaskState.READY
RUNNING = TaskState.RUNNING
RETRYING = TaskState.RETRYING
COMPLETED = TaskState.COMPLETED
FAILED = TaskState.FAILED
DEAD_LETTERED = TaskState.DEAD_LETTERED
SKIPPED = TaskState.SKIPPED
CANCELLED = TaskState.CANCELLED

#: Every legal move.  Resume moves RUNNING/RETRYING/CANCELLED back to PENDING;
#: dead-letter replay moves DEAD_LETTERED/SKIPPED back to PENDING.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.PENDING: frozenset({S.READY, S.RUNNING, S.SKIPPED, S.CANCELLED, S.FAILED}),
    S.READY: frozenset({S.RUNNING, S.CANCELLED, S.SKIPPED, S.PENDING, S.FAILED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.RETRYING, S.CANCELLED, S.PENDING}),
    S.RETRYING: frozenset({S.READY, S.RUNNING, S.FAILED, S.CANCELLED, S.PENDING}),
    S.COMPLETED: frozenset({S.PENDING}),
    S.FAILED: frozenset({S.DEAD_LETTERED, S.PENDING}),
    S.DEAD_LETTERED: frozenset({S.PENDING}),
    S.SKIPPED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING}),
}

TERMINAL_STATES = frozenset({S.COMPLETED, S.FAILED, S.DEAD_LETTERED, S.SKIPPED, S.CANCELLED})
FAILED_STATES = frozenset({S.FAILED, S.DEAD_LETTERED})


def check_transition(task: str, old: TaskState, new: TaskState) -> None:
    """Raise `IllegalTransitionError` unless ``old -> new`` is in `TRANSITIONS`."""
    if old is not new and new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old]))
        raise IllegalTransitionError(
            f"task {task!r} cannot move from {old.value} to {new.value} (allowed from {old.value}: {allowed})"
        )


@attrs.frozen
class TaskRecord:
    """What is known of one task in one run; the engine owns the table of them."""

    name: str
    state: TaskState = TaskState.PENDING
    attempts: int = 0
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    #: The OpenTelemetry trace (32 hex digits) of the invocation that last wrote this record: a resumed
    #: run's newly run tasks carry the resume's trace, the tasks it kept their own; None when untraced.
    trace_id: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "attempts": self.attempts,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "trace_id": self.trace_id,
        }
