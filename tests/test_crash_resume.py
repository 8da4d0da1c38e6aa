"""A run killed with SIGKILL at random instants resumes with nothing lost and no completed task run twice.

A task in flight at two consecutive crashes is dead-lettered as their likely cause (docs/reliability.md),
so between two kills this test lets the tasks the previous kill caught in flight finish (or not start):
the kills stay at random instants otherwise.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LAYERS, WIDTH = 80, 25  # 2,000 tasks: waiting out the tasks a kill caught must not finish the run before the last kill
TRIALS = 15

DAG_FILE = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from dagexec_core import Dag, run

    LAYERS, WIDTH = {layers}, {width}
    SIDE = os.open(os.environ["SIDE_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    dag = Dag("crash")

    def make(name, is_async):
        # Each execution appends one line (one write(2) with O_APPEND, so lines never interleave
        # or tear), then tells the test process through stdout that it ran.
        def record(deps):
            os.write(SIDE, (name + "\\n").encode())
            os.write(1, b".")
            return 1 + sum(deps.values())
        # A short pause per task keeps the run slow enough for the test, polling the state file
        # between kills, to keep up with it on a loaded machine.
        if is_async:
            async def body(**deps):
                await asyncio.sleep(0.01)
                return record(deps)
        else:
            def body(**deps):
                time.sleep(0.01)
                return record(deps)
        return body

    for layer in range(LAYERS):
        for w in range(WIDTH):
            deps = [] if layer == 0 else [f"t{{layer - 1}}_{{w}}", f"t{{layer - 1}}_{{(w + 1) % WIDTH}}"]
            # a crash may interrupt a task on every trial: give it attempts to spare
            dag.add(f"t{{layer}}_{{w}}", make(f"t{{layer}}_{{w}}", w % 2 == 0), deps=deps, retry=1000)

    if __name__ == "__main__":
        resume = os.environ.get("RESUME") or None
        report = run(
            dag, state=os.environ["STATE_FILE"], resume=resume, concurrency=8, durability=os.environ["DURABILITY"]
        )
        sys.exit(0 if report.ok else 1)
    """
).format(layers=LAYERS, width=WIDTH)


def expected_outputs() -> dict[str, int]:
    out: dict[str, int] = {}
    for layer in range(LAYERS):
        for w in range(WIDTH):
            deps = [] if layer == 0 else [f"t{layer - 1}_{w}", f"t{layer - 1}_{(w + 1) % WIDTH}"]
            out[f"t{layer}_{w}"] = 1 + sum(out[d] for d in deps)
    return out


def deps_of(name: str) -> list[str]:
    layer, w = (int(x) for x in name[1:].split("_"))
    return [] if layer == 0 else [f"t{layer - 1}_{w}", f"t{layer - 1}_{(w + 1) % WIDTH}"]


def read_state(db: Path) -> tuple[str | None, dict[str, str], str]:
    """(run id, task -> state, integrity check) read through a connection of our own."""
    if not db.exists():
        return None, {}, "ok"
    conn = sqlite3.connect(db)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        row = conn.execute("SELECT run_id FROM runs").fetchone() if _has_runs(conn) else None
        if row is None:
            return None, {}, integrity
        states = dict(conn.execute("SELECT name, state FROM task_records WHERE run_id = ?", (row[0],)).fetchall())
        return row[0], states, integrity
    finally:
        conn.close()


def _has_runs(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is not None


def caught_again(db: Path, in_flight: set[str]) -> bool:
    """Has a task the last kill caught in flight not completed since (a kill now could catch it twice)?

    Completed, not merely "not running": a task back to pending may be launched between this check and the kill.
    """
    if not in_flight:
        return False
    conn = sqlite3.connect(db)
    try:
        marks = ",".join("?" * len(in_flight))
        found = conn.execute(
            f"SELECT count(*) FROM task_records WHERE state != 'completed' AND name IN ({marks})", sorted(in_flight)
        ).fetchone()[0]
    finally:
        conn.close()
    return bool(found)


def side_lines(side: Path) -> list[str]:
    return side.read_text().splitlines() if side.exists() else []


@pytest.mark.slow
def test_sigkill_at_random_instants_then_resume_loses_nothing_and_reruns_no_completed_task(tmp_path: Path) -> None:
    dag_file = tmp_path / "crash_dag.py"
    dag_file.write_text(DAG_FILE)
    db = tmp_path / ".dagexec" / "state.db"
    side = tmp_path / "executions.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
        "STATE_FILE": str(db),
        "SIDE_FILE": str(side),
        "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    rng = random.Random(int(os.environ.get("DAGEXEC_CRASH_SEED", "20261128")))
    # task -> length of the execution log when it was first seen COMPLETED after a kill
    completed_at: dict[str, int] = {}
    in_flight: set[str] = set()  # running at the last kill
    kills = 0
    finished = False
    trials = 0
    while kills < TRIALS and trials < TRIALS * 3:
        trials += 1
        run_id, _, _ = read_state(db)
        start_lines = len(side_lines(side))
        child = subprocess.Popen(
            [sys.executable, str(dag_file)],
            cwd=tmp_path,
            # every mode survives a killed process: the trials spread over the three
            env={**env, "RESUME": run_id or "", "DURABILITY": rng.choice(["fast", "normal", "durable"])},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None
        target = rng.randint(1, 12)
        seen = 0
        chunk = b""
        while seen < target or caught_again(db, in_flight):
            chunk = child.stdout.read(1)
            if not chunk:
                break
            seen += 1
        if chunk:
            child.send_signal(signal.SIGKILL)
        _, err = child.communicate()
        if child.returncode != -signal.SIGKILL:
            assert child.returncode == 0, err.decode()
            finished = True
            break
        kills += 1

        run_id, states, integrity = read_state(db)
        assert integrity == "ok"
        in_flight = {name for name, state in states.items() if state == "running"}
        lines = side_lines(side)
        for name in lines[start_lines:]:
            # durable in RUNNING before its body started; its dependencies durable in COMPLETED before that
            assert states[name] != "pending", f"{name} ran but was not recorded running"
            for d in deps_of(name):
                assert states[d] == "completed", f"{name} ran before {d} was recorded completed"
        for name, state in states.items():
            if state == "completed":
                completed_at.setdefault(name, len(lines))
                assert name in lines, f"{name} recorded completed but never ran"

    assert kills >= TRIALS or finished, f"only {kills} kills in {trials} trials"
    assert kills >= TRIALS, f"the run completed after {kills} kills; make the DAG bigger"

    run_id, _, _ = read_state(db)
    final = subprocess.run(
        [sys.executable, str(dag_file)],
        cwd=tmp_path,
        env={**env, "RESUME": run_id or "", "DURABILITY": "normal"},
        capture_output=True,
    )
    assert final.returncode == 0, final.stderr.decode()

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT name, state, output FROM task_records WHERE run_id = ?", (run_id,)).fetchall()
    status = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
    conn.close()
    expected = expected_outputs()
    assert len(rows) == len(expected) == LAYERS * WIDTH
    assert {name: state for name, state, _ in rows} == dict.fromkeys(expected, "completed")
    # outputs reloaded after each crash flowed into dependents unchanged
    assert {name: int(out) for name, _, out in rows} == expected
    assert status == "completed"

    lines = side_lines(side)
    assert set(lines) == set(expected)
    for name, offset in completed_at.items():
        again = lines[offset:].count(name)
        assert again == 0, f"{name} was recorded completed before a kill and ran {again} more time(s)"
