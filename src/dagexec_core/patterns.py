"""Workflow patterns built from ordinary tasks: conditional, loop, event, fan-out/fan-in, pipeline.

Every pattern adds plain `Task` objects to a `Dag`, so its tasks go through
the same engine, states, retries, persistence, resume and hooks as any other
task. What a pattern remembers between attempts or across a resume lives in
the run's meta values of the `Storage` (``get_meta`` / ``put_meta``) under
these keys:

- ``branches``: ``{task: choice}`` for every conditional task that has chosen;
- ``loop:{task}``: the last finished iteration of a loop
  (``{"iteration": i, "result": value, "done": bool}``);
- ``event:{name}``: an event emitted to the run, by a task or from outside
  (``{"payload": value, "at": unix_time}``).

``dagexec emit RUN_ID EVENT --payload JSON`` and `emit_to_run` write the
``event:`` key from another process; a run with a task waiting for that
event reads it within ``event_poll_interval`` seconds (option, default 0.1).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .dag import chosen_branches
from .errors import BranchError, EventTimeoutError, TaskDefinitionError
from .events import emit_to_run
from .outputs import encode_output

if TYPE_CHECKING:
    from .context import TaskContext
    from .dag import Dag, Task
    from .engine import Run
    from .stages import Storage

__all__ = [
    "Stop",
    "branch",
    "chosen_branches",
    "emit_to_run",
    "event_task",
    "fan_out_in",
    "loop",
    "pipeline",
    "recorded_branches",
]

BRANCHES_KEY = "branches"
LOOP_KEY = "loop:{}"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _params(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # builtins without a signature
        return {}


def _pick(params: dict[str, inspect.Parameter], values: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``values`` that a function with ``params`` takes."""
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(values)
    return {k: v for k, v in values.items() if k in params}


# ---------------------------------------------------------------------------
# dynamic map: the element as the first positional parameter
# ---------------------------------------------------------------------------

_P = inspect.Parameter
_NOT_ELEMENT = frozenset({"ctx", "index"})


class _ElementFirst:
    """Calls ``fn`` with the map element as its first positional argument, as Python's ``map`` does.

    A class, not a closure, so the process executor can pickle it (when
    ``fn`` pickles); its signature offers ``item`` and ``fn``'s other
    parameters, so the engine passes the element, ``index``, ``ctx`` and
    dependencies as for any mapped function.
    """

    def __init__(self, fn: Callable[..., Any], element: str | None, signature: inspect.Signature) -> None:
        self.fn = fn
        self.element = element  # keyword that receives the element; None: the first positional argument
        self.__signature__ = signature
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            value = getattr(fn, attr, None)
            if value is not None:
                setattr(self, attr, value)

    def __call__(self, item: Any, **kwargs: Any) -> Any:
        if self.element is None:
            return self.fn(item, **kwargs)
        return self.fn(**{self.element: item}, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_ElementFirst, (self.fn, self.element, self.__signature__))


def element_first(fn: Callable[..., Any], *, task: str, over: str, deps: Sequence[str]) -> Callable[..., Any]:
    """``fn`` as `Dag.map` calls it: unchanged when it has an ``item`` parameter, else
    given the element as its first positional parameter that is not ``ctx``,
    ``index`` or named after a dependency.

    A function that can take no element raises `TaskDefinitionError` here, when
    the DAG is defined, rather than failing every element at run time.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: call it as map() would
        return _ElementFirst(fn, None, inspect.Signature([_P("item", _P.POSITIONAL_OR_KEYWORD)]))
    if any(p.name == "item" and p.kind not in (_P.POSITIONAL_ONLY, _P.VAR_POSITIONAL) for p in params):
        return fn
    skip = _NOT_ELEMENT | set(deps)
    chosen = next(
        (
            p
            for p in params
            if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD, _P.VAR_POSITIONAL) and p.name not in skip
        ),
        None,
    )
    if chosen is None or (chosen.kind in (_P.POSITIONAL_ONLY, _P.VAR_POSITIONAL) and params[0] is not chosen):
        shown = ", ".join(str(p) for p in params) or "none"
        taken = sorted(skip & {p.name for p in params})
        why = f"; {', '.join(taken)} receive their own values" if taken else ""
        raise TaskDefinitionError(
            f"task {task!r}: dag.map passes each element of {over!r} as the function's first positional "
            f"parameter or as 'item', but {getattr(fn, '__qualname__', fn)!r} takes no such parameter "
            f"(its parameters: {shown}{why}); add one, e.g. def {task}(item): ..."
        )
    element = None if chosen is params[0] and chosen.kind is not _P.KEYWORD_ONLY else chosen.name
    rest = [
        p.replace(kind=_P.KEYWORD_ONLY)
        for p in params
        if p is not chosen and p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)
    ]
    rest += [p for p in params if p.kind is _P.VAR_KEYWORD]
    signature = inspect.Signature([_P("item", _P.POSITIONAL_OR_KEYWORD), *rest])
    if inspect.iscoroutinefunction(fn):
        return _async_element_first(fn, element, signature)
    return _ElementFirst(fn, element, signature)


def _async_element_first(
    fn: Callable[..., Any], element: str | None, signature: inspect.Signature
) -> Callable[..., Any]:
    # a coroutine function, so the engine runs it on the event loop as it would run fn
    async def call(item: Any, **kwargs: Any) -> Any:
        if element is None:
            return await fn(item, **kwargs)
        return await fn(**{element: item}, **kwargs)

    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        value = getattr(fn, attr, None)
        if value is not None:
            setattr(call, attr, value)
    call.__signature__ = signature  # type: ignore[attr-defined]
    return call


def _signature(*, ctx: bool) -> inspect.Signature:
    """What the engine reads of a wrapper: ``ctx`` if wanted, ``**deps`` for every dependency's output."""
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY)] if ctx else []
    params.append(inspect.Parameter("deps", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def _with_signature(wrapper: Callable[..., Any], *, ctx: bool) -> Callable[..., Any]:
    wrapper.__signature__ = _signature(ctx=ctx)  # type: ignore[attr-defined]
    return wrapper


async def _call(fn: Callable[..., Any], is_async: bool, kwargs: dict[str, Any]) -> Any:
    """Await ``fn``, or run it in a thread (context variables, so the current span, go along).

    Pattern bodies run in the run's process whatever the executor: they keep
    their checkpoints in the run's storage, which lives on the event loop.
    """
    if is_async:
        return await fn(**kwargs)
    return await asyncio.to_thread(fn, **kwargs)


def _check_json(run: Run, what: str, value: Any) -> None:
    if run.persist:
        encode_output(run.serializer, what, value)


def _set_span_attribute(key: str, value: Any) -> None:
    """Annotate the current span when a tracing plugin has loaded OpenTelemetry.

    The core does not import OpenTelemetry itself: if nothing imported it,
    there is no span to annotate.
    """
    otel_trace = sys.modules.get("opentelemetry.trace")
    if otel_trace is None:
        return
    if isinstance(value, (list, tuple)):
        value = [str(v) for v in value]
    otel_trace.get_current_span().set_attribute(key, value)


# ---------------------------------------------------------------------------
# conditional
# ---------------------------------------------------------------------------


def branch(
    dag: Dag,
    name: str,
    chooser: Callable[..., Any],
    *,
    branches: Sequence[str],
    deps: Iterable[str] = (),
    **options: Any,
) -> Task:
    """Add task ``name`` that runs ``chooser`` and follows only the branch it names.

    ``branches`` are tasks that depend on ``name``. ``chooser`` returns one of
    them (or a list of them, or None for none); that is the task's output.
    The branches not chosen are SKIPPED whatever their trigger; their
    descendants then follow their own trigger rules, so a join after the
    branches wants ``trigger="none_failed"`` (or ``"one_success"``).
    The choice is kept in the run's meta (``branches``) and set as the
    ``dagexec.branch`` attribute of the task's span.
    """
    names = tuple(branches)
    if not names:
        raise TaskDefinitionError(f"conditional task {name!r} needs at least one branch: branches=['a', 'b']")
    params = _params(chooser)
    wants_ctx = "ctx" in params
    is_async = inspect.iscoroutinefunction(chooser)

    def record(ctx: TaskContext, choice: Any) -> Any:
        picked = chosen_branches(choice) if isinstance(choice, (str, list, tuple, type(None))) else None
        if picked is None:
            raise BranchError(
                f"conditional task {name!r} returned {choice!r}; return a branch name, a list of names "
                f"or None (its branches: {', '.join(names)})"
            )
        wrong = sorted(picked - set(names))
        if wrong:
            raise BranchError(
                f"conditional task {name!r} chose {', '.join(map(repr, wrong))}, which is not one of its "
                f"branches ({', '.join(names)}); return one of them or add it to branches="
            )
        value = choice if isinstance(choice, str) or choice is None else list(choice)
        _set_span_attribute("dagexec.branch", value if value is not None else [])
        record_branch(ctx.run.storage, ctx.run_id, name, value)
        return value

    async def choose(ctx: TaskContext, **kwargs: Any) -> Any:
        if wants_ctx:
            kwargs["ctx"] = ctx
        return record(ctx, await _call(chooser, is_async, _pick(params, kwargs)))

    choose.__name__ = choose.__qualname__ = getattr(chooser, "__name__", name)
    return dag.add(name, _with_signature(choose, ctx=True), deps=deps, branches=names, **options)


def record_branch(storage: Storage, run_id: str, task: str, choice: Any) -> None:
    """Add ``task``'s choice to the run's ``branches`` meta (on the loop thread: no lost update)."""
    chosen = dict(storage.get_meta(run_id, BRANCHES_KEY) or {})
    chosen[task] = choice
    storage.put_meta(run_id, BRANCHES_KEY, chosen)


def recorded_branches(storage: Storage, run_id: str) -> dict[str, Any]:
    """``{task: choice}`` of the run's conditional tasks that have chosen (for ``dagexec show``)."""
    return dict(storage.get_meta(run_id, BRANCHES_KEY) or {})


# ---------------------------------------------------------------------------
# loop
# ---------------------------------------------------------------------------


@attrs.frozen
class Stop:
    """Returned by a loop body to end the loop now, with ``value`` as the loop's result."""

    value: Any = None


def loop(
    dag: Dag,
    name: str,
    body: Callable[..., Any],
    *,
    max_iterations: int,
    initial: Any = None,
    deps: Iterable[str] = (),
    **options: Any,
) -> Task:
    """Add task ``name`` that calls ``body`` repeatedly, at most ``max_iterations`` times.

    ``body`` takes any of ``iteration`` (0, 1, ...), ``previous`` (the
    previous iteration's result, ``initial`` the first time), ``ctx`` and the
    outputs of ``deps`` by name. It returns the iteration's result, or
    ``Stop(value)`` to end the loop early. The task's output is the last result.

    Each finished iteration is checkpointed in the run's meta
    (``loop:{name}``) before the next starts, so a retried attempt or a
    resumed run continues after the last finished iteration, not from zero.
    The task is ``resumable``: an attempt cut short by a crash does not use
    up its retries. Results must be JSON values when state is persisted.
    """
    if not isinstance(max_iterations, int) or max_iterations < 1:
        raise TaskDefinitionError(f"loop {name!r}: max_iterations must be an int >= 1, not {max_iterations!r}")
    params = _params(body)
    key = LOOP_KEY.format(name)

    def start(ctx: TaskContext) -> tuple[int, Any, bool]:
        saved = ctx.run.storage.get_meta(ctx.run_id, key)
        if saved is None:
            return 0, initial, False
        return int(saved["iteration"]) + 1, saved["result"], bool(saved["done"])

    def checkpoint(ctx: TaskContext, i: int, value: Any) -> tuple[Any, bool]:
        done = isinstance(value, Stop)
        if done:
            value = value.value
        _check_json(ctx.run, f"{name} (iteration {i})", value)
        ctx.run.storage.put_meta(ctx.run_id, key, {"iteration": i, "result": value, "done": done})
        return value, done

    def stop_if_cancelled(ctx: TaskContext, i: int) -> None:
        if ctx.cancelled:
            from .errors import TaskCancelledError

            raise TaskCancelledError(
                f"loop {name!r} stopped before iteration {i}: run {ctx.run_id} is being cancelled; "
                f"resume it to continue from iteration {i}"
            )

    def arguments(ctx: TaskContext, i: int, previous: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        values = dict(kwargs, iteration=i, previous=previous)
        if "ctx" in params:
            values["ctx"] = ctx
        return _pick(params, values)

    is_async = inspect.iscoroutinefunction(body)

    async def run_loop(ctx: TaskContext, **kwargs: Any) -> Any:
        i, previous, done = start(ctx)
        while not done and i < max_iterations:
            stop_if_cancelled(ctx, i)
            previous, done = checkpoint(ctx, i, await _call(body, is_async, arguments(ctx, i, previous, kwargs)))
            i += 1
        return previous

    run_loop.__name__ = run_loop.__qualname__ = getattr(body, "__name__", name)
    options.setdefault("resumable", True)
    return dag.add(name, _with_signature(run_loop, ctx=True), deps=deps, **options)


# ---------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------


def event_task(
    dag: Dag,
    name: str,
    event: str,
    *,
    timeout: float | None = None,
    handler: Callable[..., Any] | None = None,
    deps: Iterable[str] = (),
    **options: Any,
) -> Task:
    """Add task ``name`` that waits for ``event`` and returns its payload (or ``handler``'s result).

    The event comes from ``ctx.emit`` in another task, `RunHandle.emit`, or
    another process (``dagexec emit RUN_ID EVENT --payload JSON``). While it
    waits the task holds no concurrency slot. After ``timeout`` seconds it
    fails with `EventTimeoutError` (retried like any failure if it has
    ``retry=``). ``handler`` takes any of ``payload``, ``ctx`` and the outputs
    of ``deps``; a sync handler runs in a worker thread.
    """
    if timeout is not None and not timeout > 0:
        raise TaskDefinitionError(f"event task {name!r}: timeout must be a positive number of seconds")
    hparams = _params(handler) if handler is not None else {}
    handler_is_async = inspect.iscoroutinefunction(handler)

    async def wait_event(ctx: TaskContext, **kwargs: Any) -> Any:
        try:
            payload = await ctx.wait_for(event, timeout=timeout)
        except TimeoutError:
            raise EventTimeoutError(
                f"task {name!r} waited {timeout}s for event {event!r} in run {ctx.run_id}, and it never came; "
                f"emit it with ctx.emit({event!r}, ...), RunHandle.emit or "
                f"`dagexec emit {ctx.run_id} {event}`, or raise the task's timeout="
            ) from None
        if handler is None:
            return payload
        values = dict(kwargs, payload=payload, ctx=ctx)
        return await _call(handler, handler_is_async, _pick(hparams, values))

    wait_event.__name__ = wait_event.__qualname__ = name
    # A crash most likely came during the wait, which has nothing to repeat: resume it.
    options.setdefault("resumable", True)
    return dag.add(name, _with_signature(wait_event, ctx=True), deps=deps, **options)


# ---------------------------------------------------------------------------
# fan-out / fan-in and pipeline
# ---------------------------------------------------------------------------


def fan_out_in(
    dag: Dag,
    prefix: str,
    count: int,
    worker: Callable[..., Any],
    aggregator: Callable[..., Any],
    *,
    after: Iterable[str] = (),
    **options: Any,
) -> Task:
    """Add ``count`` parallel tasks ``{prefix}_0`` ... and ``{prefix}_aggregate`` joining them.

    Each worker is an ordinary task depending on ``after``: it receives their
    outputs by name, and its position as ``index`` if it takes that
    parameter. The aggregator receives the list of worker outputs in index
    order as its first argument (and ``ctx`` if it takes it). ``options``
    (retry, timeout, priority...) apply to every task. Returns the aggregate task.
    """
    if not isinstance(count, int) or count < 1:
        raise TaskDefinitionError(f"fan_out_in {prefix!r}: count must be an int >= 1, not {count!r}")
    after = tuple([after] if isinstance(after, str) else after)
    wparams = _params(worker)
    names = [f"{prefix}_{i}" for i in range(count)]
    for i, wname in enumerate(names):
        static = {"index": i} if "index" in wparams else None
        dag.add(wname, worker, deps=after, static_kwargs=static, **options)
    aggregate = _first_arg(aggregator, tuple(names), as_list=True)
    return dag.add(f"{prefix}_aggregate", aggregate, deps=names, **options)


def pipeline(
    dag: Dag,
    name: str,
    steps: Sequence[Callable[..., Any]],
    *,
    after: Iterable[str] = (),
    **options: Any,
) -> Task:
    """Chain ``steps`` as tasks, each receiving the previous step's output as its first argument.

    The steps are named ``{name}_0``, ``{name}_1``, ... and the last one is
    named ``name``, so a dependent lists ``deps=[name]`` and takes the
    pipeline's result as parameter ``name``. The first step is an ordinary
    task depending on ``after`` (it receives their outputs by name). A step
    that takes ``ctx`` gets it. ``options`` apply to every step.
    Returns the last task.
    """
    steps = list(steps)
    if not steps:
        raise TaskDefinitionError(f"pipeline {name!r} needs at least one step")
    after = tuple([after] if isinstance(after, str) else after)
    names = [f"{name}_{i}" for i in range(len(steps) - 1)] + [name]
    task = dag.add(names[0], steps[0], deps=after, **options)
    for prev, step_name, step in zip(names, names[1:], steps[1:], strict=False):
        task = dag.add(step_name, _first_arg(step, (prev,), as_list=False), deps=[prev], **options)
    return task


class _FirstArg:
    """Calls ``fn`` with dependency outputs as its first argument: the list of them, or the one.

    A module-level class rather than a closure so that the process and Dask
    executors can pickle it (when ``fn`` itself can be pickled).
    """

    def __init__(self, fn: Callable[..., Any], names: tuple[str, ...], as_list: bool) -> None:
        self.fn = fn
        self.names = names
        self.as_list = as_list
        self.wants_ctx = "ctx" in _params(fn)
        self.__name__ = getattr(fn, "__name__", "step")

    @property
    def __signature__(self) -> inspect.Signature:
        return _signature(ctx=self.wants_ctx)

    def arguments(self, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        first = [kwargs[n] for n in self.names] if self.as_list else kwargs[self.names[0]]
        return first, ({"ctx": kwargs["ctx"]} if self.wants_ctx else {})

    def __call__(self, **kwargs: Any) -> Any:
        first, extra = self.arguments(kwargs)
        return self.fn(first, **extra)


def _first_arg(fn: Callable[..., Any], names: tuple[str, ...], *, as_list: bool) -> Callable[..., Any]:
    call = _FirstArg(fn, names, as_list)
    if not inspect.iscoroutinefunction(fn):
        return call

    async def call_async(**kwargs: Any) -> Any:
        first, extra = call.arguments(kwargs)
        return await fn(first, **extra)

    call_async.__name__ = call_async.__qualname__ = call.__name__
    return _with_signature(call_async, ctx=call.wants_ctx)
