"""A third-party dagexec plugin: the ``counting`` executor.

Selected with ``--executor counting`` (or ``executor="counting"``); it runs
every body on the event loop or in a thread like the built-in executor and
appends each task name to the file given by ``--counting-log``. Inert
otherwise, so installing it changes nothing for other runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from typing import Any

from dagexec_core import hookimpl


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class CountingExecutor:
    name = "counting"
    enforces_timeout = False

    def __init__(self, log_path: str | None) -> None:
        self.log_path = log_path
        self.loop: asyncio.AbstractEventLoop | None = None
        self.count = 0

    def start(self, loop: asyncio.AbstractEventLoop, concurrency: int) -> None:
        self.loop = loop

    def _log(self, name: str) -> None:
        self.count += 1
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(name + "\n")

    def submit(
        self, task: Any, kwargs: dict[str, Any], timeout: float | None, context: Any = None
    ) -> asyncio.Future[Any]:
        assert self.loop is not None
        self._log(task.name)
        if task.is_async:
            return self.loop.create_task(task.fn(**kwargs), context=context)
        # A daemon thread per body, not the loop's default executor: the loop waits for that one's
        # threads when it closes, so a body abandoned past its timeout would hold up the end of the run
        # (the executor contract of dagexec.testing caught it).
        loop = self.loop
        fut: asyncio.Future[Any] = loop.create_future()
        call = functools.partial((context or contextvars.copy_context()).run, task.fn, **kwargs)

        def work() -> None:
            try:
                outcome: tuple[Any, ...] = (_resolve, fut, call())
            except BaseException as exc:  # noqa: BLE001 - handed to the engine
                outcome = (_fail, fut, exc)
            try:
                loop.call_soon_threadsafe(*outcome)
            except RuntimeError:  # the loop is closed: the run is over
                pass

        threading.Thread(target=work, name=f"counting-{task.name}", daemon=True).start()
        return fut

    def shutdown(self, cancel: bool = False) -> None:
        pass


@hookimpl
def dagexec_addoption(parser: Any) -> None:
    parser.add_argument("--counting-log", default=None, help="file the counting executor appends task names to")


@hookimpl
def dagexec_executor(config: Any) -> CountingExecutor | None:
    if config.getoption("executor") != "counting":
        return None
    return CountingExecutor(config.getoption("counting_log"))
