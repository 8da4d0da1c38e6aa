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
