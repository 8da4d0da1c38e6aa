"""Protocols that stage objects follow: storage, executor, retry, breaker, dead letters.

Provider hooks return objects of these shapes; the engine knows nothing else
about them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from .state import TaskRecord

if TYPE_CHECKING:
    from .dag import Task

#: One row of a batched state write, kept a plain tuple because the engine
#: builds one per transition:
#: ``(task_name, state_value, attempts, started_at, finished_at, output_json, error, trace_id)``.
#: ``output_json`` is the JSON text of the output (only for ``completed``); ``trace_id`` is the
#: OpenTelemetry trace (32 hex digits) of the invocation writing the row (`Run.record_trace_id`), None
#: when it is not traced. Storage keeps it with the record, so a resumed run's tasks point to the
#: trace that ran them.
RecordRow = tuple[str, str, int, "float | None", "float | None", "str | None", "str | None", "str | None"]


@attrs.frozen
class RunInfo:
    """A run as storage knows it."""

    run_id: str
    dag_name: str
    status: str  # running | completed | failed | cancelled | crashed
    started_at: float
    finished_at: float | None = None
    task_count: int = 0
    counts: Mapping[str, int] = attrs.field(factory=dict)
    trace_id: str | None = None
    meta: Mapping[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        duration = None if self.finished_at is None else self.finished_at - self.started_at
        return {
            "run_id": self.run_id,
            "dag": self.dag_name,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": duration,
            "task_count": self.task_count,
            "counts": dict(self.counts),
            "trace_id": self.trace_id,
        }


#: One state change of a task, as the optional ``Storage.run_history`` returns it, oldest first:
#: ``(task, state_value, attempts, at, started_at, finished_at, error, trace_id)``; ``at`` is when it was
#: written, the rest is the task's record as that change left it.
HistoryEntry = tuple[str, str, int, float, "float | None", "float | None", "str | None", "str | None"]


@attrs.frozen
class RunHistory:
    """What a report of a run reads besides its records (the optional ``Storage.run_history``)."""

    #: task -> the names of its dependencies, for every task of the run (dynamic map elements too)
    deps: Mapping[str, Sequence[str]]
    #: every state change of every task, oldest first
    entries: Sequence[HistoryEntry]
    #: every meta value kept with the run (`Storage.put_meta`), by key
    meta: Mapping[str, Any] = attrs.field(factory=dict)


def fingerprint_text(fingerprint: Mapping[str, Sequence[str]]) -> str:
    """The canonical text of a DAG fingerprint (task -> its dependencies, in task order): compact JSON."""
    return json.dumps(fingerprint if isinstance(fingerprint, dict) else dict(fingerprint), separators=(",", ":"))


def fingerprint_digest(fingerprint: Mapping[str, Sequence[str]] | None = None, *, text: str | None = None) -> str:
    """A digest of a DAG fingerprint (or of its `fingerprint_text`), to compare two DAGs without either's lists."""
    if text is None:
        text = fingerprint_text(fingerprint or {})
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@runtime_checkable
class Storage(Protocol):
    """Where runs and task records live (``dagexec_storage``).

    The fingerprint `resume_run` returns may carry a ``digest`` attribute: the
    `fingerprint_digest` of the fingerprint the run was created with. When it
    equals the digest of the DAG being resumed, the engine knows every stored
    dependency list is unchanged and reads none of them.
    """

    #: False for storage that keeps nothing past the process (outputs are then
    #: never encoded to JSON and rows are not built on the hot path).
    persistent: bool

    def create_run(self, run: RunInfo, task_names: Sequence[str], dag_fingerprint: Mapping[str, Sequence[str]]) -> None:
        """Record a new run with every task PENDING, and take its lock."""

    def resume_run(self, run_id: str) -> tuple[RunInfo, dict[str, TaskRecord], Mapping[str, Sequence[str]]]:
        """Take the lock of a stored run; return it, its records (outputs decoded) and its fingerprint.

        The records may leave out tasks that never started: the engine takes a task of its DAG
        without a record as pending, and passes such tasks to `add_tasks`, which ignores names the
        run already has.
        """

    def add_tasks(self, run_id: str, task_names: Sequence[str], deps: Mapping[str, Sequence[str]]) -> None:
        """Record tasks created while the run is under way (dynamic map), PENDING; a name the run
        already has keeps its record and the dependencies first recorded for it."""

    def write(self, run_id: str, rows: Sequence[RecordRow]) -> None:
        """Persist one scheduler step's transitions in one transaction."""

    def finish_run(self, run_id: str, status: str, finished_at: float, counts: Mapping[str, int]) -> None:
        """Mark the run finished (or cancelled/failed) and release its lock.

        Optional, not part of the protocol check: ``set_trace_id(run_id, trace_id)``, called once
        after ``dagexec_run_started`` when a tracing plugin gave the run a trace id it did not have
        stored (`RunInfo.trace_id`). Storage without it keeps no run-level trace id.

        Optional, not part of the protocol check: ``run_history(run_id) -> RunHistory``, every
        dependency list, state change and meta value of a run, read by ``dagexec report``. Storage
        without it gets a report drawn from its records alone (one bar per task, no edges).

        Optional, not part of the protocol check: ``write_logs(run_id, rows)``, the task logs of the
        attempts a scheduler step ends (`dagexec_core.tasklogs.LogRow` tuples), called just before
        that step's `write`; ``read_logs(run_id, task=None, attempt=None, after=0, records=True)``, the
        logged attempts of a run oldest first, as dicts with ``id``, ``task``, ``attempt``, ``written_at``,
        ``lines``, ``dropped`` and (with ``records``) ``records``; ``prune(older_than=None, keep=None, vacuum=False)``,
        delete finished runs started before the ``older_than`` timestamp and/or beyond the newest
        ``keep``, with everything kept for them, returning their ids. Storage without ``write_logs``
        keeps no task logs (``ctx.log`` still logs, ``--capture`` is ignored); ``dagexec logs`` and
        ``dagexec prune`` say the storage cannot when the others are missing (docs/logs.md).
        """

    def list_runs(self, limit: int = 20) -> list[RunInfo]: ...

    def get_run(self, run_id: str) -> RunInfo: ...

    def load_records(self, run_id: str) -> dict[str, TaskRecord]: ...

    def load_task_state(self, dag_name: str, task_name: str) -> Any:
        """The persisted ``ctx.state`` of a stateful task, or None."""

    def save_task_state(self, dag_name: str, task_name: str, value: Any) -> None: ...

    def get_meta(self, run_id: str, key: str) -> Any:
        """A small JSON value kept with the run (breaker state, loop checkpoints...)."""

    def put_meta(self, run_id: str, key: str, value: Any) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class TaskExecutor(Protocol):
    """Runs task bodies (``dagexec_executor``).

    ``submit`` returns an asyncio future of the body's return value. When
    ``context`` is given (tracing, for instance, put the attempt span in it)
    the body must run inside it.
    """

    name: str
    #: True when the executor stops overrunning bodies itself (a process pool
    #: kills the worker); the engine then does not abandon them.
    enforces_timeout: bool

    def start(self, loop: asyncio.AbstractEventLoop, concurrency: int) -> None: ...

    def submit(
        self,
        task: Task,
        kwargs: dict[str, Any],
        timeout: float | None,
        context: Any = None,
    ) -> asyncio.Future[Any]: ...

    def shutdown(self, cancel: bool = False) -> None: ...


@runtime_checkable
class RetryPolicyLike(Protocol):
    @property
    def max_attempts(self) -> int: ...

    def next_delay(self, attempt: int, error: BaseException | None) -> float | None: ...


@runtime_checkable
class CircuitBreaker(Protocol):
    name: str

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""

    def allow(self) -> bool:
        """May an attempt go through now?"""

    def record_success(self) -> None: ...

    def record_failure(self, error: BaseException | None) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """The time that retry delays, breaker cooldowns and breaker waits are measured in (option ``clock``).

    Without one the engine uses the event loop's timers and `time.monotonic`.
    `dagexec_core.testing.VirtualClock` is one whose time moves only when a
    test advances it or the run has nothing else to do.
    """

    def monotonic(self) -> float:
        """Seconds, never going back."""

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        """Call ``callback(*args)`` on the running loop ``delay`` seconds from now; returns a handle with
        ``cancel()``. Called on the loop's thread."""

    def idle(self) -> None:
        """The run has nothing to do until a timer of this clock fires (no task body is running)."""


@attrs.frozen
class DeadLetter:
    """A task whose retries were exhausted."""

    id: str
    run_id: str
    dag_name: str
    task: str
    attempts: int
    error_type: str
    message: str
    traceback: str
    created_at: float
    trace_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@runtime_checkable
class DeadLetterQueue(Protocol):
    def push(self, entry: DeadLetter) -> str: ...

    def list(self, run_id: str | None = None) -> list[DeadLetter]: ...

    def get(self, entry_id: str) -> DeadLetter: ...

    def remove(self, entry_id: str) -> None: ...
