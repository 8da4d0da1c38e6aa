"""Workflow patterns: each runs through the engine as ordinary tasks (states, retries, resume, hooks)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import pattern_tasks as pt
from dagexec_core import Dag, RetryPolicy, RunHandle, TaskState, hookimpl, run
from dagexec_core.errors import TaskDefinitionError
from dagexec_core.patterns import (
    Stop,
    branch,
    emit_to_run,
    event_task,
    fan_out_in,
    loop,
    pipeline,
    recorded_branches,
)
from patterns_support import SharedStorage

COMPLETED, SKIPPED, FAILED = TaskState.COMPLETED, TaskState.SKIPPED, TaskState.DEAD_LETTERED


def states(report: Any) -> dict[str, str]:
    return {n: r.state.value for n, r in report.records.items()}


# ---------------------------------------------------------------------------
# conditional
# ---------------------------------------------------------------------------


def branching_dag(size: int, join_trigger: str = "none_failed") -> Dag:
    dag = Dag("branching")
    dag.add("measure", lambda: size)
    branch(dag, "pick", lambda measure: "big" if measure > 10 else "small", branches=["big", "small"], deps=["measure"])
    dag.add("big", lambda: "handled big", deps=["pick"])
    dag.add("small", lambda: "handled small", deps=["pick"])
    dag.add("after_small", lambda small: small + "!", deps=["small"])
    dag.add("join", lambda: "joined", deps=["big", "small"], trigger=join_trigger)
    dag.add("strict_join", lambda: "strict", deps=["big", "small"])
    return dag


def test_conditional_skips_the_branch_not_taken_and_cascades_by_trigger() -> None:
    report = run(branching_dag(50), persist=False)
    s = states(report)
    assert report.outputs["pick"] == "big"
    assert s["big"] == "completed" and report.outputs["big"] == "handled big"
    assert s["small"] == "skipped"
    assert s["after_small"] == "skipped"  # all_success descendant of a skipped branch
    assert s["join"] == "completed"  # none_failed join runs after one branch
    assert s["strict_join"] == "skipped"  # all_success join does not


def test_a_run_whose_only_skips_are_branches_not_taken_is_ok() -> None:
    report = run(branching_dag(50), persist=False)
    assert report.ok and report.status == "completed"
    dag = Dag("d")
    branch(dag, "pick", lambda: "a", branches=["a", "b"])
    dag.add("a", lambda: 1 / 0, deps=["pick"])
    dag.add("b", lambda: 2, deps=["pick"])
    failed = run(dag, persist=False)
    assert not failed.ok and failed.status == "failed" and failed.failed == ["a"]


def test_conditional_takes_the_other_branch_for_other_input() -> None:
    report = run(branching_dag(3), persist=False)
    s = states(report)
    assert report.outputs["pick"] == "small"
    assert s["big"] == "skipped"
    assert report.outputs["after_small"] == "handled small!"


def test_branch_not_taken_is_skipped_even_when_its_trigger_is_all_done() -> None:
    dag = Dag("d")
    branch(dag, "pick", lambda: "a", branches=["a", "b"])
    dag.add("a", lambda: 1, deps=["pick"])
    dag.add("b", lambda: 2, deps=["pick"], trigger="all_done")
    report = run(dag, persist=False)
    assert states(report) == {"pick": "completed", "a": "completed", "b": "skipped"}


def test_conditional_can_choose_several_branches_or_none() -> None:
    def build(choice: Any) -> Dag:
        dag = Dag("d")
        branch(dag, "pick", lambda: choice, branches=["a", "b", "c"])
        for name in "abc":
            dag.add(name, lambda name=name: name, deps=["pick"])
        return dag

    s = states(run(build(["a", "c"]), persist=False))
    assert (s["a"], s["b"], s["c"]) == ("completed", "skipped", "completed")
    s = states(run(build(None), persist=False))
    assert (s["a"], s["b"], s["c"]) == ("skipped", "skipped", "skipped")


def test_conditional_choosing_an_unknown_branch_fails_naming_it() -> None:
    dag = Dag("d")
    branch(dag, "pick", lambda: "nope", branches=["a", "b"])
    dag.add("a", lambda: 1, deps=["pick"])
    dag.add("b", lambda: 2, deps=["pick"])
    report = run(dag, persist=False)
    rec = report.records["pick"]
    assert rec.state is FAILED
    assert "BranchError" in (rec.error or "") and "'nope'" in (rec.error or "") and "a, b" in (rec.error or "")
    assert states(report)["a"] == "skipped"


def test_a_branch_that_does_not_depend_on_its_conditional_is_a_definition_error() -> None:
    dag = Dag("d")
    branch(dag, "pick", lambda: "a", branches=["a"])
    dag.add("a", lambda: 1)
    with pytest.raises(TaskDefinitionError, match="branch 'a'.*deps=\\['pick'\\]"):
        dag.validate()


async def _async_chooser(ctx: Any, measure: int) -> str:
    assert ctx.task == "pick"
    return "big" if measure > 10 else "small"


def test_conditional_records_its_choice_in_run_meta_and_on_its_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    class Spans:
        """A stand-in tracing plugin: one span per attempt, current while the body runs."""

        def __init__(self) -> None:
            self.open: dict[str, Any] = {}

        @hookimpl
        def dagexec_task_started(self, task: Any) -> None:
            span = tracer.start_span(task.name)
            otel_context.attach(trace.set_span_in_context(span))  # inside the attempt's copied context
            self.open[task.name] = span

        @hookimpl
        def dagexec_task_finished(self, task: Any) -> None:
            span = self.open.pop(task.name, None)
            if span is not None:  # skipped tasks never started
                span.end()

    for chooser in (lambda measure: "big" if measure > 10 else "small", _async_chooser):
        exporter.clear()
        shared = SharedStorage()
        dag = Dag("d")
        dag.add("measure", lambda: 50)
        branch(dag, "pick", chooser, branches=["big", "small"], deps=["measure"])
        dag.add("big", lambda: 1, deps=["pick"])
        dag.add("small", lambda: 2, deps=["pick"])
        report = run(dag, plugins=[shared, Spans()])
        assert recorded_branches(shared.storage, report.run_id) == {"pick": "big"}
        spans = {s.name: s for s in exporter.get_finished_spans()}
        assert spans["pick"].attributes is not None and spans["pick"].attributes["dagexec.branch"] == "big"
        assert "dagexec.branch" not in (spans["measure"].attributes or {})


def test_every_conditional_of_a_run_is_recorded() -> None:
    shared = SharedStorage()
    dag = Dag("d")
    for k in range(5):
        branch(dag, f"pick{k}", lambda k=k: f"a{k}" if k % 2 else f"b{k}", branches=[f"a{k}", f"b{k}"])
        dag.add(f"a{k}", lambda: 1, deps=[f"pick{k}"])
        dag.add(f"b{k}", lambda: 2, deps=[f"pick{k}"])
    report = run(dag, plugins=[shared])
    assert recorded_branches(shared.storage, report.run_id) == {
        f"pick{k}": ("a" if k % 2 else "b") + str(k) for k in range(5)
    }


def test_the_tracing_plugin_carries_the_choice_on_the_attempt_span() -> None:
    pytest.importorskip("dagexec_plugins.tracing", reason="the tracing plugin is not on this branch yet")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    dag = Dag("traced")
    branch(dag, "pick", lambda: "b", branches=["a", "b"])
    dag.add("a", lambda: 1, deps=["pick"])
    dag.add("b", lambda: 2, deps=["pick"])
    run(dag, persist=False, tracer_provider=provider)
    chosen = [dict(s.attributes or {}).get("dagexec.branch") for s in exporter.get_finished_spans()]
    assert "b" in chosen


def test_resumed_run_keeps_skipping_the_branch_not_taken() -> None:
    """The skip is derived from the stored choice, not from memory of the first process."""
    shared = SharedStorage()
    handle = RunHandle()
    first = [True]

    async def slow(ctx: Any) -> str:
        if first[0]:
            first[0] = False
            handle.cancel(grace_period=0)  # interrupt the run while 'small' still waits on us
            await asyncio.Event().wait()
        return "slow done"

    dag = Dag("d")
    branch(dag, "pick", lambda: "big", branches=["big", "small"])
    dag.add("slow", slow, deps=["pick"])
    dag.add("big", lambda: 1, deps=["pick"], priority=-1)
    dag.add("small", lambda: 2, deps=["pick", "slow"])
    one = run(dag, plugins=[shared], concurrency=1, handle=handle)
    assert one.status == "cancelled"
    assert states(one)["small"] == "pending"
    two = run(dag, plugins=[shared], resume=one.run_id)
    assert two.ok and two.status == "completed"
    assert states(two) == {"pick": "completed", "slow": "completed", "big": "completed", "small": "skipped"}


# ---------------------------------------------------------------------------
# loop
# ---------------------------------------------------------------------------


def test_loop_passes_iteration_and_previous_result_up_to_the_maximum() -> None:
    seen: list[tuple[int, Any]] = []

    def body(iteration: int, previous: Any, seed: int) -> int:
        seen.append((iteration, previous))
        return (previous if previous is not None else seed) + iteration

    dag = Dag("d")
    dag.add("seed", lambda: 100)
    loop(dag, "grow", body, max_iterations=4, deps=["seed"])
    dag.add("after", lambda grow: grow * 2, deps=["grow"])
    report = run(dag, persist=False)
    assert seen == [(0, None), (1, 100), (2, 101), (3, 103)]
    assert report.outputs["grow"] == 106
    assert report.outputs["after"] == 212


def test_loop_stops_early_when_the_body_says_so() -> None:
    calls: list[int] = []

    def body(iteration: int, previous: int) -> Any:
        calls.append(iteration)
        total = previous + iteration
        return Stop(total) if total >= 6 else total

    dag = Dag("d")
    loop(dag, "sum", body, max_iterations=100, initial=0)
    report = run(dag, persist=False)
    assert calls == [0, 1, 2, 3]
    assert report.outputs["sum"] == 6


def test_async_loop_body_gets_ctx() -> None:
    async def body(iteration: int, previous: Any, ctx: Any) -> Any:
        assert ctx.task == "poll"
        return Stop("ready") if iteration == 2 else None

    dag = Dag("d")
    loop(dag, "poll", body, max_iterations=10)
    assert run(dag, persist=False).outputs["poll"] == "ready"


def test_a_retried_loop_continues_after_its_last_finished_iteration() -> None:
    calls: list[int] = []

    def body(iteration: int, previous: Any) -> int:
        calls.append(iteration)
        if iteration == 2 and calls.count(2) == 1:
            raise ConnectionError("flaky at iteration 2")
        return (previous or 0) + 1

    dag = Dag("d")
    loop(dag, "count", body, max_iterations=5, retry=RetryPolicy(max_attempts=2, base=0))
    report = run(dag, persist=False)
    assert report.records["count"].attempts == 2
    assert calls == [0, 1, 2, 2, 3, 4]
    assert report.outputs["count"] == 5


def test_a_resumed_run_continues_a_loop_from_its_last_finished_iteration() -> None:
    shared = SharedStorage()
    handle = RunHandle()
    calls: list[int] = []

    async def body(iteration: int, previous: Any) -> int:
        calls.append(iteration)
        if iteration == 2 and len(calls) == 3:
            handle.cancel(grace_period=60)  # the loop notices before iteration 3
        return (previous or 0) + iteration

    dag = Dag("d")
    loop(dag, "acc", body, max_iterations=6)
    one = run(dag, plugins=[shared], handle=handle)
    assert one.status == "cancelled" and calls == [0, 1, 2]
    assert shared.storage.get_meta(one.run_id, "loop:acc") == {"iteration": 2, "result": 3, "done": False}
    two = run(dag, plugins=[shared], resume=one.run_id)
    assert two.ok
    assert calls == [0, 1, 2, 3, 4, 5]
    assert two.outputs["acc"] == 0 + 1 + 2 + 3 + 4 + 5


def test_a_loop_that_ended_before_a_crash_returns_its_result_without_running_again() -> None:
    shared = SharedStorage()
    calls: list[int] = []

    def body(iteration: int, previous: Any) -> Any:
        calls.append(iteration)
        return Stop("converged") if iteration == 1 else iteration

    class DieAfterTheLoop:
        @hookimpl
        def dagexec_task_finished(self, task: Any) -> None:
            if task.name == "fit":
                raise SystemExit("killed before the loop's COMPLETED record was written")

    dag = Dag("d")
    loop(dag, "fit", body, max_iterations=10)
    with pytest.raises(SystemExit):
        run(dag, plugins=[shared, DieAfterTheLoop()])
    (run_id,) = shared.storage.runs
    assert shared.storage.records[run_id]["fit"].state is TaskState.RUNNING  # on its last attempt
    report = run(dag, plugins=[shared], resume=run_id)
    assert report.outputs["fit"] == "converged"
    assert calls == [0, 1]


def test_loop_needs_a_positive_maximum() -> None:
    with pytest.raises(TaskDefinitionError, match="max_iterations"):
        loop(Dag("d"), "x", lambda: None, max_iterations=0)


# ---------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------


def test_waiting_task_holds_no_slot_so_the_emitter_runs_with_concurrency_one() -> None:
    order: list[str] = []

    def emitter(ctx: Any) -> str:
        order.append("emitter")
        ctx.emit("approved", {"by": "alice"})
        return "sent"

    def handler(payload: Any) -> str:
        order.append("handler")
        return f"approved by {payload['by']}"

    dag = Dag("d")
    # Higher priority: the waiter takes the only slot first; if it kept it, the emitter could never run.
    event_task(dag, "wait", "approved", timeout=60, handler=handler, priority=10)
    dag.add("emit", emitter)
    report = run(dag, persist=False, concurrency=1)
    assert report.ok, report.records
    assert report.records["wait"].started_at is not None and report.records["emit"].started_at is not None
    assert report.records["wait"].started_at < report.records["emit"].started_at
    assert order == ["emitter", "handler"]
    assert report.outputs["wait"] == "approved by alice"


def test_a_task_whose_event_came_gets_the_next_free_slot_before_queued_tasks() -> None:
    order: list[str] = []

    def emitter(ctx: Any) -> None:
        order.append("emit")
        ctx.emit("go")

    def queued(ctx: Any) -> None:
        order.append(ctx.task)

    dag = Dag("d")
    event_task(dag, "wait", "go", timeout=60, handler=lambda: order.append("handler"), priority=10)
    dag.add("emit", emitter, priority=5)
    for name in ("q1", "q2", "q3"):
        dag.add(name, queued)
    report = run(dag, persist=False, concurrency=1)
    assert report.ok
    # It was running before it waited: it resumes first, not after the whole ready queue.
    assert order == ["emit", "handler", "q1", "q2", "q3"]


def test_cancelling_a_run_while_a_task_waits_for_an_event_leaves_it_resumable() -> None:
    handle = RunHandle()

    def cancel(ctx: Any) -> None:
        handle.cancel(grace_period=0)

    dag = Dag("d")
    event_task(dag, "wait", "never", timeout=60, priority=10)
    dag.add("stop", cancel)
    report = run(dag, persist=False, concurrency=1, handle=handle)
    assert report.status == "cancelled"
    assert report.records["wait"].state is TaskState.CANCELLED


def test_a_sync_task_waiting_with_wait_for_blocking_also_frees_its_slot() -> None:
    def waiter(ctx: Any) -> Any:
        return ctx.wait_for_blocking("ready", timeout=60)

    dag = Dag("d")
    dag.add("wait", waiter, priority=10)
    dag.add("emit", lambda ctx: ctx.emit("ready", "yes"))
    report = run(dag, persist=False, concurrency=1)
    assert report.outputs["wait"] == "yes"


def test_event_from_a_run_handle_in_another_thread() -> None:
    handle = RunHandle()
    waiting = threading.Event()

    class Signal:
        @hookimpl
        def dagexec_task_started(self, task: Any) -> None:
            if task.name == "wait":
                waiting.set()

    result: dict[str, Any] = {}
    dag = Dag("d")
    event_task(dag, "wait", "go", timeout=60)
    worker = threading.Thread(
        target=lambda: result.update(r=run(dag, persist=False, handle=handle, plugins=[Signal()], signals=False))
    )
    worker.start()
    assert waiting.wait(30)
    handle.emit("go", [1, 2, 3])
    worker.join(60)
    assert result["r"].outputs["wait"] == [1, 2, 3]


def test_an_event_that_never_comes_fails_the_task_after_its_timeout() -> None:
    dag = Dag("d")
    event_task(dag, "wait", "never", timeout=0.05)
    dag.add("after", lambda wait: wait, deps=["wait"])
    dag.add("other", lambda: "fine")
    report = run(dag, persist=False)
    rec = report.records["wait"]
    assert rec.state is FAILED
    assert rec.error is not None
    assert rec.error.startswith("EventTimeoutError") and "'never'" in rec.error and "dagexec emit" in rec.error
    assert states(report)["after"] == "skipped"
    assert report.outputs["other"] == "fine"


def test_event_emitted_into_storage_from_outside_reaches_the_waiting_task() -> None:
    shared = SharedStorage()
    handle = RunHandle()
    waiting = threading.Event()

    class Signal:
        @hookimpl
        def dagexec_task_started(self, task: Any) -> None:
            if task.name == "wait":
                waiting.set()

    result: dict[str, Any] = {}
    dag = Dag("d")
    event_task(dag, "wait", "deploy", timeout=60, handler=lambda payload, base: base + payload["n"], deps=["base"])
    dag.add("base", lambda: 10)
    worker = threading.Thread(
        target=lambda: result.update(r=run(dag, plugins=[shared, Signal()], handle=handle, signals=False))
    )
    worker.start()
    assert waiting.wait(30)
    assert handle.run_id is not None
    emit_to_run(shared.storage, handle.run_id, "deploy", {"n": 5})  # what `dagexec emit` does
    worker.join(60)
    assert result["r"].outputs["wait"] == 15


def test_events_emitted_by_a_task_are_kept_for_a_resumed_waiter() -> None:
    shared = SharedStorage()
    handle = RunHandle()
    first = [True]

    async def waiter(ctx: Any) -> Any:
        if first[0]:
            first[0] = False
            handle.cancel(grace_period=0)
            await asyncio.Event().wait()
        return await ctx.wait_for("token", timeout=60)

    dag = Dag("d")
    dag.add("emit", lambda ctx: ctx.emit("token", "abc"))
    dag.add("wait", waiter, deps=["emit"])
    one = run(dag, plugins=[shared], handle=handle)
    assert one.status == "cancelled" and states(one)["emit"] == "completed"
    two = run(dag, plugins=[shared], resume=one.run_id)
    assert two.outputs["wait"] == "abc"


# ---------------------------------------------------------------------------
# stateful
# ---------------------------------------------------------------------------


def test_task_state_counts_across_runs_of_the_same_dag() -> None:
    shared = SharedStorage()

    def counter(ctx: Any) -> int:
        ctx.state = (ctx.state or 0) + 1
        return int(ctx.state)

    dag = Dag("counting")
    dag.add("count", counter)
    assert [run(dag, plugins=[shared]).outputs["count"] for _ in range(3)] == [1, 2, 3]


def test_task_state_survives_a_failed_attempt() -> None:
    def resumable(ctx: Any) -> list[int]:
        done = list(ctx.state or [])
        for chunk in range(len(done), 4):
            if chunk == 2 and ctx.attempt == 1:
                raise OSError("disk hiccup")
            done.append(chunk)
            ctx.state = done
        return done

    dag = Dag("d")
    dag.add("work", resumable, retry=RetryPolicy(max_attempts=2, base=0))
    report = run(dag, persist=False)
    assert report.records["work"].attempts == 2
    assert report.outputs["work"] == [0, 1, 2, 3]


# ---------------------------------------------------------------------------
# fan-out / fan-in, pipeline
# ---------------------------------------------------------------------------


def test_fan_out_in_names_tasks_and_aggregates_in_index_order() -> None:
    async def worker(index: int, source: list[int], ctx: Any) -> int:
        if index == 0:  # finishes last: the aggregate order must not follow completion order
            await ctx.wait_for("others_done", timeout=60)
        if index == 2:
            ctx.emit("others_done")
        return source[index] * 10

    seen: list[Any] = []

    def total(outputs: list[int]) -> int:
        seen.append(outputs)
        return sum(outputs)

    dag = Dag("d")
    dag.add("source", lambda: [1, 2, 3])
    agg = fan_out_in(dag, "part", 3, worker, total, after=["source"], retry=2)
    assert agg.name == "part_aggregate"
    assert [t.name for t in dag] == ["source", "part_0", "part_1", "part_2", "part_aggregate"]
    assert all(dag[f"part_{i}"].retry is not None for i in range(3))
    report = run(dag, persist=False)
    assert report.records["part_0"].finished_at is not None and report.records["part_2"].finished_at is not None
    assert report.records["part_0"].finished_at >= report.records["part_2"].finished_at
    assert seen == [[10, 20, 30]]
    assert report.outputs["part_aggregate"] == 60


def test_fan_out_in_as_a_dag_method_with_async_aggregator_and_ctx() -> None:
    async def combine(outputs: list[int], ctx: Any) -> dict[str, Any]:
        return {"task": ctx.task, "outputs": outputs}

    dag = Dag("d")
    dag.fan_out_in("sq", 4, lambda index: index * index, combine)
    assert run(dag, persist=False).outputs["sq_aggregate"] == {"task": "sq_aggregate", "outputs": [0, 1, 4, 9]}


def test_a_failed_worker_skips_the_aggregate() -> None:
    def worker(index: int) -> int:
        if index == 1:
            raise ValueError("bad shard 1")
        return index

    dag = Dag("d")
    dag.fan_out_in("w", 3, worker, sum)
    report = run(dag, persist=False)
    assert report.failed == ["w_1"]
    assert states(report)["w_aggregate"] == "skipped"


def test_pipeline_chains_each_step_into_the_next() -> None:
    async def double(rows: list[int]) -> list[int]:
        return [r * 2 for r in rows]

    def describe(rows: list[int], ctx: Any) -> str:
        return f"{ctx.task}: {sum(rows)}"

    dag = Dag("d")
    dag.add("extract", lambda: [1, 2, 3])
    last = pipeline(dag, "etl", [lambda extract: [x + 1 for x in extract], double, describe], after=["extract"])
    dag.add("report", lambda etl: etl.upper(), deps=["etl"])
    assert last.name == "etl"
    assert [t.name for t in dag] == ["extract", "etl_0", "etl_1", "etl", "report"]
    result = run(dag, persist=False)
    assert result.outputs["etl_0"] == [2, 3, 4]
    assert result.outputs["etl_1"] == [4, 6, 8]
    assert result.outputs["etl"] == "etl: 18"
    assert result.outputs["report"] == "ETL: 18"


def test_pipeline_step_failure_skips_the_rest() -> None:
    def boom(x: int) -> int:
        raise RuntimeError("step 1 broke")

    dag = Dag("d")
    dag.pipeline("p", [lambda: 1, boom, lambda x: x])
    report = run(dag, persist=False)
    assert states(report) == {"p_0": "completed", "p_1": "dead_lettered", "p": "skipped"}


def test_patterns_run_under_the_process_executor() -> None:
    """Wrappers around sync functions pickle to worker processes; conditional and loop bodies stay here."""
    dag = Dag("processes")
    dag.add("size", pt.size)
    branch(dag, "pick", pt.choose, branches=["big", "small"], deps=["size"])
    dag.add("big", pt.where, deps=["pick"])
    dag.add("small", pt.where, deps=["pick"])
    loop(dag, "acc", pt.accumulate, max_iterations=4)
    dag.fan_out_in("shard", 3, pt.shard, pt.total_with_pid)
    dag.pipeline("chain", [pt.start, pt.add_one, pt.add_one_with_pid])
    report = run(dag, persist=False, executor="process", concurrency=2)
    assert report.ok, {n: r.error for n, r in report.records.items() if r.error}
    assert report.outputs["pick"] == "big" and report.records["small"].state is SKIPPED
    assert report.outputs["acc"] == 0 + 1 + 2 + 3
    total, agg_pid = report.outputs["shard_aggregate"]
    value, step_pid = report.outputs["chain"]
    assert total == 30 and value == 3
    assert os.getpid() not in (agg_pid, step_pid, report.outputs["big"])  # they ran in worker processes
