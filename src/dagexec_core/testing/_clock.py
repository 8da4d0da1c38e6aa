"""`VirtualClock`: time for tests, moved by the test or by the run having nothing else to do."""

from __future__ import annotations

import asyncio
import heapq
import threading
from collections.abc import Callable
from typing import Any


class VirtualTimer:
    """What `VirtualClock.call_later` returns: a handle with ``cancel()``, like `asyncio.TimerHandle`."""

    __slots__ = ("_when", "_callback", "_args", "_cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._when = when
        self._callback = callback
        self._args = args
        self._cancelled = False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<VirtualTimer at {self._when:g}{state} {getattr(self._callback, '__qualname__', self._callback)}>"


class VirtualClock:
    """A clock whose time stands still until moved. Pass it as ``run(dag, clock=...)``.

    The engine measures retry delays, circuit-breaker cooldowns and the
    breaker wait (``breaker_max_wait``) on it. Time moves in two ways:

    - ``advance(seconds)``: from the test, or from a task body that stands for
      a slow service (thread-safe); timers that come due fire on the run's loop;
    - with ``autojump`` (the default), whenever no task body is running and the
      run waits only for a timer of this clock, time jumps straight to that
      timer. A backoff of minutes passes in microseconds, in the order the
      real clock would have taken.

    Per-attempt ``timeout=`` and the cancel grace period stay on the real
    clock: they bound real bodies, which a virtual clock cannot interrupt.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        self._now = float(start)
        self.autojump = autojump
        self._timers: list[tuple[float, int, VirtualTimer]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jump_pending = False
        #: Every jump ``autojump`` made, in seconds, oldest first (what a run "waited").
        self.jumps: list[float] = []

    # -- the Clock protocol (dagexec_core.stages.Clock) ----------------------------

    def monotonic(self) -> float:
        """The virtual time, in seconds."""
        return self._now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> VirtualTimer:
        """Call ``callback(*args)`` on the running loop once the clock reaches now + ``delay``."""
        with self._lock:
            self._bind()
            timer = VirtualTimer(self._now + max(0.0, float(delay)), callback, args)
            self._seq += 1
            heapq.heappush(self._timers, (timer.when(), self._seq, timer))
        return timer

    def idle(self) -> None:
        """Told by the engine: no body runs. With ``autojump``, move to the next timer on the next loop turn
        (the engine may still set one, such as its breaker poll, before it waits)."""
        if not self.autojump:
            return
        with self._lock:
            loop = self._bind()
            if self._jump_pending:
                return
            self._jump_pending = True
        loop.call_soon(self._jump)

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop (under ``_lock``); a new one means a new run: timers of an ended run never fire."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._timers.clear()
            self._jump_pending = False
        return loop

    # -- moving time ---------------------------------------------------------------

    @property
    def now(self) -> float:
        return self._now

    @property
    def pending(self) -> int:
        """Timers not yet fired nor cancelled."""
        with self._lock:
            return sum(1 for _, _, t in self._timers if not t.cancelled())

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``; timers that come due fire on the run's loop. Thread-safe."""
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward: advance({seconds!r})")
        with self._lock:
            self._now += float(seconds)
            loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_soon(self._fire_due)
        else:
            try:
                loop.call_soon_threadsafe(self._fire_due)
            except RuntimeError:  # the loop closed meanwhile: its run is over
                pass

    def _jump(self) -> None:
        self._jump_pending = False
        with self._lock:
            while self._timers and self._timers[0][2].cancelled():
                heapq.heappop(self._timers)
            if not self._timers:
                return
            when = self._timers[0][0]
            if when > self._now:
                self.jumps.append(when - self._now)
                self._now = when
        self._fire_due()

    def _fire_due(self) -> None:
        due: list[VirtualTimer] = []
        with self._lock:
            while self._timers and self._timers[0][0] <= self._now:
                timer = heapq.heappop(self._timers)[2]
                if not timer.cancelled():
                    due.append(timer)
        for timer in due:
            if not timer.cancelled():
                timer._callback(*timer._args)

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now:g} pending={self.pending} autojump={self.autojump}>"
