"""Dynamic map: one ordinary task per element of an upstream output, created at run time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dagexec_core import Dag, RetryPolicy, RunHandle, TaskState, hookimpl, run
from patterns_support import SharedStorage


def test_map_creates_one_named_task_per_element_and_collects_in_order() -> None:
    dag = Dag("d")
    dag.add("numbers", lambda: [3, 1, 2])
    dag.map(lambda item, index: {"i": index, "sq": item * item}, over="numbers", name="square")
    dag.add("total", lambda square: sum(x["sq"] for x in square), deps=["square"])
    report = run(dag, persist=False)
    assert report.outputs["square"] == [{"i": 0, "sq": 9}, {"i": 1, "sq": 1}, {"i": 2, "sq": 4}]
    assert report.outputs["square[1]"] == {"i": 1, "sq": 1}
    assert report.outputs["total"] == 14
    assert {n: r.state for n, r in report.records.items() if n.startswith("square[")} == {
        f"square[{i}]": TaskState.COMPLETED for i in range(3)
    }


def test_mapped_elements_receive_other_dependencies_and_ctx() -> None:
    def scale(item: int, factor: int, ctx: Any) -> list[Any]:
        return [ctx.task, item * factor]

    dag = Dag("d")
    dag.add("items", lambda: [1, 2])
    dag.add("factor", lambda: 10)
    dag.map(scale, over="items", deps=["factor"])
    assert run(dag, persist=False).outputs["scale"] == [["scale[0]", 10], ["scale[1]", 20]]


def test_map_over_an_empty_list_collects_an_empty_list() -> None:
    dag = Dag("d")
    dag.add("nothing", lambda: [])
    dag.map(lambda item: item, over="nothing", name="each")
    dag.add("after", lambda each: len(each), deps=["each"])
    report = run(dag, persist=False)
    assert report.ok and report.outputs["each"] == [] and report.outputs["after"] == 0


def test_map_over_a_non_iterable_fails_the_collector_clearly() -> None:
    dag = Dag("d")
    dag.add("scalar", lambda: 42)
    dag.map(lambda item: item, over="scalar", name="each")
    report = run(dag, persist=False)
    rec = report.records["each"]
    assert rec.state.failed
    assert rec.error is not None and "'scalar'" in rec.error and "iterable" in rec.error and "int" in rec.error


def test_each_element_is_retried_on_its_own() -> None:
    calls: dict[int, int] = {}

    def flaky(item: int) -> int:
        calls[item] = calls.get(item, 0) + 1
        if item == 1 and calls[item] == 1:
            raise ConnectionError("element 1 flaked once")
        return item

    dag = Dag("d")
    dag.add("items", lambda: [0, 1, 2])
    dag.map(flaky, over="items", retry=RetryPolicy(max_attempts=3, base=0))
    report = run(dag, persist=False)
    assert report.ok
    assert [report.records[f"flaky[{i}]"].attempts for i in range(3)] == [1, 2, 1]
    assert report.outputs["flaky"] == [0, 1, 2]
    assert report.metrics["retries"] == 1


def test_each_element_has_its_own_timeout() -> None:
    async def maybe_hang(item: int) -> int:
        if item == 2:
            await asyncio.Event().wait()  # never finishes: only its timeout ends it
        return item

    dag = Dag("d")
    dag.add("items", lambda: [0, 1, 2, 3])
    dag.map(maybe_hang, over="items", timeout=0.05)
    report = run(dag, persist=False)
    hung = report.records["maybe_hang[2]"]
    assert hung.state.failed and hung.error is not None and hung.error.startswith("TaskTimeoutError")
    assert [report.records[f"maybe_hang[{i}]"].state for i in (0, 1, 3)] == [TaskState.COMPLETED] * 3
    assert report.records["maybe_hang"].state.failed


def test_failed_elements_fail_the_collector_naming_them_and_skip_dependents() -> None:
    def check(item: int) -> int:
        if item % 4 == 1:
            raise ValueError(f"bad item {item}")
        return item

    dag = Dag("d")
    dag.add("items", lambda: list(range(8)))
    dag.map(check, over="items")
    dag.add("after", lambda check: check, deps=["check"])
    dag.add("cleanup", lambda: "cleaned", deps=["check"], trigger="all_done")
    report = run(dag, persist=False)
    collector = report.records["check"]
    assert collector.state is TaskState.FAILED
    assert collector.error == "MapError: 2 of 8 mapped tasks did not complete: check[1], check[5]"
    assert sorted(report.failed) == ["check", "check[1]", "check[5]"]
    assert report.records["after"].state is TaskState.SKIPPED
    assert report.outputs["cleanup"] == "cleaned"
    assert report.count(TaskState.COMPLETED) == 6 + 2  # six elements, items, cleanup


def test_mapped_elements_go_through_the_task_hooks() -> None:
    started: list[str] = []
    finished: list[str] = []

    class Watch:
        @hookimpl
        def dagexec_task_started(self, task: Any) -> None:
            started.append(task.name)

        @hookimpl
        def dagexec_task_finished(self, task: Any) -> None:
            finished.append(task.name)

    dag = Dag("d")
    dag.add("items", lambda: ["a", "b"])
    dag.map(str.upper, over="items", name="up")
    dag.map(lambda item: item, over="items", name="up2")
    report = run(dag, persist=False, plugins=[Watch()])
    assert report.outputs["up2"] == ["a", "b"]
    assert {"up2[0]", "up2[1]"} <= set(started) and {"up2[0]", "up2[1]", "up2"} <= set(finished)


def test_a_resumed_map_does_not_run_completed_elements_again() -> None:
    shared = SharedStorage()
    handle = RunHandle()
    executed: list[int] = []

    async def work(item: int) -> int:
        executed.append(item)
        if item == 5 and executed.count(5) == 1:
            handle.cancel(grace_period=0)  # stop the run half way through the elements
            await asyncio.Event().wait()
        return item * 100

    dag = Dag("d")
    dag.add("items", lambda: list(range(10)))
    dag.map(work, over="items")
    dag.add("total", lambda work: sum(work), deps=["work"])
    one = run(dag, plugins=[shared], concurrency=1, handle=handle)
    assert one.status == "cancelled"
    assert executed == [0, 1, 2, 3, 4, 5]
    assert one.records["work[5]"].state is TaskState.CANCELLED
    assert one.records["work"].state is TaskState.CANCELLED  # the collector; a resume re-expands it

    two = run(dag, plugins=[shared], resume=one.run_id)
    assert two.ok, two.records
    assert executed == [0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9]  # 0-4 were not run again
    assert two.outputs["work"] == [i * 100 for i in range(10)]
    assert two.outputs["total"] == 4500


def test_map_scales_to_ten_thousand_elements() -> None:
    async def double(item: int) -> int:
        return item * 2

    dag = Dag("big")
    dag.add("items", lambda: list(range(10_000)))
    dag.map(double, over="items")
    dag.add("total", lambda double: (len(double), sum(double), double[9_999]), deps=["double"])
    report = run(dag, persist=False, concurrency=64)
    assert report.ok
    assert report.outputs["total"] == [10_000, 2 * sum(range(10_000)), 19_998]
    assert report.count(TaskState.COMPLETED) == 10_000 + 3
    assert report.records["double[1234]"].output == 2468


def test_a_ten_thousand_element_map_in_a_state_file_resumes_where_it_was_cancelled(tmp_path: Path) -> None:
    handle = RunHandle()
    runs: dict[int, int] = {}

    async def double(item: int) -> int:
        runs[item] = runs.get(item, 0) + 1
        if item == 6_000 and runs[item] == 1:
            handle.cancel(grace_period=0)
            await asyncio.Event().wait()
        return item * 2

    dag = Dag("big")
    dag.add("items", lambda: list(range(10_000)))
    dag.map(double, over="items")
    db = str(tmp_path / "state.db")
    first = run(dag, state=db, concurrency=8, handle=handle)
    assert first.status == "cancelled"
    done_before = {
        int(n[7:-1]) for n, r in first.records.items() if n.startswith("double[") and r.state is TaskState.COMPLETED
    }
    assert 5_000 < len(done_before) < 10_000

    second = run(dag, state=db, resume=first.run_id, concurrency=64)
    assert second.ok
    assert second.outputs["double"] == [i * 2 for i in range(10_000)]
    assert all(runs[i] == 1 for i in done_before)  # completed elements were not run again
    assert runs[6_000] == 2 and len(runs) == 10_000


def test_a_map_interrupted_by_a_crash_resumes_instead_of_failing_its_collector() -> None:
    """The collector is RUNNING while its elements run; that is no attempt of user code to use up."""
    shared = SharedStorage()
    executed: list[str] = []

    class CrashAtElementThree:
        @hookimpl
        def dagexec_task_started(self, task: Any) -> None:
            if task.name == "work[3]" and "work[3]" not in executed:
                executed.append("work[3]")
                raise SystemExit("the process dies here")  # not an Exception: it ends the run, like a kill

    def work(item: int) -> int:
        executed.append(f"work[{item}]")
        return item + 1

    dag = Dag("d")
    dag.add("items", lambda: list(range(6)))
    dag.map(work, over="items")
    with pytest.raises(SystemExit):
        run(dag, plugins=[shared, CrashAtElementThree()], concurrency=1)
    (run_id,) = shared.storage.runs
    assert shared.storage.get_run(run_id).status == "crashed"
    assert shared.storage.records[run_id]["work"].state is TaskState.RUNNING
    assert shared.storage.records[run_id]["work[3]"].state is TaskState.RUNNING

    report = run(dag, plugins=[shared], resume=run_id)
    assert report.ok, report.records["work"]
    assert report.outputs["work"] == [1, 2, 3, 4, 5, 6]
    assert executed == ["work[0]", "work[1]", "work[2]", "work[3]", "work[3]", "work[4]", "work[5]"]
