"""The default circuit breaker: open on failures, probe after a cooldown, close on successes.

A breaker is a named group shared by every task whose ``breaker=`` names it
(or whose tag ``breaker_tags`` maps to it). Settings, lowest precedence first:
the defaults of `BreakerSettings`, ``breaker_defaults`` (every group), then
``breakers.NAME``. Its state is kept with the run (``storage.put_meta``), so
a resumed run starts with the breaker as the crashed run left it.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from dagexec_core import Config, UsageError, call_hook, hookimpl

if TYPE_CHECKING:
    from dagexec_core import RunView

log = logging.getLogger("dagexec.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


def _positive(_: Any, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, not {value!r}")


def _rate(_: Any, attribute: Any, value: float | None) -> None:
    if value is not None and not 0.0 < value <= 1.0:
        raise ValueError(f"{attribute.name} must be within (0, 1], not {value!r}")


@attrs.frozen
class BreakerSettings:
    """How one breaker group trips and recovers.

    - ``failure_threshold``: consecutive failures that open a closed breaker.
    - ``failure_rate`` (optional) with ``window``: also open when, over the last
      ``window`` outcomes (at least ``min_calls`` of them), the share of
      failures reaches ``failure_rate``.
    - ``cooldown``: seconds an open breaker waits before going half-open.
    - ``probe``: attempts let through at once while half-open.
    - ``success_threshold``: successes in half-open that close it; any failure
      in half-open opens it again.
    """

    failure_threshold: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    cooldown: float = attrs.field(default=30.0, converter=float, validator=attrs.validators.ge(0))
    probe: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    success_threshold: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    failure_rate: float | None = attrs.field(default=None, validator=_rate)
    window: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    min_calls: int | None = attrs.field(default=None)

    @classmethod
    def for_group(cls, name: str, config: Config) -> BreakerSettings:
        merged: dict[str, Any] = {}
        for where, table in (
            ("breaker_defaults", config.getoption("breaker_defaults")),
            (f"breakers.{name}", (config.getoption("breakers") or {}).get(name)),
        ):
            if table is None:
                continue
            if not isinstance(table, Mapping):
                raise UsageError(f"option {where} must be a table of breaker settings, not {table!r}")
            merged.update({str(k).replace("-", "_"): v for k, v in table.items()})
        fields = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(merged) - fields)
        if unknown:
            raise UsageError(
                f"circuit breaker {name!r}: unknown setting(s) {', '.join(unknown)}; "
                f"settings are {', '.join(sorted(fields))}"
            )
        try:
            return cls(**merged)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"circuit breaker {name!r}: {exc}") from exc


class Breaker:
    """Closed -> open -> half-open -> closed, for one named group of tasks.

    Driven from the event loop thread only. ``clock`` is monotonic seconds
    (injectable for tests); ``on_change(name=, old=, new=)`` is told of every
    move and ``persist(snapshot)`` is given the state to keep after each move.
    """

    def __init__(
        self,
        name: str,
        settings: BreakerSettings | None = None,
        *,
        on_change: Callable[..., Any] | None = None,
        persist: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        self.name = name
        self.settings = settings or BreakerSettings(**options)
        self.on_change = on_change
        self.persist = persist
        self.clock = clock
        self._state = CLOSED
        self.failures = 0  # consecutive, while closed
        self.successes = 0  # while half-open
        self.probes_out = 0
        self.opened_at = 0.0
        self.outcomes: deque[bool] = deque(maxlen=self.settings.window)  # True = failure

    @property
    def state(self) -> str:
        if self._state == OPEN and self.clock() - self.opened_at >= self.settings.cooldown:
            self._move(HALF_OPEN)
        return self._state

    @property
    def retry_in(self) -> float:
        """Seconds until an open breaker goes half-open (0 when it is not open)."""
        if self._state != OPEN:
            return 0.0
        return max(0.0, self.settings.cooldown - (self.clock() - self.opened_at))

    def allow(self) -> bool:
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and self.probes_out < self.settings.probe:
            self.probes_out += 1
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        if self._state == HALF_OPEN:
            self.probes_out = max(0, self.probes_out - 1)
            self.successes += 1
            if self.successes >= self.settings.success_threshold:
                self._move(CLOSED)
        elif self._state == CLOSED:
            self.outcomes.append(False)

    def record_failure(self, error: BaseException | None) -> None:
        if self._state == HALF_OPEN:
            self._move(OPEN)
            return
        if self._state != CLOSED:
            return  # an attempt let through before the breaker opened: already counted as open
        self.failures += 1
        self.outcomes.append(True)
        if self.failures >= self.settings.failure_threshold or self._rate_exceeded():
            self._move(OPEN)

    def _rate_exceeded(self) -> bool:
        s = self.settings
        if s.failure_rate is None:
            return False
        needed = s.min_calls if s.min_calls is not None else s.window
        n = len(self.outcomes)
        return n >= min(needed, s.window) and sum(self.outcomes) / n >= s.failure_rate

    def _move(self, new: str, *, save: bool = True) -> None:
        old, self._state = self._state, new
        if new == OPEN:
            self.opened_at = self.clock()
        elif new == HALF_OPEN:
            self.probes_out = 0
            self.successes = 0
        elif new == CLOSED:
            self.failures = 0
            self.outcomes.clear()
        if old == new:
            return
        log.info("circuit breaker %r: %s -> %s", self.name, old, new)
        if save and self.persist is not None:
            self.persist(self.snapshot())
        if self.on_change is not None:
            self.on_change(name=self.name, old=old, new=new)

    # -- persistence -------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A JSON value of the state; times as wall-clock so another process can read them."""
        open_for = self.clock() - self.opened_at if self._state == OPEN else 0.0
        return {"state": self._state, "failures": self.failures, "opened_at": time.time() - open_for}

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Take up the state of a snapshot (from a run that crashed or was cancelled)."""
        state = snap.get("state")
        if state not in STATES:
            return
        self.failures = int(snap.get("failures", 0) or 0)
        if state == CLOSED:
            return
        open_for = max(0.0, time.time() - float(snap.get("opened_at", time.time())))
        self._move(state, save=False)
        if state == OPEN:
            self.opened_at = self.clock() - open_for


class Plugin:
    """The built-in ``breaker`` plugin (one instance per plugin manager)."""

    @hookimpl
    def dagexec_addoption(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--breaker-max-wait",
            dest="breaker_max_wait",
            type=float,
            default=None,
            metavar="SECONDS",
            help="how long a task waits for its open circuit breaker before failing with CircuitOpenError",
        )

    @hookimpl
    def dagexec_configure(self, config: Config) -> None:
        # Bad settings fail before the run starts, naming the option or the group.
        for option, what in (("breakers", "breaker group -> settings"), ("breaker_tags", "tag -> breaker group")):
            value = config.getoption(option)
            if value is not None and not isinstance(value, Mapping):
                raise UsageError(f"option {option} must be a table of {what}, not {value!r}")
        for tag, group in (config.getoption("breaker_tags") or {}).items():
            if not isinstance(group, str) or not group:
                raise UsageError(f"option breaker_tags.{tag} must name a breaker group, not {group!r}")
        for name in config.getoption("breakers") or {}:
            BreakerSettings.for_group(str(name), config)
        BreakerSettings.for_group("*", config)

    @hookimpl(trylast=True)
    def dagexec_circuit_breaker(self, name: str, config: Config, run: RunView | None = None) -> Breaker:
        pm = config.pluginmanager

        def on_change(**kwargs: Any) -> None:
            call_hook(pm, "dagexec_breaker_state_changed", **kwargs)

        clock = config.getoption("clock")  # a test's virtual clock: cooldowns pass without waiting
        breaker = Breaker(
            name,
            BreakerSettings.for_group(name, config),
            on_change=on_change,
            clock=time.monotonic if clock is None else clock.monotonic,
        )
        if run is not None:
            storage, run_id, key = run.storage, run.run_id, f"breaker:{name}"
            if run.resumed_from:
                saved = storage.get_meta(run_id, key)
                if isinstance(saved, Mapping):
                    breaker.restore(saved)
                    if breaker.state != CLOSED:
                        log.warning(
                            "circuit breaker %r of run %s resumes %s (%.1fs of cooldown left)",
                            name,
                            run_id,
                            breaker.state,
                            breaker.retry_in,
                        )

            def persist(snap: dict[str, Any]) -> None:
                storage.put_meta(run_id, key, snap)

            breaker.persist = persist
        return breaker
