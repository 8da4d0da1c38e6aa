"""The run loop: ready-queue, launches, completions, retries, skip-cascade, cancellation.

One scheduler step takes every finished attempt, releases dependents, picks
ready tasks up to the concurrency bound, persists the whole step's
transitions in one storage write, and only then hands the picked tasks to the
executor. So a task is durable in RUNNING before its body starts, and a
completed output is durable before any dependent starts.

The loop (`Run._loop`) takes a step when woken. When the attempt that
finishes is the only one in flight (a chain), the step is taken at once in
its done-callback (`Run._step_now`), one event-loop turn sooner; with more in
flight the loop is woken, so that attempts finishing in the same turn share a
step and its one commit.

Hot counters are lists indexed by integer task index; names, attrs records
and hooks stay at the edges.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import gc
import heapq
import inspect
import logging
import os
import secrets
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from . import events, provenance, tasklogs
from . import params as run_params
from .config import Config
from .context import TaskContext
from .dag import Dag, Task, chosen_branches
from .errors import (
    CircuitOpenError,
    DagChangedError,
    OutputSerializationError,
    PluginError,
    TaskCancelledError,
    TaskInterruptedError,
    TaskTimeoutError,
    UsageError,
)
from .outputs import IDENTITY_TYPES, JsonSerializer, Serializer, encode_output, output_error
from .plugins import call_hook, hook_error
from .results import RunReport
from .resume import CRASH_META, base_name, plan_resume
from .retry import RetryPolicy
from .stages import CircuitBreaker, Clock, DeadLetter, DeadLetterQueue, RecordRow, RetryPolicyLike, RunInfo, Storage
from .state import (
    CANCELLED,
    COMPLETED,
    DEAD_LETTERED,
    FAILED,
    FAILED_STATES,
    PENDING,
    READY,
    RETRYING,
    RUNNING,
    SKIPPED,
    TERMINAL_STATES,
    TRANSITIONS,
    TaskRecord,
    TaskState,
)

if TYPE_CHECKING:
    from .api import RunHandle
    from .view import RunView

log = logging.getLogger("dagexec")


_NO_RETRY = RetryPolicy(max_attempts=1)
_MISSING = object()
#: In `Run.trace_ids`: the record is (or will be) written by this invocation, so its trace is `Run.record_trace_id`.
_THIS_INVOCATION: Any = object()

EVENT_HOOKS = (
    "dagexec_run_started",
    "dagexec_task_started",
    "dagexec_task_retrying",
    "dagexec_task_finished",
    "dagexec_task_dead_lettered",
    "dagexec_run_finished",
)


def new_run_id() -> str:
    now = datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class Run:
    """One execution of a DAG: the engine's implementation, not a public class.

    Hooks receive it as ``run``, typed and documented as `RunView` (its
    public face); everything else here is the engine's own.
    """

    def __init__(
        self,
        dag: Dag,
        config: Config,
        *,
        run_id: str | None = None,
        resume: str | None = None,
        replay: Sequence[str] = (),
        handle: RunHandle | None = None,
    ) -> None:
        self.dag = dag
        self.config = config
        self.pm: pluggy.PluginManager = config.pluginmanager
        self.hook = self.pm.hook
        self.resumed_from = resume
        if resume is not None and not resume.strip():
            raise UsageError("resume needs a run id; `dagexec runs` lists the stored runs")
        self.run_id = resume or run_id or new_run_id()
        self.replay = tuple(replay)
        self.handle = handle
        self.blackboard: dict[str, Any] = {}
        #: The run's parameters, read-only (``ctx.params``); set when the run opens (`params.attach`).
        self.run_params: Mapping[str, Any] = run_params.EMPTY
        #: Task logs kept for storage (`tasklogs`), None when the storage keeps none; `open_logs` is its
        #: attempts in flight, checked before any per-attempt work.
        self.task_logs: tasklogs.RunLogs | None = None
        self.open_logs: dict[str, tasklogs.AttemptLog] = {}
        self.capture_logs = False
        self.cancelling = False
        self.waiting = False  # the loop waits for a wake-up (and no breaker)
        self.step_error: BaseException | None = None  # raised in a step taken in a done-callback
        self.started_at = time.time()
        #: The run's trace (the first traced invocation's; stored in ``runs.trace_id``).
        self.trace_id: str | None = None
        #: The trace of THIS invocation, written with every record row (a tracing plugin sets it in
        #: ``dagexec_run_started``); None when untraced. Differs from `trace_id` on a traced resume.
        self.record_trace_id: str | None = None
        #: On resume only: the stored trace id of each task this invocation kept as it was, and
        #: `_THIS_INVOCATION` for the others (`record` then answers `record_trace_id`).
        self.trace_ids: list[Any] | None = None
        #: The trace of each task's latest attempt, when a tracing plugin says (`set_trace_ids`): its dead letter's.
        self.task_trace_ids: dict[str, str] = {}
        self.serializer: Serializer = config.getoption("serializer") or JsonSerializer()
        #: Without persistence, still hand dependents the JSON round trip of each output (docs/reliability.md).
        self.check_outputs = config.getoption("check_outputs", True) is not False
        self.concurrency = int(config.getoption("concurrency") or 32)
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, not {self.concurrency}")
        self.grace_period = float(config.getoption("grace_period", 10.0))
        self.breaker_max_wait = float(config.getoption("breaker_max_wait", 300.0))

        # -- the task table ------------------------------------------------
        order = dag.topological_order()
        self.tasks: list[Task] = list(map(dag.tasks.__getitem__, order))
        breaker_tags = config.getoption("breaker_tags")
        if breaker_tags:
            self.tasks = [_tag_breaker(t, breaker_tags) for t in self.tasks]
        tasks = self.tasks
        n = len(tasks)
        index: dict[str, int] = dict(zip(order, range(n), strict=True))
        self.index = index
        self.states: list[TaskState] = [PENDING] * n
        self.attempts: list[int] = [0] * n
        self.started: list[float | None] = [None] * n
        self.finished: list[float | None] = [None] * n
        self.outputs: list[Any] = [None] * n
        self.errors: list[str | None] = [None] * n
        self.remaining: list[int] = [0] * n
        children: list[list[int]] = [[] for _ in range(n)]
        self.children = children
        # comprehensions on local names, the lookups in C; a task without dependencies (or parameters)
        # shares the empty tuple
        lookup = index.__getitem__
        deps_idx: list[tuple[int, ...]] = [tuple(map(lookup, t.deps)) for t in tasks]
        i = 0
        for deps in deps_idx:
            for d in deps:
                children[d].append(i)
            i += 1
        empty: tuple[()] = ()
        params: list[tuple[tuple[str, int], ...]] = [
            tuple([(p, lookup(p)) for p in t.dep_params]) if t.dep_params else empty for t in tasks
        ]
        self.deps_idx = deps_idx
        self.params = params
        self.blocked = bytearray(n)  # 1 once a dependency ended other than COMPLETED
        self.parent_of: dict[int, int] = {}  # mapped element -> collector
        self.map_children: dict[int, list[int]] = {}

        # -- scheduling ----------------------------------------------------
        self.ready: list[tuple[int, int, int]] = []
        self.seq = 0
        self.running = 0
        self.timers = 0
        self.rows: list[RecordRow] = []
        self.inflight: dict[asyncio.Future[Any], int] = {}
        self.timeouts: dict[int, asyncio.TimerHandle] = {}
        self.timed_out: set[asyncio.Future[Any]] = set()
        self.done_queue: list[asyncio.Future[Any]] = []
        self.retry_handles: dict[int, asyncio.TimerHandle] = {}
        self.breaker_waiting: dict[int, float] = {}  # idx -> wait started
        self.breaker_queued: set[int] = set()  # waiting tasks put back on the ready-queue
        self.policies: dict[int, RetryPolicyLike] = {}
        self.last_delay: dict[int, float] = {}
        self.last_exc: dict[int, BaseException] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.events: dict[str, Any] = {}
        self.event_waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self.event_poller: asyncio.Task[None] | None = None
        self.slot_waiters: list[asyncio.Future[None]] = []
        self.stored_extra: dict[str, TaskRecord] = {}
        #: Resumed tasks in flight at two consecutive crashes (the likely cause), with their error.
        self.interrupted: list[tuple[int, str]] = []
        #: Mapped elements ("name[3]") in flight at two consecutive crashes: failed when their map expands.
        self.poison_elements: dict[str, str] = {}
        self.opened = False  # the run is open and dagexec_run_started was called
        self.n_retries = 0
        self.n_started = 0
        self.gc_was_enabled = gc.isenabled()
        # Set once per run in _resolve_stages: does any plugin implement the event hook?
        self._h_run_started = self._h_task_started = self._h_task_retrying = False
        self._h_task_finished = self._h_task_dead_lettered = self._h_run_finished = False

    # ------------------------------------------------------------------
    # the plugins' face (`RunView`) and helpers used by TaskContext
    # ------------------------------------------------------------------

    @property
    def task_count(self) -> int:
        return len(self.tasks)

    def breaker_state(self, group: str) -> str | None:
        breaker = self.breakers.get(group)
        return None if breaker is None else breaker.state

    def last_error(self, task: str) -> BaseException | None:
        i = self.index.get(task)
        return None if i is None else self.last_exc.get(i)

    def set_trace_ids(self, invocation: str, *, run: str | None = None, task: str | None = None) -> None:
        if task is not None:
            self.task_trace_ids[task] = invocation
            return
        if self.trace_id is None:
            self.trace_id = run or invocation
        self.record_trace_id = invocation

    def output_of(self, name: str, default: Any = _MISSING) -> Any:
        i = self.index.get(name)
        if i is None or self.states[i] is not COMPLETED:
            if default is _MISSING:
                raise KeyError(f"task {name!r} has no output in run {self.run_id} (not completed or not in DAG)")
            return default
        return self.outputs[i]

    def emit(self, event: str, payload: Any = None) -> None:
        if not self._in_loop():
            self.loop.call_soon_threadsafe(self.emit, event, payload)
            return
        if self.persist:  # a waiter resumed in another process still gets it
            events.store_event(self.storage, self.run_id, event, payload)
        self.deliver(event, payload)

    def deliver(self, event: str, payload: Any) -> None:
        """Hand ``event`` to its waiters in this process (on the loop)."""
        self.events[event] = payload
        for fut in self.event_waiters.pop(event, []):
            if not fut.done():
                fut.set_result(payload)

    async def wait_for_event(self, event: str, timeout: float | None = None) -> Any:
        if event not in self.events:
            found, payload = events.load_event(self.storage, self.run_id, event)
            if found:
                self.events[event] = payload
        if event in self.events:
            return self.events[event]
        fut: asyncio.Future[Any] = self.loop.create_future()
        waiters = self.event_waiters.setdefault(event, [])
        waiters.append(fut)
        if self.event_poller is None or self.event_poller.done():
            # Events from other processes (`dagexec emit`) arrive through storage.
            interval = float(self.config.getoption("event_poll_interval", 0.1))
            self.event_poller = self.loop.create_task(events.poll_events(self, interval))
        self.release_slot()
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            if fut in waiters:  # timed out or cancelled: stop polling for it
                waiters.remove(fut)
                if not waiters and self.event_waiters.get(event) is waiters:
                    del self.event_waiters[event]
            await self.acquire_slot()

    def release_slot(self) -> None:
        """A task that waits (for an event) gives its concurrency slot back."""
        self.running -= 1
        self._wake()

    async def acquire_slot(self) -> None:
        """Take a slot back; a waiting task gets the next free one before tasks in the ready queue."""
        if self.running < self.concurrency or self.cancelling:
            self.running += 1
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self.slot_waiters.append(fut)
        self._wake()
        try:
            await fut  # whoever resolves it has counted this task in `running`
        except asyncio.CancelledError:
            if not fut.done() or fut.cancelled():
                if fut in self.slot_waiters:
                    self.slot_waiters.remove(fut)
                self.running += 1  # the task's completion gives back the slot it never got back
            raise

    def load_task_state(self, task: str) -> Any:
        return self.storage.load_task_state(self.dag.name, task)

    def save_task_state(self, task: str, value: Any) -> None:
        self.storage.save_task_state(self.dag.name, task, value)

    def count(self, state: TaskState) -> int:
        return self.states.count(state)

    def counts(self) -> dict[str, int]:
        return {state.value: n for state, n in Counter(self.states).items()}

    def record(self, i: int) -> TaskRecord:
        state = self.states[i]
        trace_id = _THIS_INVOCATION if self.trace_ids is None or i >= len(self.trace_ids) else self.trace_ids[i]
        if trace_id is _THIS_INVOCATION:
            # as stored: a task this invocation has not written since it opened the run has no trace
            trace_id = None if state is PENDING or state is READY else self.record_trace_id
        return TaskRecord(
            name=self.tasks[i].name,
            state=state,
            attempts=self.attempts[i],
            error=self.errors[i],
            started_at=self.started[i],
            finished_at=self.finished[i],
            output=self.outputs[i] if state is COMPLETED else None,
            trace_id=trace_id,
        )

    def metrics_snapshot(self, counts: dict[str, int] | None = None) -> dict[str, Any]:
        counts = counts or self.counts()
        durs = sorted(
            f - s
            for s, f, st in zip(self.started, self.finished, self.states, strict=True)
            if s is not None and f is not None and st is COMPLETED
        )

        def pct(p: float) -> float | None:
            return durs[min(len(durs) - 1, int(p * len(durs)))] if durs else None

        return {
            "started": self.n_started,
            "completed": counts.get("completed", 0),
            "failed": counts.get("failed", 0) + counts.get("dead_lettered", 0),
            "retries": self.n_retries,
            "skipped": counts.get("skipped", 0),
            "cancelled": counts.get("cancelled", 0),
            "dead_lettered": counts.get("dead_lettered", 0),
            "durations": {
                "count": len(durs),
                "total": sum(durs),
                "mean": sum(durs) / len(durs) if durs else None,
                "p50": pct(0.5),
                "p95": pct(0.95),
                "max": durs[-1] if durs else None,
            },
        }

    # ------------------------------------------------------------------
    # control
    # ------------------------------------------------------------------

    def cancel(self, grace_period: float | None = None) -> None:
        """Stop launching; cancel running tasks after the grace period."""
        grace = self.grace_period if grace_period is None else grace_period
        if self.cancelling:
            grace = 0.0  # a second cancel (a second Ctrl-C) does not wait
        else:
            log.warning("run %s: cancelling; %d running task(s) get %.1fs to finish", self.run_id, self.running, grace)
        self.cancelling = True
        for h in self.retry_handles.values():
            h.cancel()
        for fut in self.slot_waiters:
            if not fut.done():
                fut.set_result(None)
                self.running += 1
        self.slot_waiters.clear()
        if grace <= 0:
            self._cancel_running()
        else:
            self.loop.call_later(grace, self._cancel_running)
        self._wake()

    def _cancel_running(self) -> None:
        for fut in list(self.inflight):
            fut.cancel()

    # ------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------

    def _in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def _wake(self) -> None:
        if not self.wakeup.is_set():
            self.wakeup.set()

    def _on_done(self, fut: asyncio.Future[Any]) -> None:
        self.done_queue.append(fut)
        if self.waiting and len(self.inflight) == 1 and not self.cancelling and self.step_error is None:
            self._step_now()
        elif not self.wakeup.is_set():
            self.wakeup.set()

    def _step_now(self) -> None:
        """Take the scheduler step here, in the done-callback of the only attempt in flight, while the
        loop waits: one event-loop turn per step fewer than waking the loop to take it (a chain's every
        step). With more attempts in flight the loop is woken instead, so that those finishing in the
        same turn share one step, and one commit. The loop is woken when the run may be over; an error
        is handed to it, to be raised there."""
        try:
            self._step()
        except BaseException as exc:  # noqa: BLE001 - raised by the loop (`_loop`)
            self.step_error = exc
            self.wakeup.set()
            return
        if self.done_queue or self.breaker_waiting or (self.running <= 0 and not self.inflight):
            self.wakeup.set()  # the loop decides: more to do, breakers to poll, or the end

    async def execute(self) -> RunReport:
        self.loop = asyncio.get_running_loop()
        self.wakeup = asyncio.Event()
        self._resolve_clock()
        self._resolve_stages()
        if self.handle is not None:
            self.handle._bind(self, self.loop)
        self.task_logs = tasklogs.start(self)
        if self.task_logs is not None:
            self.open_logs, self.capture_logs = self.task_logs.open, self.task_logs.capture
        try:
            if self.resumed_from:
                self._open_resumed()
            else:
                self._open_new()
            # Set-up allocates a few objects per task; collecting while it runs
            # and then re-scanning the task table at every full collection of
            # the run costs a quarter of the run at 100k tasks. The table is
            # long-lived: freeze it out of the collector's view.
            gc.freeze()
            if self.gc_was_enabled:
                gc.enable()
            self.executor.start(self.loop, self.concurrency)
            stored_trace = self.trace_id
            self._emit_event("dagexec_run_started", run=self)
            self._stamp_trace(stored_trace)
            self._fail_interrupted()
            try:
                await self._loop()
            finally:
                self.executor.shutdown(cancel=self.cancelling)
            status = self._final_status()
            self._flush()
            tasklogs.finish(self.task_logs)
            self.storage.finish_run(self.run_id, status, time.time(), self.counts())
        except BaseException:
            # Leave the run resumable: whatever was persisted stays, the lock goes.
            try:
                self.storage.finish_run(self.run_id, "crashed", time.time(), self.counts())
            except Exception:  # pragma: no cover - storage already broken
                pass
            raise
        finally:
            tasklogs.stop(self.task_logs)
        report = RunReport(self, status)
        self._emit_event("dagexec_run_finished", run=self, report=report)
        return report

    def _final_status(self) -> str:
        if self.cancelling:
            return "cancelled"
        return "completed" if self.all_done_ok() else "failed"

    def all_done_ok(self) -> bool:
        """Every task COMPLETED or SKIPPED. A skip needs no failure only when it was
        chosen (a branch not taken, a ``one_failed`` handler with nothing failed);
        a skip caused by a failure leaves that failure in the table."""
        return self.count(COMPLETED) + self.count(SKIPPED) == len(self.tasks)

    def _step(self) -> None:
        """One scheduler step: take every finished attempt, then launch (or, cancelling, only persist)."""
        if self.done_queue:
            done, self.done_queue = self.done_queue, []
            self._complete_all(done)
        if not self.cancelling:
            self._launch()
        else:
            self._flush()

    async def _loop(self) -> None:
        wakeup = self.wakeup
        while True:
            self._step()
            if self.done_queue:
                continue
            if (
                self.running <= 0
                and not self.inflight
                and (self.cancelling or (not self.ready and not self.timers and not self.breaker_waiting))
            ):
                break
            wakeup.clear()
            if self.done_queue:
                continue
            if self.clock is not None and self.running <= 0:
                self.clock.idle()  # no body runs: a test's virtual clock moves on to its next timer
            if self.breaker_waiting:
                poll = self.call_later(self._breaker_poll(), self._wake)
                await wakeup.wait()
                poll.cancel()
                self._recheck_breakers()
            else:
                self.waiting = True  # steps may now be taken in done-callbacks (`_step_now`)
                try:
                    await wakeup.wait()
                finally:
                    self.waiting = False
                if self.step_error is not None:
                    error, self.step_error = self.step_error, None
                    raise error
        if self.cancelling:
            self._settle_cancelled()

    # -- launching ---------------------------------------------------------

    def _launch(self) -> None:
        ready = self.ready
        to_start: list[int] = []
        rows = self.rows
        persist = self.persist
        trace_id = self.record_trace_id
        now = time.time()
        while self.slot_waiters and self.running < self.concurrency:
            fut = self.slot_waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                self.running += 1
        tasks, states, attempts, started = self.tasks, self.states, self.attempts, self.started
        concurrency = self.concurrency
        pop = heapq.heappop
        while ready and self.running < concurrency:
            i = pop(ready)[2]
            task = tasks[i]
            if task.breaker is not None and not self._breaker_allows(i, task.breaker):
                continue
            old = states[i]
            if old is not RUNNING and RUNNING not in TRANSITIONS[old]:  # not already moved by a breaker probe
                self._check(i, RUNNING)
            states[i] = RUNNING
            attempt = attempts[i] + 1
            attempts[i] = attempt
            started[i] = now
            self.running += 1
            if persist:
                rows.append((task.name, "running", attempt, now, None, None, None, trace_id))
            to_start.append(i)
        self._flush()
        if to_start:
            self._submit(to_start)

    def _flush(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            if self.task_logs is not None and self.task_logs.rows:
                self.task_logs.flush()  # the logs of the attempts this step ends
            self.storage.write(self.run_id, rows)

    def _submit(self, to_start: list[int]) -> None:
        """Hand the attempts of ``to_start`` (marked RUNNING and persisted) to the executor."""
        tasks, attempts, outputs, params_of = self.tasks, self.attempts, self.outputs, self.params
        inflight, on_done = self.inflight, self._on_done
        executor = self.executor
        submit = executor.submit
        hooked, capture = self._h_task_started, self.capture_logs
        self.n_started += len(to_start)
        for i in to_start:
            task = tasks[i]
            params = params_of[i]
            kwargs = {p: outputs[j] for p, j in params} if params else {}
            if task.static_kwargs:
                kwargs.update(task.static_kwargs)
            if task.wants_ctx:
                kwargs["ctx"] = TaskContext(self, task.name, attempts[i], task.timeout)
            context = None
            if hooked:
                context = contextvars.copy_context()
                try:
                    context.run(self.hook.dagexec_task_started, run=self, task=task, attempt=attempts[i])
                except Exception as exc:
                    raise hook_error(self.pm, "dagexec_task_started", exc) from exc
            if capture:  # --capture: the body's prints go to the attempt's log
                context = tasklogs.route_capture(self.task_logs, context, task.name, attempts[i])  # type: ignore[arg-type]
            try:
                fut = submit(task, kwargs, task.timeout, context)
            except Exception as exc:  # the executor refused the task (cannot pickle it, ...)
                fut = self.loop.create_future()
                fut.set_exception(exc)
            inflight[fut] = i
            fut.add_done_callback(on_done)
            if task.timeout is not None and not executor.enforces_timeout:
                self.timeouts[i] = self.loop.call_later(task.timeout, self._on_timeout, fut)

    def _on_timeout(self, fut: asyncio.Future[Any]) -> None:
        if fut.done():
            return
        i = self.inflight.get(fut)
        self.timed_out.add(fut)
        if i is not None and not self.tasks[i].is_async:
            log.warning(
                "task %r overran its timeout of %ss; its worker thread is abandoned "
                "(use --executor process to kill overrunning sync tasks)",
                self.tasks[i].name,
                self.tasks[i].timeout,
            )
        fut.cancel()

    # -- completions -----------------------------------------------------

    def _complete_all(self, done: list[asyncio.Future[Any]]) -> None:
        """End each finished attempt of a step; the only place an attempt completes.

        Names are looked up once per step (a step ends up to ``concurrency``
        attempts) and the finish time is the step's. An attempt that raised, was
        cancelled or timed out goes to `_complete_failed`.
        """
        inflight, tasks, states, outputs = self.inflight, self.tasks, self.states, self.outputs
        finished, errors, attempts, started = self.finished, self.errors, self.attempts, self.started
        round_trip, identity, persist = self.round_trip, self.identity_types, self.persist
        dumps, loads = self.dumps, self.loads
        timeouts, open_logs = self.timeouts, self.open_logs
        trace_id = self.record_trace_id  # not `self.rows`: a dead letter's flush (`_fail`) replaces that list
        complete_failed, finish = self._complete_failed, self._finish
        # `_finish` inline for a completed task when no plugin watches finishes and no map is open
        children, remaining, blocked, ready = self.children, self.remaining, self.blocked, self.ready
        inline_finish = not self._h_task_finished and not self.parent_of
        push = heapq.heappush
        now = time.time()
        for fut in done:
            if fut.cancelled() or fut.exception() is not None:
                complete_failed(fut)
                continue
            i = inflight.pop(fut)
            if timeouts:
                timer = timeouts.pop(i, None)
                if timer is not None:
                    timer.cancel()
            self.running -= 1
            task = tasks[i]
            if open_logs:
                self.task_logs.close(task.name)  # type: ignore[union-attr]
            value = fut.result()
            text = None
            if round_trip:
                # A dependent receives what a resume would: the decoding of the text stored.
                try:
                    if type(value) in identity:  # None, bool, int, str: the round trip is the value
                        if persist:
                            # JSON (identity_types is empty otherwise): None, most bodies' output, is "null"
                            text = "null" if value is None else dumps(value)
                    else:
                        text = dumps(value)
                        value = loads(text)
                except Exception as e:  # noqa: BLE001 - fails this task only (RecursionError included)
                    self._attempt_failed(i, output_error(self.serializer, task.name, value, e))
                    continue
            if states[i] is not RUNNING:  # RUNNING -> COMPLETED is always allowed
                self._check(i, COMPLETED)
            states[i] = COMPLETED
            outputs[i] = value
            finished[i] = now
            errors[i] = None
            if persist:
                self.rows.append((task.name, "completed", attempts[i], started[i], now, text, None, trace_id))
            if task.breaker is not None:
                self.breakers[task.breaker].record_success()
            if not inline_finish or task.branches is not None:
                finish(i)
                continue
            for c in children[i]:
                left = remaining[c] - 1
                remaining[c] = left
                if left == 0 and states[c] is PENDING:
                    child = tasks[c]
                    if not blocked[c] and child.trigger == "all_success" and child.map_over is None:
                        self.seq += 1
                        push(ready, (-child.priority, self.seq, c))
                    elif self._should_run(c):
                        self._schedule(c)
                    else:
                        self._set_final(c, SKIPPED, None)  # and its cascade

    def _complete_failed(self, fut: asyncio.Future[Any]) -> None:
        """End an attempt that raised, was cancelled or timed out (`_complete_all` takes the others)."""
        i = self.inflight.pop(fut)
        timer = self.timeouts.pop(i, None)
        if timer is not None:
            timer.cancel()
        self.running -= 1
        task = self.tasks[i]
        if self.open_logs:
            self.task_logs.close(task.name)  # type: ignore[union-attr]
        exc: BaseException | None
        if fut.cancelled():
            if fut in self.timed_out:
                self.timed_out.discard(fut)
                exc = TaskTimeoutError(f"task {task.name!r} attempt {self.attempts[i]} timed out after {task.timeout}s")
            else:
                exc = TaskCancelledError(f"task {task.name!r} was cancelled with run {self.run_id}")
        else:
            exc = fut.exception()
            if isinstance(exc, asyncio.CancelledError) or fut in self.timed_out:  # pragma: no cover - defensive
                exc = TaskTimeoutError(f"task {task.name!r} timed out after {task.timeout}s")
        assert exc is not None, "_complete_failed called for an attempt that returned"
        if isinstance(exc, TaskCancelledError) and self.cancelling:
            self._set_final(i, CANCELLED, str(exc))
        else:
            self._attempt_failed(i, exc)

    def _attempt_failed(self, i: int, exc: BaseException) -> None:
        task = self.tasks[i]
        attempt = self.attempts[i]
        if task.breaker is not None and not isinstance(exc, CircuitOpenError):
            self.breakers[task.breaker].record_failure(exc)
        self.last_exc[i] = exc
        delay = None
        if not self.cancelling and not isinstance(exc, (OutputSerializationError, CircuitOpenError)):
            policy = self._policy(i)
            if isinstance(policy, RetryPolicy):  # a bare policy: decorrelated jitter needs the last delay
                delay = policy.next_delay(attempt, exc, previous=self.last_delay.get(i))
            else:
                delay = policy.next_delay(attempt, exc)
        if delay is not None:
            self._check(i, RETRYING)
            self.states[i] = RETRYING
            self.errors[i] = _describe(exc)
            self.n_retries += 1
            self.last_delay[i] = delay
            if self.persist:
                self.rows.append(
                    (task.name, "retrying", attempt, self.started[i], None, None, self.errors[i], self.record_trace_id)
                )
            if self._h_task_retrying:
                self._emit_event("dagexec_task_retrying", run=self, task=task, attempt=attempt, error=exc, delay=delay)
            log.info("task %r attempt %d failed (%s); retrying in %.3gs", task.name, attempt, self.errors[i], delay)
            self.timers += 1
            self.retry_handles[i] = self.call_later(delay, self._requeue, i)
            return
        self._fail(i, exc)

    def _fail(self, i: int, exc: BaseException) -> None:
        task = self.tasks[i]
        self._set_final(i, FAILED, _describe(exc), finish=False)
        log.error("task %r failed after %d attempt(s): %s", task.name, self.attempts[i], self.errors[i])
        if self.dlq is not None:
            entry = DeadLetter(
                id=os.urandom(6).hex(),
                run_id=self.run_id,
                dag_name=self.dag.name,
                task=task.name,
                attempts=self.attempts[i],
                error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                message=str(exc),
                traceback="".join(traceback.format_exception(exc))
                + tasklogs.tail_text(self.task_logs, task.name, self.attempts[i]),
                created_at=time.time(),
                trace_id=self.task_trace_ids.get(task.name) or self.trace_id,
            )
            self._flush()  # the FAILED record is durable before the entry points at it
            self.dlq.push(entry)
            self._check(i, DEAD_LETTERED)
            self.states[i] = DEAD_LETTERED
            if self.persist:
                self.rows.append(
                    (
                        task.name,
                        "dead_lettered",
                        self.attempts[i],
                        self.started[i],
                        self.finished[i],
                        None,
                        self.errors[i],
                        self.record_trace_id,
                    )
                )
            if self._h_task_dead_lettered:
                self._emit_event("dagexec_task_dead_lettered", run=self, task=task, entry=entry)
        self._finish(i)

    def _requeue(self, i: int) -> None:
        self.timers -= 1
        self.retry_handles.pop(i, None)
        if self.cancelling:
            return
        self._push_ready(i)
        self._wake()

    def _push_ready(self, i: int) -> None:
        self.seq += 1
        heapq.heappush(self.ready, (-self.tasks[i].priority, self.seq, i))

    def _set_final(self, i: int, state: TaskState, error: str | None, finish: bool = True) -> None:
        self._check(i, state)
        now = time.time()
        self.states[i] = state
        self.errors[i] = error
        self.finished[i] = now
        if self.persist:
            self.rows.append(
                (
                    self.tasks[i].name,
                    state.value,
                    self.attempts[i],
                    self.started[i],
                    now,
                    None,
                    error,
                    self.record_trace_id,
                )
            )
        if finish:
            self._finish(i)

    def _finish(self, i: int) -> None:
        """``i`` reached a final state: tell plugins, release dependents, cascade skips."""
        stack = [i]
        states, tasks, children, remaining, blocked = (
            self.states,
            self.tasks,
            self.children,
            self.remaining,
            self.blocked,
        )
        parent_of = self.parent_of
        ready = self.ready
        push = heapq.heappush
        while stack:
            j = stack.pop()
            state = states[j]
            ok = state is COMPLETED
            not_taken = self._not_taken(j) if ok and tasks[j].branches is not None else None
            if self._h_task_finished:
                self._emit_event("dagexec_task_finished", run=self, task=tasks[j], record=self.record(j))
            if state is CANCELLED:
                continue  # dependents stay PENDING: the run resumes them
            if parent_of:
                parent = parent_of.get(j)
                if parent is not None:
                    remaining[parent] -= 1
                    if remaining[parent] == 0:
                        self._collect(parent, stack)
            for c in children[j]:
                if not ok:
                    blocked[c] |= 1
                elif not_taken and c in not_taken:
                    blocked[c] |= 2
                left = remaining[c] - 1
                remaining[c] = left
                if left == 0 and states[c] is PENDING:
                    child = tasks[c]
                    if not blocked[c] and child.trigger == "all_success" and child.map_over is None:
                        # `_should_run` and `_schedule` (`_push_ready`) for the common case, inline
                        self.seq += 1
                        push(ready, (-child.priority, self.seq, c))
                    elif self._should_run(c):
                        self._schedule(c)
                    else:
                        self._set_final(c, SKIPPED, None, finish=False)
                        stack.append(c)

    def _not_taken(self, j: int) -> set[int]:
        """The branches of conditional ``j`` that its output did not choose."""
        chosen = chosen_branches(self.outputs[j])
        return {self.index[b] for b in self.tasks[j].branches or () if b not in chosen}

    def _should_run(self, c: int) -> bool:
        trigger = self.tasks[c].trigger
        if self.blocked[c] & 2:  # a branch its conditional did not take: skipped whatever the trigger
            return False
        if trigger == "all_success":
            return not self.blocked[c]
        if trigger == "all_done":
            return True
        states = [self.states[d] for d in self.deps_idx[c]]
        if trigger == "one_failed":
            return any(s in FAILED_STATES for s in states)
        if trigger == "none_failed":
            return not any(s in FAILED_STATES for s in states)
        return any(s is COMPLETED for s in states)  # one_success

    def _schedule(self, c: int) -> None:
        task = self.tasks[c]
        if task.map_over is not None and c not in self.map_children:
            self._expand(c)
            return
        self._push_ready(c)

    # -- dynamic map -------------------------------------------------------

    def _expand(self, c: int) -> None:
        """Create one task per element of the upstream output; ``c`` collects them."""
        task = self.tasks[c]
        assert task.map_over is not None
        items = self.outputs[self.index[task.map_over]]
        try:
            items = list(items)
        except TypeError:
            self._set_final(
                c,
                FAILED,
                f"TypeError: dag.map over {task.map_over!r} needs an iterable output, got {type(items).__name__}",
            )
            return
        try:
            params = inspect.signature(task.fn).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        new: list[int] = []
        names: list[str] = []
        # Elements differ only in name and arguments: validate (and read the
        # signature) once, then copy; Task() per element cost half the map's time.
        template = Task(
            name=f"{task.name}[0]",
            fn=task.fn,
            deps=task.deps,
            priority=task.priority,
            retry=task.retry,
            timeout=task.timeout,
            tags=task.tags,
            breaker=task.breaker,
            resumable=task.resumable,
        )
        setattr_ = object.__setattr__
        for k, item in enumerate(items):
            static: dict[str, Any] = dict(task.static_kwargs)
            if "item" in params:
                static["item"] = item
            if "index" in params:
                static["index"] = k
            child = copy.copy(template)
            setattr_(child, "name", f"{task.name}[{k}]")
            setattr_(child, "static_kwargs", static)
            j = len(self.tasks)
            self.tasks.append(child)
            self.index[child.name] = j
            self.states.append(PENDING)
            self.attempts.append(0)
            self.started.append(None)
            self.finished.append(None)
            self.outputs.append(None)
            self.errors.append(None)
            self.remaining.append(0)
            self.children.append([])
            self.deps_idx.append(self.deps_idx[c])
            self.params.append(self.params[c])
            self.blocked.append(0)
            self.parent_of[j] = c
            new.append(j)
            names.append(child.name)
        self.map_children[c] = new
        # The collector is RUNNING while its elements run.
        self._check(c, RUNNING)
        self.states[c] = RUNNING
        self.started[c] = time.time()
        self.attempts[c] = 1
        if self.persist:
            self.rows.append((task.name, "running", 1, self.started[c], None, None, None, self.record_trace_id))
        if self.persist and names:
            self.storage.add_tasks(self.run_id, names, {n: list(task.deps) for n in names})
        stack: list[int] = []
        pending = 0
        for j in new:
            stored = self.stored_extra.pop(self.tasks[j].name, None)
            if stored is not None and stored.state is COMPLETED:
                if self.trace_ids is not None:  # reused as stored: it keeps its trace
                    self.trace_ids.extend([_THIS_INVOCATION] * (j + 1 - len(self.trace_ids)))
                    self.trace_ids[j] = stored.trace_id
                self.states[j] = COMPLETED
                self.outputs[j] = stored.output
                self.attempts[j] = stored.attempts
                self.started[j], self.finished[j] = stored.started_at, stored.finished_at
                continue
            pending += 1
            poison = self.poison_elements.pop(self.tasks[j].name, None) if stored is not None else None
            if poison is not None and stored is not None:  # in flight at two consecutive crashes
                self.states[j] = RUNNING
                self.attempts[j] = stored.attempts
                self.started[j] = stored.started_at
                self.interrupted.append((j, poison))
                continue
            if stored is not None:
                self.attempts[j] = 0
            self._push_ready(j)
        self.remaining[c] = pending
        if self.interrupted and self.opened:
            self._fail_interrupted()
        if pending == 0:
            self._collect(c, stack)
            while stack:
                self._finish(stack.pop())

    def _collect(self, c: int, stack: list[int]) -> None:
        kids = self.map_children[c]
        bad = [self.tasks[j].name for j in kids if self.states[j] is not COMPLETED]
        if bad:
            shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
            self._set_final(
                c, FAILED, f"MapError: {len(bad)} of {len(kids)} mapped tasks did not complete: {shown}", finish=False
            )
        else:
            value = [self.outputs[j] for j in kids]
            now = time.time()
            self._check(c, COMPLETED)
            self.states[c] = COMPLETED
            self.outputs[c] = value
            self.started[c] = self.started[c] or now
            self.finished[c] = now
            if self.persist:
                try:
                    text = encode_output(self.serializer, self.tasks[c].name, value)
                except OutputSerializationError as exc:  # the elements' outputs passed; their list is too deep
                    self.states[c] = RUNNING
                    self._set_final(c, FAILED, _describe(exc), finish=False)
                    stack.append(c)
                    return
                self.rows.append(
                    (self.tasks[c].name, "completed", 1, self.started[c], now, text, None, self.record_trace_id)
                )
        stack.append(c)

    # -- breakers ------------------------------------------------------------

    def _breaker_allows(self, i: int, name: str) -> bool:
        breaker = self.breakers.get(name)
        if breaker is None:
            breaker = call_hook(self.pm, "dagexec_circuit_breaker", name=name, config=self.config, run=self)
            if breaker is None:
                raise PluginError(f"no plugin provides a circuit breaker for group {name!r} (is 'breaker' blocked?)")
            self.breakers[name] = breaker
        self.breaker_queued.discard(i)
        if breaker.allow():
            self.breaker_waiting.pop(i, None)
            return True
        since = self.breaker_waiting.setdefault(i, self.monotonic())
        if self.monotonic() - since > self.breaker_max_wait:
            # The attempt is refused, not made: attempts stay as they are.
            self.breaker_waiting.pop(i, None)
            self.started[i] = time.time()
            self._fail(
                i,
                CircuitOpenError(
                    f"task {self.tasks[i].name!r} waited {self.breaker_max_wait}s for circuit breaker "
                    f"{name!r} to close; raise breaker_max_wait or fix the service behind it"
                ),
            )
        return False

    def _breaker_poll(self) -> float:
        return float(self.config.getoption("breaker_poll", 0.05))

    def _recheck_breakers(self) -> None:
        for i in list(self.breaker_waiting):
            # Once on the queue is enough: a second entry would launch the task twice.
            if (self.states[i] is PENDING or self.states[i] is RETRYING) and i not in self.breaker_queued:
                self.breaker_queued.add(i)
                self._push_ready(i)

    # -- stages ----------------------------------------------------------------

    def _resolve_clock(self) -> None:
        """The clock of retry delays, breaker cooldowns and breaker waits: the loop's, or the ``clock``
        option's (a test's `dagexec_core.testing.VirtualClock`). Per-attempt timeouts and the cancel
        grace period always run on the loop's real clock."""
        clock = self.config.getoption("clock")
        if clock is not None and not isinstance(clock, Clock):
            raise UsageError(
                f"option clock must be a clock (monotonic, call_later, idle), such as "
                f"dagexec_core.testing.VirtualClock, not {clock!r}"
            )
        self.clock: Clock | None = clock
        self.monotonic: Callable[[], float] = time.monotonic if clock is None else clock.monotonic
        self.call_later: Callable[..., Any] = self.loop.call_later if clock is None else clock.call_later

    def _resolve_stages(self) -> None:
        pm, config = self.pm, self.config
        self.storage: Storage = call_hook(pm, "dagexec_storage", config=config)
        if self.storage is None:
            raise PluginError(
                "no plugin provides storage for state "
                f"{config.getoption('state')!r}; is the 'sqlite' plugin blocked? use persist=False/--no-persist"
            )
        self.persist = bool(getattr(self.storage, "persistent", False))
        self.round_trip = self.persist or self.check_outputs
        self.dumps = self.serializer.dumps
        self.loads = self.serializer.loads
        self.identity_types = IDENTITY_TYPES if type(self.serializer) is JsonSerializer else frozenset()
        self.executor = call_hook(pm, "dagexec_executor", config=config)
        if self.executor is None:
            raise PluginError(f"no plugin provides executor {config.getoption('executor')!r}")
        self.dlq: DeadLetterQueue | None = call_hook(
            pm, "dagexec_dead_letter_queue", config=config, storage=self.storage
        )
        for name in EVENT_HOOKS:
            setattr(self, "_h_" + name.removeprefix("dagexec_"), bool(getattr(self.hook, name).get_hookimpls()))

    def _policy(self, i: int) -> RetryPolicyLike:
        policy = self.policies.get(i)
        if policy is None:
            found: RetryPolicyLike | None = call_hook(
                self.pm, "dagexec_retry_policy", task=self.tasks[i], config=self.config, run=self
            )
            policy = found or self.tasks[i].retry or _NO_RETRY
            self.policies[i] = policy
        return policy

    def _emit_event(self, name: str, **kwargs: Any) -> None:
        if name in ("dagexec_run_started", "dagexec_run_finished") and not getattr(
            self, "_h_" + name.removeprefix("dagexec_")
        ):
            return
        try:
            getattr(self.hook, name)(**kwargs)
        except Exception as exc:
            raise hook_error(self.pm, name, exc) from exc

    def _check(self, i: int, new: TaskState) -> None:
        old = self.states[i]
        if old is not new and new not in TRANSITIONS[old]:
            from .state import check_transition

            check_transition(self.tasks[i].name, old, new)

    # -- opening ---------------------------------------------------------------

    def _fingerprint(self) -> dict[str, tuple[str, ...]]:
        return {t.name: t.deps for t in self.tasks}

    def _open_new(self) -> None:
        info = RunInfo(
            run_id=self.run_id,
            dag_name=self.dag.name,
            status="running",
            started_at=self.started_at,
            task_count=len(self.tasks),
            meta=self._code_meta(),
        )
        given = run_params.attach(self, stored=None)  # a usage error before the run exists
        self.storage.create_run(info, [t.name for t in self.tasks], self._fingerprint())
        run_params.store(self, given)
        self._start_roots(range(len(self.tasks)))

    def _code_meta(self) -> dict[str, Any]:
        """What a resume checks before importing the DAG file again (`provenance`)."""
        path = self.config.dag_path
        return {provenance.INFO_KEY: provenance.code_of(path)} if path is not None and path.is_file() else {}

    def _remember_code(self, info: RunInfo) -> None:
        """A resume that ran other code (a file named by the user, or edited since) is what the next resume checks."""
        path = self.config.dag_path
        if path is None or not path.is_file():
            return
        code = provenance.code_of(path)
        if provenance.recorded_code(self.storage, info) != code:
            self.storage.put_meta(self.run_id, provenance.META_KEY, code)

    def _start_roots(self, candidates: Iterable[int]) -> None:
        """Count unfinished dependencies and schedule (or skip) the tasks free to go."""
        states, deps_idx, tasks, blocked = self.states, self.deps_idx, self.tasks, self.blocked
        terminal = TERMINAL_STATES
        if not any(s in terminal for s in states):  # a new run: every dependency is still to finish
            self.remaining = list(map(len, deps_idx))
        else:
            remaining = self.remaining
            for i, deps in enumerate(deps_idx):
                if not deps or states[i] in terminal:
                    remaining[i] = 0
                    continue
                left = 0
                for d in deps:
                    sd = states[d]
                    if sd in terminal:
                        if sd is not COMPLETED:
                            blocked[i] |= 1
                        elif tasks[d].branches is not None and i in self._not_taken(d):
                            blocked[i] |= 2
                    else:
                        left += 1
                remaining[i] = left
        stack: list[int] = []
        for i in candidates:
            if states[i] is PENDING and self.remaining[i] == 0:
                if self._should_run(i):
                    self._schedule(i)
                else:
                    self._set_final(i, SKIPPED, None, finish=False)
                    stack.append(i)
        for j in stack:
            self._finish(j)

    def _open_resumed(self) -> None:
        changed_params = run_params.attach(self, stored=self.storage.get_meta(self.run_id, run_params.META_KEY))
        info, records, fingerprint = self.storage.resume_run(self.run_id)
        if info.dag_name != self.dag.name:
            raise DagChangedError(
                f"run {self.run_id} is of DAG {info.dag_name!r}, not {self.dag.name!r}; "
                f"resume it with the file that defines {info.dag_name!r}"
            )
        self.started_at = info.started_at
        self.trace_id = info.trace_id
        plan = plan_resume(
            run_id=self.run_id,
            dag_name=self.dag.name,
            tasks=self.tasks,
            records=records,
            fingerprint=fingerprint,
            crash_meta=self.storage.get_meta(self.run_id, CRASH_META),
            replay=self.replay,
            now=time.time(),
            dag_digest=self.dag.fingerprint_digest(),
            index=self.index,
        )
        self.stored_extra = plan.stored_extra
        self.poison_elements = plan.poison_elements
        self.interrupted = plan.poison
        # the plan's columns are the table: a task without a stored record starts pending, as a new run's
        self.states, self.attempts, self.errors, self.outputs = plan.states, plan.attempts, plan.errors, plan.outputs
        self.started, self.finished = plan.started, plan.finished
        trace_ids: list[Any] = [_THIS_INVOCATION] * len(self.tasks)
        for i, stored_trace in plan.kept.items():
            trace_ids[i] = stored_trace  # kept as stored: it keeps the trace that wrote it
        self.trace_ids = trace_ids
        if self.persist:
            tasks, trace_id = self.tasks, self.record_trace_id
            for i in plan.changed:
                self.rows.append(
                    (
                        tasks[i].name,
                        plan.states[i].value,
                        plan.attempts[i],
                        plan.started[i],
                        plan.finished[i],
                        None,
                        plan.errors[i],
                        trace_id,
                    )
                )
        if plan.new_names:
            self.storage.add_tasks(self.run_id, plan.new_names, {n: list(self.dag[n].deps) for n in plan.new_names})
        self._remember_code(info)
        if plan.replayed and self.dlq is not None:
            # A replayed task leaves the dead-letter queue, however it is replayed (`dlq replay`, `--replay`,
            # `run(replay=...)`); one that fails again gets a fresh entry.
            for entry in self.dlq.list(self.run_id):
                if base_name(entry.task) in plan.replayed:
                    self.dlq.remove(entry.id)
        if plan.crash_meta is not None:
            self.storage.put_meta(self.run_id, CRASH_META, plan.crash_meta)
        run_params.store(self, changed_params)  # the DAG checks passed: the new parameters are the run's
        self._start_roots(range(len(self.tasks)))
        self._flush()

    def _stamp_trace(self, stored: str | None) -> None:
        """After ``dagexec_run_started``: store the run's trace id if a plugin gave it one, and put this
        invocation's trace on the rows built while opening the run and not written yet."""
        if self.trace_id is not None and self.trace_id != stored:
            set_trace_id = getattr(self.storage, "set_trace_id", None)
            if set_trace_id is not None:
                set_trace_id(self.run_id, self.trace_id)
        trace_id = self.record_trace_id
        if trace_id is not None and self.rows:
            self.rows = [(*row[:7], None if row[1] == "pending" else trace_id) for row in self.rows]

    def _fail_interrupted(self) -> None:
        """Fail (and dead-letter) the tasks in flight at two consecutive crashes; after run_started."""
        self.opened = True
        interrupted, self.interrupted = self.interrupted, []
        for i, message in interrupted:
            self._fail(i, TaskInterruptedError(message))
        self._flush()

    def _settle_cancelled(self) -> None:
        for i, s in enumerate(self.states):
            if s is RETRYING or s is RUNNING:
                self.states[i] = CANCELLED
                self.finished[i] = time.time()
                if self.persist:
                    self.rows.append(
                        (
                            self.tasks[i].name,
                            "cancelled",
                            self.attempts[i],
                            self.started[i],
                            self.finished[i],
                            None,
                            self.errors[i],
                            self.record_trace_id,
                        )
                    )
        self._flush()


if TYPE_CHECKING:

    def _keeps_the_view_promises(run: Run) -> RunView:  # mypy checks that `Run` follows `RunView`
        return run


def _describe(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", None)
    text = f"{type(exc).__name__}: {exc}"
    return f"{text} ({'; '.join(map(str, notes))})" if notes else text


def _tag_breaker(task: Task, breaker_tags: Mapping[str, str]) -> Task:
    """``task`` joined to the breaker group its first tag in ``breaker_tags`` names (its own ``breaker=`` wins)."""
    if task.breaker is not None or not task.tags:
        return task
    for tag, group in breaker_tags.items():
        if tag in task.tags:
            return attrs.evolve(task, breaker=str(group))
    return task


def __getattr__(name: str) -> Any:
    """`run`, `arun` and `RunHandle` moved to `api` (and `RunReport` to `results`); importable here as before."""
    if name in ("run", "arun", "RunHandle"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Run", "RunReport", "new_run_id"]
