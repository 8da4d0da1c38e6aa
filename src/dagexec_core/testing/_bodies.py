"""Task bodies the contract suites hand to executors.

Module-level functions of an importable module without heavy imports, so
an executor that runs bodies in other processes (or on other machines) can
load them by name.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from pathlib import Path
from typing import Any

#: Set in the context the contract hands ``submit``; a body reads it back.
CONTRACT_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("dagexec_contract_var", default="unset")


class ContractBodyError(RuntimeError):
    """Raised on purpose by `raise_error`: the contract checks its type, message and traceback."""


def add(a: int, b: int) -> int:
    return a + b


async def add_async(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def raise_error(message: str) -> None:
    raise ContractBodyError(message)


async def raise_error_async(message: str) -> None:
    await asyncio.sleep(0)
    raise ContractBodyError(message)


def overrun(seconds: float) -> str:
    """A sync body that ignores its timeout (sleeps in small steps, so an abandoned thread ends soon after)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)
    return "overran"


async def overrun_async(marker: str) -> str:
    """Waits until cancelled; leaves ``marker`` (a file path) behind when it is, ``marker.started`` at once."""
    Path(marker + ".started").write_text("started")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        Path(marker).write_text("cancelled")
        raise
    return "never"


def rendezvous(folder: str, me: str, other: str, within: float) -> str:
    """Leave a mark and wait for ``other``'s: proves two bodies run at the same time (threads or processes)."""
    Path(folder, me).write_text(str(os.getpid()))
    end = time.monotonic() + within
    while not Path(folder, other).exists():
        if time.monotonic() > end:
            raise TimeoutError(f"body {me!r} waited {within}s for body {other!r} to run alongside it")
        time.sleep(0.005)
    return me


def wait_for_file(path: str, within: float) -> str:
    """Block until ``path`` exists (the test releases the body by creating it); ``path.started`` marks
    the start and ``path.finished`` the end."""
    Path(path + ".started").write_text(str(os.getpid()))
    end = time.monotonic() + within
    outcome = "released"
    while not Path(path).exists():
        if time.monotonic() > end:
            outcome = "gave up"
            break
        time.sleep(0.005)
    Path(path + ".finished").write_text(outcome)
    return outcome


def read_contract_var() -> str:
    return CONTRACT_VAR.get()


async def read_contract_var_async() -> str:
    return CONTRACT_VAR.get()


def one() -> int:
    return 1


async def two() -> int:
    await asyncio.sleep(0)
    return 2


def echo(**kwargs: Any) -> dict[str, Any]:
    return dict(sorted(kwargs.items()))
