"""The SQLite storage: real state files in tmp_path, real second processes, real read-only directories.

Resuming through the engine is in test_engine_resume.py."""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import state_support
from dagexec_core import (
    Dag,
    DagChangedError,
    RetryPolicy,
    RunLockedError,
    StateFileError,
    TaskState,
    hookimpl,
    run,
)
from dagexec_core.errors import UsageError
from dagexec_core.stages import RunInfo
from dagexec_plugins.sqlite import APPLICATION_ID, MULTI_ROW_MAX, SCHEMA_VERSION, SqliteStorage
from state_support import child_env, sha, simple_dag

# -- the file ------------------------------------------------------------------


def test_run_persists_by_default_to_dagexec_state_db_in_the_working_directory(tmp_path: Path) -> None:
    report = run(simple_dag())
    db = tmp_path / ".dagexec" / "state.db"
    assert report.ok and db.is_file()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # a new file goes through every migration step, as an old file does
    assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations")] == list(range(1, SCHEMA_VERSION + 1))
    rows = dict(conn.execute("SELECT name, output FROM task_records WHERE run_id = ?", (report.run_id,)).fetchall())
    assert rows == {"extract": "[1,2,3]", "transform": "[2,4,6]", "load": "12"}
    status, dag_file = conn.execute("SELECT status, dag_file FROM runs").fetchone()
    # the file that defines the DAG (simple_dag's module)
    assert status == "completed" and dag_file == str(Path(state_support.__file__).resolve())


def test_persist_false_and_memory_state_write_no_file(tmp_path: Path) -> None:
    assert run(simple_dag(), persist=False).ok
    assert run(simple_dag(), state=":memory:").ok
    assert not (tmp_path / ".dagexec").exists()


def test_an_empty_file_becomes_a_state_file(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.touch()
    assert run(simple_dag(), state=str(db)).ok
    assert sqlite3.connect(db).execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


@pytest.mark.parametrize(
    "content",
    [b"this is a CSV file,not a database\n" * 100, b"SQLite format 3\x00" + os.urandom(4080)],
    ids=["not-sqlite", "garbage-after-header"],
)
def test_corrupt_file_is_refused_with_a_clear_error_and_never_modified(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(content)
    before = sha(db)
    with pytest.raises(StateFileError, match="not a dagexec state file") as exc:
        run(simple_dag(), state=str(db))
    assert str(db) in str(exc.value)
    assert sha(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


@pytest.mark.parametrize("tables", [["people"], ["runs", "tasks"]], ids=["other-app", "same-table-names"])
def test_foreign_sqlite_file_is_refused_and_never_modified(tmp_path: Path, tables: list[str]) -> None:
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    for t in tables:
        conn.execute(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute(f"INSERT INTO {t} (name) VALUES ('x')")
    conn.commit()
    conn.close()
    before = sha(db)
    with pytest.raises(StateFileError, match="another application") as exc:
        run(simple_dag(), state=str(db))
    assert tables[0] in str(exc.value)
    assert sha(db) == before
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_state_file_from_a_newer_schema_is_refused_and_never_modified(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    run(simple_dag(), state=str(db))
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = sha(db)
    with pytest.raises(StateFileError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        run(simple_dag(), state=str(db))
    assert sha(db) == before


def test_state_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "somedir").mkdir()
    with pytest.raises(StateFileError, match="is a directory"):
        run(simple_dag(), state=str(tmp_path / "somedir"))


@pytest.mark.parametrize(("mode", "level"), [("fast", 0), ("normal", 1), ("durable", 2)])
def test_durability_mode_sets_synchronous(tmp_path: Path, mode: str, level: int) -> None:
    storage = SqliteStorage(tmp_path / "s.db", mode)
    try:
        assert storage.conn.execute("PRAGMA synchronous").fetchone()[0] == level
        assert storage.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        storage.close()


def test_unknown_durability_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="fast, normal, durable"):
        run(simple_dag(), state=str(tmp_path / "s.db"), durability="paranoid")


# -- read-only directory and full disk ---------------------------------------------


READ_ONLY_SCRIPT = textwrap.dedent(
    """
    import sys
    from dagexec_core import Dag, StateFileError, run

    dag = Dag("ro")
    dag.add("a", lambda: 1)
    try:
        run(dag, state=sys.argv[1])
    except StateFileError as exc:
        print("StateFileError:", exc)
        sys.exit(3)
    print("ran")
    """
)


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A directory whose write bit the test's processes respect.

    Root writes anywhere, so as root the processes run without the capabilities
    that bypass file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH).
    """
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a directory read-only for the test")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    base = tmp_path / "rotest"
    base.mkdir()
    try:
        yield base, prefix
    finally:
        for p in (base, *base.rglob("*")):
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_read_only_directory_gives_a_clear_error(readonly_dir: tuple[Path, list[str]]) -> None:
    base, prefix = readonly_dir
    script = base / "ro_dag.py"
    script.write_text(READ_ONLY_SCRIPT)
    ro = base / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    proc = subprocess.run(
        [*prefix, sys.executable, str(script), str(ro / ".dagexec" / "state.db")],
        env=child_env(),
        capture_output=True,
        text=True,
        cwd=base,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "StateFileError: cannot create the directory of state file" in proc.stdout
    assert "--no-persist" in proc.stdout
    assert not (ro / ".dagexec").exists()


def test_existing_state_file_in_a_read_only_directory_gives_a_clear_error_and_is_untouched(
    readonly_dir: tuple[Path, list[str]],
) -> None:
    base, prefix = readonly_dir
    script = base / "ro_dag.py"
    script.write_text(READ_ONLY_SCRIPT)
    ro = base / "ro"
    ro.mkdir()
    db = ro / "state.db"
    storage = SqliteStorage(db)
    storage.create_run(RunInfo("r1", "ro", "running", 1.0), ["a"], {"a": []})
    storage.close()
    (ro / "state.db-wal").unlink(missing_ok=True)
    (ro / "state.db-shm").unlink(missing_ok=True)
    before = sha(db)
    db.chmod(0o444)
    ro.chmod(0o555)
    proc = subprocess.run(
        [*prefix, sys.executable, str(script), str(db)], env=child_env(), capture_output=True, text=True, cwd=base
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "StateFileError: cannot" in proc.stdout and str(db) in proc.stdout
    assert sha(db) == before


def test_full_disk_rolls_back_the_whole_step_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    storage = SqliteStorage(db)
    storage.create_run(RunInfo("r1", "d", "running", 1.0), ["a", "b"], {"a": [], "b": ["a"]})
    pages = storage.conn.execute("PRAGMA page_count").fetchone()[0]
    # SQLite reports SQLITE_FULL when the file may not grow: a real full disk, scaled down
    storage.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = json.dumps("x" * 200_000)
    with pytest.raises(StateFileError, match="full.*rolled back"):
        storage.write(
            "r1", [("b", "running", 1, 2.0, None, None, None, None), ("a", "completed", 1, 1.0, 2.0, big, None, None)]
        )
    storage.close()
    check = SqliteStorage(db)
    records = check.load_records("r1")
    assert {n: r.state for n, r in records.items()} == {"a": TaskState.PENDING, "b": TaskState.PENDING}
    assert check.transitions("r1") == []
    check.close()


def test_full_disk_during_a_run_surfaces_as_state_file_error(tmp_path: Path) -> None:
    db = tmp_path / "s.db"

    class TinyDisk:
        @hookimpl
        def dagexec_storage(self, config: Any) -> SqliteStorage:
            storage = SqliteStorage(db)
            pages = storage.conn.execute("PRAGMA page_count").fetchone()[0]
            storage.conn.execute(f"PRAGMA max_page_count = {pages + 8}")
            return storage

    dag = Dag("big")
    dag.add("small", lambda: 1)
    dag.add("huge", lambda: "y" * 500_000, deps=["small"])
    dag.add("after", lambda huge: len(huge), deps=["huge"])
    with pytest.raises(StateFileError, match="full"):
        run(dag, plugins=[TinyDisk()])
    records = SqliteStorage(db).load_records(SqliteStorage(db).list_runs()[0].run_id)
    assert records["small"].state is TaskState.COMPLETED
    assert records["huge"].state is TaskState.RUNNING  # its COMPLETED step never landed: resumable
    assert records["after"].state is TaskState.PENDING


# -- outputs -------------------------------------------------------------------


def test_unserialisable_output_fails_that_task_naming_the_type_and_the_run_goes_on(tmp_path: Path) -> None:
    dag = Dag("mixed")
    dag.add("ok", lambda: {"a": 1})
    dag.add("bad", lambda: {1, 2, 3})
    dag.add("after_bad", lambda bad: 1, deps=["bad"])
    dag.add("after_ok", lambda ok: ok["a"] + 1, deps=["ok"])
    report = run(dag, state=str(tmp_path / "s.db"))
    assert not report.ok
    assert report.outputs == {"ok": {"a": 1}, "after_ok": 2}
    assert report.failed == ["bad"]
    assert "builtins.set" in (report.records["bad"].error or "") and "'bad'" in (report.records["bad"].error or "")
    assert report.records["after_bad"].state is TaskState.SKIPPED
    stored = SqliteStorage(tmp_path / "s.db").load_records(report.run_id)
    assert stored["bad"].state is TaskState.DEAD_LETTERED and "builtins.set" in (stored["bad"].error or "")
    assert stored["after_ok"].output == 2


def test_outputs_are_json_and_nothing_is_unpickled(tmp_path: Path) -> None:
    import pickle

    db = tmp_path / "s.db"
    report = run(simple_dag(), state=str(db))
    conn = sqlite3.connect(db)
    # a planted pickle is returned as the text it is, never loaded (an output is kept in the log entry
    # that completed its task)
    conn.execute(
        "UPDATE transitions SET output = ? WHERE task = 'load' AND state = 'completed'",
        (json.dumps(pickle.dumps(print).hex()),),
    )
    conn.commit()
    records = SqliteStorage(db).load_records(report.run_id)
    assert records["load"].output == pickle.dumps(print).hex()
    assert records["extract"].output == [1, 2, 3]


# -- ordering ----------------------------------------------------------------------


def test_task_is_durable_running_before_its_body_and_completed_before_dependents(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    seen: dict[str, Any] = {}

    def peek(name: str) -> tuple[str, int, str | None]:
        conn = sqlite3.connect(db)  # another connection: sees only committed data
        try:
            return conn.execute("SELECT state, attempts, output FROM task_records WHERE name = ?", (name,)).fetchone()
        finally:
            conn.close()

    dag = Dag("order")

    @dag.task
    def first() -> str:
        seen["first"] = peek("first")
        return "one"

    @dag.task(deps=["first"])
    async def second(first: str) -> str:
        seen["second"] = peek("second")
        seen["first_from_second"] = peek("first")
        return first + "two"

    assert run(dag, state=str(db)).ok
    assert seen["first"] == ("running", 1, None)
    assert seen["second"] == ("running", 1, None)
    assert seen["first_from_second"] == ("completed", 1, '"one"')


def test_transition_log_records_every_state_change_in_order(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    dag = Dag("flaky")
    calls: list[int] = []

    @dag.task(retry=RetryPolicy(max_attempts=3, base=0))
    def flaky() -> int:
        calls.append(1)
        if len(calls) < 2:
            raise ValueError("first time fails")
        return 1

    report = run(dag, state=str(db))
    log = SqliteStorage(db).transitions(report.run_id)
    assert [(e["task"], e["state"], e["attempts"]) for e in log] == [
        ("flaky", "running", 1),
        ("flaky", "retrying", 1),
        ("flaky", "running", 2),
        ("flaky", "completed", 2),
    ]
    assert "first time fails" in (log[1]["error"] or "")
    assert [e["at"] for e in log] == sorted(e["at"] for e in log)


# -- per-task state, meta, dead letters ------------------------------------------------------


def test_ctx_state_is_saved_from_worker_threads_and_kept_across_runs(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    dag = Dag("counters")
    for k in range(40):

        def bump(ctx: Any) -> int:
            current = ctx.state or {"n": 0}
            ctx.state = {"n": current["n"] + 1}
            return int(ctx.state["n"])

        dag.add(f"c{k}", bump)
    first = run(dag, state=str(db), concurrency=16)
    assert set(first.outputs.values()) == {1}
    second = run(dag, state=str(db), concurrency=16)
    assert set(second.outputs.values()) == {2}


def test_unserialisable_ctx_state_fails_the_task_naming_the_type(tmp_path: Path) -> None:
    dag = Dag("st")

    @dag.task
    def keep(ctx: Any) -> None:
        ctx.state = threading.Lock()

    report = run(dag, state=str(tmp_path / "s.db"))
    assert "_thread.lock" in (report.records["keep"].error or "")


def test_meta_round_trips_as_json(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "s.db")
    storage.create_run(RunInfo("r1", "d", "running", 1.0), ["a"], {"a": []})
    storage.put_meta("r1", "breaker:db", {"state": "open", "failures": 3})
    storage.put_meta("r1", "breaker:db", {"state": "closed", "failures": 0})
    assert storage.get_meta("r1", "breaker:db") == {"state": "closed", "failures": 0}
    assert storage.get_meta("r1", "missing") is None
    storage.close()


def test_dead_letters_live_in_the_state_file(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    dag = Dag("dl")

    @dag.task(retry=RetryPolicy(max_attempts=2, base=0))
    def always_fails() -> None:
        raise ConnectionError("service unreachable")

    report = run(dag, state=str(db))
    storage = SqliteStorage(db)
    entries = storage.dead_letter_queue().list(report.run_id)
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.task, entry.attempts, entry.error_type) == ("always_fails", 2, "builtins.ConnectionError")
    assert entry.message == "service unreachable" and "ConnectionError" in entry.traceback
    assert storage.dead_letter_queue().get(entry.id) == entry
    storage.dead_letter_queue().remove(entry.id)
    assert storage.dead_letter_queue().list() == []
    with pytest.raises(KeyError, match="dagexec dlq list"):
        storage.dead_letter_queue().get(entry.id)


def test_write_is_one_transaction_per_call(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "s.db")
    names = [f"t{i}" for i in range(500)]
    storage.create_run(RunInfo("r1", "d", "running", 1.0), names, {n: [] for n in names})
    before = storage.conn.total_changes
    commits: list[str] = []
    storage.conn.set_trace_callback(commits.append)
    storage.write("r1", [(n, "running", 1, 1.0, None, None, None, None) for n in names])
    # a small step is one multi-row INSERT: a transaction by itself
    storage.write(
        "r1", [("t0", "completed", 1, 1.0, 2.0, "5", None, None), ("t1", "failed", 1, 1.0, 2.0, None, "boom", None)]
    )
    storage.conn.set_trace_callback(None)
    assert [s for s in commits if s in ("BEGIN", "COMMIT")] == ["BEGIN", "COMMIT"]
    assert [s for s in commits if s.startswith("INSERT")][-1].count("), (") == 1
    assert storage.conn.total_changes - before == len(names) + 2  # one log entry per row, nothing else
    storage.close()


@pytest.mark.parametrize("size", [1, MULTI_ROW_MAX - 1, MULTI_ROW_MAX, MULTI_ROW_MAX + 1, 2 * MULTI_ROW_MAX + 3])
def test_a_step_of_any_size_logs_every_row_in_order(tmp_path: Path, size: int) -> None:
    """Steps longer than one multi-row INSERT are written in chunks, in one transaction, in order."""
    db = tmp_path / "s.db"
    storage = SqliteStorage(db)
    names = [f"t{i}" for i in range(size)]
    storage.create_run(RunInfo("r1", "d", "running", 1.0), names, {n: [] for n in names})
    storage.write("r1", [(n, "running", 1, 1.0, None, None, None, None) for n in names])
    # a task twice in one step: its later row is its record
    step = [(n, "completed", 1, 1.0, 2.0, str(i), None, None) for i, n in enumerate(names)]
    storage.write("r1", [*step, (names[0], "failed", 2, 3.0, 4.0, None, "late", None)])
    records = SqliteStorage(db).load_records("r1")
    assert {n: (r.state.value, r.output) for n, r in records.items() if n != names[0]} == {
        n: ("completed", i) for i, n in enumerate(names) if i
    }
    assert (records[names[0]].state, records[names[0]].error) == (TaskState.FAILED, "late")
    conn = sqlite3.connect(db)
    ids = [i for (i,) in conn.execute("SELECT id FROM transitions WHERE run_id = 'r1' ORDER BY id")]
    assert len(ids) == 2 * size + 1 and ids == list(range(ids[0], ids[0] + len(ids)))
    assert [t for (t,) in conn.execute("SELECT task FROM transitions WHERE run_id = 'r1' ORDER BY id")][size:] == [
        *names,
        names[0],
    ]
    conn.close()
    storage.close()


def test_records_logged_but_not_applied_are_read_as_they_stand(tmp_path: Path) -> None:
    """A step only appends to the log; every reader (another process, a run under way or killed)
    reads a task's newest log entry as its record."""
    db = tmp_path / "s.db"
    writer = SqliteStorage(db)
    writer.create_run(RunInfo("r1", "d", "running", 1.0), ["a", "b", "c"], {"a": [], "b": ["a"], "c": []})
    writer.write(
        "r1", [("a", "running", 1, 1.0, None, None, None, "t" * 32), ("c", "running", 1, 1.0, None, None, None, None)]
    )
    writer.write("r1", [("a", "completed", 1, 1.0, 2.0, '{"rows": [1, 2]}', None, "t" * 32)])
    writer.write(
        "r1",
        [("c", "failed", 1, 1.0, 2.5, None, "ValueError: no", None), ("b", "running", 1, 2.0, None, None, None, None)],
    )
    writer.write("r1", [("extra", "completed", 1, 3.0, 4.0, "7", None, None)])  # a task the run did not declare

    reader = SqliteStorage(db)  # another process's view
    records = reader.load_records("r1")
    assert records["a"].state is TaskState.COMPLETED and records["a"].output == {"rows": [1, 2]}
    assert records["a"].trace_id == "t" * 32 and records["a"].finished_at == 2.0
    assert records["b"].state is TaskState.RUNNING and records["c"].error == "ValueError: no"
    assert records["extra"].output == 7
    counts = reader.get_run("r1").counts
    assert counts == {"completed": 2, "running": 1, "failed": 1}  # "extra" has a record too
    # counted when first read, the file closed or not, and carried by a copy as they were counted
    info = reader.get_run("r1")
    assert pickle.loads(pickle.dumps(info)).counts == counts and isinstance(copy.copy(info.counts), dict)
    other = SqliteStorage(db, read_only=True)
    later = other.get_run("r1")
    other.close()  # read after: counted through a connection of their own
    assert dict(later.counts) == counts
    conn = sqlite3.connect(db)
    # no row per task: the run's tasks are its dependency documents' names; the view says what stands
    assert conn.execute("SELECT count(*) FROM tasks WHERE run_id = 'r1'").fetchone()[0] == 0
    view = {n: (s, o) for n, s, o in conn.execute("SELECT name, state, output FROM task_records WHERE run_id = 'r1'")}
    assert view == {"a": ("completed", '{"rows": [1, 2]}'), "b": ("running", None), "c": ("failed", None)}

    writer.write("r1", [("b", "completed", 1, 2.0, 3.0, "null", None, None)])
    writer.finish_run("r1", "failed", 5.0, {"completed": 3, "failed": 1})
    writer.close()
    # the log is the record, and an output is stored once
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0
    final = SqliteStorage(db).load_records("r1")
    assert final["b"].state is TaskState.COMPLETED and final["b"].output is None
    assert {n: r for n, r in final.items() if n != "b"} == {n: r for n, r in records.items() if n != "b"}
    conn.close()


def _lock_run(db: Path, **lock: Any) -> str:
    storage = SqliteStorage(db)
    storage.create_run(RunInfo("r1", "d", "running", 1.0), ["a"], {"a": []})
    storage.close()
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE runs SET lock_pid = :pid, lock_host = :host, lock_started = :started, lock_heartbeat = :heartbeat",
        lock,
    )
    conn.commit()
    conn.close()
    return "r1"


def test_lock_from_another_host_blocks_while_its_heartbeat_is_fresh(tmp_path: Path) -> None:
    import time

    db = tmp_path / "s.db"
    _lock_run(db, pid=4242, host="elsewhere-7", started=None, heartbeat=time.time())
    with pytest.raises(RunLockedError, match="process 4242 on elsewhere-7"):
        SqliteStorage(db).resume_run("r1")


def test_lock_from_another_host_with_a_stale_heartbeat_is_taken_over(tmp_path: Path) -> None:
    import time

    from dagexec_plugins.sqlite import LOCK_STALE_AFTER

    db = tmp_path / "s.db"
    _lock_run(db, pid=4242, host="elsewhere-7", started=None, heartbeat=time.time() - LOCK_STALE_AFTER - 1)
    storage = SqliteStorage(db)
    info, records, _ = storage.resume_run("r1")
    # taken over; task "a" never started, so resume leaves it out (the engine takes it as pending)
    assert info.run_id == "r1" and records == {}
    assert list(storage.load_records("r1")) == ["a"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_a_reused_pid_does_not_hold_the_lock(tmp_path: Path) -> None:
    import socket

    db = tmp_path / "s.db"
    # our parent is alive, but it is not the process that took the lock: its start time differs
    _lock_run(db, pid=os.getppid(), host=socket.gethostname(), started="1", heartbeat=None)
    SqliteStorage(db).resume_run("r1")
    _lock_run(tmp_path / "t.db", pid=os.getppid(), host=socket.gethostname(), started=None, heartbeat=None)
    with pytest.raises(RunLockedError, match=f"process {os.getppid()}"):
        SqliteStorage(tmp_path / "t.db").resume_run("r1")


def test_an_older_schema_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")  # a dagexec file at schema 0: no tables yet
    conn.commit()
    conn.close()
    assert run(simple_dag(), state=str(db)).ok
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations")] == list(range(1, SCHEMA_VERSION + 1))


def _schema_of(db: Path) -> dict[str, Any]:
    """What makes two state files the same format: their schema entries (SQL text included), version and identity."""
    conn = sqlite3.connect(db)
    try:
        return {
            "master": sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"), key=str),
            "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
            "application_id": conn.execute("PRAGMA application_id").fetchone()[0],
            "migrations": [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")],
        }
    finally:
        conn.close()


def test_a_new_file_has_the_schema_of_an_empty_file_migrated_step_by_step(tmp_path: Path) -> None:
    """A new file gets the schema as plain SQL (no sqlite-utils); it must be what the migrations would have made."""
    import sqlite_utils

    from dagexec_plugins.sqlite.migrations import MIGRATIONS

    (tmp_path / "flow.py").write_text(
        "from dagexec_core import Dag\n\ndag = Dag('small')\n\n\n@dag.task\ndef one():\n    return 1\n",
        encoding="utf-8",
    )
    dagexec = str(Path(sys.executable).with_name("dagexec"))
    proc = subprocess.run(
        [dagexec, "run", "flow.py", "--state", "new.db", "-q"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    migrated = tmp_path / "migrated.db"
    conn = sqlite3.connect(migrated, isolation_level=None)
    db = sqlite_utils.Database(conn)
    for v in range(1, SCHEMA_VERSION + 1):
        MIGRATIONS[v](db)
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0.0)", (v,))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()
    created = _schema_of(tmp_path / "new.db")
    assert created == _schema_of(migrated)
    assert created["user_version"] == SCHEMA_VERSION and created["application_id"] == APPLICATION_ID
    assert {"runs", "transitions", "run_fingerprints", "task_records"} <= {row[1] for row in created["master"]}


def _version_1_file(db: Path) -> None:
    """A state file as schema 1 wrote it: run r1 of simple_dag crashed with extract completed."""
    import sqlite_utils

    from dagexec_plugins.sqlite.migrations import _migrate_to_1

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    _migrate_to_1(sqlite_utils.Database(conn))
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    conn.execute("INSERT INTO schema_migrations VALUES (1, 0.0)")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (run_id, dag_name, status, started_at, task_count) VALUES ('r0', 'etl', 'completed', 0.5, 0)"
    )
    conn.execute(
        "INSERT INTO runs (run_id, dag_name, status, started_at, task_count) VALUES ('r1', 'etl', 'running', 1.0, 3)"
    )
    deps = {"extract": [], "transform": ["extract"], "load": ["transform"]}
    for k, name in enumerate(deps):
        conn.execute(
            "INSERT INTO tasks (run_id, name, seq, state, attempts, deps) VALUES ('r1', ?, ?, 'pending', 0, ?)",
            (name, k, json.dumps(deps[name])),
        )
    conn.execute(
        "UPDATE tasks SET state = 'completed', attempts = 1, started_at = 1.0, finished_at = 2.0, output = '[1,2,3]' "
        "WHERE name = 'extract'"
    )
    for task, state, at in [("extract", "running", 1.0), ("extract", "completed", 2.0)]:
        conn.execute(
            "INSERT INTO transitions (run_id, task, state, attempts, at) VALUES ('r1', ?, ?, 1, ?)", (task, state, at)
        )
    conn.close()


def test_a_version_1_file_is_migrated_with_its_runs_log_and_dependencies(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _version_1_file(db)
    changed = Dag("etl")
    changed.add("seed", lambda: 0)
    changed.add("extract", lambda seed: [1], deps=["seed"])  # a completed task's dependencies changed
    with pytest.raises(DagChangedError, match="'extract' changed from \\[\\] to \\['seed'\\]"):
        run(changed, state=str(db), resume="r1")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations")] == list(range(1, SCHEMA_VERSION + 1))
    conn.close()
    calls: list[str] = []
    again = run(simple_dag(calls), state=str(db), resume="r1")
    assert again.ok and calls == ["transform", "load"] and again.outputs["load"] == 12
    log = [(e["task"], e["state"]) for e in SqliteStorage(db).transitions("r1")]
    assert log[:3] == [("extract", "running"), ("extract", "completed"), ("transform", "running")]
    assert [e["at"] for e in SqliteStorage(db).transitions("r1")][:2] == [1.0, 2.0]
    assert log[-1] == ("load", "completed") and SqliteStorage(db).transitions("r0") == []
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_corruption_found_inside_a_state_file_stops_all_writes_to_it(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    dag = Dag("wide")
    for k in range(300):
        dag.add(f"t{k}", lambda: "x" * 200)
    first = run(dag, state=str(db))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'transitions'").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    # the root page of the log (where the records are) becomes garbage; the runs table stays readable and writable
    data[(root - 1) * page : (root - 1) * page + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))
    before = sha(db)
    with pytest.raises(StateFileError, match="malformed|corrupt"):
        run(dag, state=str(db), resume=first.run_id)
    assert sha(db) == before


PARALLEL_DAG = textwrap.dedent(
    """
    import os, sys
    from dagexec_core import Dag, run

    dag = Dag(sys.argv[1])
    for k in range(300):
        dag.add(f"t{k}", lambda k=k: k, deps=[f"t{k - 1}"] if k % 10 else [])

    if __name__ == "__main__":
        sys.exit(0 if run(dag, state=os.environ["STATE"], concurrency=4).ok else 1)
    """
)


def test_two_processes_running_different_runs_share_one_state_file(tmp_path: Path) -> None:
    path = tmp_path / "parallel_dag.py"
    path.write_text(PARALLEL_DAG)
    db = tmp_path / "s.db"
    # both create the file at once: one creates the schema, the other waits for it
    children = [
        subprocess.Popen([sys.executable, str(path), name], env=child_env(STATE=str(db)), stderr=subprocess.PIPE)
        for name in ("left", "right")
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    runs = SqliteStorage(db).list_runs()
    assert sorted((r.dag_name, r.status, dict(r.counts)) for r in runs) == [
        ("left", "completed", {"completed": 300}),
        ("right", "completed", {"completed": 300}),
    ]
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_held_run_keeps_its_heartbeat_fresh_while_no_step_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import dagexec_plugins.sqlite.lock as sqlite_lock

    monkeypatch.setattr(sqlite_lock, "HEARTBEAT_EVERY", 0.01)
    db = tmp_path / "s.db"
    storage = SqliteStorage(db)
    storage.create_run(RunInfo("r1", "d", "running", 1.0), ["a"], {"a": []})
    reader = sqlite3.connect(db)
    first = reader.execute("SELECT lock_heartbeat FROM runs").fetchone()[0]
    deadline = time.monotonic() + 30
    while reader.execute("SELECT lock_heartbeat FROM runs").fetchone()[0] == first:
        assert time.monotonic() < deadline, "the heartbeat never moved"
        time.sleep(0.01)
    storage.finish_run("r1", "completed", 2.0, {"completed": 1})
    assert reader.execute("SELECT lock_pid, lock_heartbeat FROM runs").fetchone() == (None, None)
    storage.close()


def test_add_tasks_records_only_names_the_run_does_not_have(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    storage = SqliteStorage(db)
    storage.create_run(RunInfo("r1", "d", "running", 1.0), ["a", "b"], {"a": [], "b": ["a"]})
    storage.add_tasks("r1", ["b", "c"], {"b": ["x"], "c": ["b"]})
    storage.add_tasks("r1", ["a"], {"a": ["y"]})
    storage.close()
    other = SqliteStorage(db)  # knows the run only from the file
    other.add_tasks("r1", ["c", "d"], {"c": [], "d": []})
    assert other.get_run("r1").task_count == 4
    assert list(other.load_records("r1")) == ["a", "b", "c", "d"]
    conn = sqlite3.connect(db)
    parts = [
        json.loads(d) for (d,) in conn.execute("SELECT deps FROM run_fingerprints WHERE run_id = 'r1' ORDER BY part")
    ]
    assert parts == [{"a": [], "b": ["a"]}, {"c": ["b"]}, {"d": []}]  # "b" keeps its first dependencies
    conn.close()
