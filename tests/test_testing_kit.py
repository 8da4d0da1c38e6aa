"""The testing kit as users meet it: a DAG file in its own folder, its tests run by pytest with the plugin."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

FLOW = """
from dagexec_core import Dag, RetryPolicy

from helpers import double

dag = Dag("etl")
attempts = {"flaky": 0}


@dag.task
def extract():
    return (1, 2, 3)


@dag.task(deps=["extract"])
def transform(extract):
    return double(extract)


@dag.task(deps=["transform"])
async def load(transform, ctx):
    ctx.log.info("loading %d rows", len(transform))
    ctx.state = {"loaded": (ctx.state or {}).get("loaded", 0) + len(transform)}
    ctx.emit("loaded", len(transform))
    return {"rows": len(transform)}


@dag.task(retry=RetryPolicy(max_attempts=4, backoff="exponential", base=0.5))
def flaky():
    attempts["flaky"] += 1
    raise ConnectionError("the service is down")
"""

HELPERS = """
def double(rows):
    return [r * 2 for r in rows]
"""


def write_project(pytester: pytest.Pytester, tests: str) -> None:
    pytester.makepyfile(flow=FLOW, helpers=HELPERS)
    pytester.makepyfile(test_flow=textwrap.dedent(tests))


def test_dagexec_run_and_the_clock_in_a_users_test_file(pytester: pytest.Pytester) -> None:
    write_project(
        pytester,
        """
        import json
        import sqlite3

        from dagexec_core import TaskState
        from flow import attempts, dag


        def test_a_failure_is_retried_with_backoff_then_dead_lettered(dagexec_run, dagexec_clock):
            report = dagexec_run(dag)
            assert report.outputs["transform"] == [2, 4, 6]
            assert report.outputs["load"] == {"rows": 3}
            rec = report.records["flaky"]
            assert rec.state is TaskState.DEAD_LETTERED and rec.attempts == 4 and attempts["flaky"] == 4
            assert dagexec_clock.jumps == [0.5, 1.0, 2.0]  # waited on the virtual clock, not the real one


        def test_each_run_has_its_own_state_file_under_tmp_path(dagexec_run, dagexec_clock, tmp_path):
            first, second = dagexec_run(dag), dagexec_run(dag)
            files = sorted(p.name for p in (tmp_path / "dagexec").iterdir() if p.suffix == ".db")
            assert files == ["state-1.db", "state-2.db"]
            stored = sqlite3.connect(tmp_path / "dagexec" / "state-1.db").execute(
                "SELECT output FROM transitions WHERE task = 'transform' AND state = 'completed'"
            ).fetchone()[0]
            assert json.loads(stored) == [2, 4, 6] and first.run_id != second.run_id
        """,
    )
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=2)


def test_dagexec_run_fails_where_production_fails(pytester: pytest.Pytester) -> None:
    """An output JSON cannot hold fails the task in the fixture's run, as it does in a real one."""
    pytester.makepyfile(
        flow_sets="""
        from dagexec_core import Dag

        dag = Dag("sets")


        @dag.task
        def make():
            return {1, 2}
        """,
        test_sets="""
        from flow_sets import dag


        def test_output_is_checked(dagexec_run):
            report = dagexec_run(dag)
            assert report.failed == ["make"]
            assert "output is a builtins.set" in report.records["make"].error
        """,
    )
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=1)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    write_project(
        pytester,
        """
        def test_uses_it(dagexec_run):
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:dagexec")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'dagexec_run' not found*"])
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=1)


def test_call_task_with_upstream_outputs_and_a_context(pytester: pytest.Pytester) -> None:
    write_project(
        pytester,
        """
        import logging

        import pytest

        from dagexec_core import Dag
        from dagexec_core.errors import UsageError
        from dagexec_core.testing import call_task, task_context
        from flow import dag

        daily = Dag("daily")


        @daily.task
        def report_day(ctx):
            return ctx.params["day"]


        def test_sync_body_gets_the_json_round_trip_of_its_upstream():
            assert call_task(dag, "transform", extract=(1, 2)) == [2, 4]


        def test_async_body_with_a_context(caplog):
            caplog.set_level(logging.INFO, logger="dagexec.task.load")
            ctx = task_context(dag, "load", params={"day": "2024-01-01"}, state={"loaded": 10})
            out = call_task(dag, "load", ctx, transform=[2, 4])
            assert out == {"rows": 2}
            assert ctx.state == {"loaded": 12}
            assert ctx.run.emitted == [("loaded", 2)]
            assert "loading 2 rows" in caplog.text


        def test_params_are_a_read_only_mapping():
            ctx = task_context(daily, "report_day", params={"day": "2024-01-01"})
            assert call_task(daily, "report_day", ctx) == "2024-01-01"
            assert dict(task_context(daily, "report_day").params) == {}
            with pytest.raises(TypeError):
                ctx.params["day"] = "changed"


        def test_mistakes_are_named():
            with pytest.raises(UsageError, match="takes the output of 'extract'"):
                call_task(dag, "transform")
            with pytest.raises(UsageError, match="did you mean 'transform'"):
                call_task(dag, "transfrom", extract=[1])
            with pytest.raises(UsageError, match="does not depend on 'load'"):
                call_task(dag, "transform", extract=[1], load=2)
        """,
    )
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=4)


def test_a_breaker_cooldown_passes_on_the_virtual_clock(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        flow_breaker="""
        from dagexec_core import Dag, RetryPolicy

        dag = Dag("svc")
        calls = []


        @dag.task(breaker="api", retry=RetryPolicy(max_attempts=3, backoff="fixed", base=1))
        def call_api():
            calls.append(len(calls))
            if len(calls) == 1:
                raise ConnectionError("down")
            return "ok"
        """,
        test_breaker="""
        from flow_breaker import calls, dag


        def test_probe_after_cooldown(dagexec_run, dagexec_clock):
            breakers = {"api": {"failure_threshold": 1, "cooldown": 120}}
            report = dagexec_run(dag, breakers=breakers)
            assert report.ok and report.records["call_api"].attempts == 2 and len(calls) == 2
            assert dagexec_clock.now >= 120  # the cooldown passed on the virtual clock
        """,
    )
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=1)


def test_a_third_party_plugin_proves_its_executor_with_the_contract(pytester: pytest.Pytester) -> None:
    """tests/plugin_dist's own tests, run from a folder of their own as its author runs them."""
    import shutil

    source = Path(__file__).parent / "plugin_dist" / "tests" / "test_counting_executor_contract.py"
    shutil.copy(source, pytester.path / source.name)
    result = pytester.runpytest_subprocess("-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 14 and "failed" not in outcomes, outcomes


def test_a_running_body_can_advance_the_clock_and_a_due_retry_fires(tmp_path: Path) -> None:
    """Without autojump, time moves only when told: here by a body standing for a slow service."""
    import threading

    from dagexec_core import Dag, RetryPolicy, run
    from dagexec_core.testing import VirtualClock

    clock = VirtualClock(autojump=False)
    retried = threading.Event()
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("down")
        retried.set()
        return "ok"

    def slow() -> bool:
        deadline = time.monotonic() + 30
        while clock.pending == 0:  # the engine has set the retry's timer
            assert time.monotonic() < deadline, "the retry timer was never set"
            time.sleep(0.005)
        clock.advance(10)
        return retried.wait(30)

    dag = Dag("advance")
    dag.add("flaky", flaky, retry=RetryPolicy(max_attempts=2, backoff="fixed", base=10))
    dag.add("slow", slow)
    report = run(dag, state=str(tmp_path / "state.db"), clock=clock, signals=False)
    assert report.ok and report.outputs == {"flaky": "ok", "slow": True}
    assert clock.now == 10 and clock.jumps == []


def test_a_clock_option_that_is_not_a_clock_is_refused(tmp_path: Path) -> None:
    from dagexec_core import Dag, run
    from dagexec_core.errors import UsageError

    dag = Dag("x")
    dag.add("a", lambda: 1)
    with pytest.raises(UsageError, match="option clock must be a clock"):
        run(dag, state=str(tmp_path / "state.db"), clock="fast", signals=False)


def test_call_task_runs_one_element_of_a_map_and_checks_its_output() -> None:
    from dagexec_core import Dag, OutputSerializationError
    from dagexec_core.testing import call_task

    dag = Dag("mapped")
    dag.add("numbers", lambda: [1, 2, 3])
    dag.map(lambda item, index: {"square": item * item, "at": index}, over="numbers", name="square")
    dag.add("as_set", lambda numbers: set(numbers), deps=["numbers"])
    assert call_task(dag, "square", item=3, index=2) == {"square": 9, "at": 2}
    with pytest.raises(
        OutputSerializationError, match="'as_set' returned an output JSON cannot hold: output is a builtins.set"
    ):
        call_task(dag, "as_set", numbers=[1, 2])
