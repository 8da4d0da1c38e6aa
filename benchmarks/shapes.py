"""The benchmark DAG shapes, as plain ``{name: (deps...)}`` dicts, and the no-op task bodies.

Every driver (dagexec, the bare floors, Dask) is fed the same dict, so the
same names are hashed and the same edges walked by each.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

SHAPES = ("chain", "wide", "layered")
LAYER_WIDTH = 100
LAYER_FAN_IN = 3
SEED = 20261128

Graph = dict[str, tuple[str, ...]]


def chain(n: int) -> Graph:
    """t0 -> t1 -> ... -> t{n-1}: no parallelism at all, one scheduler step per task."""
    graph: Graph = {"t0": ()}
    for i in range(1, n):
        graph[f"t{i}"] = (f"t{i - 1}",)
    return graph


def wide(n: int) -> Graph:
    """One root, n-2 children of it, one sink that depends on every child."""
    if n < 3:
        raise ValueError("the wide shape needs n >= 3")
    graph: Graph = {"t0": ()}
    middle = tuple(f"t{i}" for i in range(1, n - 1))
    for name in middle:
        graph[name] = ("t0",)
    graph[f"t{n - 1}"] = middle
    return graph


def layered(n: int, width: int = LAYER_WIDTH, fan_in: int = LAYER_FAN_IN, seed: int = SEED) -> Graph:
    """Layers of ``width`` tasks; each depends on ``fan_in`` random tasks of the layer before."""
    rng = random.Random(seed)
    graph: Graph = {}
    previous: list[str] = []
    for start in range(0, n, width):
        layer = [f"t{i}" for i in range(start, min(n, start + width))]
        for name in layer:
            graph[name] = tuple(rng.sample(previous, min(fan_in, len(previous)))) if previous else ()
        previous = layer
    return graph


def build(shape: str, n: int) -> Graph:
    try:
        maker: Callable[[int], Graph] = {"chain": chain, "wide": wide, "layered": layered}[shape]
    except KeyError:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}") from None
    return maker(n)


# -- task bodies -------------------------------------------------------------
#
# Roots get a body that stamps the first start (to measure start-up latency);
# every other task is a true no-op. The stamp lives in a one-element list so
# the bodies stay free of ``global`` statements.

first_start: list[float] = []


async def anoop() -> None:
    return None


def snoop() -> None:
    return None


async def aroot() -> None:
    if not first_start:
        first_start.append(time.perf_counter())


def sroot() -> None:
    if not first_start:
        first_start.append(time.perf_counter())


def bodies(kind: str) -> tuple[Callable[[], object], Callable[[], object]]:
    """(root body, no-op body) for ``kind`` "async" or "sync"."""
    if kind == "async":
        return aroot, anoop
    if kind == "sync":
        return sroot, snoop
    raise ValueError(f"unknown kind {kind!r}; choose async or sync")
