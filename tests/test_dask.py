"""The dask executor on a real LocalCluster."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from dagexec_core import Dag, TaskState, run

pytest.importorskip("distributed")


def double(x: int) -> tuple[int, int]:
    return os.getpid(), x * 2


def boom() -> None:
    raise ValueError("bad partition 3")


def test_sync_bodies_run_on_dask_worker_processes_and_outputs_flow() -> None:
    dag = Dag("dask")
    dag.add("x", lambda: 21)
    dag.add("double", double, deps=["x"])
    dag.add("fail", boom)

    async def local(double: Any, ctx: Any) -> tuple[int, int]:
        return os.getpid(), double[1]

    dag.add("local", local, deps=["double"])
    report = run(dag, persist=False, signals=False, executor="dask", dask_workers=1)
    worker_pid, value = report.outputs["double"]
    assert value == 42 and worker_pid != os.getpid()  # ran in a Dask worker process
    assert report.outputs["local"] == [os.getpid(), 42]  # async + ctx stayed here (a tuple arrives as JSON's list)
    assert report.records["fail"].state is TaskState.DEAD_LETTERED
    assert report.records["fail"].error == "ValueError: bad partition 3"


def test_unpicklable_task_fails_cleanly_and_the_run_goes_on() -> None:
    lock = threading.Lock()
    dag = Dag("dask-pickle")
    dag.add("fine", lambda: "ok")
    dag.add("locked", lambda: lock.locked(), retry=3)
    report = run(dag, persist=False, signals=False, executor="dask", dask_workers=1, dask_processes=False)
    assert report.outputs["fine"] == "ok"
    error = report.records["locked"].error or ""
    assert "task 'locked' could not be sent to the Dask cluster" in error and "picklable" in error
    assert error.startswith("TaskPicklingError") and report.records["locked"].attempts == 1  # never retried
