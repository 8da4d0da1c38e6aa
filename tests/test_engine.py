"""Engine semantics: outputs, priorities, concurrency, threads, timeouts, retries, skips, triggers, cancellation."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from dagexec_core import Dag, RetryPolicy, RunHandle, TaskState, arun, run
from dagexec_core.errors import IllegalTransitionError
from dagexec_core.state import check_transition

S = TaskState


def go(dag: Dag, **kw: Any) -> Any:
    kw.setdefault("persist", False)
    return run(dag, signals=False, **kw)


def test_outputs_flow_to_parameters_named_after_dependencies() -> None:
    dag = Dag("etl")

    @dag.task
    def extract() -> list[int]:
        return [1, 2, 3]

    @dag.task(deps=["extract"])
    def transform(extract: list[int]) -> list[int]:
        return [x * 2 for x in extract]

    @dag.task(deps=["transform"])
    async def load(transform: list[int], ctx: Any) -> int:
        ctx.log.info("loading %d rows", len(transform))
        assert ctx.get("extract") == [1, 2, 3] and ctx.task == "load" and ctx.attempt == 1
        return len(transform)

    report = go(dag)
    assert report.ok and report.outputs["load"] == 3
    assert report.records["transform"].output == [2, 4, 6]
    assert report.count(S.COMPLETED) == 3 and report.failed == []
    assert report.metrics["completed"] == 3 and report.metrics["started"] == 3


def test_priority_higher_first_and_fifo_within_a_priority() -> None:
    dag = Dag("p")
    order: list[str] = []
    for name, prio in [("low1", 0), ("high", 9), ("low2", 0), ("mid", 5), ("low3", 0)]:
        dag.add(name, lambda name=name: order.append(name), priority=prio)
    assert go(dag, concurrency=1).ok
    assert order == ["high", "mid", "low1", "low2", "low3"]


def test_concurrency_bound_is_never_exceeded() -> None:
    dag = Dag("c")
    active = 0
    peak = 0

    async def body() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.001)
        active -= 1

    for i in range(40):
        dag.add(f"t{i}", body)
    assert go(dag, concurrency=3).ok
    assert peak == 3


def test_sync_tasks_run_in_worker_threads_with_context_variables_copied() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    dag = Dag("t")

    @dag.task
    def where() -> tuple[bool, str]:
        return threading.current_thread() is not threading.main_thread(), var.get()

    async def main() -> Any:
        var.set("from-caller")
        return await arun(dag, persist=False)

    report = asyncio.run(main())
    assert report.outputs["where"] == [True, "from-caller"]  # a tuple output reaches everyone as a list, as on resume


def test_async_timeout_cancels_the_attempt_and_fails_the_task() -> None:
    dag = Dag("t")
    cancelled = threading.Event()

    @dag.task(timeout=0.05)
    async def slow() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    report = go(dag)
    rec = report.records["slow"]
    assert rec.state is S.DEAD_LETTERED and "TaskTimeoutError" in (rec.error or "")
    assert cancelled.is_set()


def test_sync_task_that_ignores_its_timeout_is_abandoned_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    dag = Dag("t")

    @dag.task(timeout=0.05)
    def stuck() -> None:
        release.wait(10)

    @dag.task
    def other() -> str:
        return "ran"

    report = go(dag, concurrency=1)
    release.set()
    assert report.records["stuck"].state is S.DEAD_LETTERED
    assert "TaskTimeoutError" in (report.records["stuck"].error or "")
    assert report.outputs["other"] == "ran"  # the slot was freed
    assert any("'stuck' overran its timeout" in r.getMessage() for r in caplog.records)


def test_retries_follow_the_policy_then_succeed() -> None:
    dag = Dag("r")
    calls: list[int] = []

    @dag.task(retry=RetryPolicy(max_attempts=3, backoff="fixed", base=0.001))
    def flaky(ctx: Any) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return "ok"

    report = go(dag)
    assert report.ok and calls == [1, 2, 3]
    assert report.records["flaky"].attempts == 3 and report.metrics["retries"] == 2


def test_exhausted_task_is_dead_lettered_and_dependents_skip_transitively() -> None:
    dag = Dag("s")

    @dag.task(retry=2)
    def bad() -> None:
        raise ValueError("broken input")

    dag.add("child", lambda: None, deps=["bad"])
    dag.add("grandchild", lambda: None, deps=["child"])
    dag.add("independent", lambda: "fine")

    report = go(dag)
    assert not report.ok and report.failed == ["bad"]
    assert report.records["bad"].state is S.DEAD_LETTERED and report.records["bad"].attempts == 2
    assert report.records["bad"].error == "ValueError: broken input"
    assert report.records["child"].state is S.SKIPPED
    assert report.records["grandchild"].state is S.SKIPPED
    assert report.outputs["independent"] == "fine"
    assert report.metrics["dead_lettered"] == 1 and report.metrics["skipped"] == 2


def _fail() -> None:
    raise RuntimeError("no")


@pytest.mark.parametrize(
    "trigger, upstream, expected",
    [
        ("all_success", ["ok", "fail"], S.SKIPPED),
        ("all_done", ["ok", "fail"], S.COMPLETED),
        ("one_failed", ["ok", "fail"], S.COMPLETED),
        ("one_failed", ["ok", "ok"], S.SKIPPED),
        ("none_failed", ["ok", "skip"], S.COMPLETED),
        ("none_failed", ["ok", "fail"], S.SKIPPED),
        ("one_success", ["fail", "ok"], S.COMPLETED),
        ("one_success", ["fail", "skip"], S.SKIPPED),
    ],
)
def test_trigger_rules(trigger: str, upstream: list[str], expected: TaskState) -> None:
    dag = Dag("tr")
    dag.add("failing_root", _fail)
    deps = []
    for i, kind in enumerate(upstream):
        name = f"u{i}"
        if kind == "ok":
            dag.add(name, lambda: 1)
        elif kind == "fail":
            dag.add(name, _fail)
        else:  # skipped because its own upstream failed
            dag.add(name, lambda: 1, deps=["failing_root"])
        deps.append(name)
    dag.add("target", lambda: "ran", deps=deps, trigger=trigger)
    report = go(dag)
    assert report.records["target"].state is expected


def test_cancel_through_handle_lets_running_tasks_finish_within_grace_and_stops_new_work() -> None:
    dag = Dag("c")
    handle = RunHandle()
    started = threading.Event()

    @dag.task
    async def first() -> str:
        started.set()
        handle.cancel(grace_period=5)
        await asyncio.sleep(0.01)
        return "finished in grace"

    dag.add("after", lambda: "never", deps=["first"])
    report = go(dag, handle=handle)
    assert report.status == "cancelled"
    assert report.records["first"].state is S.COMPLETED
    assert report.records["after"].state is S.PENDING  # resumable: not started, not skipped


def test_cancel_after_grace_cancels_running_async_tasks() -> None:
    dag = Dag("c")
    handle = RunHandle()

    @dag.task
    async def forever() -> None:
        handle.cancel(grace_period=0.01)
        await asyncio.Event().wait()

    report = go(dag, handle=handle)
    assert report.status == "cancelled"
    assert report.records["forever"].state is S.CANCELLED


def test_cancel_from_another_thread() -> None:
    dag = Dag("c")
    handle = RunHandle()
    entered = threading.Event()

    @dag.task
    async def wait() -> None:
        entered.set()
        await asyncio.Event().wait()

    threading.Thread(target=lambda: (entered.wait(5), handle.cancel(grace_period=0))).start()
    report = go(dag, handle=handle)
    assert report.records["wait"].state is S.CANCELLED and report.status == "cancelled"


def test_illegal_transition_raises_naming_the_task() -> None:
    with pytest.raises(IllegalTransitionError, match="task 'x' cannot move from completed to running"):
        check_transition("x", S.COMPLETED, S.RUNNING)
    check_transition("x", S.PENDING, S.RUNNING)


def test_events_between_tasks_and_ctx_state_blackboard() -> None:
    dag = Dag("e")

    @dag.task
    async def waiter(ctx: Any) -> Any:
        return await ctx.wait_for("go", timeout=5)

    @dag.task
    def emitter(ctx: Any) -> None:
        ctx.set("k", 1)
        ctx.emit("go", {"n": 42})

    report = go(dag, concurrency=1)
    assert report.outputs["waiter"] == {"n": 42}


def test_dynamic_map_creates_one_task_per_element_and_collects_in_order() -> None:
    dag = Dag("m")
    dag.add("source", lambda: [3, 1, 2])

    def square(item: int) -> int:
        return item * item

    dag.map(square, over="source")
    dag.add("total", lambda square: sum(square), deps=["square"])
    report = go(dag)
    assert report.ok
    assert report.outputs["square"] == [9, 1, 4]
    assert report.outputs["square[1]"] == 1 and report.outputs["total"] == 14


def test_run_inside_an_event_loop_says_to_use_arun() -> None:
    from dagexec_core.errors import UsageError

    dag = Dag("l")
    dag.add("a", lambda: 1)

    async def main() -> None:
        with pytest.raises(UsageError, match="await arun"):
            run(dag, persist=False)
        assert (await arun(dag, persist=False)).ok

    asyncio.run(main())


def test_resume_with_an_empty_run_id_is_refused_not_a_fresh_run() -> None:
    from dagexec_core.errors import UsageError

    dag = Dag("l")
    dag.add("a", lambda: 1)
    with pytest.raises(UsageError, match="resume needs a run id"):
        go(dag, resume="")


def test_garbage_collector_is_back_on_and_unfrozen_after_runs_good_or_bad() -> None:
    import gc

    from dagexec_core import CycleError

    dag = Dag("g")
    dag.add("a", lambda: 1)
    assert go(dag).ok
    assert gc.isenabled() and gc.get_freeze_count() == 0
    bad = Dag("bad")
    bad.add("x", lambda: 1, deps=["y"])
    bad.add("y", lambda: 1, deps=["x"])
    with pytest.raises(CycleError):
        go(bad)
    assert gc.isenabled()

    from dagexec_core import hookimpl
    from dagexec_core.errors import PluginHookError

    class Exploding:
        @hookimpl
        def dagexec_task_finished(self) -> None:
            raise RuntimeError("escapes the run from inside the loop")

    with pytest.raises(PluginHookError):
        go(dag, plugins=[Exploding()])
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        go(dag)
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()


def test_an_error_in_a_step_taken_as_an_attempt_finishes_ends_the_run_with_that_error() -> None:
    """Steps are taken in the done-callback of the attempt that finished while the loop waits; an
    error there (a storage write, a hook) must still end the run with that error, never hang it."""
    import asyncio

    from dagexec_core.errors import StateFileError
    from patterns_support import DurableMemoryStorage, SharedStorage

    class FailingStorage(DurableMemoryStorage):
        writes = 0

        def write(self, run_id: str, rows: Any) -> None:
            FailingStorage.writes += 1
            if FailingStorage.writes == 5:
                raise StateFileError("disk full while writing step 5")
            super().write(run_id, rows)

    async def body(**_: Any) -> int:
        await asyncio.sleep(0)  # finishes in a later turn of the loop: its step is taken in the callback
        return 1

    dag = Dag("chain")
    for k in range(20):
        dag.add(f"t{k}", body, deps=[f"t{k - 1}"] if k else [])
    with pytest.raises(StateFileError, match="disk full while writing step 5"):
        run(dag, plugins=[SharedStorage(FailingStorage())], signals=False)
    assert FailingStorage.writes == 5  # nothing was written after the failed step

    from dagexec_core import hookimpl
    from dagexec_core.errors import PluginHookError

    seen: list[str] = []

    class ExplodesOnThird:
        @hookimpl
        def dagexec_task_finished(self, task: Any) -> None:
            seen.append(task.name)
            if len(seen) == 3:
                raise RuntimeError("third finish")

    with pytest.raises(PluginHookError, match="third finish"):
        run(dag, plugins=[ExplodesOnThird()], persist=False, signals=False)
    assert seen == ["t0", "t1", "t2"]
