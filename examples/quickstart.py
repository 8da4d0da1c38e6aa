"""The quickstart DAG: extract, transform in parallel branches, load.

Run it with:  dagexec run examples/quickstart.py
"""

from __future__ import annotations

import asyncio

from dagexec_core import Dag, RetryPolicy

dag = Dag("quickstart")


@dag.task(retry=RetryPolicy(max_attempts=3, backoff="exponential", base=0.1), timeout=30, priority=5)
def extract() -> list[int]:
    return list(range(1, 11))


@dag.task(deps=["extract"])
def double(extract: list[int]) -> list[int]:
    return [x * 2 for x in extract]


@dag.task(deps=["extract"])
async def square(extract: list[int]) -> list[int]:
    await asyncio.sleep(0)
    return [x * x for x in extract]


@dag.task(deps=["double", "square"])
async def load(double: list[int], square: list[int], ctx) -> dict[str, int]:  # type: ignore[no-untyped-def]
    ctx.log.info("loading %d + %d rows", len(double), len(square))
    return {"rows": len(double) + len(square), "total": sum(double) + sum(square)}
