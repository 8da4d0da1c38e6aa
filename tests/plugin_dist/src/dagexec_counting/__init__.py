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
from typing import Any

from dagexec_core import hookimpl


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
        ctx = context or contextvars.copy_context()
        return self.loop.run_in_executor(None, functools.partial(ctx.run, task.fn, **kwargs))

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
