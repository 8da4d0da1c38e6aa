"""Events between tasks and from outside a run: kept with the run so a resumed or another process sees them."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    from .engine import Run
    from .stages import Storage

EVENT_KEY = "event:{}"


def store_event(storage: Storage, run_id: str, event: str, payload: Any) -> None:
    """Persist ``event`` with the run so a waiter in this or a later (resumed) process sees it."""
    storage.put_meta(run_id, EVENT_KEY.format(event), {"payload": payload, "at": time.time()})


def load_event(storage: Storage, run_id: str, event: str) -> tuple[bool, Any]:
    """``(True, payload)`` when ``event`` was stored for the run, else ``(False, None)``."""
    stored = storage.get_meta(run_id, EVENT_KEY.format(event))
    if not isinstance(stored, dict) or "payload" not in stored:
        return False, None
    return True, stored["payload"]


def emit_to_run(storage: Storage, run_id: str, event: str, payload: Any = None) -> None:
    """Send ``event`` to run ``run_id`` from outside the process driving it.

    The run picks it up within its ``event_poll_interval``; a task that waits
    for the event later (or after a resume) receives it at once.
    """
    info = storage.get_run(run_id)
    if info.status not in ("running", "crashed", "cancelled"):
        raise UsageError(
            f"run {run_id} of DAG {info.dag_name!r} is {info.status}; events can only be sent to a run "
            f"that is running or can be resumed"
        )
    store_event(storage, run_id, event, payload)


async def poll_events(run: Run, interval: float) -> None:
    """Deliver events other processes store for the run; one per run, while any task waits."""
    while run.event_waiters:
        await asyncio.sleep(interval)
        for event in list(run.event_waiters):
            found, payload = load_event(run.storage, run.run_id, event)
            if found:
                run.deliver(event, payload)
