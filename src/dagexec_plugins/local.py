"""The default executor: async bodies on the event loop, sync bodies in daemon worker threads."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from queue import SimpleQueue
from typing import Any

from dagexec_core import Config, Task, hookimpl

_STOP = object()


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class ThreadPool:
    """Daemon worker threads that resolve asyncio futures directly.

    Daemon threads, because a sync task that overruns its timeout is
    abandoned, and an abandoned thread must not keep the process alive at
    exit. A thread is added whenever no worker is idle, so an abandoned
    thread never shrinks the pool; the engine bounds how many run at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: SimpleQueue[Any] = SimpleQueue()
        self.idle = 0
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def submit(self, fn: Any, kwargs: dict[str, Any], context: contextvars.Context) -> asyncio.Future[Any]:
        fut = self.loop.create_future()
        with self.lock:
            if self.idle > 0:
                self.idle -= 1
                spawn = False
            else:
                spawn = True
        self.queue.put((fn, kwargs, context, fut))
        if spawn:
            t = threading.Thread(target=self._work, name=f"dagexec-worker-{len(self.threads)}", daemon=True)
            self.threads.append(t)
            t.start()
        return fut

    def _work(self) -> None:
        queue, call = self.queue, self.loop.call_soon_threadsafe
        while True:
            item = queue.get()
            if item is _STOP:
                return
            fn, kwargs, context, fut = item
            try:
                value = context.run(fn, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the engine
                try:
                    call(_set_exception, fut, exc)
                except RuntimeError:  # loop closed: the run is over
                    return
            else:
                try:
                    call(_set_result, fut, value)
                except RuntimeError:
                    return
            del item, fn, kwargs, context, fut
            with self.lock:
                self.idle += 1

    def shutdown(self) -> None:
        for _ in self.threads:
            self.queue.put(_STOP)


class LocalExecutor:
    name = "local"
    enforces_timeout = False

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: ThreadPool | None = None

    def start(self, loop: asyncio.AbstractEventLoop, concurrency: int) -> None:
        self.loop = loop
        self.pool = ThreadPool(loop)

    def submit(
        self, task: Task, kwargs: dict[str, Any], timeout: float | None, context: Any = None
    ) -> asyncio.Future[Any]:
        assert self.loop is not None and self.pool is not None, "executor not started"
        if task.is_async:
            return self.loop.create_task(task.fn(**kwargs), context=context)
        return self.pool.submit(task.fn, kwargs, context or contextvars.copy_context())

    def shutdown(self, cancel: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown()


@hookimpl(trylast=True)
def dagexec_executor(config: Config) -> LocalExecutor | None:
    if config.getoption("executor", "local") not in ("local", None):
        return None
    return LocalExecutor()
