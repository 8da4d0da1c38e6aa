"""What the start of ``dagexec resume`` reads, as a user meets it: a DAG file in its own folder beside the
module it imports, a driver SIGKILLed half-way, then ``dagexec show``, ``runs`` and ``resume`` in fresh
processes against the same state file.

The start was made faster (tasks and records built from plain slot stores, the plan as columns, the
counts of a run read when asked for, the checks before the resume on a read-only connection); these
prove the answers did not move: the counts ``show`` and ``runs`` print are the ones the file holds, and
the resumed run ends exactly as a run never killed, task by task (state, attempts, output).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

FLOW = textwrap.dedent(
    """
    import os
    import signal

    from helpers import double, total_of
    from dagexec_core import Dag

    KILL_AT = int(os.environ.get("KILL_AT", "0"))
    started = [0]
    dag = Dag("start")


    @dag.task
    def source():
        return [1, 2, 3, 4]


    dag.map(double, over="source", name="doubled")


    def step(**deps):
        started[0] += 1
        if started[0] == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)  # the driver dies with tasks in flight
        return 1 + sum(v for v in deps.values() if isinstance(v, int))


    for layer in range(8):
        for w in range(6):
            deps = [] if layer == 0 else [f"l{layer - 1}_{w}", f"l{layer - 1}_{(w + 1) % 6}"]
            dag.add(f"l{layer}_{w}", step, deps=deps, retry=3)


    @dag.task(retry=3, deps=["l2_0"])
    def flaky(ctx, l2_0):
        if ctx.attempt < 2:
            raise ValueError("first attempt of this process fails")
        return l2_0


    @dag.task(retry=2, deps=["l1_1"])
    def broken(l1_1):
        raise RuntimeError("always")


    @dag.task(deps=["broken"])
    def after_broken(broken):
        return broken


    @dag.task(deps=["doubled", "l7_0", "flaky"])
    def total(doubled, l7_0, flaky):
        return total_of(doubled) + l7_0 + flaky
    """
)

HELPERS = textwrap.dedent(
    """
    def double(item):
        return item * 2


    def total_of(values):
        return sum(values)
    """
)


def dagexec(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD": "1",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def project(folder: Path) -> Path:
    folder.mkdir()
    (folder / "flow.py").write_text(FLOW)
    (folder / "helpers.py").write_text(HELPERS)
    return folder


def stored(db: Path, run_id: str) -> dict[str, tuple[str, int, Any]]:
    """Every task's (state, attempts, output) as the file holds it, read with SQLite alone."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT name, state, attempts, output FROM task_records WHERE run_id = ?", (run_id,)
        ).fetchall()
    return {
        name: (state, attempts, None if output is None else json.loads(output))
        for name, state, attempts, output in rows
    }


def test_show_runs_and_resume_of_a_killed_run_answer_what_the_file_holds(tmp_path: Path) -> None:
    folder = project(tmp_path / "killed")
    killed = dagexec("run", "flow.py", "--state", "state.db", "-c", "4", "-q", cwd=folder, KILL_AT="25")
    assert killed.returncode == -9, killed.stderr
    listed = dagexec("runs", "--state", "state.db", "--json", cwd=folder)
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)
    run_id = run["run_id"]
    db = folder / "state.db"
    held = stored(db, run_id)
    counts = dict(Counter(state for state, _, _ in held.values()))
    assert run["status"] == "crashed" and counts.get("running") and counts.get("completed")
    assert run["counts"] == counts

    shown = dagexec("show", run_id, "--state", "state.db", "--json", cwd=folder)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["counts"] == counts
    text = dagexec("show", run_id, "--state", "state.db", cwd=folder)  # counts printed after the file is closed
    assert text.returncode == 0, text.stderr
    first = text.stdout.splitlines()[0]
    assert ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) in first, first

    resumed = dagexec("resume", run_id, "--state", "state.db", "-q", cwd=folder)
    assert resumed.returncode == 1, resumed.stderr  # `broken` fails in any run
    fresh_folder = project(tmp_path / "fresh")
    fresh = dagexec("run", "flow.py", "--state", "state.db", "-c", "4", "-q", cwd=fresh_folder)
    assert fresh.returncode == 1, fresh.stderr
    [fresh_run] = json.loads(dagexec("runs", "--state", "state.db", "--json", cwd=fresh_folder).stdout)
    after, never_killed = stored(db, run_id), stored(fresh_folder / "state.db", fresh_run["run_id"])
    assert after == never_killed
    assert after["total"] == ("completed", 1, 20 + never_killed["l7_0"][2] + never_killed["l2_0"][2])
    assert after["flaky"][:2] == ("completed", 2) and after["after_broken"][0] == "skipped"
    assert after["broken"][0] == "dead_lettered"
