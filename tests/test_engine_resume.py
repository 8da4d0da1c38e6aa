"""Resuming through the engine on real state files: completed work kept, a changed DAG refused, one driver per run, crashes and cancellations resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dagexec_core import (
    Dag,
    DagChangedError,
    RunLockedError,
    TaskState,
    run,
)
from dagexec_core.errors import RunNotFoundError
from dagexec_plugins.sqlite import SqliteStorage
from state_support import child_env, simple_dag

# -- resume ------------------------------------------------------------------------


def test_resume_reruns_nothing_completed_and_hands_reloaded_outputs_to_new_work(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    broken = tmp_path / "broken"
    broken.touch()
    calls: list[str] = []
    dag = Dag("etl")

    @dag.task
    def extract() -> list[int]:
        calls.append("extract")
        return [1, 2, 3]

    @dag.task(deps=["extract"])
    def transform(extract: list[int]) -> list[int]:
        calls.append("transform")
        if broken.exists():
            raise RuntimeError("upstream down")
        return [x * 10 for x in extract]

    @dag.task(deps=["transform"])
    def load(transform: list[int]) -> int:
        calls.append("load")
        return sum(transform)

    first = run(dag, state=str(db))
    assert first.failed == ["transform"] and first.records["load"].state is TaskState.SKIPPED
    broken.unlink()
    calls.clear()
    again = run(dag, state=str(db), resume=first.run_id, replay=["transform"])
    assert again.run_id == first.run_id and again.ok
    assert calls == ["transform", "load"]
    assert again.outputs == {"extract": [1, 2, 3], "transform": [10, 20, 30], "load": 60}
    runs = SqliteStorage(db).list_runs()
    assert [(r.run_id, r.status) for r in runs] == [(first.run_id, "completed")]
    assert runs[0].counts == {"completed": 3}


def test_resume_runs_tasks_added_to_the_dag_since(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    calls: list[str] = []
    first = run(simple_dag(calls), state=str(db))
    calls.clear()
    dag = simple_dag(calls)
    dag.add("report", lambda load: f"total {load}", deps=["load"])
    again = run(dag, state=str(db), resume=first.run_id)
    assert calls == [] and again.outputs["report"] == "total 12"
    assert SqliteStorage(db).get_run(first.run_id).task_count == 4


def test_resume_after_an_incompatible_change_names_the_task(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    first = run(simple_dag(), state=str(db))
    stored = SqliteStorage(db).get_run(first.run_id)
    dag = Dag("etl")
    dag.add("extract", lambda: [1])
    dag.add("transform", lambda: [2])  # no longer depends on extract
    with pytest.raises(DagChangedError, match="'transform'"):
        run(dag, state=str(db), resume=first.run_id)
    # the refused resume left the run as it was, and unlocked
    info = SqliteStorage(db).get_run(first.run_id)
    assert (info.status, info.finished_at, dict(info.counts)) == ("completed", stored.finished_at, {"completed": 3})
    assert run(simple_dag(), state=str(db), resume=first.run_id).ok


def test_resume_of_an_unknown_run_says_where_it_looked(tmp_path: Path) -> None:
    run(simple_dag(), state=str(tmp_path / "s.db"))
    with pytest.raises(RunNotFoundError, match="no run 'nope'.*dagexec runs"):
        run(simple_dag(), state=str(tmp_path / "s.db"), resume="nope")


# -- one driver per run --------------------------------------------------------------

LOCK_DAG = textwrap.dedent(
    """
    import os, sys
    from dagexec_core import Dag, run

    dag = Dag("locked")

    @dag.task(retry=3)
    def hold(ctx):
        gate = os.environ.get("GATE")
        if gate:
            print(ctx.run_id, flush=True)
            with open(gate) as f:  # a FIFO: blocks until the test opens it for writing
                f.read()
        return "held"

    @dag.task(deps=["hold"])
    def after(hold):
        return hold + " then after"

    if __name__ == "__main__":
        sys.exit(0 if run(dag, state=os.environ["STATE"], signals=False).ok else 1)
    """
)


@pytest.fixture
def lock_dag(tmp_path: Path) -> tuple[Path, Path, Dag]:
    path = tmp_path / "lock_dag.py"
    path.write_text(LOCK_DAG)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock_dag", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, gate, module.dag


def start_holder(path: Path, gate: Path, db: Path) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, str(path)],
        env=child_env(GATE=str(gate), STATE=str(db)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()  # printed from inside the task: the run is locked by now
    assert run_id, child.stderr.read() if child.stderr else ""
    return child, run_id


def test_second_process_on_a_running_run_gets_run_locked_error_naming_the_holder(
    tmp_path: Path, lock_dag: tuple[Path, Path, Dag]
) -> None:
    path, gate, dag = lock_dag
    db = tmp_path / "s.db"
    child, run_id = start_holder(path, gate, db)
    try:
        with pytest.raises(RunLockedError, match=f"run {run_id} is being driven by process {child.pid} on "):
            run(dag, state=str(db), resume=run_id)
        assert SqliteStorage(db).get_run(run_id).status == "running"
    finally:
        with open(gate, "w") as f:
            f.write("go")
        assert child.wait(timeout=60) == 0
    report = run(dag, state=str(db), resume=run_id)  # the lock went with the holder
    assert report.ok and report.outputs["after"] == "held then after"


def test_a_killed_holder_does_not_block_resume(tmp_path: Path, lock_dag: tuple[Path, Path, Dag]) -> None:
    path, gate, dag = lock_dag
    db = tmp_path / "s.db"
    child, run_id = start_holder(path, gate, db)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert SqliteStorage(db).get_run(run_id).status == "crashed"
    report = run(dag, state=str(db), resume=run_id)
    assert report.ok
    # the attempt the crash cut short did not count: 'hold' ran again as attempt 1
    assert report.records["hold"].attempts == 1
    assert report.outputs["after"] == "held then after"


def test_task_interrupted_on_its_last_attempt_runs_again_on_resume(
    tmp_path: Path, lock_dag: tuple[Path, Path, Dag]
) -> None:
    path, gate, dag = lock_dag
    db = tmp_path / "s.db"
    no_retry = Dag("locked")
    no_retry.add("hold", dag["hold"].fn)
    no_retry.add("after", dag["after"].fn, deps=["hold"])
    child, run_id = start_holder(path, gate, db)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    # the stored run used retry=3 and got 1 attempt; run it with a 1-attempt policy now
    # a crash of the driver does not use up the task's one attempt
    report = run(no_retry, state=str(db), resume=run_id)
    assert report.ok, report.records
    assert report.records["hold"].attempts == 1
    assert report.outputs["after"] == "held then after"
    assert SqliteStorage(db).dead_letter_queue().list(run_id) == []


MAP_DAG = textwrap.dedent(
    """
    import os, sys
    from dagexec_core import Dag, run

    dag = Dag("mapped")

    @dag.task
    def items():
        return [1, 2, 3, 4]

    def square(item, ctx):
        if item == 3 and os.environ.get("GATE"):
            print(ctx.run_id, flush=True)
            with open(os.environ["GATE"]) as f:
                f.read()
        return item * item

    dag.map(square, over="items", name="squares")

    @dag.task(deps=["squares"])
    def total(squares):
        return sum(squares)

    if __name__ == "__main__":
        run(dag, state=os.environ["STATE"], signals=False)
    """
)


def test_crash_while_mapped_elements_run_resumes_the_map_reusing_completed_elements(tmp_path: Path) -> None:
    path = tmp_path / "map_dag.py"
    path.write_text(MAP_DAG)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    db = tmp_path / "s.db"
    child, run_id = start_holder(path, gate, db)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    stored = SqliteStorage(db).load_records(run_id)
    assert stored["squares"].state is TaskState.RUNNING and stored["squares[2]"].state is TaskState.RUNNING
    import importlib.util

    spec = importlib.util.spec_from_file_location("map_dag", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = run(module.dag, state=str(db), resume=run_id)
    assert report.ok, report.records
    assert report.outputs["squares"] == [1, 4, 9, 16] and report.outputs["total"] == 30


def test_a_cancelled_run_is_resumable_from_the_state_file(tmp_path: Path) -> None:
    from dagexec_core import RunHandle

    db = tmp_path / "s.db"
    handle = RunHandle()
    calls: list[str] = []
    dag = Dag("cancel")

    @dag.task
    def first() -> int:
        calls.append("first")
        return 1

    @dag.task(deps=["first"])
    async def second(first: int) -> int:
        calls.append("second")
        if len(calls) == 2:
            handle.cancel(grace_period=0)  # cancels this very task
            import asyncio

            await asyncio.Event().wait()
        return first + 1

    @dag.task(deps=["second"])
    def third(second: int) -> int:
        calls.append("third")
        return second + 1

    report = run(dag, state=str(db), handle=handle)
    assert report.status == "cancelled"
    stored = SqliteStorage(db).load_records(report.run_id)
    assert [stored[n].state.value for n in ("first", "second", "third")] == ["completed", "cancelled", "pending"]
    assert SqliteStorage(db).get_run(report.run_id).status == "cancelled"
    again = run(dag, state=str(db), resume=report.run_id)
    assert again.ok and again.outputs["third"] == 3
    assert calls == ["first", "second", "second", "third"]
