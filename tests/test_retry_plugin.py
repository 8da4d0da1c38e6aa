"""The built-in retry stage: policy precedence, the run's retry budget, config and CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dagexec_core import Dag, PluginError, RetryPolicy, hookimpl, run
from dagexec_core.errors import UsageError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def always_fails(name: str, calls: dict[str, int]) -> Any:
    def fn() -> None:
        calls[name] = calls.get(name, 0) + 1
        raise ConnectionError(f"{name}: service down")

    return fn


class RetryRecorder:
    def __init__(self) -> None:
        self.delays: list[tuple[str, int, float]] = []

    @hookimpl
    def dagexec_task_retrying(self, task: Any, attempt: int, delay: float) -> None:
        self.delays.append((task.name, attempt, delay))


def test_task_retry_beats_tag_policy_beats_run_default() -> None:
    calls: dict[str, int] = {}
    dag = Dag("precedence")
    dag.add("own", always_fails("own", calls), retry=RetryPolicy(max_attempts=2, base=0), tags=["flaky"])
    dag.add("tagged", always_fails("tagged", calls), tags=["other", "flaky"])
    dag.add("plain", always_fails("plain", calls))
    dag.add("untagged_match", always_fails("untagged_match", calls), tags=["unrelated"])
    report = run(
        dag,
        persist=False,
        retry={"max_attempts": 3, "base": 0},
        retry_tags={"flaky": {"max_attempts": 4, "base": 0}, "other": 5},
    )
    # the first matching entry of retry_tags wins, in the table's order
    assert calls == {"own": 2, "tagged": 4, "plain": 3, "untagged_match": 3}
    assert report.records["tagged"].attempts == 4


def test_without_any_policy_a_task_is_not_retried() -> None:
    calls: dict[str, int] = {}
    dag = Dag("none")
    dag.add("once", always_fails("once", calls))
    report = run(dag, persist=False)
    assert calls == {"once": 1} and report.metrics["retries"] == 0


def test_retry_budget_running_out_stops_retries_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    calls: dict[str, int] = {}
    dag = Dag("outage")
    for name in ("a", "b", "c"):
        dag.add(name, always_fails(name, calls))
    caplog.set_level(logging.WARNING, logger="dagexec")
    report = run(dag, persist=False, concurrency=1, retry={"max_attempts": 10, "base": 0}, retry_budget=4)
    assert report.metrics["retries"] == 4
    assert sum(calls.values()) == 3 + 4  # each first attempt, plus the budget's 4 retries
    spent = [n for n, r in report.records.items() if "retry budget" in (r.error or "")]
    assert spent, report.records
    for name in spent:
        assert f"retry budget of run {report.run_id} (4 retries) is spent" in (report.records[name].error or "")
    warnings = [r.getMessage() for r in caplog.records if "retry budget" in r.getMessage()]
    assert any(f"task {spent[0]!r}" in w and "raise retry_budget" in w for w in warnings)


def test_retry_budget_zero_means_no_retries_at_all() -> None:
    calls: dict[str, int] = {}
    dag = Dag("zero")
    dag.add("a", always_fails("a", calls), retry=5)
    report = run(dag, persist=False, retry_budget=0)
    assert calls == {"a": 1} and report.metrics["retries"] == 0


def test_a_task_recovering_within_budget_completes() -> None:
    state = {"n": 0}

    def flaky() -> str:
        state["n"] += 1
        if state["n"] < 3:
            raise ConnectionError("not yet")
        return "ok"

    dag = Dag("recovers")
    dag.add("flaky", flaky, retry=RetryPolicy(max_attempts=5, base=0))
    report = run(dag, persist=False, retry_budget=2)
    assert report.ok and report.outputs["flaky"] == "ok" and report.records["flaky"].attempts == 3


def test_each_run_gets_its_own_budget() -> None:
    calls: dict[str, int] = {}
    dag = Dag("twice")
    dag.add("a", always_fails("a", calls), retry=RetryPolicy(max_attempts=3, base=0))
    for _ in range(2):
        report = run(dag, persist=False, retry_budget=2)
        assert report.metrics["retries"] == 2
    assert calls == {"a": 6}


def test_decorrelated_jitter_through_the_engine_uses_the_previous_delay() -> None:
    rec = RetryRecorder()
    dag = Dag("jitter")
    dag.add(
        "a",
        always_fails("a", {}),
        retry=RetryPolicy(max_attempts=6, base=0.001, max_delay=0.02, jitter="decorrelated"),
    )
    run(dag, persist=False, plugins=[rec])
    delays = [d for _, _, d in rec.delays]
    assert len(delays) == 5
    previous = 0.001
    for d in delays:
        assert 0.001 <= d <= min(0.02, previous * 3) + 1e-12
        previous = d


def test_retry_after_on_an_exception_sets_the_delay() -> None:
    class RateLimited(Exception):
        retry_after = 0.005

    state = {"n": 0}

    def limited() -> int:
        state["n"] += 1
        if state["n"] == 1:
            raise RateLimited("429")
        return 1

    rec = RetryRecorder()
    dag = Dag("ratelimit")
    dag.add("limited", limited, retry=RetryPolicy(max_attempts=2, base=30, jitter="full"))
    report = run(dag, persist=False, plugins=[rec])
    assert report.ok and rec.delays == [("limited", 1, 0.005)]


def test_a_plugin_policy_wins_over_the_builtin() -> None:
    class Never:
        @hookimpl
        def dagexec_retry_policy(self, task: Any) -> RetryPolicy:
            return RetryPolicy(max_attempts=1)

    calls: dict[str, int] = {}
    dag = Dag("override")
    dag.add("a", always_fails("a", calls), retry=5)
    run(dag, persist=False, plugins=[Never()])
    assert calls == {"a": 1}


def test_a_bad_retry_option_fails_before_the_run_naming_the_option() -> None:
    dag = Dag("bad")
    dag.add("a", lambda: 1)
    with pytest.raises(PluginError, match=r"option retry_tags\.slow: backoff='slowly'"):
        run(dag, persist=False, retry_tags={"slow": {"backoff": "slowly"}})
    with pytest.raises(PluginError, match="retry_budget = -1"):
        run(dag, persist=False, retry_budget=-1)
    assert issubclass(UsageError, Exception)


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pyproject_default_and_cli_budget(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent("""
        [tool.dagexec]
        retry = { max_attempts = 4, base = 0 }
    """)
    )
    (tmp_path / "flaky.py").write_text(
        textwrap.dedent("""
        from pathlib import Path
        from dagexec_core import Dag

        dag = Dag("flaky")

        @dag.task
        def down():
            log = Path("calls.txt")
            log.write_text(log.read_text() + "x" if log.exists() else "x")
            raise ConnectionError("down")
    """)
    )
    result = _cli(tmp_path, "run", "flaky.py", "--no-persist", "--json")
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "calls.txt").read_text() == "xxxx"  # the pyproject default: 4 attempts
    (tmp_path / "calls.txt").unlink()
    result = _cli(tmp_path, "run", "flaky.py", "--no-persist", "--json", "--retry", "2")
    assert (tmp_path / "calls.txt").read_text() == "xx"  # the flag beats pyproject.toml
    (tmp_path / "calls.txt").unlink()
    result = _cli(tmp_path, "run", "flaky.py", "--no-persist", "--json", "--retry-budget", "1")
    assert (tmp_path / "calls.txt").read_text() == "xx"
    report = json.loads(result.stdout)
    assert "retry budget" in report["tasks"]["down"]["error"]


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_a_resumed_run_goes_on_with_the_budget_it_had_spent(storage: str, tmp_path: Path) -> None:
    from dagexec_plugins.memory import MemoryStorage

    opts: dict[str, Any]
    if storage == "sqlite":
        pytest.importorskip("dagexec_plugins.sqlite", reason="the SQLite storage is not on this branch yet")
        opts = {"state": str(tmp_path / "state.db")}
    else:
        shared = MemoryStorage()

        class Shared:
            @hookimpl
            def dagexec_storage(self) -> MemoryStorage:
                return shared

        opts = {"plugins": [Shared()]}
    calls: dict[str, int] = {}
    dag = Dag("budget-resume")
    dag.add("a", always_fails("a", calls), retry=RetryPolicy(max_attempts=10, base=0))
    dag.add("b", always_fails("b", calls), retry=RetryPolicy(max_attempts=10, base=0))
    first = run(dag, concurrency=1, retry_budget=3, **opts)
    assert first.metrics["retries"] == 3
    second = run(dag, retry_budget=3, resume=first.run_id, replay=["a", "b"], **opts)
    assert second.metrics["retries"] == 0
    assert all("retry budget" in (r.error or "") for r in second.records.values())
    assert sum(calls.values()) == (2 + 3) + 2
