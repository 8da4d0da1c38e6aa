"""docs/patterns.md and examples/patterns.py stay true: every example in them runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "patterns.md").read_text()


def _examples() -> list[tuple[str, str]]:
    found = []
    heading = "top"
    for part in re.split(r"^(## .*)$", DOC, flags=re.M):
        if part.startswith("## "):
            heading = part[3:].strip().lower().replace(" ", "-")
            continue
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", part, re.S)):
            found.append((f"{heading}-{i}", code))
    return found


EXAMPLES = _examples()


def test_every_pattern_section_has_a_runnable_example() -> None:
    sections = {name.rsplit("-", 1)[0] for name, _ in EXAMPLES}
    assert {
        "conditional",
        "loop",
        "event-driven",
        "stateful-tasks",
        "fan-out-/-fan-in",
        "pipeline",
        "dynamic-map",
    } <= sections


@pytest.mark.parametrize("code", [c for _, c in EXAMPLES], ids=[n for n, _ in EXAMPLES])
def test_docs_example_runs(code: str) -> None:
    exec(compile(code, "docs/patterns.md", "exec"), {"__name__": "docs_example"})


def test_examples_patterns_runs_with_the_cli() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagexec_core.cli",
            "run",
            str(ROOT / "examples" / "patterns.py"),
            "--no-persist",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    tasks = report["tasks"]
    assert tasks["ship_express"]["state"] == "skipped" and tasks["ship_standard"]["state"] == "completed"
    assert tasks["resize[2]"]["state"] == "completed" and tasks["stats_aggregate"]["state"] == "completed"
    assert report["counts"] == {"completed": len(tasks) - 1, "skipped": 1}
