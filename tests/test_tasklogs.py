"""Task logs kept with the run: per attempt, bounded, printed by `dagexec logs`, pruned with their runs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

FLOW = """
    import sys
    import threading

    from dagexec_core import Dag
    from helpers import greeting

    dag = Dag("chatty")


    @dag.task(retry=2)
    def flaky(ctx):
        ctx.log.info("%s from attempt %d", greeting(), ctx.attempt)
        if ctx.attempt == 1:
            ctx.log.warning("attempt 1 is about to fail")
            raise RuntimeError("the first attempt fails")
        return "ok"


    @dag.task
    def quiet():
        return 1


    @dag.task
    def loud(ctx):
        log = ctx.log
        line = "x" * 99
        for i in range(100_000):  # 10 MB
            log.info("%06d %s", i, line)
        return "done"


    @dag.task(retry=2)
    def broken(ctx):
        for i in range(30):
            ctx.log.info("broken step %d", i)
        raise ValueError("broken for good")


    barrier = threading.Barrier(2, timeout=30)


    @dag.task
    def printer_a():
        barrier.wait()  # both sync bodies print at once, from two worker threads
        for i in range(200):
            print("from a", i)
        print("a on stderr", file=sys.stderr)


    @dag.task
    def printer_b():
        barrier.wait()
        for i in range(200):
            print("from b", i)
"""

HELPERS = """
    def greeting():
        return "hello"
"""


def dagexec(*argv: str, cwd: Path, state: bool = True) -> subprocess.CompletedProcess[str]:
    extra = ["--state", "state.db"] if state else []
    return subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", *argv, *extra], capture_output=True, text=True, cwd=cwd, timeout=180
    )


@pytest.fixture(scope="module")
def chatty_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("chatty")
    (folder / "flow.py").write_text(textwrap.dedent(FLOW))
    (folder / "helpers.py").write_text(textwrap.dedent(HELPERS))
    proc = dagexec("run", "flow.py", "--capture", "--json", "--progress", "off", cwd=folder)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["tasks"]["flaky"]["attempts"] == 2 and report["tasks"]["broken"]["state"] == "dead_lettered"
    # nothing a task printed reached the driver's stdout: it is the JSON report alone
    assert "from a" not in proc.stdout and "a on stderr" not in proc.stderr
    return {"folder": folder, "run_id": report["run_id"]}


def logs_json(run: dict[str, Any], *argv: str) -> list[dict[str, Any]]:
    proc = dagexec("logs", run["run_id"], *argv, "--json", cwd=run["folder"])
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_both_attempts_of_a_retried_task_are_shown_with_their_attempt_numbers(chatty_run: dict[str, Any]) -> None:
    proc = dagexec("logs", chatty_run["run_id"], "flaky", cwd=chatty_run["folder"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    headings = [ln for ln in lines if ln.startswith("==")]
    assert headings == ["== flaky attempt 1: 2 line(s) ==", "== flaky attempt 2: 1 line(s) =="]
    body = [ln.split(" ", 1)[1] for ln in lines if not ln.startswith("==")]  # without the time
    assert body == [
        "INFO    hello from attempt 1",
        "WARNING attempt 1 is about to fail",
        "INFO    hello from attempt 2",
    ]
    only_second = dagexec("logs", chatty_run["run_id"], "flaky", "--attempt", "2", cwd=chatty_run["folder"])
    assert only_second.stdout.splitlines()[0] == "== flaky attempt 2: 1 line(s) =="
    assert "attempt 1" not in only_second.stdout


def test_a_task_logging_10_mb_is_capped_and_the_overflow_counted(chatty_run: dict[str, Any]) -> None:
    (entry,) = logs_json(chatty_run, "loud")
    kept = entry["records"]
    assert entry["lines"] == len(kept) and entry["lines"] + entry["dropped"] == 100_000
    assert sum(len(r[2]) for r in kept) <= 1_000_000  # the default cap, in bytes of messages
    assert kept[-1][2].startswith("099999 ")  # the newest lines are the ones kept
    numbers = [int(r[2].split()[0]) for r in kept]
    assert numbers == list(range(100_000 - len(kept), 100_000))
    db = sqlite3.connect(chatty_run["folder"] / "state.db")
    stored = db.execute("SELECT sum(length(records)) FROM task_logs").fetchone()[0]
    assert stored < 2_000_000  # the state file holds the capped log, not 10 MB
    heading = dagexec("logs", chatty_run["run_id"], "loud", cwd=chatty_run["folder"]).stdout.splitlines()[0]
    assert heading == f"== loud attempt 1: {len(kept)} line(s), {entry['dropped']} older dropped =="


def test_capture_keeps_each_threads_prints_with_its_own_task(chatty_run: dict[str, Any]) -> None:
    by_task = {e["task"]: e["records"] for e in logs_json(chatty_run)}
    assert [(r[1], r[2]) for r in by_task["printer_a"]] == [("STDOUT", f"from a {i}") for i in range(200)] + [
        ("STDERR", "a on stderr")
    ]
    assert [(r[1], r[2]) for r in by_task["printer_b"]] == [("STDOUT", f"from b {i}") for i in range(200)]
    assert "quiet" not in by_task  # a task that logged nothing has no entry


def test_show_counts_lines_and_the_dead_letter_holds_the_failing_attempts_last_lines(
    chatty_run: dict[str, Any],
) -> None:
    shown = json.loads(dagexec("show", chatty_run["run_id"], "--json", cwd=chatty_run["folder"]).stdout)
    lines = {t["name"]: t["log_lines"] for t in shown["tasks"]}
    assert lines["flaky"] == 3 and lines["quiet"] == 0 and lines["loud"] == 100_000 and lines["broken"] == 60
    text = dagexec("show", chatty_run["run_id"], cwd=chatty_run["folder"]).stdout
    assert "LOGGED" in text.splitlines()[1]
    (letter,) = json.loads(dagexec("dlq", "list", "--json", cwd=chatty_run["folder"]).stdout)
    assert letter["task"] == "broken"
    tail = letter["traceback"].split("last 20 log line(s) of attempt 2:\n", 1)[1].splitlines()
    assert tail == [f"INFO broken step {i}" for i in range(10, 30)]


def test_log_records_carry_the_trace_and_span_of_their_attempt(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            from dagexec_core import Dag

            dag = Dag("traced")


            @dag.task
            def one(ctx):
                ctx.log.info("inside one")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DAGEXEC_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", "run", "flow.py", "--state", "state.db", "--trace", "console"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(dagexec("runs", "--json", cwd=tmp_path).stdout)
    run = {"folder": tmp_path, "run_id": runs[0]["run_id"]}
    ((_, level, text, trace_id, span_id),) = logs_json(run, "one")[0]["records"]
    assert (level, text) == ("INFO", "inside one")
    assert trace_id == runs[0]["trace_id"]
    assert span_id is not None and len(span_id) == 16
    assert f'"span_id": "0x{span_id}"' in proc.stderr  # one of the spans the console exporter printed


def test_logs_follow_prints_attempts_as_they_finish_until_the_run_ends(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            import time
            from pathlib import Path

            from dagexec_core import Dag

            dag = Dag("slow")


            @dag.task
            def first(ctx):
                ctx.log.info("first done")


            @dag.task(deps=["first"])
            def second(ctx):
                deadline = time.monotonic() + 60
                while not Path("go").exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
                ctx.log.info("second done")
            """
        )
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "dagexec_core.cli", "run", "flow.py", "--state", "state.db", "--progress", "off"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = None
        deadline = time.monotonic() + 60
        while run_id is None and time.monotonic() < deadline:
            proc = dagexec("runs", "--json", cwd=tmp_path) if (tmp_path / "state.db").exists() else None
            if proc is not None and proc.returncode == 0 and json.loads(proc.stdout):
                run_id = json.loads(proc.stdout)[0]["run_id"]
            else:
                time.sleep(0.05)
        assert run_id is not None
        follower = subprocess.Popen(
            [sys.executable, "-m", "dagexec_core.cli", "logs", run_id, "--follow", "--state", "state.db"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        seen: list[str] = []

        def read() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                seen.append(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not any("first done" in s for s in seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any("first done" in s for s in seen), seen
        assert follower.poll() is None  # still following: the run is not over
        (tmp_path / "go").touch()
        assert follower.wait(timeout=60) == 0
        reader.join(timeout=10)
        assert [s for s in seen if s.startswith("==")] == [
            "== first attempt 1: 1 line(s) ==",
            "== second attempt 1: 1 line(s) ==",
        ]
        assert runner.wait(timeout=60) == 0
    finally:
        for p in (runner,):
            if p.poll() is None:
                p.kill()


def test_prune_deletes_old_runs_with_their_records_and_logs(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            from dagexec_core import Dag

            dag = Dag("small")


            @dag.task
            def speak(ctx):
                ctx.log.info("spoken")
                raise RuntimeError("and failed")
            """
        )
    )
    ids = []
    for _ in range(3):
        proc = dagexec("run", "flow.py", "--json", "--progress", "off", cwd=tmp_path)
        assert proc.returncode == 1
        ids.append(json.loads(proc.stdout)["run_id"])
    db = sqlite3.connect(tmp_path / "state.db")
    # the oldest run started 40 days ago
    db.execute("UPDATE runs SET started_at = started_at - 40 * 86400 WHERE run_id = ?", (ids[0],))
    db.commit()

    bad = dagexec("prune", cwd=tmp_path)
    assert bad.returncode == 2 and "--older-than AGE" in bad.stderr
    bad = dagexec("prune", "--older-than", "30 days", cwd=tmp_path)
    assert bad.returncode == 2 and "give a number and a unit" in bad.stderr

    dry = dagexec("prune", "--older-than", "30d", "--dry-run", cwd=tmp_path)
    assert dry.stdout.strip() == f"would delete 1 run(s): {ids[0]}"
    done = dagexec("prune", "--older-than", "30d", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"deleted 1 run(s): {ids[0]}"
    for table in ("runs", "transitions", "dead_letters", "run_meta", "task_logs"):
        left = db.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", (ids[0],)).fetchone()[0]
        assert left == 0, table
    assert dagexec("logs", ids[0], cwd=tmp_path).returncode == 2  # the run is gone, named as such
    assert "spoken" in dagexec("logs", ids[1], cwd=tmp_path).stdout

    kept = dagexec("prune", "--keep", "1", "--vacuum", cwd=tmp_path)
    assert kept.stdout.strip() == f"deleted 1 run(s): {ids[1]}"
    assert [r["run_id"] for r in json.loads(dagexec("runs", "--json", cwd=tmp_path).stdout)] == [ids[2]]
    assert db.execute("SELECT count(*) FROM task_logs").fetchone()[0] == 1


def test_the_docs_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "logs.md").read_text()
    (tmp_path / "flow.py").write_text(doc.split("```python\n", 1)[1].split("```", 1)[0])
    proc = dagexec("run", "flow.py", "--json", "--progress", "off", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    printed = dagexec("logs", json.loads(proc.stdout)["run_id"], cwd=tmp_path).stdout.splitlines()
    shown = doc.split("$ dagexec logs 20261201-070000-a1b2c3\n", 1)[1].split("```", 1)[0].splitlines()
    assert len(printed) == len(shown) == 4
    for got, want in zip(printed, shown, strict=True):
        assert got.split(" ", 1)[1] == want.split(" ", 1)[1] if not want.startswith("==") else got == want


def test_a_thread_abandoned_by_a_timed_out_attempt_does_not_take_the_next_attempts_log(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            import time
            from pathlib import Path

            from dagexec_core import Dag

            dag = Dag("overrun")


            def wait_for(name):
                deadline = time.monotonic() + 60
                while not Path(name).exists() and time.monotonic() < deadline:
                    time.sleep(0.01)


            @dag.task(retry=2, timeout=0.5)
            def slow(ctx):
                if ctx.attempt == 1:
                    wait_for("second-started")  # overruns its timeout: the engine abandons this thread
                    ctx.log.info("late line from attempt 1")
                    Path("late-logged").touch()
                    return "abandoned"
                ctx.log.info("attempt 2 started")
                Path("second-started").touch()
                wait_for("late-logged")
                ctx.log.info("attempt 2 done")
                return "ok"
            """
        )
    )
    proc = dagexec("run", "flow.py", "--json", "--progress", "off", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "late-logged").exists()
    run = {"folder": tmp_path, "run_id": json.loads(proc.stdout)["run_id"]}
    entries = logs_json(run, "slow")
    assert [(e["attempt"], [r[2] for r in e["records"]]) for e in entries] == [
        (2, ["attempt 2 started", "attempt 2 done"])
    ]
