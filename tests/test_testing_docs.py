"""docs/testing.md stays true: its files, written into a folder of their own, pass under pytest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def doc_files() -> dict[str, str]:
    files = {}
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S):
        first, _, body = block.partition("\n")
        match = re.fullmatch(r"# (\w+\.py)", first)
        assert match, f"docs/testing.md: a python example starts with '# FILE.py', not {first!r}"
        files[match.group(1)] = body
    return files


def test_the_examples_of_testing_md_pass_as_a_users_test_folder(pytester: pytest.Pytester) -> None:
    files = doc_files()
    assert {"flow.py", "helpers.py", "test_flow.py", "test_bodies.py", "test_breaker.py"} <= set(files)
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    result = pytester.runpytest_subprocess("-q")
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes, result.stdout.str()
    assert outcomes.get("passed", 0) >= 25, outcomes


def test_testing_md_is_linked_from_the_index_and_the_readme() -> None:
    root = DOC.parent.parent
    assert "(testing.md)" in (root / "docs" / "index.md").read_text()
    assert "(docs/testing.md)" in (root / "README.md").read_text().split("## Tour", 1)[1]
