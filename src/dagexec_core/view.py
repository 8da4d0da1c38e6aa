"""The run as plugins see it: `RunView`, the read-only face event and provider hooks receive as ``run``.

pytest hands its hooks `Config`, `Item` and `Session`, never the runner's
internals; dagexec hands them a `RunView`. The engine's own class follows
this protocol, so handing it over costs nothing per task, but a plugin may
rely on these names only: anything else on the object may change in any
release. A plugin does not write to the run; the one thing it may tell the
run is which trace the run belongs to (`RunView.set_trace_ids`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .config import Config
    from .dag import Dag
    from .stages import Storage


class RunView(Protocol):
    """One execution of a DAG, as hooks receive it (``run``).

    Read-only, except `set_trace_ids`. Counts and states are those of the
    moment of the call: a hook runs on the event-loop thread, between two
    scheduler steps, so they do not change while it runs.
    """

    @property
    def run_id(self) -> str:
        """The run's id (``20260101-120000-a1b2c3``); a resume keeps the id of the run it continues."""

    @property
    def dag(self) -> Dag:
        """The DAG being run."""

    @property
    def config(self) -> Config:
        """The run's `Config`: options (``config.getoption``), the plugin manager, the DAG file."""

    @property
    def resumed_from(self) -> str | None:
        """The run id this invocation resumes, or None for a new run."""

    @property
    def started_at(self) -> float:
        """When the run first started (epoch seconds); a resume keeps the first start."""

    @property
    def storage(self) -> Storage:
        """The run's `Storage`; plugins keep state of their own with the run through
        ``storage.get_meta(run.run_id, key)`` / ``storage.put_meta(run.run_id, key, value)``."""

    @property
    def cancelling(self) -> bool:
        """The run is being cancelled: no new task is launched."""

    @property
    def running(self) -> int:
        """How many tasks hold a concurrency slot now."""

    @property
    def task_count(self) -> int:
        """How many tasks the run has now; ``dag.map`` adds one per element when it expands."""

    @property
    def trace_id(self) -> str | None:
        """The run's trace (stored in ``runs.trace_id``): the first traced invocation's, None if never traced."""

    @property
    def record_trace_id(self) -> str | None:
        """The trace of this invocation, stored with every record it writes; None when untraced."""

    @property
    def run_params(self) -> Mapping[str, Any]:
        """The run's parameters (``ctx.params``, docs/parameters.md): read-only, the same on every resume."""

    def counts(self) -> dict[str, int]:
        """How many tasks are in each state now, keyed by the state's value (``"completed"``); zero counts left out."""

    def metrics_snapshot(self) -> dict[str, Any]:
        """The run's metrics so far, as `RunReport.metrics` gives them at the end."""

    def output_of(self, name: str, default: Any = ...) -> Any:
        """The output of completed task ``name``; ``default`` (or KeyError) when it has none."""

    def breaker_state(self, group: str) -> str | None:
        """The state (``closed``, ``open``, ``half_open``) of circuit-breaker group ``group``, None before its first use."""

    def last_error(self, task: str) -> BaseException | None:
        """The exception that ended the last failed attempt of ``task`` in this invocation, if any."""

    def set_trace_ids(self, invocation: str, *, run: str | None = None, task: str | None = None) -> None:
        """Tell the run which OpenTelemetry trace (32 hex digits) it belongs to; the one way a plugin writes to it.

        In ``dagexec_run_started`` (without ``task``): ``invocation`` is this
        invocation's trace, stored with every record it writes
        (`record_trace_id`); the run's own trace (`trace_id`, kept in
        ``runs.trace_id``) becomes ``run`` (default ``invocation``) unless
        the run already has one. In ``dagexec_task_started``, with ``task``:
        the attempt of ``task`` now starting runs in trace ``invocation``; a
        dead letter of that task carries it.
        """


__all__ = ["RunView"]
