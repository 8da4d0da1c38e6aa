"""The ``process`` executor: sync task bodies in worker processes, killed when they overrun.

A thread cannot be stopped, so the ``local`` executor can only abandon a sync
task that ignores its timeout. A process can be killed: with
``executor="process"`` (``--executor process``) every sync body runs in a
worker process, and a worker still running at the task's deadline gets
SIGKILL; the attempt fails with `TaskTimeoutError` and a fresh worker takes
its place. Async bodies stay on the event loop and are cancelled at their
deadline.

Functions, arguments and outputs cross the process boundary by pickle, so a
task function must be defined at module top level; what cannot be pickled
fails the task with `TaskPicklingError`, naming the task and the type. A
process task that asks for ``ctx`` gets a `ProcessContext`: ``run_id``,
``task``, ``attempt``, ``deadline``, ``log`` and ``get(dep)`` for the
outputs of its own dependencies; the run's blackboard, events and
``ctx.state`` stay in the parent process.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import os
import sys
import time
import traceback
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagexec_core import (
    Config,
    DagexecError,
    Task,
    TaskContext,
    TaskPicklingError,
    TaskTimeoutError,
    UsageError,
    hookimpl,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

# multiprocessing and pickle are imported where the executor first needs them: a run on the
# local executor does not pay for importing them.

log = logging.getLogger("dagexec.process")

START_METHODS = ("spawn", "forkserver", "fork")
_MISSING = object()


class WorkerDiedError(DagexecError):
    """A worker process exited (crashed, was killed from outside) while running a task."""


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process, chained as ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n" + self.tb


class RemoteTaskError(DagexecError):
    """Stands for an exception raised in a worker that could not be pickled back."""


class ProcessContext:
    """What a task running in a worker process gets as ``ctx``.

    A snapshot taken when the attempt starts: the live `TaskContext` (the
    run, its blackboard and events) stays in the parent process.
    """

    def __init__(
        self,
        run_id: str,
        task: str,
        attempt: int,
        timeout: float | None,
        outputs: dict[str, Any],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_id = run_id
        self.task = task
        self.attempt = attempt
        self.timeout = timeout
        self.outputs = outputs
        self._params = dict(params or {})  # a plain dict travels to the worker; a mapping proxy cannot be pickled
        self._deadline: float | None = None

    @property
    def params(self) -> Mapping[str, Any]:
        """The run's parameters, read-only (docs/parameters.md)."""
        return types.MappingProxyType(self._params)

    def _start(self) -> None:
        if self.timeout is not None:
            self._deadline = time.monotonic() + self.timeout

    @property
    def deadline(self) -> float | None:
        """Seconds this attempt has left before the worker is killed (None: no timeout)."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"dagexec.task.{self.task}")

    @property
    def cancelled(self) -> bool:
        return False  # a cancelled run kills the worker instead

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The output of one of this task's dependencies."""
        if name in self.outputs:
            return self.outputs[name]
        if default is _MISSING:
            raise KeyError(
                f"task {self.task!r} runs in a worker process and sees only its dependencies' outputs "
                f"({', '.join(sorted(self.outputs)) or 'none'}), not {name!r}; add it to deps="
            )
        return default

    def __getattr__(self, name: str) -> Any:
        if name in ("set", "lookup", "emit", "wait_for", "wait_for_blocking", "state", "run"):
            raise AttributeError(
                f"ctx.{name} is not available to task {self.task!r} in a worker process; "
                f"make the task async (it then runs on the event loop) or use the local executor"
            )
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"<ProcessContext run={self.run_id} task={self.task!r} attempt={self.attempt}>"


# ---------------------------------------------------------------------------
# the worker process
# ---------------------------------------------------------------------------


def _ensure_module(modname: str, modfile: str | None) -> None:
    """Make the task's module importable here, even when it was loaded by path in the parent."""
    if modname in sys.modules:
        return
    try:
        importlib.import_module(modname)
        return
    except ImportError:
        if not modfile:
            raise
    # A DAG file loaded by path may import its neighbours, as it could in the parent.
    folder = os.path.dirname(os.path.abspath(modfile))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(modname, modfile)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {modfile}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)


def _send_error(conn: Connection, exc: BaseException) -> None:
    import pickle

    tb = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc))  # what the parent will have to do
        payload: BaseException = exc
    except Exception:
        payload = RemoteTaskError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
        notes = getattr(exc, "__notes__", None)
        retry_after = getattr(exc, "retry_after", None)
        if notes:
            payload.__notes__ = list(notes)
        if retry_after is not None:
            payload.retry_after = retry_after  # type: ignore[attr-defined]
    conn.send(("error", payload, tb))


def worker_main(conn: Connection) -> None:
    """Run jobs from ``conn`` until told to stop (None) or the pipe closes."""
    import pickle

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if msg is None:
            return
        task_name, modname, modfile, blob, carrier = msg
        try:
            _ensure_module(modname, modfile)
            fn, kwargs = pickle.loads(blob)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            conn.send(
                (
                    "error",
                    TaskPicklingError(
                        f"task {task_name!r}: the worker process could not load its function from module "
                        f"{modname!r} ({modfile or 'not a file'}): {type(exc).__name__}: {exc}; "
                        f"define task functions at the top level of an importable module"
                    ),
                    "",
                )
            )
            continue
        ctx = kwargs.get("ctx")
        if isinstance(ctx, ProcessContext):
            ctx._start()
        conn.send(("started", os.getpid()))
        try:
            if carrier:
                from dagexec_plugins.tracing import remote_context

                with remote_context(carrier):
                    value = fn(**kwargs)
            else:
                value = fn(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            _send_error(conn, exc)
            continue
        try:
            conn.send(("ok", value))
        except Exception as exc:  # the output cannot be pickled back
            conn.send(
                (
                    "error",
                    TaskPicklingError(
                        f"task {task_name!r} returned a {type(value).__module__}.{type(value).__qualname__}, which "
                        f"cannot be pickled back from its worker process ({exc}); return plain data (dicts, lists, "
                        f"numbers, strings) or run the task with the local executor"
                    ),
                    "",
                )
            )


# ---------------------------------------------------------------------------
# the parent side
# ---------------------------------------------------------------------------


class _Job:
    __slots__ = ("task", "fut", "timeout", "timer", "worker")

    def __init__(self, task: Task, fut: asyncio.Future[Any], timeout: float | None, worker: _Worker) -> None:
        self.task = task
        self.fut = fut
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None
        self.worker = worker


class _Worker:
    __slots__ = ("process", "conn", "job", "pid")

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.job: _Job | None = None
        self.pid: int = process.pid


class ProcessExecutor:
    """Sync bodies in worker processes (one job at a time each); async bodies on the loop."""

    name = "process"
    enforces_timeout = True

    def __init__(self, start_method: str = "spawn", *, tracing: bool = False) -> None:
        #: The tracing plugin is on: the attempt's trace context travels with it (tracing off never imports it).
        self.tracing = tracing
        if start_method not in START_METHODS:
            raise UsageError(f"process_start_method={start_method!r} is not one of {', '.join(START_METHODS)}")
        import multiprocessing

        self.mp: Any = multiprocessing.get_context(start_method)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.idle: list[_Worker] = []
        self.workers: set[_Worker] = set()

    # -- TaskExecutor --------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, concurrency: int) -> None:
        self.loop = loop

    def submit(
        self, task: Task, kwargs: dict[str, Any], timeout: float | None, context: Any = None
    ) -> asyncio.Future[Any]:
        loop = self.loop
        assert loop is not None, "executor not started"
        if task.is_async:
            return loop.create_task(_with_deadline(task, task.fn(**kwargs), timeout), context=context)
        msg = self._message(task, kwargs, timeout, context)
        worker = self.idle.pop() if self.idle else self._spawn()
        fut: asyncio.Future[Any] = loop.create_future()
        job = _Job(task, fut, timeout, worker)
        worker.job = job
        fut.add_done_callback(lambda f: self._on_future_done(job))
        try:
            worker.conn.send(msg)
        except OSError as exc:
            self._kill(worker)
            raise WorkerDiedError(f"task {task.name!r}: worker process {worker.pid} is gone ({exc})") from exc
        return fut

    def shutdown(self, cancel: bool = False) -> None:
        for worker in list(self.workers):
            if worker.job is not None:
                self._kill(worker)
                continue
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in list(self.workers):
            worker.process.join(5)
            self._kill(worker)
        self.idle.clear()

    # -- internals -----------------------------------------------------------

    def _message(self, task: Task, kwargs: dict[str, Any], timeout: float | None, context: Any) -> tuple[Any, ...]:
        import pickle

        fn = task.fn
        kwargs = dict(kwargs)
        ctx = kwargs.get("ctx")
        if isinstance(ctx, TaskContext):
            outputs = {d: ctx.get(d, None) for d in task.deps}
            kwargs["ctx"] = ProcessContext(ctx.run_id, task.name, ctx.attempt, timeout, outputs, ctx.params)
        try:
            pickle.dumps(fn)
        except Exception as exc:
            raise TaskPicklingError(
                f"task {task.name!r}: its function {getattr(fn, '__qualname__', fn)!r} "
                f"({type(fn).__name__}) cannot be pickled to a worker process ({exc}); define it at the "
                f"top level of a module (not inside a function or as a lambda), or use the local executor"
            ) from exc
        for key, value in kwargs.items():
            try:
                pickle.dumps(value)
            except Exception as exc:
                raise TaskPicklingError(
                    f"task {task.name!r}: argument {key!r} is a {type(value).__module__}."
                    f"{type(value).__qualname__}, which cannot be pickled to a worker process ({exc}); "
                    f"pass plain data between process tasks, or use the local executor"
                ) from exc
        blob = pickle.dumps((fn, kwargs))
        modname = getattr(fn, "__module__", None) or "__main__"
        module = sys.modules.get(modname)
        modfile = getattr(module, "__file__", None)
        return (task.name, modname, modfile, blob, _trace_carrier(context) if self.tracing else {})

    def _spawn(self) -> _Worker:
        parent, child = self.mp.Pipe()
        process = self.mp.Process(target=worker_main, args=(child,), name="dagexec-process-worker", daemon=True)
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self.workers.add(worker)
        assert self.loop is not None
        self.loop.add_reader(parent.fileno(), self._on_readable, worker)
        log.debug("started worker process %d", worker.pid)
        return worker

    def _on_readable(self, worker: _Worker) -> None:
        job = worker.job
        try:
            msg = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(5)  # the pipe closed because the process ended: reap it for its exit code
            code = worker.process.exitcode
            self._kill(worker)
            if job is not None:
                _fail(
                    job,
                    WorkerDiedError(
                        f"task {job.task.name!r}: its worker process {worker.pid} died "
                        f"(exit code {code}) while running it"
                    ),
                )
            return
        except Exception as exc:  # the output or error could not be unpickled here
            if job is not None:
                self._release(worker, job)
                _fail(
                    job,
                    TaskPicklingError(
                        f"task {job.task.name!r}: its result could not be unpickled from worker process "
                        f"{worker.pid}: {type(exc).__name__}: {exc}"
                    ),
                )
            return
        if job is None:
            return
        kind = msg[0]
        if kind == "started":
            if job.timeout is not None and self.loop is not None:
                job.timer = self.loop.call_later(job.timeout, self._overrun, worker, job)
            return
        self._release(worker, job)
        if kind == "ok":
            if not job.fut.done():
                job.fut.set_result(msg[1])
        else:
            error, tb = msg[1], msg[2]
            if tb:
                error.__cause__ = RemoteTraceback(tb)
            _fail(job, error)

    def _release(self, worker: _Worker, job: _Job) -> None:
        if job.timer is not None:
            job.timer.cancel()
        worker.job = None
        if worker in self.workers:
            self.idle.append(worker)

    def _overrun(self, worker: _Worker, job: _Job) -> None:
        if worker.job is not job:
            return
        log.warning(
            "task %r overran its timeout of %ss; killing its worker process %d", job.task.name, job.timeout, worker.pid
        )
        self._kill(worker)
        _fail(
            job,
            TaskTimeoutError(
                f"task {job.task.name!r} timed out after {job.timeout}s; its worker process {worker.pid} was killed"
            ),
        )

    def _on_future_done(self, job: _Job) -> None:
        # Cancelled from outside (the run is being cancelled): the body cannot be told, so stop it.
        if job.fut.cancelled() and job.worker.job is job:
            self._kill(job.worker)

    def _kill(self, worker: _Worker) -> None:
        if worker not in self.workers:
            return
        self.workers.discard(worker)
        if worker in self.idle:
            self.idle.remove(worker)
        if worker.job is not None and worker.job.timer is not None:
            worker.job.timer.cancel()
        worker.job = None
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(worker.conn.fileno())
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        worker.conn.close()


def _trace_carrier(context: Any) -> dict[str, str]:
    """The attempt span's W3C trace context, so spans a body makes in its worker join the run's trace.

    Called only when the tracing plugin is on (``ProcessExecutor.tracing``): with it off, the
    plugin, and OpenTelemetry, are never imported.
    """
    if context is None:
        return {}
    try:
        from dagexec_plugins.tracing import inject_context
    except ImportError:
        return {}
    carrier: dict[str, str] = inject_context(context)
    return carrier


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.fut.done():
        job.fut.set_exception(exc)


async def _with_deadline(task: Task, coro: Any, timeout: float | None) -> Any:
    if timeout is None:
        return await coro
    cm = asyncio.timeout(timeout)
    try:
        async with cm:
            return await coro
    except TimeoutError:
        if cm.expired():
            raise TaskTimeoutError(f"task {task.name!r} timed out after {timeout}s") from None
        raise


@hookimpl(trylast=True)
def dagexec_executor(config: Config) -> ProcessExecutor | None:
    if config.getoption("executor") != "process":
        return None
    return ProcessExecutor(
        start_method=str(config.getoption("process_start_method") or "spawn"),
        tracing=config.pluginmanager.get_plugin("tracing.events") is not None,
    )
