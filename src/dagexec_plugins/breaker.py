"""The default circuit breaker: open after consecutive failures, probe after a cooldown."""

from __future__ import annotations

import time
from typing import Any

from dagexec_core import hookimpl
from dagexec_core.config import Config

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class ConsecutiveFailureBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        probe: int = 1,
        success_threshold: int = 1,
        on_change: Any = None,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.probe = probe
        self.success_threshold = success_threshold
        self.on_change = on_change
        self._state = CLOSED
        self.failures = 0
        self.successes = 0
        self.opened_at = 0.0
        self.probes_out = 0

    @property
    def state(self) -> str:
        if self._state == OPEN and time.monotonic() - self.opened_at >= self.cooldown:
            self._move(HALF_OPEN)
        return self._state

    def _move(self, new: str) -> None:
        old, self._state = self._state, new
        if new == OPEN:
            self.opened_at = time.monotonic()
        if new == HALF_OPEN:
            self.probes_out = 0
            self.successes = 0
        if old != new and self.on_change is not None:
            self.on_change(name=self.name, old=old, new=new)

    def allow(self) -> bool:
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and self.probes_out < self.probe:
            self.probes_out += 1
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        if self._state == HALF_OPEN:
            self.successes += 1
            self.probes_out = max(0, self.probes_out - 1)
            if self.successes >= self.success_threshold:
                self._move(CLOSED)

    def record_failure(self, error: BaseException | None) -> None:
        if self._state == HALF_OPEN:
            self._move(OPEN)
            return
        self.failures += 1
        if self._state == CLOSED and self.failures >= self.failure_threshold:
            self._move(OPEN)


@hookimpl(trylast=True)
def dagexec_circuit_breaker(name: str, config: Config) -> ConsecutiveFailureBreaker:
    opts = dict(config.getoption("breakers", {}) or {}).get(name, {})
    return ConsecutiveFailureBreaker(name, on_change=config.hook.dagexec_breaker_state_changed, **opts)
