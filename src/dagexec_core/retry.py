"""`RetryPolicy`: how many attempts a task gets and how long to wait between them."""

from __future__ import annotations

import builtins
import datetime
import importlib
import math
import random
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .errors import UsageError

BACKOFFS = ("fixed", "linear", "exponential")
JITTERS = ("none", "full", "equal", "decorrelated")


def _check_backoff(_: Any, __: Any, value: str) -> None:
    if value not in BACKOFFS:
        raise ValueError(f"backoff={value!r} is not one of {', '.join(BACKOFFS)}")


def _check_jitter(_: Any, __: Any, value: str | float) -> None:
    if isinstance(value, str):
        if value not in JITTERS:
            raise ValueError(f"jitter={value!r} is not one of {', '.join(JITTERS)} or a fraction in [0, 1]")
    elif isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"jitter={value!r}: a fractional jitter must be a number within [0, 1]")


def _check_finite(_: Any, attribute: Any, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name}={value!r} must be a finite number of seconds")


def resolve_exception(name: str) -> type[BaseException]:
    """An exception class from its name: ``"ConnectionError"`` (a builtin),
    ``"package.module.Error"`` or ``"package.module:Error"``.

    Lets pyproject.toml name the errors a policy retries on.
    """
    modname, sep, attr = name.partition(":") if ":" in name else name.rpartition(".")
    if not sep:
        obj = getattr(builtins, name, None)
    else:
        try:
            module = importlib.import_module(modname)
        except ImportError as exc:
            raise UsageError(f"cannot import {modname!r} to find exception {name!r}: {exc}") from exc
        obj = getattr(module, attr, None)
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise UsageError(
            f"{name!r} is not an exception class; name a builtin (ConnectionError) or a dotted path (pkg.mod.Error)"
        )
    return obj


def _exc_tuple(value: Any) -> tuple[type[BaseException], ...]:
    if isinstance(value, (type, str)):
        value = (value,)
    out = []
    for item in value:
        exc = resolve_exception(item) if isinstance(item, str) else item
        if not (isinstance(exc, type) and issubclass(exc, BaseException)):
            raise ValueError(f"{item!r} is not an exception class")
        out.append(exc)
    return tuple(out)


def _seconds(value: Any) -> float | None:
    """``retry_after`` as seconds: a number or a `datetime.timedelta`; None if neither."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


@attrs.frozen
class RetryPolicy:
    """Attempts and delays for one task.

    ``max_attempts=1`` means no retry. The delay after failed attempt ``n`` is
    ``base`` (fixed), ``base * n`` (linear) or ``base * factor ** (n - 1)``
    (exponential), capped at ``max_delay``, then jittered:

    - ``"none"``: exactly that delay;
    - ``"full"``: uniform in ``[0, delay]``;
    - ``"equal"``: uniform in ``[delay / 2, delay]``;
    - ``"decorrelated"``: uniform in ``[base, 3 * previous delay]``, capped at
      ``max_delay`` (AWS's "decorrelated jitter"; ignores ``backoff``);
    - a fraction ``f`` in [0, 1]: ``delay * (1 ± f)``, capped at ``max_delay``.

    A failure is retried when it is an instance of ``retry_on``, not of
    ``give_up_on``, and does not say ``retryable = False``. An exception with a
    ``retry_after`` attribute (seconds or a timedelta, as from an HTTP 429 or
    503) sets the next delay itself, never above ``max_delay``.
    """

    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    backoff: str = attrs.field(default="exponential", validator=_check_backoff)
    base: float = attrs.field(default=0.5, converter=float, validator=[attrs.validators.ge(0), _check_finite])
    factor: float = attrs.field(default=2.0, converter=float, validator=[attrs.validators.ge(1), _check_finite])
    max_delay: float = attrs.field(default=60.0, converter=float, validator=[attrs.validators.ge(0), _check_finite])
    jitter: str | float = attrs.field(default="none", validator=_check_jitter)
    retry_on: tuple[type[BaseException], ...] = attrs.field(default=(Exception,), converter=_exc_tuple)
    give_up_on: tuple[type[BaseException], ...] = attrs.field(default=(), converter=_exc_tuple)

    @classmethod
    def coerce(cls, value: Any, *, where: str = "retry") -> RetryPolicy | None:
        """A policy from what a user may write in config: a `RetryPolicy`, a
        number of attempts, or a table of `RetryPolicy` fields. None stays None.

        Raises `UsageError` naming ``where`` and the fix for anything else.
        """
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, bool):
            raise UsageError(f"{where} = {value!r}: give a number of attempts or a table of RetryPolicy fields")
        if isinstance(value, int):
            if value < 1:
                raise UsageError(f"{where} = {value}: a task needs at least 1 attempt (1 means no retry)")
            return cls(max_attempts=value)
        if isinstance(value, Mapping):
            fields = {f.name for f in attrs.fields(cls)}
            kwargs = {str(k).replace("-", "_"): v for k, v in value.items()}
            unknown = sorted(set(kwargs) - fields)
            if unknown:
                raise UsageError(
                    f"{where}: unknown field(s) {', '.join(unknown)}; RetryPolicy takes {', '.join(sorted(fields))}"
                )
            try:
                return cls(**kwargs)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"{where}: {exc}") from exc
        raise UsageError(
            f"{where} = {value!r}: give a RetryPolicy, a number of attempts or a table of RetryPolicy fields"
        )

    def should_retry(self, attempt: int, error: BaseException | None) -> bool:
        if attempt >= self.max_attempts:
            return False
        if error is None:
            return True
        if getattr(error, "retryable", True) is False:
            return False
        if self.give_up_on and isinstance(error, self.give_up_on):
            return False
        return isinstance(error, self.retry_on)

    def raw_delay(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (1-based) before jitter, capped at ``max_delay``."""
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
        """Seconds to wait after failed attempt ``attempt``, or None to give up.

        ``previous`` is the delay used before this one (decorrelated jitter
        grows from it); ``rng`` makes jitter reproducible in tests.
        """
        if not self.should_retry(attempt, error):
            return None
        retry_after = _seconds(getattr(error, "retry_after", None))
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        r = rng or random
        jitter = self.jitter
        if jitter == "decorrelated":
            low = min(self.base, self.max_delay)
            prev = low if previous is None else max(low, previous)
            return min(self.max_delay, r.uniform(low, max(low, prev * 3)))
        delay = self.raw_delay(attempt)
        if jitter == "none":
            return delay
        if jitter == "full":
            return r.uniform(0.0, delay)
        if jitter == "equal":
            return delay / 2 + r.uniform(0.0, delay / 2)
        frac = float(jitter)
        return min(self.max_delay, max(0.0, delay * (1 + r.uniform(-frac, frac))))

    def delays(self, error: BaseException | None = None, *, rng: random.Random | None = None) -> Iterable[float]:
        """The delays this policy would wait, attempt after attempt (for docs and tests)."""
        previous: float | None = None
        for attempt in range(1, self.max_attempts):
            delay = self.next_delay(attempt, error, previous=previous, rng=rng)
            if delay is None:
                return
            previous = delay
            yield delay
