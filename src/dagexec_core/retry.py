"""`RetryPolicy`: how many attempts a task gets and how long to wait between them."""

from __future__ import annotations

import random
from typing import Any

import attrs

BACKOFFS = ("fixed", "linear", "exponential")
JITTERS = ("none", "full", "equal", "decorrelated")


def _check_backoff(_: Any, __: Any, value: str) -> None:
    if value not in BACKOFFS:
        raise ValueError(f"backoff={value!r} is not one of {', '.join(BACKOFFS)}")


def _check_jitter(_: Any, __: Any, value: str | float) -> None:
    if isinstance(value, str):
        if value not in JITTERS:
            raise ValueError(f"jitter={value!r} is not one of {', '.join(JITTERS)} or a fraction in [0, 1]")
    elif not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"jitter={value!r}: a fractional jitter must be within [0, 1]")


def _exc_tuple(value: Any) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        return (value,)
    return tuple(value)


@attrs.frozen
class RetryPolicy:
    """Attempts and delays for one task.

    ``max_attempts=1`` means no retry. The delay before attempt ``n + 1`` is
    ``base`` (fixed), ``base * n`` (linear) or ``base * factor ** (n - 1)``
    (exponential), capped at ``max_delay``, then jittered. An exception with a
    ``retry_after`` attribute (seconds) sets the next delay itself.
    """

    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    backoff: str = attrs.field(default="exponential", validator=_check_backoff)
    base: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    max_delay: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    jitter: str | float = attrs.field(default="none", validator=_check_jitter)
    retry_on: tuple[type[BaseException], ...] = attrs.field(default=(Exception,), converter=_exc_tuple)
    give_up_on: tuple[type[BaseException], ...] = attrs.field(default=(), converter=_exc_tuple)

    def should_retry(self, attempt: int, error: BaseException | None) -> bool:
        if attempt >= self.max_attempts:
            return False
        if error is None:
            return True
        if self.give_up_on and isinstance(error, self.give_up_on):
            return False
        return isinstance(error, self.retry_on)

    def raw_delay(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (1-based) before jitter, capped."""
        if self.backoff == "fixed":
            delay = self.base
        elif self.backoff == "linear":
            delay = self.base * attempt
        else:
            try:
                delay = self.base * self.factor ** (attempt - 1)
            except OverflowError:
                delay = self.max_delay
        return min(delay, self.max_delay)

    def next_delay(
        self,
        attempt: int,
        error: BaseException | None = None,
        *,
        previous: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if not self.should_retry(attempt, error):
            return None
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after >= 0:
            return min(float(retry_after), self.max_delay) if self.max_delay else float(retry_after)
        r = rng or random
        delay = self.raw_delay(attempt)
        jitter = self.jitter
        if jitter == "none":
            return delay
        if jitter == "full":
            return r.uniform(0.0, delay)
        if jitter == "equal":
            return delay / 2 + r.uniform(0.0, delay / 2)
        if jitter == "decorrelated":
            prev = previous if previous is not None else self.base
            upper = max(self.base, prev * 3)
            return min(self.max_delay, r.uniform(self.base, upper)) if self.max_delay >= self.base else self.max_delay
        frac = float(jitter)
        return min(self.max_delay, max(0.0, delay * (1 + r.uniform(-frac, frac))))
