"""Module-level task functions for pattern tests under the process executor (they must pickle)."""

from __future__ import annotations

import os
from typing import Any


def size() -> int:
    return 50


def choose(size: int) -> str:
    return "big" if size > 10 else "small"


def where() -> int:
    return os.getpid()


def accumulate(iteration: int, previous: Any) -> int:
    return (previous or 0) + iteration


def shard(index: int) -> int:
    return index * 10


def total_with_pid(outputs: list[int]) -> list[int]:
    return [sum(outputs), os.getpid()]


def start() -> int:
    return 1


def add_one(x: int) -> int:
    return x + 1


def add_one_with_pid(x: int) -> list[int]:
    return [x + 1, os.getpid()]
