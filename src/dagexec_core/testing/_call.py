"""`call_task`: one task's body, called with given upstream outputs and a real `TaskContext`."""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import logging
import threading
import types
from collections.abc import Mapping
from typing import Any

from ..context import TaskContext
from ..dag import Dag, Task
from ..errors import TaskTimeoutError, UsageError
from ..outputs import JsonSerializer, Serializer, encode_output

_MISSING: Any = object()


class CallRun:
    """The run a task called by `call_task` sees through its ``ctx``: kept in memory, open to the test.

    ``outputs`` (what ``ctx.get`` reads), ``blackboard`` (``ctx.set``/``lookup``),
    ``emitted`` (every ``ctx.emit``, in order), ``events`` (payloads ``ctx.wait_for``
    returns at once), ``task_state`` (``ctx.state`` by task name), ``params``
    (a read-only mapping), ``cancelling`` (set it to see ``ctx.cancelled``).
    """

    def __init__(
        self,
        dag: Dag,
        *,
        run_id: str = "test-run",
        outputs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        events: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.dag = dag
        self.run_id = run_id
        self.outputs: dict[str, Any] = dict(outputs or {})
        #: ``ctx.params`` reads it, as it reads the run's parameters in a run.
        self.run_params: Mapping[str, Any] = types.MappingProxyType(dict(params or {}))
        self.events: dict[str, Any] = dict(events or {})
        self.task_state: dict[str, Any] = dict(state or {})
        self.blackboard: dict[str, Any] = {}
        self.emitted: list[tuple[str, Any]] = []
        self.cancelling = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._lock = threading.Lock()

    def output_of(self, name: str, default: Any = _MISSING) -> Any:
        if name in self.outputs:
            return self.outputs[name]
        if default is _MISSING:
            raise KeyError(
                f"task {name!r} has no output in this test call; pass it: call_task(dag, task, {name}=...) "
                f"or task_context(dag, task, outputs={{{name!r}: ...}})"
            )
        return default

    def emit(self, event: str, payload: Any = None) -> None:
        with self._lock:
            self.emitted.append((event, payload))
            self.events[event] = payload
            waiters = self._waiters.pop(event, [])
        for fut in waiters:
            fut.get_loop().call_soon_threadsafe(_resolve, fut, payload)

    async def wait_for_event(self, event: str, timeout: float | None = None) -> Any:
        with self._lock:
            if event in self.events:
                return self.events[event]
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(event, []).append(fut)
        async with asyncio.timeout(timeout):
            return await fut

    def load_task_state(self, task: str) -> Any:
        return self.task_state.get(task)

    def save_task_state(self, task: str, value: Any) -> None:
        # The state file keeps JSON: a value it could not keep fails here as it would in a run.
        encode_output(JsonSerializer(), f"{task} (ctx.state)", value)
        self.task_state[task] = value

    def __repr__(self) -> str:
        return f"<CallRun {self.run_id} of DAG {self.dag.name!r}>"


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


class _CallContext(TaskContext):
    """A `TaskContext` over a `CallRun`."""

    __slots__ = ()


def _task(dag: Dag, name: str) -> Task:
    try:
        return dag[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(dag.tasks), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"DAG {dag.name!r} has no task {name!r}{hint}") from None


def task_context(
    dag: Dag,
    name: str,
    *,
    attempt: int = 1,
    params: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    events: Mapping[str, Any] | None = None,
    state: Any = _MISSING,
    run_id: str = "test-run",
) -> TaskContext:
    """A real `TaskContext` for task ``name`` of ``dag``, over an in-memory `CallRun` (``ctx.run``).

    ``state`` is the task's persisted state as a previous run left it;
    ``outputs`` what ``ctx.get`` finds; ``events`` what ``ctx.wait_for`` gets at once.
    """
    task = _task(dag, name)
    run = CallRun(
        dag,
        run_id=run_id,
        outputs=outputs,
        params=params,
        events=events,
        state=None if state is _MISSING else {name: state},
    )
    return _CallContext(run, task.name, attempt, task.timeout)  # type: ignore[arg-type]


def _round_trip(serializer: Serializer, task: str, value: Any) -> Any:
    return serializer.loads(encode_output(serializer, task, value))


def _arguments(dag: Dag, task: Task, ctx: TaskContext | None, upstream: Mapping[str, Any]) -> dict[str, Any]:
    allowed = set(task.deps)
    if task.map_over is not None:
        allowed |= {"item", "index"}
    unknown = sorted(set(upstream) - allowed)
    if unknown:
        raise UsageError(
            f"call_task: task {task.name!r} of DAG {dag.name!r} does not depend on {', '.join(map(repr, unknown))}; "
            f"its dependencies are {list(task.deps) or 'none'}"
        )
    missing = [d for d in task.dep_params if d not in upstream]
    if missing:
        shown = ", ".join(f"{d}=..." for d in missing)
        raise UsageError(
            f"call_task: task {task.name!r} takes the output of {', '.join(map(repr, missing))}; "
            f"pass it: call_task(dag, {task.name!r}, {shown})"
        )
    serializer = JsonSerializer()
    # A dependent receives what the state file holds: the JSON round trip of each output.
    values = {d: _round_trip(serializer, d, v) if d in task.deps else v for d, v in upstream.items()}
    kwargs = {d: values[d] for d in task.dep_params}
    kwargs.update(task.static_kwargs)
    for key in ("item", "index"):
        if key in values and task.map_over is not None:
            kwargs[key] = values[key]
    if task.wants_ctx:
        assert ctx is not None
        kwargs["ctx"] = ctx
    return kwargs


async def acall_task(dag: Dag, name: str, /, ctx: TaskContext | None = None, **upstream: Any) -> Any:
    """`call_task` from async code (a test already running an event loop)."""
    task = _task(dag, name)
    if ctx is None and task.wants_ctx:
        ctx = task_context(dag, name)
    if ctx is not None:
        run = ctx.run
        if isinstance(run, CallRun):
            run.loop = asyncio.get_running_loop()
            run.outputs.update({d: v for d, v in upstream.items() if d in task.deps})
    kwargs = _arguments(dag, task, ctx, upstream)
    if task.is_async:
        coro = task.fn(**kwargs)
        value = await (coro if task.timeout is None else _bounded(task, coro))
    else:
        value = await _in_thread(task, kwargs)
    encode_output(JsonSerializer(), task.name, value)  # an output a run could not store fails here too
    return value


def call_task(dag: Dag, name: str, /, ctx: TaskContext | None = None, **upstream: Any) -> Any:
    """Call task ``name``'s body with the given upstream outputs and return its output.

    Upstream outputs are passed by dependency name and go through the same
    JSON round trip as in a run (a tuple arrives as a list); a task taking
    ``ctx`` gets ``ctx`` or a fresh `task_context`. Async bodies are awaited,
    sync bodies run in a worker thread, as in a run; the task's ``timeout``
    applies. An output a run could not store raises `OutputSerializationError`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise UsageError("call_task() was called inside a running event loop; use `await acall_task(...)` there")
    return asyncio.run(acall_task(dag, name, ctx, **upstream))


async def _bounded(task: Task, coro: Any) -> Any:
    try:
        async with asyncio.timeout(task.timeout):
            return await coro
    except TimeoutError:
        raise TaskTimeoutError(f"task {task.name!r} timed out after {task.timeout}s") from None


async def _in_thread(task: Task, kwargs: dict[str, Any]) -> Any:
    """A sync body in a daemon thread (abandoned, not awaited, past its timeout), as the local executor runs it."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            value = context.run(task.fn, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            done: tuple[Any, ...] = (_fail, fut, exc)
        else:
            done = (_resolve, fut, value)
        try:
            loop.call_soon_threadsafe(*done)
        except RuntimeError:  # the call is over (the body overran its timeout): nobody waits for it
            pass

    threading.Thread(target=work, name=f"dagexec-call-{task.name}", daemon=True).start()
    if task.timeout is None:
        return await fut
    try:
        return await asyncio.wait_for(fut, task.timeout)
    except TimeoutError:
        logging.getLogger("dagexec").warning("task %r overran its timeout of %ss", task.name, task.timeout)
        raise TaskTimeoutError(f"task {task.name!r} timed out after {task.timeout}s") from None


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
