"""`DaskExecutor`: task bodies, sync and async, run on Dask workers; no cluster failure can hang an attempt.

Each attempt is one Dask task, submitted with ``retries=0`` and the task's
``priority``, with the function and its inputs pickled by value here
(`shipping`) and run on the worker by `remote.run_remote`. Bodies that take
``ctx`` talk to the live run, so they stay on this machine (local executor).

Every way the cluster can go wrong ends the attempt and hands it to the
task's retry policy: the worker running it leaves the cluster (watched here
through the scheduler's ``remove-worker`` events, so an external cluster's
own re-runs never hide it), no worker able to run it is there for
``dask_no_workers_timeout`` seconds (a watchdog here asks the scheduler), the
scheduler connection is lost. What can never succeed fails without a retry:
a function that cannot be pickled or loaded on the worker
(`TaskPicklingError`), a worker with another dagexec version.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import time
import uuid
import weakref
from typing import Any

from dagexec_core import (
    Config,
    DaskClusterError,
    DaskNoWorkersError,
    DaskResourceTagError,
    DaskWorkerLostError,
    DaskWorkerVersionError,
    Task,
    TaskPicklingError,
    __version__,
)

from ..local import LocalExecutor
from . import remote
from .session import DaskSession, seconds_option
from .shipping import Shipped, modules_beside, register_by_value

log = logging.getLogger("dagexec.dask")

#: Tags ``dask:NAME=AMOUNT`` ask Dask for worker resources (``dask worker --resources "NAME=AMOUNT"``).
RESOURCE_TAG = "dask:"

Resources = tuple[tuple[str, float], ...]


def task_resources(task: Task) -> Resources:
    """The Dask resources a task asks for through its ``dask:NAME=AMOUNT`` tags, sorted by name."""
    found: dict[str, float] = {}
    for tag in task.tags:
        if not tag.startswith(RESOURCE_TAG):
            continue
        name, sep, amount = tag[len(RESOURCE_TAG) :].partition("=")
        try:
            value = float(amount) if sep and name.strip() else -1.0
        except ValueError:
            value = -1.0
        if not value > 0:
            raise DaskResourceTagError(
                f"task {task.name!r}: tag {tag!r} is not a Dask resource request; write it dask:NAME=AMOUNT "
                f"with a positive amount, e.g. dask:GPU=1"
            )
        found[name.strip()] = value
    return tuple(sorted(found.items()))


def _describe_resources(resources: Resources) -> str:
    return ", ".join(f"{n}={v:g}" for n, v in resources)


class _Attempt:
    """One attempt in flight on the cluster."""

    __slots__ = ("task", "key", "remote", "result", "submitted", "resources")

    def __init__(self, task: Task, key: str, result: asyncio.Future[Any], resources: Resources) -> None:
        self.task = task
        self.key = key
        self.remote: Any = None
        self.result = result
        self.submitted = time.monotonic()
        self.resources = resources


class DaskExecutor:
    name = "dask"
    enforces_timeout = False

    def __init__(self, config: Config, session: DaskSession) -> None:
        self.config = config
        self.session = session
        # A run that fails before it starts its executor never calls shutdown: close the client anyway.
        weakref.finalize(self, session.close)
        self.no_workers_timeout = seconds_option(config, "dask_no_workers_timeout")
        self.local = LocalExecutor()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any = None
        self.runner: Shipped | None = None
        self.inflight: dict[str, _Attempt] = {}
        self.specs: dict[Task, tuple[bytes, Resources]] = {}
        self.blobs: dict[Any, bytes] = {}  # one pickle per function, however many tasks share it
        self.keys = itertools.count()
        self.token = uuid.uuid4().hex[:8]
        self.tracing = False
        self.unregister: Any = None
        self.watchdog: asyncio.Task[None] | None = None
        self.to_cancel: list[Any] = []
        self.arrived: collections.deque[tuple[_Attempt, Any, BaseException | None]] = collections.deque()
        self.wake_pending = False

    # -- lifecycle ------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, concurrency: int) -> None:
        self.loop = loop
        self.local.start(loop, concurrency)
        self.client = self.session.client
        dag_path = self.config.dag_path
        self.unregister = register_by_value(modules_beside(dag_path) if dag_path is not None else ())
        self.runner = Shipped(remote.run_remote)
        # The trace context travels only when the tracing plugin is on: tracing off never imports it.
        self.tracing = self.config.pluginmanager.get_plugin("tracing.events") is not None
        self.client.subscribe_topic("all", self._on_cluster_event)
        self.watchdog = loop.create_task(self._watch(), name="dagexec-dask-watchdog")

    def shutdown(self, cancel: bool = False) -> None:
        self.local.shutdown(cancel)
        if self.watchdog is not None:
            self.watchdog.cancel()
        pending = [a.remote for a in self.inflight.values() if a.remote is not None]
        self.inflight.clear()
        try:
            if self.client is not None and self.client.status == "running":
                self.client.unsubscribe_topic("all")
                if pending:
                    self.client.cancel(pending, reason="the dagexec run ended")
        finally:
            if self.unregister is not None:
                self.unregister()
            self.session.close()

    # -- submitting -----------------------------------------------------------

    def _spec(self, task: Task) -> tuple[bytes, Resources]:
        import cloudpickle

        resources = task_resources(task)
        blob = self.blobs.get(task.fn)
        try:
            if blob is None:
                self.blobs[task.fn] = blob = bytes(cloudpickle.dumps(task.fn))
        except Exception as exc:
            raise TaskPicklingError(
                f"task {task.name!r} could not be sent to the Dask cluster: {type(exc).__name__}: {exc}; a task's "
                f"function must be picklable (no locks, sockets or open files among the globals it uses)"
            ) from exc
        self.specs[task] = spec = (blob, resources)
        return spec

    def submit(
        self, task: Task, kwargs: dict[str, Any], timeout: float | None, context: Any = None
    ) -> asyncio.Future[Any]:
        if task.wants_ctx:
            return self.local.submit(task, kwargs, timeout, context)
        assert self.loop is not None and self.client is not None, "executor not started"
        fn_blob, resources = self.specs.get(task) or self._spec(task)
        kwargs_blob = None
        if kwargs:
            import cloudpickle

            try:
                kwargs_blob = cloudpickle.dumps(kwargs)
            except Exception as exc:
                raise TaskPicklingError(
                    f"task {task.name!r}: its inputs could not be sent to the Dask cluster: {type(exc).__name__}: {exc}"
                ) from exc
        carrier = None
        if self.tracing and context is not None:
            from dagexec_plugins.tracing import inject_context

            carrier = inject_context(context) or None
        key = f"{task.name}-{self.token}-{next(self.keys)}"
        result: asyncio.Future[Any] = self.loop.create_future()
        attempt = _Attempt(task, key, result, resources)
        attempt.remote = self.client.submit(
            self.runner,
            fn_blob,
            kwargs_blob,
            carrier,
            __version__,
            task.is_async,
            key=key,
            pure=False,
            retries=0,
            priority=task.priority,
            resources=dict(resources) or None,
        )
        self.inflight[key] = attempt
        self.client.loop.add_callback(self._track, attempt, attempt.remote)
        result.add_done_callback(functools.partial(self._ended, attempt))
        return result

    # -- outcomes -------------------------------------------------------------

    async def _track(self, attempt: _Attempt, remote_fut: Any) -> None:
        """On the client's loop: wait for the Dask task, fetch its result, hand the outcome to the run's loop.

        Fetches run concurrently (distributed joins them into one request), and outcomes reach the run's
        loop in batches: one wake-up for all that arrived since the last.
        """
        value: Any = None
        exc: BaseException | None = None
        try:
            (envelope,) = await self.client.gather([remote_fut], asynchronous=True)
            if envelope[0] == "ok":
                value = envelope[1]
            else:
                exc = self._envelope_error(attempt, envelope)
        except BaseException as err:  # noqa: BLE001 - the body's error, cancelled, connection lost
            exc = self._cluster_error(attempt, err)
        self.arrived.append((attempt, value, exc))
        if not self.wake_pending:
            self.wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._take_arrived)  # type: ignore[union-attr]
            except RuntimeError:  # the run's loop is closed: nobody waits for it
                pass

    def _take_arrived(self) -> None:
        self.wake_pending = False  # before taking: an outcome appended from now on schedules another call
        arrived = self.arrived
        while arrived:
            self._resolve(*arrived.popleft())

    def _cluster_error(self, attempt: _Attempt, exc: BaseException) -> BaseException:
        name = attempt.task.name
        kind = type(exc).__name__
        if kind == "KilledWorker":
            worker = getattr(getattr(exc, "last_worker", None), "address", None) or "its worker"
            return DaskWorkerLostError(f"task {name!r}: the Dask worker running it ({worker}) died")
        if "deserializ" in str(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else kind
            return TaskPicklingError(
                f"task {name!r} could not be loaded on the Dask cluster: {first}; the scheduler and workers need "
                f"the same Python packages as this machine (dagexec {__version__} included)"
            )
        if kind in ("CancelledError", "FutureCancelledError"):
            return DaskClusterError(f"task {name!r}: its Dask task was cancelled outside this run ({exc})")
        return exc

    def _envelope_error(self, attempt: _Attempt, envelope: tuple[Any, ...]) -> BaseException:
        name = attempt.task.name
        kind, worker, detail = envelope
        if kind == "version":
            has = f"dagexec {detail}" if detail else "no dagexec"
            return DaskWorkerVersionError(
                f"task {name!r}: Dask worker {worker} has {has} installed, but this run uses dagexec {__version__}; "
                f"install the same version on every worker: pip install 'dagexec[dask]=={__version__}'"
            )
        return TaskPicklingError(
            f"task {name!r} could not be loaded on Dask worker {worker}: {detail}; install that package on the "
            f"workers, or put the module beside the DAG file so that it travels with the task"
        )

    def _resolve(self, attempt: _Attempt, value: Any, exc: BaseException | None) -> None:
        result = attempt.result
        if result.done():
            return
        if exc is not None:
            result.set_exception(exc)
        else:
            result.set_result(value)

    def _ended(self, attempt: _Attempt, result: asyncio.Future[Any]) -> None:
        """The attempt is over for the run (done, failed, timed out, cancelled): forget it, stop its Dask task."""
        self.inflight.pop(attempt.key, None)
        remote_fut = attempt.remote
        attempt.remote = None
        if remote_fut is not None and not remote_fut.done():
            self.to_cancel.append(remote_fut)
            if len(self.to_cancel) == 1:
                self.loop.call_soon(self._cancel_batch)  # type: ignore[union-attr]

    def _cancel_batch(self) -> None:
        batch, self.to_cancel = self.to_cancel, []
        client = self.client
        if batch and client is not None and client.status == "running":
            # Without waiting for the scheduler's answer: the run's loop never blocks on the cluster.
            client.loop.add_callback(client.cancel, batch, asynchronous=True, reason="the dagexec attempt ended")

    # -- watching the cluster ---------------------------------------------------

    def _on_cluster_event(self, event: Any) -> None:
        """On the client's thread: a worker that left takes the attempts it was running with it."""
        _, msg = event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
            return
        worker = msg.get("worker", "a worker")
        keys = [*msg.get("processing-tasks", ()), *msg.get("lost-computed-tasks", ())]
        lost = [a for a in map(self.inflight.get, keys) if a is not None]  # the run's loop may drop keys meanwhile
        if lost and self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self._worker_lost, lost, worker)
            except RuntimeError:
                pass

    def _worker_lost(self, lost: list[_Attempt], worker: str) -> None:
        for attempt in lost:
            self._resolve(
                attempt,
                None,
                DaskWorkerLostError(
                    f"task {attempt.task.name!r}: the Dask worker running it ({worker}) left the cluster"
                ),
            )

    async def _watch(self) -> None:
        """Fail attempts that no worker has been able to run for ``no_workers_timeout`` seconds."""
        timeout = self.no_workers_timeout
        interval = min(1.0, max(0.05, timeout / 4))
        since: dict[Resources, float] = {}  # resources -> when no worker offering them was seen first
        while True:
            await asyncio.sleep(interval)
            if not self.inflight:
                since.clear()
                continue
            wanted = {a.resources for a in list(self.inflight.values())}
            workers = await self._workers(any(wanted), interval)
            now = time.monotonic()
            for resources in wanted:
                if workers is not None and any(_offers(w, resources) for w in workers):
                    since.pop(resources, None)
                else:
                    since.setdefault(resources, now - interval)
            for attempt in list(self.inflight.values()):
                first = since.get(attempt.resources)
                if first is not None and now - max(first, attempt.submitted) >= timeout:
                    self._resolve(attempt, None, self._no_workers_error(attempt, workers is None))

    def _no_workers_error(self, attempt: _Attempt, unreachable: bool) -> DaskNoWorkersError:
        name, timeout = attempt.task.name, f"{self.no_workers_timeout:g}s"
        where = self.session.address if self.session is not None and self.session.address else "the local cluster"
        if unreachable:
            what = f"the Dask scheduler at {where} has not answered for {timeout}"
        elif attempt.resources:
            what = f"no Dask worker offering {_describe_resources(attempt.resources)} joined {where} in {timeout}"
        else:
            what = f"the Dask cluster at {where} has had no workers for {timeout}"
        return DaskNoWorkersError(
            f"task {name!r}: {what}; start workers (dask worker {where}) or raise --dask-no-workers-timeout"
        )

    async def _workers(self, with_resources: bool, interval: float) -> list[dict[str, float]] | None:
        """The resources of every worker the scheduler knows (None when it cannot be asked)."""
        client = self.client
        if client is None or client.status != "running":
            return None
        call = client.scheduler.identity(n_workers=-1 if with_resources else 0)
        try:
            cf = asyncio.run_coroutine_threadsafe(call, client.loop.asyncio_loop)
            info = await asyncio.wait_for(asyncio.wrap_future(cf), timeout=max(2.0, 4 * interval))
        except Exception:  # noqa: BLE001 - the scheduler does not answer
            return None
        if not with_resources:
            return [{}] * int(info.get("n_workers", 0))
        return [dict(w.get("resources") or {}) for w in info.get("workers", {}).values()]


def _offers(worker: dict[str, float], resources: Resources) -> bool:
    return all(worker.get(name, 0) >= amount for name, amount in resources)
