"""Trace ids stored with every record and with the run: SQLite and memory storage, resume, CLI, migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dagexec_core import Dag, run
from dagexec_core.cli import main
from dagexec_plugins.sqlite import APPLICATION_ID, SCHEMA_VERSION, SqliteStorage

pytestmark = pytest.mark.usefixtures("restore_global_tracer_provider")


def run_trace(exporter: InMemorySpanExporter, dag_name: str) -> str:
    """The trace id (32 hex digits) of the one ``RUN <dag>`` span exported since the last clear."""
    roots = [s for s in exporter.get_finished_spans() if s.name == f"RUN {dag_name}"]
    assert len(roots) == 1
    return format(roots[0].context.trace_id, "032x")


def etl_dag(broken: dict[str, bool]) -> Dag:
    dag = Dag("etl")

    @dag.task
    def extract() -> list[int]:
        return [1, 2, 3]

    @dag.task(deps=["extract"])
    def transform(extract: list[int]) -> list[int]:
        if broken["flag"]:
            raise RuntimeError("upstream down")
        return [x * 2 for x in extract]

    @dag.task(deps=["transform"])
    def load(transform: list[int]) -> int:
        return sum(transform)

    @dag.task
    def side() -> str:
        return "ok"

    return dag


def cli_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_traced_run_stores_its_trace_id_with_every_record_and_with_the_run(
    tmp_path: Path, spans: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    provider, exporter = spans
    db = tmp_path / "state.db"
    report = run(etl_dag({"flag": False}), state=str(db), tracer_provider=provider)
    assert report.ok
    trace_id = run_trace(exporter, "etl")
    assert {n: r.trace_id for n, r in report.records.items()} == dict.fromkeys(report.records, trace_id)
    stored = SqliteStorage(db).load_records(report.run_id)
    assert {n: r.trace_id for n, r in stored.items()} == dict.fromkeys(
        ["extract", "transform", "load", "side"], trace_id
    )
    shown = cli_json(capsys, ["show", report.run_id, "--state", str(db), "--json"])
    assert shown["trace_id"] == trace_id
    assert {t["name"]: t["trace_id"] for t in shown["tasks"]} == dict.fromkeys(stored, trace_id)
    runs = cli_json(capsys, ["runs", "--state", str(db), "--json"])
    assert [(r["run_id"], r["trace_id"]) for r in runs] == [(report.run_id, trace_id)]
    assert main(["show", report.run_id, "--state", str(db)]) == 0
    assert f"trace id: {trace_id}" in capsys.readouterr().out


def test_a_failed_traced_run_stores_the_trace_id_on_failed_skipped_and_dead_lettered_records(
    tmp_path: Path, spans: Any
) -> None:
    provider, exporter = spans
    db = tmp_path / "state.db"
    report = run(etl_dag({"flag": True}), state=str(db), tracer_provider=provider)
    assert not report.ok
    trace_id = run_trace(exporter, "etl")
    stored = SqliteStorage(db).load_records(report.run_id)
    assert stored["transform"].state.value == "dead_lettered" and stored["load"].state.value == "skipped"
    assert {r.trace_id for r in stored.values()} == {trace_id}
    assert {r.trace_id for r in report.records.values()} == {trace_id}


def test_a_traced_resume_stamps_the_tasks_it_runs_with_its_own_trace_and_keeps_the_others(
    tmp_path: Path, spans: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    provider, exporter = spans
    db = tmp_path / "state.db"
    broken = {"flag": True}
    first = run(etl_dag(broken), state=str(db), tracer_provider=provider)
    assert not first.ok
    first_trace = run_trace(exporter, "etl")
    exporter.clear()
    broken["flag"] = False
    second = run(etl_dag(broken), state=str(db), resume=first.run_id, replay=["transform"], tracer_provider=provider)
    assert second.ok
    second_trace = run_trace(exporter, "etl")
    assert second_trace != first_trace
    expected = {"extract": first_trace, "side": first_trace, "transform": second_trace, "load": second_trace}
    assert {n: r.trace_id for n, r in second.records.items()} == expected
    assert {n: r.trace_id for n, r in SqliteStorage(db).load_records(first.run_id).items()} == expected
    shown = cli_json(capsys, ["show", first.run_id, "--state", str(db), "--json"])
    assert {t["name"]: t["trace_id"] for t in shown["tasks"]} == expected
    assert shown["trace_id"] == first_trace  # the run keeps the trace it started in; the resume links to it
    runs = cli_json(capsys, ["runs", "--state", str(db), "--json"])
    assert runs[0]["trace_id"] == first_trace
    assert main(["show", first.run_id, "--state", str(db)]) == 0
    assert f"resumed in trace(s): {second_trace}" in capsys.readouterr().out


def test_an_untraced_run_stores_null_trace_ids_and_an_untraced_resume_clears_the_ones_it_rewrites(
    tmp_path: Path, spans: Any
) -> None:
    db = tmp_path / "state.db"
    broken = {"flag": True}
    untraced = run(etl_dag(broken), state=str(db))
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT count(*), count(trace_id) FROM task_records WHERE run_id = ?", (untraced.run_id,)
    ).fetchone() == (4, 0)
    assert conn.execute("SELECT trace_id FROM runs WHERE run_id = ?", (untraced.run_id,)).fetchone() == (None,)
    conn.close()
    assert {r.trace_id for r in untraced.records.values()} == {None}

    provider, exporter = spans
    traced = run(etl_dag(broken), state=str(db), tracer_provider=provider)
    trace_id = run_trace(exporter, "etl")
    broken["flag"] = False
    resumed = run(etl_dag(broken), state=str(db), resume=traced.run_id, replay=["transform"])
    assert resumed.ok
    expected = {"extract": trace_id, "side": trace_id, "transform": None, "load": None}
    assert {n: r.trace_id for n, r in resumed.records.items()} == expected
    assert {n: r.trace_id for n, r in SqliteStorage(db).load_records(traced.run_id).items()} == expected
    assert SqliteStorage(db).get_run(traced.run_id).trace_id == trace_id


def test_memory_storage_keeps_the_trace_ids_too(spans: Any) -> None:
    provider, exporter = spans
    report = run(etl_dag({"flag": False}), persist=False, tracer_provider=provider)
    trace_id = run_trace(exporter, "etl")
    assert {r.trace_id for r in report.records.values()} == {trace_id}


def _version_2_file(db: Path) -> None:
    """A state file as schema 2 wrote it: run r1 of etl crashed with extract completed."""
    import sqlite_utils

    from dagexec_core.stages import fingerprint_digest, fingerprint_text
    from dagexec_plugins.sqlite.migrations import _migrate_to_1, _migrate_to_2

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    db_ = sqlite_utils.Database(conn)
    _migrate_to_1(db_)
    _migrate_to_2(db_)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    conn.executemany("INSERT INTO schema_migrations VALUES (?, 0.0)", [(1,), (2,)])
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    deps = {"extract": [], "transform": ["extract"], "load": ["transform"], "side": []}
    text = fingerprint_text(deps)
    conn.execute(
        "INSERT INTO runs (run_id, dag_name, status, started_at, task_count, num, dag_digest) "
        "VALUES ('r1', 'etl', 'running', 1.0, 4, 1, ?)",
        (fingerprint_digest(text=text),),
    )
    conn.execute("INSERT INTO run_fingerprints (run_id, part, deps) VALUES ('r1', 0, ?)", (text,))
    for k, name in enumerate(deps):
        conn.execute(
            "INSERT INTO tasks (run_id, name, seq, state, attempts) VALUES ('r1', ?, ?, 'pending', 0)", (name, k)
        )
    conn.execute(
        "UPDATE tasks SET state = 'completed', attempts = 1, started_at = 1.0, finished_at = 2.0, output = '[1,2,3]' "
        "WHERE name = 'extract'"
    )
    conn.close()


def test_a_version_2_file_gains_the_trace_id_column_and_resumes(tmp_path: Path, spans: Any) -> None:
    db = tmp_path / "s.db"
    _version_2_file(db)
    stored = SqliteStorage(db).load_records("r1")  # opening migrates
    assert stored["extract"].output == [1, 2, 3] and {r.trace_id for r in stored.values()} == {None}
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations")] == list(range(1, SCHEMA_VERSION + 1))
    assert "trace_id" in [r[1] for r in conn.execute("PRAGMA table_info(tasks)")]
    conn.close()
    provider, exporter = spans
    resumed = run(etl_dag({"flag": False}), state=str(db), resume="r1", tracer_provider=provider)
    assert resumed.ok and resumed.outputs["load"] == 12
    trace_id = run_trace(exporter, "etl")
    records = SqliteStorage(db).load_records("r1")
    assert {n: r.trace_id for n, r in records.items()} == {
        "extract": None,
        "transform": trace_id,
        "load": trace_id,
        "side": trace_id,
    }
    assert SqliteStorage(db).get_run("r1").trace_id == trace_id  # first traced invocation of the run
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
