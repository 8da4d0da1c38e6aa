"""`DeadLetterQueueContract`, `CircuitBreakerContract`, `RetryPolicyContract`: the small stages' promises."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..stages import CircuitBreaker, DeadLetter, DeadLetterQueue, RetryPolicyLike
from ._clock import VirtualClock
from ._support import broken, check

# ---------------------------------------------------------------------------
# dead letters
# ---------------------------------------------------------------------------

DLQ = "DeadLetterQueueContract"


def _entry(entry_id: str, run_id: str = "r1", task: str = "load", created: float | None = None) -> DeadLetter:
    return DeadLetter(
        id=entry_id,
        run_id=run_id,
        dag_name="etl",
        task=task,
        attempts=3,
        error_type="builtins.ConnectionError",
        message="connection refused: é",
        traceback='Traceback (most recent call last):\n  File "flow.py", line 9, in load\nConnectionError\n',
        created_at=created if created is not None else time.time(),
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )


class DeadLetterQueueContract:
    """Subclass in your tests and override the ``dlq`` fixture (a fresh, empty queue)."""

    @pytest.fixture
    def dlq(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__}: override the `dlq` fixture to return a fresh, empty queue")

    def test_has_the_queue_methods(self, dlq: Any) -> None:
        check(isinstance(dlq, DeadLetterQueue), DLQ, "it has push, list, get and remove", repr(dlq))
        check(dlq.list() == [], DLQ, "a fresh queue is empty", repr(dlq.list()))

    def test_push_returns_the_id_and_get_returns_the_whole_entry(self, dlq: Any) -> None:
        entry = _entry("e1")
        got_id = dlq.push(entry)
        check(got_id == "e1", DLQ, "push returns the entry's id", repr(got_id))
        got = dlq.get("e1")
        check(
            got == entry,
            DLQ,
            "get returns the entry as pushed, every field (traceback, trace id...)",
            f"got {got!r}, pushed {entry!r}",
        )

    def test_list_in_push_order_and_by_run(self, dlq: Any) -> None:
        base = time.time()
        for k, (entry_id, run_id) in enumerate((("a", "r1"), ("b", "r2"), ("c", "r1"))):
            dlq.push(_entry(entry_id, run_id, created=base + k))
        all_ids = [e.id for e in dlq.list()]
        check(all_ids == ["a", "b", "c"], DLQ, "list() gives every entry, oldest first", repr(all_ids))
        r1 = [e.id for e in dlq.list("r1")]
        check(r1 == ["a", "c"], DLQ, "list(run_id) gives that run's entries only, oldest first", repr(r1))
        check(dlq.list("nobody") == [], DLQ, "list of a run without entries is empty", repr(dlq.list("nobody")))

    def test_pushing_an_id_again_replaces_the_entry(self, dlq: Any) -> None:
        dlq.push(_entry("e1", task="first"))
        dlq.push(_entry("e1", task="second"))
        got = [(e.id, e.task) for e in dlq.list()]
        check(got == [("e1", "second")], DLQ, "one entry per id: pushing an id again replaces it", repr(got))

    def test_remove_and_unknown_ids(self, dlq: Any) -> None:
        dlq.push(_entry("e1"))
        dlq.push(_entry("e2"))
        dlq.remove("e1")
        check([e.id for e in dlq.list()] == ["e2"], DLQ, "remove takes the entry out", repr(dlq.list()))
        try:
            dlq.get("e1")
        except KeyError:
            pass
        else:
            broken(DLQ, "get of an unknown id raises KeyError", "it returned an entry after remove")
        dlq.remove("never-there")  # the CLI's purge may race another: removing twice is not an error
        check([e.id for e in dlq.list()] == ["e2"], DLQ, "removing an unknown id changes nothing", repr(dlq.list()))


# ---------------------------------------------------------------------------
# circuit breakers
# ---------------------------------------------------------------------------

CB = "CircuitBreakerContract"


class CircuitBreakerContract:
    """Subclass in your tests and override the ``breaker`` fixture: a fresh, closed breaker whose time is
    the ``dagexec_clock`` fixture's (give it ``dagexec_clock.monotonic`` as its clock).

    Class settings describe the breaker the fixture builds: ``failure_threshold``
    (consecutive failures that open it), ``cooldown`` (seconds before it lets a
    probe through) and ``probes`` (attempts half-open lets through at once).
    """

    failure_threshold: ClassVar[int] = 3
    cooldown: ClassVar[float] = 30.0
    probes: ClassVar[int] = 1

    @pytest.fixture
    def dagexec_clock(self) -> VirtualClock:
        return VirtualClock()

    @pytest.fixture
    def breaker(self, dagexec_clock: VirtualClock) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__}: override the `breaker` fixture to return a fresh, closed breaker reading "
            f"dagexec_clock.monotonic"
        )

    def trip(self, breaker: Any) -> None:
        for _ in range(self.failure_threshold):
            check(breaker.allow(), CB, "a closed breaker allows attempts", f"state {breaker.state!r}")
            breaker.record_failure(ConnectionError("down"))

    def test_starts_closed_and_allows(self, breaker: Any) -> None:
        check(
            isinstance(breaker, CircuitBreaker),
            CB,
            "it has name, state, allow, record_success, record_failure",
            repr(breaker),
        )
        check(isinstance(breaker.name, str), CB, "name is a string (the breaker group)", repr(breaker.name))
        check(breaker.state == "closed", CB, "a fresh breaker is closed", repr(breaker.state))
        check(breaker.allow(), CB, "a closed breaker allows an attempt", "allow() returned False")

    def test_failures_open_it_and_an_open_breaker_refuses(self, breaker: Any) -> None:
        for _ in range(self.failure_threshold - 1):
            breaker.record_failure(ConnectionError("down"))
        check(
            breaker.state == "closed" and breaker.allow(),
            CB,
            f"fewer than {self.failure_threshold} failures leave it closed",
            repr(breaker.state),
        )
        breaker.record_failure(None)  # the engine may pass no error
        check(
            breaker.state == "open",
            CB,
            f"{self.failure_threshold} consecutive failures open it",
            f"state {breaker.state!r}",
        )
        check(not breaker.allow(), CB, "an open breaker refuses attempts", "allow() returned True")

    def test_successes_keep_it_closed(self, breaker: Any) -> None:
        for _ in range(self.failure_threshold * 3):
            breaker.allow()
            breaker.record_success()
        check(breaker.state == "closed", CB, "successes keep a breaker closed", repr(breaker.state))

    def test_it_stays_open_for_its_cooldown(self, breaker: Any, dagexec_clock: VirtualClock) -> None:
        self.trip(breaker)
        dagexec_clock.advance(self.cooldown * 0.5)
        check(
            not breaker.allow() and breaker.state == "open",
            CB,
            "an open breaker refuses until its cooldown has passed",
            f"state {breaker.state!r}",
        )

    def test_after_the_cooldown_a_probe_goes_through(self, breaker: Any, dagexec_clock: VirtualClock) -> None:
        self.trip(breaker)
        dagexec_clock.advance(self.cooldown)
        check(
            breaker.state == "half_open",
            CB,
            "after its cooldown an open breaker is half_open",
            f"state {breaker.state!r} (does it read the clock it was given?)",
        )
        allowed = sum(1 for _ in range(self.probes + 2) if breaker.allow())
        check(
            allowed == self.probes,
            CB,
            f"half_open lets {self.probes} probe(s) through at once",
            f"it let {allowed} through",
        )

    def test_a_successful_probe_closes_it(self, breaker: Any, dagexec_clock: VirtualClock) -> None:
        self.trip(breaker)
        dagexec_clock.advance(self.cooldown)
        check(breaker.allow(), CB, "a probe goes through after the cooldown", f"state {breaker.state!r}")
        breaker.record_success()
        check(
            breaker.state == "closed" and breaker.allow(),
            CB,
            "a successful probe closes the breaker",
            f"state {breaker.state!r}",
        )

    def test_a_failed_probe_opens_it_again(self, breaker: Any, dagexec_clock: VirtualClock) -> None:
        self.trip(breaker)
        dagexec_clock.advance(self.cooldown)
        check(breaker.allow(), CB, "a probe goes through after the cooldown", f"state {breaker.state!r}")
        breaker.record_failure(ConnectionError("still down"))
        check(
            breaker.state == "open" and not breaker.allow(),
            CB,
            "a failed probe opens the breaker again for a new cooldown",
            f"state {breaker.state!r}",
        )
        dagexec_clock.advance(self.cooldown)
        check(breaker.allow(), CB, "the new cooldown ends with another probe", f"state {breaker.state!r}")


# ---------------------------------------------------------------------------
# retry policies
# ---------------------------------------------------------------------------

RP = "RetryPolicyContract"


class _NotRetryable(Exception):
    retryable = False


class RetryPolicyContract:
    """Subclass in your tests and override the ``policy`` fixture: a fresh policy for one task that
    retries (``max_attempts`` of 2 or more). Override ``retryable_error()`` when it retries only some
    errors."""

    @pytest.fixture
    def policy(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__}: override the `policy` fixture to return a fresh policy that retries"
        )

    def retryable_error(self) -> BaseException:
        """An error the policy retries."""
        return ConnectionError("connection refused")

    def test_max_attempts_is_a_whole_number_that_allows_a_retry(self, policy: Any) -> None:
        check(isinstance(policy, RetryPolicyLike), RP, "it has max_attempts and next_delay", repr(policy))
        n = policy.max_attempts
        check(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1,
            RP,
            "max_attempts is a whole number >= 1 (a resume compares attempts made with it)",
            repr(n),
        )
        check(n >= 2, RP, "the contract needs a policy that retries", f"max_attempts is {n}: give it 2 or more")

    def test_retryable_failures_get_finite_delays_until_the_last_attempt(self, policy: Any) -> None:
        delays = []
        for attempt in range(1, policy.max_attempts):
            delay = policy.next_delay(attempt, self.retryable_error())
            check(
                delay is not None,
                RP,
                "a retryable failure before the last attempt is retried",
                f"attempt {attempt} of {policy.max_attempts} got None",
            )
            check(
                isinstance(delay, (int, float)) and not isinstance(delay, bool) and math.isfinite(delay) and delay >= 0,
                RP,
                "a delay is a finite number of seconds >= 0",
                f"attempt {attempt}: {delay!r}",
            )
            delays.append(delay)

    def test_no_retry_at_or_past_max_attempts(self, policy: Any) -> None:
        n = policy.max_attempts
        for attempt in (n, n + 1, n + 10):
            delay = policy.next_delay(attempt, self.retryable_error())
            check(
                delay is None,
                RP,
                "no attempt past max_attempts (a resume counts on it)",
                f"next_delay({attempt}) with max_attempts {n} gave {delay!r}",
            )

    def test_an_error_saying_retryable_false_is_not_retried(self, policy: Any) -> None:
        delay = policy.next_delay(1, _NotRetryable("bad input"))
        check(delay is None, RP, "an error with retryable = False is not retried", f"got delay {delay!r}")

    def test_no_error_is_accepted(self, policy: Any) -> None:
        delay = policy.next_delay(1, None)
        check(
            delay is None or (math.isfinite(delay) and delay >= 0),
            RP,
            "next_delay(attempt, None) gives a delay or None",
            repr(delay),
        )

    def test_the_engine_waits_its_delays_then_dead_letters(self, policy: Any, tmp_path: Path) -> None:
        from .. import Dag, RunHandle, hookimpl, run

        clock = VirtualClock()
        waited: list[float] = []
        error = self.retryable_error()
        handle = RunHandle()
        calls: list[int] = []

        class Provides:
            @hookimpl
            def dagexec_retry_policy(self) -> Any:
                return policy

            @hookimpl
            def dagexec_task_retrying(self, delay: float) -> None:
                waited.append(delay)

        dag = Dag("retry-contract")
        dag.source_file = str(tmp_path / "flow.py")

        @dag.task
        def always_fails() -> None:
            calls.append(1)
            if len(calls) > policy.max_attempts + 1:
                handle.cancel(grace_period=0)  # a policy that never gives up: stop the run
            raise error

        report = run(
            dag, state=str(tmp_path / "state.db"), plugins=[Provides()], clock=clock, handle=handle, signals=False
        )
        attempts = report.records["always_fails"].attempts
        check(
            attempts == policy.max_attempts,
            RP,
            "the engine makes max_attempts attempts of a failing task",
            f"{attempts} attempts, max_attempts {policy.max_attempts}",
        )
        check(
            report.records["always_fails"].state.value == "dead_lettered",
            RP,
            "a task the policy gives up on is dead-lettered",
            report.records["always_fails"].state.value,
        )
        check(
            abs(clock.now - sum(waited)) < 1e-6,
            RP,
            "the engine waits each delay the policy gives",
            f"the clock moved {clock.now}s for delays {waited}",
        )
