"""What the contract suites share: running a scenario on a fresh loop, and a broken promise's message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


class ContractError(AssertionError):
    """A promise of a stage's contract was broken; the message names the suite and the promise."""


def broken(suite: str, promise: str, detail: str) -> NoReturn:
    raise ContractError(f"{suite}: broken promise: {promise} ({detail})")


def check(condition: object, suite: str, promise: str, detail: str) -> None:
    if not condition:
        broken(suite, promise, detail)


def run_scenario(scenario: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, list[dict[str, Any]]]:
    """Run ``scenario()`` on a fresh event loop; return its value and what reached the loop's exception handler."""
    errors: list[dict[str, Any]] = []

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        return await scenario()

    return asyncio.run(main()), errors


async def poll_until(condition: Callable[[], bool], within: float, what: str, suite: str, promise: str) -> None:
    """Wait (polling, with a deadline) until ``condition()``; a broken promise past the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not condition():
        if loop.time() > end:
            broken(suite, promise, f"{what} did not happen within {within}s")
        await asyncio.sleep(0.005)


async def within(awaitable: Awaitable[T], seconds: float, suite: str, promise: str, what: str) -> T:
    cm = asyncio.timeout(seconds)
    try:
        async with cm:
            return await awaitable
    except TimeoutError:
        if cm.expired():
            broken(suite, promise, f"{what} was still not done after {seconds}s")
        raise


def exists(path: Path) -> Callable[[], bool]:
    return path.exists
