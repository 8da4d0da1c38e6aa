"""`TaskContext`: what a task body sees of its run when it takes a ``ctx`` parameter."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .tasklogs import route_ctx

if TYPE_CHECKING:
    from .engine import Run

_MISSING = object()


class TaskContext:
    """Handed to a task body as ``ctx``; one per attempt."""

    __slots__ = ("run", "task", "attempt", "_deadline", "_state", "_log")

    def __init__(self, run: Run, task: str, attempt: int, timeout: float | None) -> None:
        self.run = run
        self.task = task
        self.attempt = attempt
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._state: Any = _MISSING
        self._log: logging.Logger | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def params(self) -> Mapping[str, Any]:
        """The run's parameters, read-only (docs/parameters.md); the same on every attempt and resume."""
        return self.run.run_params

    @property
    def log(self) -> logging.Logger:
        if self._log is None:
            self._log = logging.getLogger(f"dagexec.task.{self.task}")
            route_ctx(self.run, self.task, self.attempt)  # its records are kept with the attempt (tasklogs)
        return self._log

    @property
    def deadline(self) -> float | None:
        """Seconds this attempt has left before its timeout (None: no timeout)."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    @property
    def cancelled(self) -> bool:
        """True once the run is being cancelled: a long task should stop early."""
        return self.run.cancelling

    # -- outputs and the blackboard -----------------------------------------

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The output of any completed task of the run."""
        return self.run.output_of(name, default)

    def set(self, key: str, value: Any) -> None:
        """Put ``value`` on the run's blackboard, shared by every task."""
        self.run.blackboard[key] = value

    def lookup(self, key: str, default: Any = None) -> Any:
        """Read the run's blackboard."""
        return self.run.blackboard.get(key, default)

    # -- events -------------------------------------------------------------

    def emit(self, event: str, payload: Any = None) -> None:
        """Deliver ``event`` to every task waiting for it (now or later in this run)."""
        self.run.emit(event, payload)

    async def wait_for(self, event: str, timeout: float | None = None) -> Any:
        """Wait for ``event`` and return its payload, without holding a worker slot.

        Raises `asyncio.TimeoutError` (a `TimeoutError`) after ``timeout`` seconds.
        """
        return await self.run.wait_for_event(event, timeout)

    def wait_for_blocking(self, event: str, timeout: float | None = None) -> Any:
        """`wait_for` for sync task bodies running in a worker thread."""
        fut = asyncio.run_coroutine_threadsafe(self.run.wait_for_event(event, timeout), self.run.loop)
        return fut.result()

    # -- per-task persisted state ---------------------------------------------

    @property
    def state(self) -> Any:
        """This task's persisted state: kept across attempts and across runs of the DAG."""
        if self._state is _MISSING:
            self._state = self.run.load_task_state(self.task)
        return self._state

    @state.setter
    def state(self, value: Any) -> None:
        self.run.save_task_state(self.task, value)
        self._state = value

    def __repr__(self) -> str:
        return f"<TaskContext run={self.run_id} task={self.task!r} attempt={self.attempt}>"
