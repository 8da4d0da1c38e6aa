"""RetryPolicy: the delay math (property tests), what is retried, and parsing from config."""

from __future__ import annotations

import datetime
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagexec_core import RetryPolicy, TaskPicklingError
from dagexec_core.errors import UsageError

seconds = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
factors = st.floats(min_value=1.0, max_value=10.0, allow_nan=False, allow_infinity=False)
attempts = st.integers(min_value=1, max_value=10_000)
backoffs = st.sampled_from(["fixed", "linear", "exponential"])
fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def policy(backoff: str, base: float, factor: float, max_delay: float, jitter: str | float = "none") -> RetryPolicy:
    return RetryPolicy(
        max_attempts=10**9, backoff=backoff, base=base, factor=factor, max_delay=max_delay, jitter=jitter
    )


@given(backoffs, seconds, factors, seconds, attempts)
def test_raw_delay_is_capped_and_never_negative(backoff: str, base: float, factor: float, cap: float, n: int) -> None:
    d = policy(backoff, base, factor, cap).raw_delay(n)
    assert 0.0 <= d <= cap


@given(st.sampled_from(["linear", "exponential"]), seconds, factors, seconds, attempts)
def test_raw_delay_never_shrinks_from_one_attempt_to_the_next(
    backoff: str, base: float, factor: float, cap: float, n: int
) -> None:
    p = policy(backoff, base, factor, cap)
    assert p.raw_delay(n) <= p.raw_delay(n + 1)


@given(seconds, seconds, attempts)
def test_fixed_backoff_is_base_up_to_the_cap(base: float, cap: float, n: int) -> None:
    assert policy("fixed", base, 2.0, cap).raw_delay(n) == min(base, cap)


@given(seconds, factors, seconds, attempts)
def test_exponential_backoff_formula(base: float, factor: float, cap: float, n: int) -> None:
    p = policy("exponential", base, factor, cap)
    try:
        expected = min(base * factor ** (n - 1), cap)
    except OverflowError:
        expected = cap
    assert p.raw_delay(n) == pytest.approx(expected)


@given(backoffs, seconds, factors, seconds, attempts, st.randoms(use_true_random=False))
def test_no_jitter_is_the_raw_delay(
    backoff: str, base: float, factor: float, cap: float, n: int, rng: random.Random
) -> None:
    p = policy(backoff, base, factor, cap)
    assert p.next_delay(n, ValueError(), rng=rng) == p.raw_delay(n)


@given(backoffs, seconds, factors, seconds, attempts, st.randoms(use_true_random=False))
def test_full_jitter_is_within_zero_and_the_delay(
    backoff: str, base: float, factor: float, cap: float, n: int, rng: random.Random
) -> None:
    p = policy(backoff, base, factor, cap, "full")
    d = p.next_delay(n, ValueError(), rng=rng)
    assert d is not None and 0.0 <= d <= p.raw_delay(n)


@given(backoffs, seconds, factors, seconds, attempts, st.randoms(use_true_random=False))
def test_equal_jitter_is_within_half_and_the_whole_delay(
    backoff: str, base: float, factor: float, cap: float, n: int, rng: random.Random
) -> None:
    p = policy(backoff, base, factor, cap, "equal")
    d = p.next_delay(n, ValueError(), rng=rng)
    raw = p.raw_delay(n)
    assert d is not None and raw / 2 - 1e-9 <= d <= raw + 1e-9


@given(backoffs, seconds, factors, seconds, attempts, fractions, st.randoms(use_true_random=False))
def test_fractional_jitter_stays_within_its_fraction_and_the_cap(
    backoff: str, base: float, factor: float, cap: float, n: int, frac: float, rng: random.Random
) -> None:
    p = policy(backoff, base, factor, cap, frac)
    d = p.next_delay(n, ValueError(), rng=rng)
    raw = p.raw_delay(n)
    assert d is not None
    assert raw * (1 - frac) - 1e-9 <= d <= min(cap, raw * (1 + frac)) + 1e-9


@given(seconds, seconds, st.lists(attempts, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_decorrelated_jitter_stays_within_base_and_max_delay(
    base: float, cap: float, ns: list[int], rng: random.Random
) -> None:
    p = policy("exponential", base, 2.0, cap, "decorrelated")
    previous = None
    for n in ns:
        d = p.next_delay(n, ValueError(), previous=previous, rng=rng)
        assert d is not None
        assert min(base, cap) <= d <= cap
        previous = d


@settings(max_examples=50)
@given(st.floats(min_value=0.001, max_value=10.0), st.randoms(use_true_random=False))
def test_decorrelated_jitter_grows_at_most_threefold(base: float, rng: random.Random) -> None:
    p = RetryPolicy(max_attempts=50, base=base, max_delay=1e6, jitter="decorrelated")
    previous = base
    for d in p.delays(rng=rng):
        assert base <= d <= max(base, previous * 3) + 1e-9
        previous = d


@given(
    seconds,
    seconds,
    st.one_of(seconds, st.timedeltas(min_value=datetime.timedelta(0), max_value=datetime.timedelta(hours=5))),
)
def test_retry_after_on_the_error_sets_the_delay_up_to_the_cap(base: float, cap: float, after: object) -> None:
    error = ConnectionError("429 Too Many Requests")
    error.retry_after = after  # type: ignore[attr-defined]
    seconds_after = after.total_seconds() if isinstance(after, datetime.timedelta) else after
    p = RetryPolicy(max_attempts=3, base=base, max_delay=cap, jitter="full")
    assert p.next_delay(1, error) == min(float(seconds_after), cap)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=40))
def test_gives_up_once_max_attempts_are_used(max_attempts: int, n: int) -> None:
    p = RetryPolicy(max_attempts=max_attempts, base=0.0)
    assert (p.next_delay(n, ValueError()) is None) == (n >= max_attempts)


def test_max_attempts_one_means_no_retry() -> None:
    assert RetryPolicy(max_attempts=1).next_delay(1, ValueError()) is None
    assert list(RetryPolicy(max_attempts=1).delays()) == []


def test_retry_on_and_give_up_on_choose_what_is_retried() -> None:
    p = RetryPolicy(
        max_attempts=5, base=0.0, retry_on=(ConnectionError, TimeoutError), give_up_on=ConnectionRefusedError
    )
    assert p.next_delay(1, ConnectionResetError()) == 0.0
    assert p.next_delay(1, TimeoutError()) == 0.0
    assert p.next_delay(1, ConnectionRefusedError()) is None  # give_up_on wins over retry_on
    assert p.next_delay(1, ValueError()) is None  # not in retry_on


def test_an_error_that_says_it_is_not_retryable_is_not_retried() -> None:
    assert RetryPolicy(max_attempts=5).next_delay(1, TaskPicklingError("x")) is None


def test_delays_lists_the_schedule() -> None:
    assert list(RetryPolicy(max_attempts=5, backoff="exponential", base=1, factor=3, max_delay=10).delays()) == [
        1,
        3,
        9,
        10,
    ]
    assert list(RetryPolicy(max_attempts=4, backoff="linear", base=2, max_delay=60).delays()) == [2, 4, 6]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backoff": "expo"}, "backoff='expo' is not one of fixed, linear, exponential"),
        ({"jitter": "random"}, "jitter='random' is not one of"),
        ({"jitter": 1.5}, "within [0, 1]"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"factor": 0.5}, "factor"),
        ({"base": float("inf")}, "finite"),
    ],
)
def test_bad_policy_fields_are_refused_with_the_field_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_coerce_reads_what_config_can_hold() -> None:
    assert RetryPolicy.coerce(None) is None
    assert RetryPolicy.coerce(4) == RetryPolicy(max_attempts=4)
    p = RetryPolicy.coerce({"max-attempts": 2, "backoff": "fixed", "retry_on": ["ConnectionError", "socket:timeout"]})
    assert p is not None and p.max_attempts == 2 and p.backoff == "fixed"
    import socket

    assert p.retry_on == (ConnectionError, socket.timeout)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "at least 1 attempt"),
        (True, "number of attempts"),
        ("three", "give a RetryPolicy"),
        ({"attempts": 3}, "unknown field\\(s\\) attempts"),
        ({"backoff": "expo"}, "option retry: backoff='expo'"),
        ({"retry_on": ["NoSuchError"]}, "'NoSuchError' is not an exception class"),
        ({"retry_on": ["no_such_module.Error"]}, "cannot import 'no_such_module'"),
    ],
)
def test_coerce_errors_name_the_option_and_the_fix(value: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        RetryPolicy.coerce(value, where="option retry")
