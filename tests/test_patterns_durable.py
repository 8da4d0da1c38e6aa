"""Patterns with a real SQLite state file: processes killed mid-loop and mid-map, events across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dagexec_core import Dag, run
from dagexec_core.patterns import loop

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))


def dagexec(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dagexec_core.cli", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_file(path: Path, proc: subprocess.Popen[str]) -> str:
    """Block until the child writes ``path`` (it does so at a known point of its run)."""
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited {proc.returncode} before writing {path.name}: {proc.communicate()}")
        time.sleep(0.01)
    text = path.read_text()
    assert text, f"{path.name} is empty"
    return text


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# ---------------------------------------------------------------------------
# stateful
# ---------------------------------------------------------------------------


def test_task_state_counter_reads_one_two_three_across_runs_with_a_state_file(tmp_path: Path) -> None:
    def counter(ctx: Any) -> int:  # sync: ctx.state is saved from a worker thread
        ctx.state = (ctx.state or 0) + 1
        return int(ctx.state)

    async def async_counter(ctx: Any) -> int:
        ctx.state = {"n": (ctx.state or {"n": 0})["n"] + 10}
        return int(ctx.state["n"])

    dag = Dag("counting")
    dag.add("count", counter)
    dag.add("count_async", async_counter)
    db = str(tmp_path / "state.db")
    reports = [run(dag, state=db) for _ in range(3)]
    assert [r.outputs["count"] for r in reports] == [1, 2, 3]
    assert [r.outputs["count_async"] for r in reports] == [10, 20, 30]
    assert run(Dag("counting"), state=str(tmp_path / "other.db")).ok  # another file: its own state


def test_a_loop_result_that_json_cannot_hold_fails_naming_the_iteration(tmp_path: Path) -> None:
    dag = Dag("d")
    loop(dag, "sets", lambda iteration: {iteration}, max_iterations=3)
    report = run(dag, state=str(tmp_path / "state.db"))
    rec = report.records["sets"]
    assert rec.state.failed and rec.error is not None
    assert (
        "OutputSerializationError" in rec.error and "'sets (iteration 0)'" in rec.error and "builtins.set" in rec.error
    )


# ---------------------------------------------------------------------------
# killed processes
# ---------------------------------------------------------------------------

LOOP_DAG = """
import threading
from pathlib import Path
from dagexec_core import Dag
from dagexec_core.patterns import loop

HERE = Path(__file__).parent
dag = Dag("looping")

def step(iteration, previous, ctx):
    with open(HERE / "iterations.log", "a") as f:
        f.write(f"{iteration}\\n")
    if iteration == 3 and not (HERE / "killed").exists():
        (HERE / "stuck.tmp").write_text(ctx.run_id)
        (HERE / "stuck.tmp").replace(HERE / "stuck")  # atomic: the parent never reads it half-written
        threading.Event().wait()          # the parent kills the process here
    return (previous or 0) + iteration

loop(dag, "acc", step, max_iterations=6)

@dag.task(deps=["acc"])
def done(acc):
    (HERE / "result").write_text(str(acc))
    return acc
"""


def test_a_run_killed_in_the_middle_of_a_loop_resumes_from_the_last_finished_iteration(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(LOOP_DAG)
    child = start("run", "flow.py", cwd=tmp_path)
    run_id = wait_for_file(tmp_path / "stuck", child)
    child.send_signal(signal.SIGKILL)
    child.wait()
    (tmp_path / "killed").write_text("")
    assert lines(tmp_path / "iterations.log") == ["0", "1", "2", "3"]

    dagexec("run", "flow.py", "--resume", run_id, cwd=tmp_path)
    # 0-2 were checkpointed: only the interrupted iteration 3 runs again.
    assert lines(tmp_path / "iterations.log") == ["0", "1", "2", "3", "3", "4", "5"]
    assert (tmp_path / "result").read_text() == str(0 + 1 + 2 + 3 + 4 + 5)
    shown = json.loads(dagexec("show", run_id, "--json", cwd=tmp_path).stdout)
    assert shown["status"] == "completed"


MAP_DAG = """
import threading
from pathlib import Path
from dagexec_core import Dag

HERE = Path(__file__).parent
dag = Dag("mapping")

@dag.task
def items():
    return list(range(8))

def work(item, ctx):
    with open(HERE / "executed.log", "a") as f:
        f.write(f"{item}\\n")
    if item == 5 and not (HERE / "killed").exists():
        (HERE / "stuck.tmp").write_text(ctx.run_id)
        (HERE / "stuck.tmp").replace(HERE / "stuck")  # atomic: the parent never reads it half-written
        threading.Event().wait()
    return item * item

dag.map(work, over="items")

@dag.task(deps=["work"])
def total(work):
    (HERE / "result").write_text(str(sum(work)))
    return sum(work)
"""


def test_a_run_killed_in_the_middle_of_a_map_does_not_run_completed_elements_again(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(MAP_DAG)
    child = start("run", "flow.py", "--concurrency", "1", cwd=tmp_path)
    run_id = wait_for_file(tmp_path / "stuck", child)
    child.send_signal(signal.SIGKILL)
    child.wait()
    (tmp_path / "killed").write_text("")
    assert lines(tmp_path / "executed.log") == ["0", "1", "2", "3", "4", "5"]

    dagexec("run", "flow.py", "--resume", run_id, "--concurrency", "1", cwd=tmp_path)
    assert lines(tmp_path / "executed.log") == ["0", "1", "2", "3", "4", "5", "5", "6", "7"]
    assert (tmp_path / "result").read_text() == str(sum(i * i for i in range(8)))
    shown = json.loads(dagexec("show", run_id, "--json", cwd=tmp_path).stdout)
    states = {t["name"]: t["state"] for t in shown["tasks"]}
    assert {states[f"work[{i}]"] for i in range(8)} == {"completed"} and states["work"] == "completed"


# ---------------------------------------------------------------------------
# events across processes
# ---------------------------------------------------------------------------

EVENT_DAG = """
from pathlib import Path
from dagexec_core import Dag
from dagexec_core.patterns import event_task

HERE = Path(__file__).parent
dag = Dag("deploying")

@dag.task
def announce(ctx):
    (HERE / "run_id.tmp").write_text(ctx.run_id)
    (HERE / "run_id.tmp").replace(HERE / "run_id")
    return "v2"

def deploy(payload, announce):
    (HERE / "result").write_text(f"{announce} to {payload['env']}")
    return payload

event_task(dag, "deploy", "approved", timeout=60, handler=deploy, deps=["announce"])
"""


def test_dagexec_emit_from_another_process_reaches_the_waiting_task(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(EVENT_DAG)
    child = start("run", "flow.py", cwd=tmp_path)
    run_id = wait_for_file(tmp_path / "run_id", child)
    sent = dagexec("emit", run_id, "approved", "--payload", '{"env": "prod"}', cwd=tmp_path)
    assert f"sent to run {run_id}" in sent.stdout
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err + out
    assert (tmp_path / "result").read_text() == "v2 to prod"

    late = dagexec("emit", run_id, "approved", cwd=tmp_path, check=False)
    assert late.returncode != 0 and run_id in late.stderr and "completed" in late.stderr
    missing = dagexec("emit", "no-such-run", "approved", cwd=tmp_path, check=False)
    assert missing.returncode != 0 and "no-such-run" in missing.stderr


RESUMED_EVENT_DAG = """
import threading
from pathlib import Path
from dagexec_core import Dag

HERE = Path(__file__).parent
dag = Dag("tokens")

@dag.task
def emit(ctx):
    with open(HERE / "emitted.log", "a") as f:
        f.write("emit\\n")
    ctx.emit("token", {"secret": 7})

@dag.task(deps=["emit"], resumable=True)
async def wait(ctx):
    if not (HERE / "killed").exists():
        (HERE / "stuck.tmp").write_text(ctx.run_id)
        (HERE / "stuck.tmp").replace(HERE / "stuck")  # atomic: the parent never reads it half-written
        await ctx.loop_forever()
    payload = await ctx.wait_for("token", timeout=30)
    (HERE / "result").write_text(str(payload["secret"]))
    return payload
"""


def test_an_event_emitted_before_a_crash_reaches_the_waiter_after_resume(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(RESUMED_EVENT_DAG.replace("await ctx.loop_forever()", "threading.Event().wait()"))
    child = start("run", "flow.py", cwd=tmp_path)
    run_id = wait_for_file(tmp_path / "stuck", child)
    child.send_signal(signal.SIGKILL)
    child.wait()
    (tmp_path / "killed").write_text("")
    dagexec("run", "flow.py", "--resume", run_id, cwd=tmp_path)
    assert lines(tmp_path / "emitted.log") == ["emit"]  # the emitter completed before the kill: not run again
    assert (tmp_path / "result").read_text() == "7"


# ---------------------------------------------------------------------------
# conditional: the choice in `dagexec show`
# ---------------------------------------------------------------------------


def test_dagexec_show_tells_which_branch_a_conditional_took(tmp_path: Path) -> None:
    proc = dagexec("run", str(ROOT / "examples" / "patterns.py"), "--json", cwd=tmp_path)
    run_id = json.loads(proc.stdout)["run_id"]
    shown = dagexec("show", run_id, cwd=tmp_path).stdout
    assert "route chose ship_standard" in shown
    as_json = json.loads(dagexec("show", run_id, "--json", cwd=tmp_path).stdout)
    assert as_json["branches"] == {"route": "ship_standard"}
    assert {t["name"]: t["state"] for t in as_json["tasks"]}["ship_express"] == "skipped"
