"""`dagexec resume`, `runs`, `show` and `dlq` against real state files."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from dagexec_core.cli import main

ETL = """
    import os
    from pathlib import Path
    from dagexec_core import Dag

    HERE = Path(__file__).parent
    dag = Dag("etl")

    def log(name):
        with open(HERE / "calls.log", "a") as f:
            f.write(name + "\\n")

    @dag.task
    def extract():
        log("extract")
        return [1, 2, 3]

    @dag.task(deps=["extract"])
    def transform(extract):
        log("transform")
        if (HERE / "broken").exists():
            raise RuntimeError("upstream down")
        return [x * 2 for x in extract]

    @dag.task(deps=["transform"])
    def load(transform):
        log("load")
        return sum(transform)

    @dag.task
    def side():
        log("side")
        return "ok"
"""


@pytest.fixture
def etl(tmp_path: Path) -> Path:
    path = tmp_path / "etl.py"
    path.write_text(textwrap.dedent(ETL))
    return path


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().split() if log.exists() else []


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> dict:  # type: ignore[type-arg]
    assert main(argv) == code
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def failed_run(etl: Path, capsys: pytest.CaptureFixture[str]) -> str:
    (etl.parent / "broken").touch()
    out = run_json(capsys, ["run", str(etl), "--json"], 1)
    (etl.parent / "broken").unlink()
    return str(out["run_id"])


def test_runs_lists_recent_runs_with_counts(etl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = failed_run(etl, capsys)
    ok = run_json(capsys, ["run", str(etl), "--json"], 0)["run_id"]
    runs = run_json(capsys, ["runs", "--json"], 0)
    assert [r["run_id"] for r in runs] == [ok, run_id]
    assert runs[1]["status"] == "failed" and runs[1]["dag"] == "etl"
    assert runs[1]["counts"] == {"completed": 2, "dead_lettered": 1, "skipped": 1}
    assert runs[0]["counts"] == {"completed": 4} and runs[0]["duration"] >= 0
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["RUN", "DAG", "STATUS", "STARTED", "DURATION", "TASKS"]
    assert run_id in table and "1 dead_lettered" in table


def test_show_lists_every_task_with_state_attempts_duration_error(
    etl: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = failed_run(etl, capsys)
    shown = run_json(capsys, ["show", run_id, "--json"], 0)
    tasks = {t["name"]: t for t in shown["tasks"]}
    assert shown["run_id"] == run_id and shown["status"] == "failed"
    assert tasks["transform"]["state"] == "dead_lettered" and tasks["transform"]["attempts"] == 1
    assert tasks["transform"]["error"] == "RuntimeError: upstream down"
    assert tasks["load"]["state"] == "skipped" and tasks["extract"]["duration"] >= 0
    assert main(["show", run_id]) == 0
    text = capsys.readouterr().out
    assert "RuntimeError: upstream down" in text and "dead_lettered" in text
    log = run_json(capsys, ["show", run_id, "--timeline", "--json"], 0)["transitions"]
    assert [(t["task"], t["state"]) for t in log if t["task"] == "transform"] == [
        ("transform", "running"),
        ("transform", "failed"),
        ("transform", "dead_lettered"),
    ]
    assert main(["show", run_id, "--timeline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["AT", "TASK", "STATE", "ATTEMPT", "ERROR"] and lines[1].startswith("+")


def test_show_unknown_run_and_missing_state_file_are_clear(
    etl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs"]) == 2  # not found: exit 2, as for any named thing that is not there
    assert "no dagexec state file at" in capsys.readouterr().err
    assert not (tmp_path / ".dagexec").exists()  # reading never creates a state file
    failed_run(etl, capsys)
    assert main(["show", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_resume_by_run_id_alone_uses_the_remembered_dag_file(
    etl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = failed_run(etl, capsys)
    before = calls(tmp_path)
    # plain resume: the dead-lettered task stays failed, nothing completed reruns
    out = run_json(capsys, ["resume", run_id, "--json"], 1)
    assert out["run_id"] == run_id and calls(tmp_path) == before
    out = run_json(capsys, ["resume", run_id, "--replay", "transform", "--json"], 0)
    assert out["ok"] and out["counts"] == {"completed": 4}
    assert calls(tmp_path)[len(before) :] == ["transform", "load"]


def test_run_with_resume_flag_and_explicit_file(etl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = failed_run(etl, capsys)
    assert run_json(capsys, ["run", str(etl), "--resume", run_id, "--json"], 1)["run_id"] == run_id
    assert run_json(capsys, ["resume", run_id, f"{etl}:etl", "--json"], 1)["run_id"] == run_id


def test_state_and_durability_flags(etl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "elsewhere" / "s.db"
    out = run_json(capsys, ["run", str(etl), "--state", str(db), "--durability", "durable", "--json"], 0)
    assert db.is_file() and not (tmp_path / ".dagexec").exists()
    assert [r["run_id"] for r in run_json(capsys, ["runs", "--state", str(db), "--json"], 0)] == [out["run_id"]]
    resumed = run_json(capsys, ["resume", out["run_id"], "--state", str(db), "--durability", "fast", "--json"], 0)
    assert resumed["run_id"] == out["run_id"]
    with pytest.raises(SystemExit):
        main(["run", str(etl), "--durability", "sloppy"])
    assert "invalid choice: 'sloppy'" in capsys.readouterr().err


def test_no_persist_writes_nothing(etl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_json(capsys, ["run", str(etl), "--no-persist", "--json"], 0)
    assert not (tmp_path / ".dagexec").exists()


def test_resume_of_a_locked_run_names_the_holder(etl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = failed_run(etl, capsys)
    db = tmp_path / ".dagexec" / "state.db"
    conn = sqlite3.connect(db)
    # pid 1 is alive on every Linux host: a live holder on this host
    import socket

    conn.execute(
        "UPDATE runs SET lock_pid = 1, lock_host = ?, lock_started = NULL WHERE run_id = ?",
        (socket.gethostname(), run_id),
    )
    conn.commit()
    conn.close()
    assert main(["resume", run_id]) == 1
    assert f"run {run_id} is being driven by process 1 on" in capsys.readouterr().err


def test_dlq_list_show_replay_purge(etl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = failed_run(etl, capsys)
    entries = run_json(capsys, ["dlq", "list", "--json"], 0)
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["run_id"], entry["task"], entry["attempts"]) == (run_id, "transform", 1)
    assert entry["error_type"] == "builtins.RuntimeError" and entry["message"] == "upstream down"
    assert "Traceback" in entry["traceback"] and entry["created_at"] > 0

    assert main(["dlq", "show", entry["id"]]) == 0
    shown = capsys.readouterr().out
    assert "builtins.RuntimeError: upstream down" in shown and "raise RuntimeError" in shown

    # still broken: the replay fails again, a fresh entry replaces the old one
    (etl.parent / "broken").touch()
    assert main(["dlq", "replay", entry["id"], "-q"]) == 1
    capsys.readouterr()
    again = run_json(capsys, ["dlq", "list", "--json"], 0)
    assert len(again) == 1 and again[0]["id"] != entry["id"]

    (etl.parent / "broken").unlink()
    before = calls(tmp_path)
    assert main(["dlq", "replay", again[0]["id"]]) == 0
    assert f"replayed transform in run {run_id}: 1 of 1 completed" in capsys.readouterr().out
    # the dead-lettered task and the dependent skipped because of it; nothing completed ran again
    assert calls(tmp_path)[len(before) :] == ["transform", "load"]
    assert run_json(capsys, ["dlq", "list", "--json"], 0) == []
    shown_run = run_json(capsys, ["show", run_id, "--json"], 0)
    assert shown_run["status"] == "completed"

    failed_run(etl, capsys)
    failed_run(etl, capsys)
    assert len(run_json(capsys, ["dlq", "list", "--json"], 0)) == 2
    assert main(["dlq", "purge"]) == 2
    assert "give dead-letter IDs" in capsys.readouterr().err
    assert main(["dlq", "purge", "--all"]) == 0
    assert "purged 2 dead letter(s)" in capsys.readouterr().out
    assert main(["dlq", "show", entry["id"]]) == 2
    assert "dagexec dlq list" in capsys.readouterr().err
