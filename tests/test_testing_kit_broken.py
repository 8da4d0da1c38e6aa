"""A deliberately broken stage fails its contract, and the failure names the promise it broke."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def run_contract(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_broken_stage=source)
    return pytester.runpytest_subprocess("-q", "-p", "no:randomly", *args)


def test_a_storage_that_keeps_the_first_row_fails_on_write_order(pytester: pytest.Pytester) -> None:
    result = run_contract(
        pytester,
        """
        import pytest

        from dagexec_core.state import TaskRecord, TaskState
        from dagexec_core.testing import StorageContract
        from dagexec_plugins.memory import MemoryStorage


        class FirstRowWins(MemoryStorage):
            def write(self, run_id, rows):
                recs = self.records[run_id]
                for name, state, attempts, started, finished, _out, error, trace in rows:
                    if name not in recs:  # broken: later rows of a task are dropped
                        recs[name] = TaskRecord(name, TaskState(state), attempts, error, started, finished)


        class TestFirstRowWins(StorageContract):
            persistent = False

            @pytest.fixture
            def storage(self):
                return FirstRowWins()
        """,
        "-k",
        "write_order",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*StorageContract: broken promise: a task's record is the last row written for it (rows apply in order)*"]
    )


def test_a_persistent_storage_that_forgets_meta_fails(pytester: pytest.Pytester) -> None:
    result = run_contract(
        pytester,
        """
        import pytest

        from dagexec_core.testing import StorageContract
        from dagexec_plugins.sqlite import SqliteStorage


        class Forgetful(SqliteStorage):
            def put_meta(self, run_id, key, value):
                pass  # broken: a resumed run loses its breaker state and retry budget


        class TestForgetful(StorageContract):
            @pytest.fixture
            def storage(self, tmp_path):
                return Forgetful(tmp_path / "state.db")

            def reopen(self, storage):
                return Forgetful(storage.path)
        """,
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1 and outcomes.get("passed", 0) >= 10, outcomes
    result.stdout.fnmatch_lines(
        ["*StorageContract: broken promise: put_meta keeps a JSON value per run and key; the last put wins*"]
    )


def test_an_executor_that_swallows_errors_fails(pytester: pytest.Pytester) -> None:
    result = run_contract(
        pytester,
        """
        import pytest

        from dagexec_core.testing import ExecutorContract
        from dagexec_plugins.local import LocalExecutor


        class Swallowing(LocalExecutor):
            def submit(self, task, kwargs, timeout, context=None):
                fn = task.fn

                def safe(**kw):
                    try:
                        return fn(**kw)
                    except Exception:  # broken: a failure becomes a success
                        return None

                import attrs
                return super().submit(attrs.evolve(task, fn=safe), kwargs, timeout, context)


        class TestSwallowing(ExecutorContract):
            @pytest.fixture
            def executor(self):
                return Swallowing()
        """,
        "-k",
        "test_sync_error",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ExecutorContract: broken promise: a sync body's exception fails the future*"])


def test_an_executor_that_waits_for_abandoned_bodies_at_shutdown_fails(pytester: pytest.Pytester) -> None:
    result = run_contract(
        pytester,
        """
        import pytest

        from dagexec_core.testing import ExecutorContract
        from dagexec_plugins.local import LocalExecutor


        class Waiting(LocalExecutor):
            def shutdown(self, cancel=False):
                super().shutdown(cancel)
                for thread in self.pool.threads:  # broken: a second Ctrl-C waits for every body
                    thread.join()


        class TestWaiting(ExecutorContract):
            patience = 2.0  # the body gives up (and the broken shutdown returns) after that

            @pytest.fixture
            def executor(self):
                return Waiting()
        """,
        "-k",
        "shutdown",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ExecutorContract: broken promise: shutdown(cancel=True) returns without waiting*"])


def test_a_breaker_that_ignores_its_clock_fails(pytester: pytest.Pytester) -> None:
    result = run_contract(
        pytester,
        """
        import time

        import pytest

        from dagexec_core.testing import CircuitBreakerContract
        from dagexec_plugins.breaker import Breaker, BreakerSettings


        class TestWallClockBreaker(CircuitBreakerContract):
            @pytest.fixture
            def breaker(self, dagexec_clock):
                # broken: reads the real clock, so a cooldown cannot be tested without waiting it
                return Breaker("svc", BreakerSettings(failure_threshold=3, cooldown=30), clock=time.monotonic)
        """,
        "-k",
        "probe_goes_through",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*CircuitBreakerContract: broken promise: after its cooldown an open breaker is half_open*"]
    )


def test_a_breaker_that_never_opens_fails(pytester: pytest.Pytester) -> None:
    result = run_contract(
        pytester,
        """
        import pytest

        from dagexec_core.testing import CircuitBreakerContract
        from dagexec_plugins.breaker import Breaker


        class NeverOpens(Breaker):
            def record_failure(self, error):
                pass


        class TestNeverOpens(CircuitBreakerContract):
            @pytest.fixture
            def breaker(self, dagexec_clock):
                return NeverOpens("svc", clock=dagexec_clock.monotonic, failure_threshold=3, cooldown=30)
        """,
        "-k",
        "failures_open_it",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CircuitBreakerContract: broken promise: 3 consecutive failures open it*"])


def test_a_queue_that_ignores_the_run_fails(pytester: pytest.Pytester) -> None:
    result = run_contract(
        pytester,
        """
        import pytest

        from dagexec_core.testing import DeadLetterQueueContract
        from dagexec_plugins.deadletter import MemoryDeadLetterQueue


        class AllRuns(MemoryDeadLetterQueue):
            def list(self, run_id=None):
                return list(self.entries.values())


        class TestAllRuns(DeadLetterQueueContract):
            @pytest.fixture
            def dlq(self):
                return AllRuns()
        """,
    )
    result.assert_outcomes(failed=1, passed=4)
    result.stdout.fnmatch_lines(
        ["*DeadLetterQueueContract: broken promise: list(run_id) gives that run's entries only*"]
    )


def test_a_policy_that_retries_past_max_attempts_fails(pytester: pytest.Pytester) -> None:
    result = run_contract(
        pytester,
        """
        import pytest

        from dagexec_core.testing import RetryPolicyContract


        class Stubborn:
            max_attempts = 3

            def next_delay(self, attempt, error):
                return 0.5  # broken: never gives up


        class TestStubborn(RetryPolicyContract):
            @pytest.fixture
            def policy(self):
                return Stubborn()
        """,
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 3 and outcomes.get("passed") == 3, outcomes
    result.stdout.fnmatch_lines(
        [
            "*RetryPolicyContract: broken promise: no attempt past max_attempts (a resume counts on it)*",
            "*RetryPolicyContract: broken promise: the engine makes max_attempts attempts of a failing task*",
        ]
    )


def test_a_contract_without_its_fixture_says_what_to_override(pytester: pytest.Pytester) -> None:
    result = run_contract(
        pytester,
        """
        from dagexec_core.testing import DeadLetterQueueContract


        class TestForgot(DeadLetterQueueContract):
            pass
        """,
        "-k",
        "has_the_queue_methods",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TestForgot: override the `dlq` fixture*"])
