"""docs/reliability.md stays true: its Python examples run, in order, against a real state file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"


def test_python_examples_of_reliability_md_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {"__name__": "reliability_doc"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert (tmp_path / "state" / "etl.db").is_file()
    assert (tmp_path / "notes.db").read_text() == "not a database"


def test_documented_cli_commands_exist() -> None:
    from dagexec_core.cli import build_parser

    parser = build_parser(None)
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = set(sub.choices)  # type: ignore[arg-type]
    for line in re.findall(r"^\$ dagexec (\w+)", DOC.read_text(), re.M):
        assert line in commands, f"docs/reliability.md shows `dagexec {line}`, which does not exist"


def test_documented_task_records_query_reads_a_real_state_file(tmp_path: Path) -> None:
    import sqlite3

    from dagexec_core import Dag, run

    (sql,) = re.findall(r'^\$ sqlite3 \S+ "(SELECT .*? FROM task_records .*?)"$', DOC.read_text(), re.M)
    dag = Dag("doc")
    dag.add("a", lambda: 1)
    dag.add("b", lambda a: a + 1, deps=["a"])
    dag.add("c", lambda b: 1 / 0, deps=["b"])
    report = run(dag, state=str(tmp_path / "state.db"))
    conn = sqlite3.connect(tmp_path / "state.db")
    rows = conn.execute(re.sub(r"run_id = '[^']*'", f"run_id = '{report.run_id}'", sql)).fetchall()
    assert sorted(rows) == [("a", "completed", 1), ("b", "completed", 1), ("c", "dead_lettered", 1)]
