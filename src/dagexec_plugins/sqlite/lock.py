"""The run lock: which process drives a run, and its heartbeat.

One process drives a run at a time: ``runs.lock_pid``/``lock_host`` name it,
a daemon thread keeps ``lock_heartbeat`` fresh, and a lock whose process is
gone (same host: the pid is dead or reused; another host: the heartbeat is
stale) is abandoned, so the run can be resumed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

log = logging.getLogger("dagexec.sqlite")


#: A lock held from another host counts as abandoned once its heartbeat is this old.
LOCK_STALE_AFTER = 120.0
#: Seconds between heartbeats of the runs a process holds (a thread writes them, so long tasks keep the lock).
HEARTBEAT_EVERY = 10.0


def _proc_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields and fields[0] == b"Z":
        return "zombie"
    return fields[19].decode() if len(fields) > 19 else None


def _pid_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now_started = _proc_start(pid)
    if now_started == "zombie":
        return False
    return not (started and now_started and started != now_started)


class RunLock:
    """The lock half of `SqliteStorage` (a mixin): holding, refreshing and reading run locks."""

    path: Path
    _lock: threading.RLock
    _pid: int
    _host: str
    _held: set[str]
    _beat_stop: threading.Event | None

    if TYPE_CHECKING:

        def _tx(self, doing: str, begin: str = "BEGIN") -> AbstractContextManager[sqlite3.Connection]: ...

    def _holder(self, row: Sequence[Any]) -> str | None:
        """Describe the live process holding a run's lock, or None when it is free or abandoned."""
        pid, host, started, heartbeat = row
        if pid is None:
            return None
        if host == self._host:
            if not _pid_alive(int(pid), started):
                return None
        elif heartbeat is not None and time.time() - heartbeat > LOCK_STALE_AFTER:
            return None
        return f"process {pid} on {host}"

    def _hold(self, run_id: str) -> None:
        """Keep the heartbeat of a run this process now drives fresh, from a daemon thread."""
        with self._lock:
            self._held.add(run_id)
            if self._beat_stop is None:
                self._beat_stop = threading.Event()
                threading.Thread(
                    target=self._beat, args=(self._beat_stop,), name="dagexec-heartbeat", daemon=True
                ).start()

    def _release(self, run_id: str) -> None:
        with self._lock:
            self._held.discard(run_id)
            if not self._held and self._beat_stop is not None:
                self._beat_stop.set()
                self._beat_stop = None

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            try:
                with self._tx("refresh the run lock in") as conn:
                    now = time.time()
                    conn.executemany(
                        "UPDATE runs SET lock_heartbeat = ? WHERE run_id = ? AND lock_pid = ? AND lock_host = ?",
                        [(now, r, self._pid, self._host) for r in self._held],
                    )
            except Exception as exc:  # the next step's write reports a broken file; keep beating
                log.debug("heartbeat of %s failed: %s", self.path, exc)
