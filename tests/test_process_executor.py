"""The process executor: sync bodies in worker processes, killed at their timeout."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import process_tasks as pt
from dagexec_core import Dag, RetryPolicy, RunHandle, TaskPicklingError, TaskTimeoutError, hookimpl, run

SRC = str(Path(__file__).resolve().parents[1] / "src")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_task_blocking_forever_is_killed_at_its_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "worker.pid"
    dag = Dag("kill")
    dag.add("blocks", pt.block_forever, static_kwargs={"pidfile": str(pidfile)}, timeout=1.0)
    dag.add("after", pt.pid, deps=["blocks"], trigger="all_done")
    report = run(dag, persist=False, executor="process")
    worker = int(pidfile.read_text())
    rec = report.records["blocks"]
    assert rec.error == (
        f"{TaskTimeoutError.__name__}: task 'blocks' timed out after 1.0s; its worker process {worker} was killed"
    )
    assert not pid_alive(worker)
    assert report.outputs["after"] != worker  # a fresh worker took its place
    assert report.outputs["after"] != os.getpid()


def test_sync_tasks_run_in_a_reused_worker_and_async_ones_on_the_loop() -> None:
    async def on_loop() -> int:
        return os.getpid()

    dag = Dag("where")
    dag.add("one", pt.pid)
    dag.add("two", pt.pid, deps=["one"])
    dag.add("loop", on_loop)
    report = run(dag, persist=False, executor="process", concurrency=1)
    assert report.outputs["one"] == report.outputs["two"] != os.getpid()
    assert report.outputs["loop"] == os.getpid()


def test_an_async_task_still_times_out_under_the_process_executor() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    dag = Dag("async")
    dag.add("hangs", hangs, timeout=0.05)
    report = run(dag, persist=False, executor="process")
    assert report.records["hangs"].error == "TaskTimeoutError: task 'hangs' timed out after 0.05s"


def test_process_tasks_get_a_process_context() -> None:
    dag = Dag("ctx")
    dag.add("whoami", pt.whoami, timeout=30)
    dag.add("numbers", pt.numbers)
    dag.add("total", pt.total, deps=["numbers"])
    dag.add("blackboard", pt.uses_blackboard)
    report = run(dag, persist=False, executor="process")
    me = report.outputs["whoami"]
    assert me["ctx_type"] == "ProcessContext" and me["pid"] != os.getpid()
    assert (me["run_id"], me["task"], me["attempt"]) == (report.run_id, "whoami", 1)
    assert 0 < me["deadline"] <= 30
    assert report.outputs["total"] == {"sum": 6, "via_ctx": [1, 2, 3]}
    error = report.records["blackboard"].error or ""
    assert "ctx.set is not available to task 'blackboard' in a worker process" in error


def test_what_cannot_be_pickled_fails_the_task_naming_it_and_the_type_without_retries() -> None:
    async def lock_on_loop() -> Any:
        return threading.Lock()

    dag = Dag("pickle")
    dag.add("lam", lambda: 1, retry=RetryPolicy(max_attempts=3, base=0))
    dag.add("out", pt.returns_lock, retry=RetryPolicy(max_attempts=3, base=0))
    dag.add("lock", lock_on_loop)
    dag.add("arg", pt.takes_lock, deps=["lock"])  # gets the lock as the parameter named after its dependency
    # without the output check, the lock reaches the worker process as an argument
    report = run(dag, persist=False, executor="process", check_outputs=False)
    lam = report.records["lam"]
    assert lam.attempts == 1 and lam.error is not None
    assert lam.error.startswith("TaskPicklingError: task 'lam': its function '")
    assert "<lambda>' (function) cannot be pickled" in lam.error
    assert "define it at the top level of a module" in lam.error
    out = report.records["out"]
    assert out.attempts == 1
    assert "task 'out' returned a _thread.lock, which cannot be pickled back" in (out.error or "")
    arg = report.records["arg"]
    assert "task 'arg': argument 'lock' is a _thread.lock" in (arg.error or "")
    assert issubclass(TaskPicklingError, TypeError)


def test_errors_come_back_with_their_attributes_and_remote_traceback(tmp_path: Path) -> None:
    dag = Dag("errors")
    dag.add(
        "limited",
        pt.rate_limited_once,
        static_kwargs={"marker": str(tmp_path / "m")},
        retry=RetryPolicy(max_attempts=2, base=60),
    )  # retry_after (0.01s) beats base
    dag.add("stubborn", pt.raises_stubborn)
    report = run(dag, persist=False, executor="process")
    assert report.outputs["limited"] == "done"
    err = report.records["stubborn"].error or ""
    assert err.startswith("RemoteTaskError: process_tasks.Stubborn: stubborn 1 2")


def test_cancelling_the_run_kills_a_running_worker(tmp_path: Path) -> None:
    pidfile = tmp_path / "worker.pid"
    handle = RunHandle()
    stop = threading.Event()

    def cancel_once_started() -> None:
        # Synchronise on the file the worker writes once its body is running.
        while not pidfile.exists() or not pidfile.read_text():
            if stop.wait(0.01):
                return
        handle.cancel(0)

    watcher = threading.Thread(target=cancel_once_started)
    watcher.start()
    dag = Dag("cancel")
    dag.add("blocks", pt.block_forever, static_kwargs={"pidfile": str(pidfile)})
    try:
        report = run(dag, persist=False, executor="process", handle=handle)
    finally:
        stop.set()
        watcher.join()
    assert report.status == "cancelled"
    assert not pid_alive(int(pidfile.read_text()))


def test_cli_runs_a_dag_file_in_worker_processes(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (flows / "flow.py").write_text(
        textwrap.dedent("""
        import os
        from dagexec_core import Dag
        from helpers import double  # a neighbour of the DAG file, not on the worker's path

        dag = Dag("flow")

        @dag.task
        def where():
            return os.getpid()

        @dag.task(deps=["where"])
        def check(where):
            import multiprocessing
            assert multiprocessing.parent_process() is not None, "not in a worker process"
            assert where == os.getpid(), "the worker was not reused"
            return double(21)
    """)
    )
    env = {**os.environ, "PYTHONPATH": SRC, "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagexec_core.cli",
            "run",
            "flows/flow.py",
            "--no-persist",
            "--json",
            "--executor",
            "process",
            "-c",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"], report["tasks"]


def test_an_unknown_start_method_is_a_usage_error() -> None:
    dag = Dag("bad")
    dag.add("a", pt.pid)
    with pytest.raises(Exception, match="process_start_method='threads' is not one of spawn, forkserver, fork"):
        run(dag, persist=False, executor="process", process_start_method="threads")


def test_a_process_task_runs_under_its_attempt_span_when_tracing() -> None:
    pytest.importorskip("dagexec_plugins.tracing", reason="the tracing plugin is not on this branch yet")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    dag = Dag("traced")
    dag.add("ids", pt.current_span_ids)
    report = run(dag, persist=False, executor="process", tracer_provider=provider)
    attempt = next(s for s in exporter.get_finished_spans() if s.name == "ids attempt 1")
    assert report.outputs["ids"] == {
        "trace_id": format(attempt.context.trace_id, "032x"),
        "span_id": format(attempt.context.span_id, "016x"),
    }


def test_a_worker_that_dies_fails_its_attempt_and_the_retry_gets_a_fresh_worker(tmp_path: Path) -> None:
    marker = tmp_path / "died"
    rec_errors: list[str] = []

    class Retrying:
        @hookimpl
        def dagexec_task_retrying(self, error: BaseException) -> None:
            rec_errors.append(f"{type(error).__name__}: {error}")

    dag = Dag("dies")
    dag.add("dies", pt.dies_once, static_kwargs={"marker": str(marker)}, retry=RetryPolicy(max_attempts=2, base=0))
    report = run(dag, persist=False, executor="process", plugins=[Retrying()])
    first = int(marker.read_text())
    assert report.ok and report.outputs["dies"] != first
    assert rec_errors == [
        f"WorkerDiedError: task 'dies': its worker process {first} died (exit code -9) while running it"
    ]
