"""Every workflow pattern in one DAG: conditional, loop, event, stateful, fan-out/fan-in, pipeline, map.

Run it with:  dagexec run examples/patterns.py
See docs/patterns.md for each pattern.
"""

from __future__ import annotations

from typing import Any

from dagexec_core import Dag, RetryPolicy, TaskContext
from dagexec_core.patterns import Stop, branch, event_task, loop

dag = Dag("patterns")


# -- conditional: the order picks its shipping branch; the other is SKIPPED ----


@dag.task
def order() -> dict[str, Any]:
    return {"id": 42, "weight_kg": 3.5, "items": ["mug", "tea", "spoon"]}


def shipping(order: dict[str, Any]) -> str:
    return "ship_express" if order["weight_kg"] < 1 else "ship_standard"


branch(dag, "route", shipping, branches=["ship_express", "ship_standard"], deps=["order"])


@dag.task(deps=["route", "order"])
def ship_express(order: dict[str, Any]) -> str:
    return f"order {order['id']}: courier"


@dag.task(deps=["route", "order"])
def ship_standard(order: dict[str, Any]) -> str:
    return f"order {order['id']}: parcel post"


@dag.task(deps=["ship_express", "ship_standard"], trigger="none_failed")
def shipped(ctx: TaskContext) -> str:
    return str(ctx.get("ship_express", None) or ctx.get("ship_standard", None))


# -- loop: poll until ready, checkpointed after every iteration ----------------


def poll(iteration: int, previous: Any) -> Any:
    status = "ready" if iteration == 3 else "pending"
    return Stop({"status": status, "polls": iteration + 1}) if status == "ready" else {"status": status}


loop(dag, "wait_until_ready", poll, max_iterations=10, deps=["order"])


# -- event: 'label' waits (holding no slot) for 'printer_free' from 'printer' ---

event_task(dag, "label", "printer_free", timeout=30, handler=lambda payload: f"label on {payload['printer']}")


@dag.task
def printer(ctx: TaskContext) -> None:
    ctx.emit("printer_free", {"printer": "P1"})


# -- stateful: ctx.state survives across runs of this DAG (with a state file) --


@dag.task
def runs_so_far(ctx: TaskContext) -> int:
    ctx.state = (ctx.state or 0) + 1
    return int(ctx.state)


# -- fan-out / fan-in: stats_0..stats_2 then stats_aggregate (index order) ----


def item_length(index: int, order: dict[str, Any]) -> int:
    return len(order["items"][index])


dag.fan_out_in("stats", 3, item_length, lambda lengths: {"lengths": lengths, "total": sum(lengths)}, after=["order"])


# -- pipeline: each step receives the previous step's output -------------------

dag.pipeline("invoice", [lambda order: order["items"], sorted, ", ".join], after=["order"])


# -- dynamic map: one task per image, created at run time ----------------------


@dag.task
def images() -> list[str]:
    return ["mug.png", "tea.png", "spoon.png"]


def resize(item: str, index: int) -> str:
    return f"{index}:{item.removesuffix('.png')}-small.png"


dag.map(resize, over="images", retry=RetryPolicy(max_attempts=2, base=0.1), timeout=30)


@dag.task(deps=["resize", "invoice", "stats_aggregate", "shipped", "label", "wait_until_ready"])
def summary(resize: list[str], invoice: str, stats_aggregate: dict[str, Any], shipped: str) -> str:
    return f"{shipped}; items {invoice}; {stats_aggregate['total']} letters; {len(resize)} thumbnails"
