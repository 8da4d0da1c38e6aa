"""The counting executor keeps the executor contract (dagexec's testing kit), and counts what it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagexec_counting import CountingExecutor

from dagexec_core import Dag
from dagexec_core.testing import ExecutorContract


class TestCountingExecutor(ExecutorContract):
    @pytest.fixture
    def executor(self) -> CountingExecutor:
        return CountingExecutor(None)


def test_counts_every_body_it_runs(dagexec_run, tmp_path: Path) -> None:
    dag = Dag("counted")
    dag.add("a", lambda: 1)
    dag.add("b", lambda a: a + 1, deps=["a"])
    log = tmp_path / "bodies.log"
    report = dagexec_run(dag, executor="counting", counting_log=str(log))
    assert report.outputs == {"a": 1, "b": 2}
    assert log.read_text().split() == ["a", "b"]
