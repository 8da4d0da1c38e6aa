"""The ``dask`` executor: sync task bodies run on a Dask cluster (``--executor dask``).

With ``--dask-address`` (or ``DASK_SCHEDULER_ADDRESS``) it connects to a
running scheduler; otherwise it starts a ``LocalCluster`` for the run and
closes it afterwards. Async bodies and bodies that take ``ctx`` (which talks to
the live run) stay on this machine, on the local executor. The trace context of
each attempt travels with the task (W3C ``traceparent``), so spans a body
creates on a worker are children of its attempt span when the worker exports
traces.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from dagexec_core import hookimpl
from dagexec_core.config import Config
from dagexec_core.dag import Task
from dagexec_core.errors import PluginError, TaskPicklingError

from .local import LocalExecutor
from .tracing import inject_context


def call_in_trace(fn: Any, carrier: dict[str, str] | None, kwargs: dict[str, Any]) -> Any:
    """Run on the worker: the body, inside the attempt's trace context.

    `remote_context` also gives a worker process the exporter the run uses
    (built from the worker's own OTEL_* variables), so its spans are sent.
    """
    if not carrier:
        return fn(**kwargs)
    from dagexec_plugins.tracing import remote_context

    with remote_context(carrier):
        return fn(**kwargs)


def _unpicklable(task: Task, exc: BaseException) -> TaskPicklingError:
    return TaskPicklingError(
        f"task {task.name!r} could not be sent to the Dask cluster: {exc}; a task's function and "
        f"inputs must be picklable (module-level functions or closures over plain data, no locks, "
        f"sockets or open files)"
    )


class DaskExecutor:
    name = "dask"
    enforces_timeout = False

    def __init__(self, address: str | None, workers: int | None, processes: bool) -> None:
        self.address = address
        self.workers = workers
        self.processes = processes
        self.client: Any = None
        self.cluster: Any = None
        self.local = LocalExecutor()
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop, concurrency: int) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise PluginError(
                "--executor dask needs Dask's distributed scheduler: pip install 'dagexec[dask]'"
            ) from exc
        self.loop = loop
        self.local.start(loop, concurrency)
        if self.address:
            self.client = Client(self.address)  # type: ignore[no-untyped-call]
        else:
            self.cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=self.workers or min(4, os.cpu_count() or 1),
                threads_per_worker=1,
                processes=self.processes,
                dashboard_address=None,
            )
            self.client = Client(self.cluster)  # type: ignore[no-untyped-call]

    def submit(
        self, task: Task, kwargs: dict[str, Any], timeout: float | None, context: Any = None
    ) -> asyncio.Future[Any]:
        if task.is_async or task.wants_ctx:
            return self.local.submit(task, kwargs, timeout, context)
        assert self.loop is not None and self.client is not None, "executor not started"
        carrier = inject_context(context) if context is not None else None
        loop = self.loop
        result: asyncio.Future[Any] = loop.create_future()
        try:
            remote = self.client.submit(
                call_in_trace, task.fn, carrier, kwargs, pure=False, key=f"{task.name}-{id(result):x}"
            )
        except Exception as exc:
            if "serialize" in str(exc):
                raise _unpicklable(task, exc) from exc
            raise

        def settle(done: Any) -> None:
            # Runs on a Dask client thread: hand the outcome to the event loop.
            try:
                exc = done.exception()
                value = None if exc is not None else done.result()
            except BaseException as err:  # noqa: BLE001 - cancelled or lost
                exc, value = err, None

            if isinstance(exc, TypeError) and "serialize" in str(exc):
                exc = _unpicklable(task, exc)

            def resolve() -> None:
                if result.done():
                    return
                if exc is not None:
                    result.set_exception(exc)
                else:
                    result.set_result(value)

            try:
                loop.call_soon_threadsafe(resolve)
            except RuntimeError:  # the run's loop is closed
                pass

        remote.add_done_callback(settle)
        # A timeout or cancel on our side cancels the Dask task too.
        result.add_done_callback(lambda f: remote.cancel() if f.cancelled() else None)
        return result

    def shutdown(self, cancel: bool = False) -> None:
        self.local.shutdown(cancel)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


@hookimpl
def dagexec_addoption(parser: Any) -> None:
    parser.add_argument("--dask-address", default=None, help="Dask scheduler to use with --executor dask")
    parser.add_argument("--dask-workers", type=int, default=None, help="workers of the local Dask cluster")


@hookimpl(trylast=True)
def dagexec_executor(config: Config) -> DaskExecutor | None:
    if config.getoption("executor") != "dask":
        return None
    return DaskExecutor(
        address=config.getoption("dask_address") or os.environ.get("DASK_SCHEDULER_ADDRESS"),
        workers=config.getoption("dask_workers"),
        processes=bool(config.getoption("dask_processes", True)),
    )
