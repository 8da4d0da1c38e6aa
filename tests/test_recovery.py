"""Recovery as a user meets it: the same values fresh or resumed, crashes that lose nothing by default,
the way back from a failure, the code a resume imports, and state files that are damaged, read-only or full.

Every test drives the ``dagexec`` command on a DAG file in its own folder, in separate processes,
with real state files.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import resource
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAGEXEC = [sys.executable, "-m", "dagexec_core.cli"]


def env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD": "1",
        **extra,
    }


def dagexec(
    *args: str, cwd: Path, extra_env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DAGEXEC, *args], cwd=cwd, env=env(**(extra_env or {})), capture_output=True, text=True, timeout=120, **kw
    )


def ok(proc: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The one error line of a failed command (other stderr lines are progress and notes, not the error)."""
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dagexec: error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def only_run_id(folder: Path) -> str:
    runs = json.loads(ok(dagexec("runs", "--json", cwd=folder)).stdout)
    assert len(runs) == 1, runs
    return str(runs[0]["run_id"])


def shown(folder: Path, run_id: str) -> dict[str, dict[str, Any]]:
    data = json.loads(ok(dagexec("show", run_id, "--json", cwd=folder)).stdout)
    return {t["name"]: t for t in data["tasks"]}


def stored_outputs(db: Path, run_id: str) -> dict[str, Any]:
    """Every completed task's output as the state file holds it (read with SQL, as docs/reliability.md shows)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT name, output FROM task_records WHERE run_id = ? AND state = 'completed'", (run_id,)
        ).fetchall()
    return {name: json.loads(text) for name, text in rows}


def dead_letters(folder: Path) -> list[dict[str, Any]]:
    return list(json.loads(ok(dagexec("dlq", "list", "--json", cwd=folder)).stdout))


# ---------------------------------------------------------------------------
# 1. one rule for outputs: what a dependent receives is what a resume gives it
# ---------------------------------------------------------------------------

VALUES_FLOW = """
    import os, signal
    from pathlib import Path
    from dagexec_core import Dag
    from shapes import summary   # a helper module beside the DAG file

    HERE = Path(__file__).parent
    dag = Dag("values")

    @dag.task
    def produce():
        return {"t": (1, 2), "k": {1: "one", 2.5: "x", None: "n"}, "nested": [(3, (4, 5))],
                "f": 0.1, "big": 10**30, "s": "caf\\u00e9"}

    @dag.task(deps=["produce"])
    def middle(produce):
        if os.environ.get("CRASH") and not (HERE / "crashed").exists():
            (HERE / "crashed").write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)   # the driver dies with 'produce' stored, 'middle' in flight
        return summary(produce)

    @dag.task(deps=["produce", "middle"])
    def consume(produce, middle):
        (HERE / os.environ["RECEIVED"]).write_text(repr((produce, middle)))
        return [produce, middle]
"""

SHAPES = """
    def summary(value):
        return {"pair": value["t"], "keys": sorted(value["k"])}
"""


def test_a_dependent_receives_the_same_values_fresh_resumed_and_without_persistence(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": VALUES_FLOW, "shapes.py": SHAPES})
    fresh = json.loads(ok(dagexec("run", "flow.py", "--json", cwd=folder, extra_env={"RECEIVED": "fresh"})).stdout)

    state = ["--state", "crashed.db"]
    killed = dagexec("run", "flow.py", *state, cwd=folder, extra_env={"RECEIVED": "resumed", "CRASH": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_id = json.loads(ok(dagexec("runs", "--json", *state, cwd=folder)).stdout)[0]["run_id"]
    resumed = json.loads(
        ok(dagexec("resume", run_id, *state, "--json", cwd=folder, extra_env={"RECEIVED": "resumed"})).stdout
    )

    memory = json.loads(
        ok(dagexec("run", "flow.py", "--no-persist", "--json", cwd=folder, extra_env={"RECEIVED": "memory"})).stdout
    )

    produced = {
        "t": [1, 2],
        "k": {"1": "one", "2.5": "x", "null": "n"},
        "nested": [[3, [4, 5]]],
        "f": 0.1,
        "big": 10**30,
        "s": "café",
    }
    expected = (produced, {"pair": [1, 2], "keys": ["1", "2.5", "null"]})
    # value for value, and type for type (the repr tells a tuple from a list, 1 from '1')
    for name in ("fresh", "resumed", "memory"):
        assert (folder / name).read_text() == repr(expected), name
    for report in (fresh, resumed, memory):
        assert report["ok"]
    assert stored_outputs(folder / "crashed.db", run_id)["consume"] == list(expected)
    assert resumed["tasks"]["produce"]["attempts"] == 1  # reloaded, not run again


UNSTORABLE_FLOW = """
    from dagexec_core import Dag

    dag = Dag("unstorable")
    dag.add("tags", lambda: {"rows": [1, {"a", "b"}]})
    dag.add("ratio", lambda: {"mean": float("nan")})
    dag.add("fine", lambda: 1)
    dag.add("after_tags", lambda tags: tags, deps=["tags"])
"""


def test_a_value_json_cannot_hold_fails_only_its_task_naming_the_place_and_type_persisted_or_not(
    tmp_path: Path,
) -> None:
    folder = project(tmp_path, {"flow.py": UNSTORABLE_FLOW})
    persisted = json.loads(ok(dagexec("run", "flow.py", "--json", cwd=folder), 1).stdout)
    memory = json.loads(ok(dagexec("run", "flow.py", "--no-persist", "--json", cwd=folder), 1).stdout)
    for report in (persisted, memory):
        tasks = report["tasks"]
        assert "OutputSerializationError" in tasks["tags"]["error"]
        assert "output['rows'][1] is a builtins.set" in tasks["tags"]["error"]
        assert "output['mean'] is float nan" in tasks["ratio"]["error"]
        assert "RFC 8259" in tasks["ratio"]["error"]
        assert tasks["fine"]["state"] == "completed"
        assert tasks["after_tags"]["state"] == "skipped"
    # the same errors with and without persistence
    assert {n: t["error"] for n, t in persisted["tasks"].items()} == {n: t["error"] for n, t in memory["tasks"].items()}

    # the check is optional without persistence, for speed: the values pass as returned
    unchecked = ok(dagexec("run", "flow.py", "--no-persist", "--no-check-outputs", "--json", cwd=folder))
    assert json.loads(unchecked.stdout)["ok"]
    (folder / "pyproject.toml").write_text("[tool.dagexec]\ncheck_outputs = false\n")
    assert json.loads(ok(dagexec("run", "flow.py", "--no-persist", "--json", cwd=folder)).stdout)["ok"]
    # a persisted run stores what dependents get: the option does not apply to it
    ok(dagexec("run", "flow.py", cwd=folder), 1)


DEEP_FLOW = """
    from dagexec_core import Dag

    dag = Dag("deep")

    @dag.task
    def deep():
        value = []
        for _ in range(100_000):
            value = [value]
        return value

    @dag.task
    def fine():
        return "fine"

    @dag.task(deps=["fine"])
    def after_fine(fine):
        return fine + " too"
"""


def test_a_deeply_nested_output_fails_its_own_task_and_a_resume_keeps_the_others(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": DEEP_FLOW})
    first = ok(dagexec("run", "flow.py", cwd=folder), 1)
    assert "Traceback" not in first.stderr
    run_id = only_run_id(folder)
    tasks = shown(folder, run_id)
    assert tasks["deep"]["state"] == "dead_lettered"
    assert "is nested" in tasks["deep"]["error"] and "RecursionError" in tasks["deep"]["error"]
    assert "output[[]" not in tasks["deep"]["error"] and "output[0][0]" in tasks["deep"]["error"]
    assert tasks["fine"]["state"] == tasks["after_fine"]["state"] == "completed"

    ok(dagexec("resume", run_id, cwd=folder), 1)  # 'deep' stays dead-lettered with its own error
    again = shown(folder, run_id)
    assert again["fine"]["state"] == again["after_fine"]["state"] == "completed"
    assert stored_outputs(folder / ".dagexec" / "state.db", run_id)["after_fine"] == "fine too"
    assert [(e["task"], e["error_type"]) for e in dead_letters(folder)] == [
        ("deep", "dagexec_core.errors.OutputSerializationError")
    ]


# ---------------------------------------------------------------------------
# 3. a crash does not use up attempts; a task at two consecutive crashes is the likely cause
# ---------------------------------------------------------------------------

LAYERED_FLOW = """
    import asyncio, os, time
    from dagexec_core import Dag

    dag = Dag("layered")
    LAYERS, WIDTH = 8, 6

    def make(name, is_async):
        def done(deps):
            os.write(1, b".")   # tells the test a task ran; it kills the driver after a random number
            return 1 + sum(deps.values())
        if is_async:
            async def body(**deps):
                await asyncio.sleep(0.005)
                return done(deps)
        else:
            def body(**deps):
                time.sleep(0.005)
                return done(deps)
        return body

    for layer in range(LAYERS):
        for w in range(WIDTH):
            deps = [] if layer == 0 else [f"t{layer - 1}_{w}", f"t{layer - 1}_{(w + 1) % WIDTH}"]
            dag.add(f"t{layer}_{w}", make(f"t{layer}_{w}", w % 2 == 0), deps=deps)   # one attempt: the default
"""


def expected_layered(layers: int = 8, width: int = 6) -> dict[str, int]:
    out: dict[str, int] = {}
    for layer in range(layers):
        for w in range(width):
            deps = [] if layer == 0 else [f"t{layer - 1}_{w}", f"t{layer - 1}_{(w + 1) % width}"]
            out[f"t{layer}_{w}"] = 1 + sum(out[d] for d in deps)
    return out


def test_a_run_killed_at_a_random_instant_resumes_to_completion_with_default_settings(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": LAYERED_FLOW})
    rng = random.Random(int(os.environ.get("DAGEXEC_CRASH_SEED", "20261201")))
    expected = expected_layered()
    for trial in range(4):
        state = f"trial{trial}.db"
        child = subprocess.Popen(
            [*DAGEXEC, "run", "flow.py", "--state", state, "-c", "4"],
            cwd=folder,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None
        target = rng.randint(1, len(expected) - 1)
        seen = 0
        while seen < target and child.stdout.read(1):
            seen += 1
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, err.decode()  # killed before it could finish

        run_id = json.loads(ok(dagexec("runs", "--state", state, "--json", cwd=folder)).stdout)[0]["run_id"]
        caught = [n for n, t in shown_state(folder, run_id, state).items() if t["state"] == "running"]
        ok(dagexec("resume", run_id, "--state", state, cwd=folder))
        tasks = shown_state(folder, run_id, state)
        assert {t["state"] for t in tasks.values()} == {"completed"}, (trial, caught)
        assert stored_outputs(folder / state, run_id) == expected
        # the attempt the crash cut short did not count: every task completed on attempt 1
        assert {t["attempts"] for t in tasks.values()} == {1}, caught


def shown_state(folder: Path, run_id: str, state: str) -> dict[str, dict[str, Any]]:
    data = json.loads(ok(dagexec("show", run_id, "--state", state, "--json", cwd=folder)).stdout)
    return {t["name"]: t for t in data["tasks"]}


PILL_FLOW = """
    import os, signal
    from dagexec_core import Dag

    dag = Dag("pill")
    dag.add("first", lambda: 1)

    @dag.task(deps=["first"])
    def pill(first):
        os.kill(os.getpid(), signal.SIGKILL)   # takes the whole driver down, every time
        return first

    dag.add("after", lambda pill: pill + 1, deps=["pill"])
    dag.add("side", lambda first: first * 10, deps=["first"], priority=9)
"""


def test_a_task_that_kills_its_driver_twice_is_dead_lettered_as_the_likely_cause(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": PILL_FLOW})
    one = dagexec("run", "flow.py", "-c", "1", cwd=folder)
    assert one.returncode == -signal.SIGKILL, one.stderr
    run_id = only_run_id(folder)
    two = dagexec("resume", run_id, "-c", "1", cwd=folder)  # one crash is not the task's fault: it runs again
    assert two.returncode == -signal.SIGKILL, two.stderr
    assert dead_letters(folder) == []

    three = ok(dagexec("resume", run_id, "-c", "1", cwd=folder), 1)  # in flight at both crashes: not started again
    assert "two consecutive crashes" in three.stdout
    replay = f"replay the failed tasks (their skipped dependents follow): dagexec resume {run_id} --replay pill\n"
    assert replay in three.stdout
    tasks = shown(folder, run_id)
    assert (tasks["first"]["state"], tasks["side"]["state"]) == ("completed", "completed")
    assert (tasks["pill"]["state"], tasks["after"]["state"]) == ("dead_lettered", "skipped")
    (entry,) = dead_letters(folder)
    assert (entry["task"], entry["error_type"]) == ("pill", "dagexec_core.errors.TaskInterruptedError")
    assert "crash 1: attempt 1 started" in entry["message"] and "crash 2: attempt 1 started" in entry["message"]

    # fixed: the changed file must be named, then the replay leaves the dead-letter queue
    (folder / "flow.py").write_text((folder / "flow.py").read_text().replace("os.kill(", "(lambda *a: None)("))
    refused = one_line_error(dagexec("resume", run_id, "--replay", "pill", cwd=folder), 2)
    assert "changed" in refused
    ok(dagexec("resume", run_id, "flow.py", "--replay", "pill", cwd=folder))
    assert stored_outputs(folder / ".dagexec" / "state.db", run_id)["after"] == 2
    assert dead_letters(folder) == []


# ---------------------------------------------------------------------------
# 4. the way back: the summary names the replay command
# ---------------------------------------------------------------------------

FAILING_FLOW = """
    from pathlib import Path
    from dagexec_core import Dag

    HERE = Path(__file__).parent
    dag = Dag("etl")
    dag.add("extract", lambda: [1, 2, 3])

    @dag.task(deps=["extract"])
    def transform(extract):
        if not (HERE / "fixed").exists():
            raise ValueError("upstream sent garbage")
        return [x * 2 for x in extract]

    dag.add("load", lambda transform: sum(transform), deps=["transform"])
"""


def test_the_failure_summary_names_the_command_that_replays_it_and_that_command_empties_the_queue(
    tmp_path: Path,
) -> None:
    folder = project(tmp_path, {"flow.py": FAILING_FLOW})
    failed = ok(dagexec("run", "flow.py", "--state", "state dir/etl.db", cwd=folder), 1)
    hint = [line for line in failed.stdout.splitlines() if "replay the failed tasks" in line]
    assert len(hint) == 1, failed.stdout
    command = hint[0].split(": ", 1)[1]
    run_id = failed.stdout.split()[1]
    assert command == f"dagexec resume {run_id} --replay transform --state 'state dir/etl.db'"
    assert len(json.loads(ok(dagexec("dlq", "list", "--state", "state dir/etl.db", "--json", cwd=folder)).stdout)) == 1

    (folder / "fixed").write_text("x")  # fix the cause, then run exactly what was printed
    argv = shlex.split(command)
    assert argv[0] == "dagexec"
    replayed = ok(dagexec(*argv[1:], cwd=folder))
    assert "fix the cause" not in replayed.stdout
    assert json.loads(ok(dagexec("dlq", "list", "--state", "state dir/etl.db", "--json", cwd=folder)).stdout) == []
    assert stored_outputs(folder / "state dir" / "etl.db", run_id)["load"] == 12


# ---------------------------------------------------------------------------
# 5. the state file is data, not code
# ---------------------------------------------------------------------------

MARKED = """
from pathlib import Path
(Path(__file__).parent / "imported").write_text("the changed file ran")
"""


def test_resume_refuses_a_changed_or_moved_dag_file_without_importing_it_unless_named(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": FAILING_FLOW})
    ok(dagexec("run", "flow.py", cwd=folder), 1)
    run_id = only_run_id(folder)
    (folder / "fixed").write_text("x")

    shown_file = ok(dagexec("resume", run_id, "--json", cwd=folder), 1)  # unchanged: resumed, the file named
    assert f"resuming run {run_id} with {(folder / 'flow.py').resolve()}" in shown_file.stderr

    (folder / "flow.py").write_text(textwrap.dedent(FAILING_FLOW) + MARKED)
    for argv in (["resume", run_id], ["dlq", "replay", "--run", run_id]):
        err = one_line_error(dagexec(*argv, cwd=folder), 2)
        assert f"{(folder / 'flow.py').resolve()} changed since the run last ran" in err
        assert "nothing was imported" in err
        assert not (folder / "imported").exists()  # the changed file never ran

    (folder / "flow.py").rename(folder / "moved.py")
    err = one_line_error(dagexec("resume", run_id, cwd=folder), 2)
    assert "no longer there (moved or deleted)" in err
    assert f"dagexec resume {run_id} FILE" in err
    assert not (folder / "imported").exists()

    ok(dagexec("resume", run_id, "moved.py", "--replay", "transform", cwd=folder))  # named: the user's decision
    assert (folder / "imported").exists()
    # the run now remembers the file it ran with
    again = ok(dagexec("resume", run_id, cwd=folder))
    assert f"with {(folder / 'moved.py').resolve()}" in again.stderr


SIZED_FLOW = """
import os
from dagexec_core import Dag

dag = Dag("sized")
for i in range(int(os.environ.get("FLOW_N", "40"))):
    dag.add(f"t{i}", lambda: None)
dag.add("last", lambda: 1 / 0, deps=["t0"])
"""


def test_resume_of_a_dag_that_lost_many_completed_tasks_names_ten_and_counts_the_rest(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": SIZED_FLOW})
    ok(dagexec("run", "flow.py", cwd=folder, extra_env={"FLOW_N": "40"}), 1)
    run_id = only_run_id(folder)
    err = one_line_error(dagexec("resume", run_id, "flow.py", cwd=folder, extra_env={"FLOW_N": "5"}), 2)
    assert err.count("is no longer in the DAG") == 10
    assert "and 25 more changes of 35; start a new run instead" in err
    assert len(err) < 1_000


def test_resume_refuses_when_a_dagplugins_file_beside_the_dag_file_appeared(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": FAILING_FLOW, "pyproject.toml": ""})
    ok(dagexec("run", "flow.py", cwd=folder), 1)
    run_id = only_run_id(folder)
    (folder / "dagplugins.py").write_text(MARKED)
    err = one_line_error(dagexec("resume", run_id, cwd=folder), 2)
    assert f"{(folder / 'dagplugins.py').resolve()} appeared" in err
    assert not (folder / "imported").exists()


# ---------------------------------------------------------------------------
# 6. state files that are damaged, read-only, full; things not found
# ---------------------------------------------------------------------------


def test_a_hand_edited_row_gives_a_one_line_state_file_error(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": FAILING_FLOW})
    ok(dagexec("run", "flow.py", cwd=folder), 1)
    run_id = only_run_id(folder)
    db = folder / ".dagexec" / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE transitions SET state = 'exploded' WHERE task = 'extract'")
    err = one_line_error(dagexec("show", run_id, cwd=folder), 1)
    assert "damaged: task 'extract'" in err and "unknown state 'exploded'" in err
    one_line_error(dagexec("resume", run_id, cwd=folder), 1)

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET meta = '{not json'")
    err = one_line_error(dagexec("runs", cwd=folder), 1)
    assert f"the metadata of run {run_id} is not JSON" in err


CAP_SETPCAP = 8


def can_drop_capabilities() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SETPCAP & 1)
    return False


def as_reader() -> Callable[[], None] | None:
    """Make a child honour file permissions. Root ignores them through the capabilities CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH and CAP_FOWNER: the child drops them from its bounding set, so the program it
    executes runs without them (still root, so it can reach the interpreter under /root). Root that
    cannot drop them (no CAP_SETPCAP) gets None: the directory is then writable to it after all, and
    only the checks that nothing was created beside the file remain."""
    if os.geteuid() != 0 or not can_drop_capabilities():
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return drop


def test_runs_show_and_dlq_list_read_a_state_file_in_a_directory_they_cannot_write(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": FAILING_FLOW})
    ok(dagexec("run", "flow.py", cwd=folder), 1)
    run_id = only_run_id(folder)
    # somewhere every user can reach, owned by this one and closed to writes
    shared = Path(tempfile.mkdtemp(prefix="dagexec-ro-"))
    try:
        (folder / ".dagexec" / "state.db").rename(shared / "state.db")
        (shared / "state.db").chmod(0o644)
        shared.chmod(0o555)
        before = sorted(p.name for p in shared.iterdir()), (shared / "state.db").read_bytes()
        assert before[0] == ["state.db"]
        state = str(shared / "state.db")
        for argv in (["runs"], ["show", run_id], ["dlq", "list"], ["show", run_id, "--timeline"]):
            proc = dagexec(*argv, "--state", state, cwd=shared, preexec_fn=as_reader())
            assert proc.returncode == 0, (argv, proc.stderr)
            assert run_id in proc.stdout or "transform" in proc.stdout
        # nothing written: no -wal or -shm file beside it, the file byte for byte as it was
        assert (sorted(p.name for p in shared.iterdir()), (shared / "state.db").read_bytes()) == before
        if os.geteuid() != 0 or as_reader() is not None:
            # the directory really is closed to this reader: a command that writes is refused there
            writer = dagexec(
                "resume", run_id, str(folder / "flow.py"), "--state", state, cwd=shared, preexec_fn=as_reader()
            )
            err = one_line_error(writer, 1)
            assert "make its directory writable" in err
            assert sorted(p.name for p in shared.iterdir()) == ["state.db"]
    finally:
        shared.chmod(0o755)
        for p in shared.iterdir():
            p.unlink()
        shared.rmdir()


BIG_FLOW = """
    from dagexec_core import Dag

    dag = Dag("big")
    for i in range(40):
        dag.add(f"blob{i}", lambda i=i: "x" * 200_000 + str(i))
"""


def limit_file_size() -> None:
    """Files of this process stop growing at 2 MB, as on a full disk (write(2) fails with EFBIG)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))


def test_a_full_disk_is_named_and_the_error_says_to_free_space(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": BIG_FLOW})
    proc = dagexec("run", "flow.py", "-c", "1", cwd=folder, preexec_fn=limit_file_size)
    err = one_line_error(proc, 1)
    # SQLite says "database or disk is full" for a short write, "disk I/O error" for one refused outright
    assert "database or disk is full" in err or "disk I/O error" in err
    assert "free disk space" in err
    run_id = only_run_id(folder)  # the file stays readable, and the run resumable
    assert shown(folder, run_id)["blob0"]["state"] == "completed"


NOT_FOUND = [
    ["show", "nope"],
    ["resume", "nope"],
    ["run", "flow.py", "--resume", "nope"],
    ["dlq", "show", "nope"],
    ["dlq", "replay", "nope"],
    ["dlq", "replay", "--run", "nope"],
    ["dlq", "purge", "nope"],
    ["emit", "nope", "go"],
    ["runs", "--state", "missing.db"],
    ["show", "nope", "--state", "missing.db"],
    ["dlq", "list", "--state", "missing.db"],
    ["run", "missing.py"],
]


def test_not_found_exits_2_whatever_the_command(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flow.py": FAILING_FLOW})
    ok(dagexec("run", "flow.py", cwd=folder), 1)
    for argv in NOT_FOUND:
        err = one_line_error(dagexec(*argv, cwd=folder), 2)
        assert "nope" in err or "missing" in err, (argv, err)


MAP_PILL_FLOW = """
    import os, signal
    from dagexec_core import Dag

    dag = Dag("map-pill")
    dag.add("items", lambda: list(range(6)))

    def work(item):
        if item == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return item * 10

    dag.map(work, over="items")
"""


def test_a_mapped_element_that_kills_its_driver_twice_is_dead_lettered_and_the_others_complete(
    tmp_path: Path,
) -> None:
    folder = project(tmp_path, {"flow.py": MAP_PILL_FLOW})
    assert dagexec("run", "flow.py", "-c", "1", cwd=folder).returncode == -signal.SIGKILL
    run_id = only_run_id(folder)
    assert dagexec("resume", run_id, "-c", "1", cwd=folder).returncode == -signal.SIGKILL
    third = ok(dagexec("resume", run_id, "-c", "1", cwd=folder), 1)
    assert f"dagexec resume {run_id} --replay work\n" in third.stdout
    tasks = shown(folder, run_id)
    assert tasks["work[3]"]["state"] == "dead_lettered"
    assert "two consecutive crashes" in tasks["work[3]"]["error"]
    assert [tasks[f"work[{i}]"]["state"] for i in (0, 1, 2, 4, 5)] == ["completed"] * 5
    assert tasks["work"]["state"] == "failed" and "MapError" in tasks["work"]["error"]
    assert [e["task"] for e in dead_letters(folder)] == ["work[3]"]
