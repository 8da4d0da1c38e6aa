"""Task functions for the process-executor tests: top-level, so worker processes can import them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any


def block_forever(pidfile: str) -> None:
    """Stands for C code that never yields: only killing the process stops it."""
    Path(pidfile).write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)


def whoami(ctx: Any) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "run_id": ctx.run_id,
        "task": ctx.task,
        "attempt": ctx.attempt,
        "deadline": ctx.deadline,
        "ctx_type": type(ctx).__name__,
    }


def pid() -> int:
    return os.getpid()


def numbers() -> list[int]:
    return [1, 2, 3]


def total(numbers: list[int], ctx: Any) -> dict[str, Any]:
    return {"sum": sum(numbers), "via_ctx": ctx.get("numbers")}


def uses_blackboard(ctx: Any) -> None:
    ctx.set("k", 1)


def returns_lock() -> Any:
    return threading.Lock()


class RateLimited(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Stubborn(Exception):
    """Cannot be rebuilt from its args: unpickling it fails."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"stubborn {a} {b}")


def rate_limited_once(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("x")
        raise RateLimited("429 from upstream", retry_after=0.01)
    return "done"


def raises_stubborn() -> None:
    raise Stubborn(1, 2)


def takes_lock(lock: Any) -> str:
    return repr(lock)


def current_span_ids() -> dict[str, str]:
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def dies_once(marker: str) -> int:
    """The first attempt kills its own worker, as the OOM killer or a segfault would."""
    import signal

    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()
