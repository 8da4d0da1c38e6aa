"""The Dask client of one invocation: which scheduler, connecting within a bound, quiet logs, the dashboard link.

A session is opened when a run asks for its executor (before the run is
recorded, so an unreachable scheduler fails the command at once) and closed
when the run ends.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from dagexec_core import Config, DaskConnectError, PluginError, UsageError

log = logging.getLogger("dagexec.dask")

#: Environment variables naming the scheduler, in order of precedence.
ADDRESS_VARIABLES = ("DAGEXEC_DASK_ADDRESS", "DASK_SCHEDULER_ADDRESS")


def scheduler_address(config: Config) -> str | None:
    """The scheduler to connect to, or None to start a ``LocalCluster``.

    ``--dask-address`` (or ``run(dask_address=)``) first, then
    ``DAGEXEC_DASK_ADDRESS``, then Dask's own ``DASK_SCHEDULER_ADDRESS``, then
    ``dask_address`` in ``[tool.dagexec]``.
    """
    given = config.getoption("dask_address")
    from_file = config.inifile_options.get("dask_address")
    if given and given != from_file:
        return str(given)
    for var in ADDRESS_VARIABLES:
        if os.environ.get(var):
            return os.environ[var]
    return str(from_file) if from_file else None


def seconds_option(config: Config, name: str) -> float:
    """A positive number of seconds from option ``name`` (``--dask-...-timeout``, or ``[tool.dagexec]``)."""
    value = config.getoption(name)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        flag = "--" + name.replace("_", "-")
        raise UsageError(f"{flag} (or {name} in [tool.dagexec]) must be a positive number of seconds, not {value!r}")
    return seconds


def _distributed_level(verbosity: int) -> int:
    """distributed's lines are for -v and up (INFO, -vv DEBUG): without it, what matters reaches the user as
    dagexec's own errors, and distributed's would repeat them as tracebacks (a lost connection, a dead worker)."""
    if verbosity <= 0:
        return logging.CRITICAL
    return max(logging.DEBUG, logging.WARNING - 10 * verbosity)


class DaskSession:
    """A connected ``distributed.Client``, with the ``LocalCluster`` it owns when no address was given."""

    def __init__(self, config: Config) -> None:
        self.address = scheduler_address(config)
        self.connect_timeout = seconds_option(config, "dask_connect_timeout")
        self.verbosity = int(config.getoption("verbosity", 0) or 0)
        self.cli = config.getoption("verbosity") is not None  # the CLI always says how verbose
        self.client: Any = None
        self.cluster: Any = None
        self._levels: dict[str, int] = {}
        try:
            import distributed
        except ImportError as exc:
            raise PluginError(
                "--executor dask needs Dask's distributed scheduler: pip install 'dagexec[dask]'"
            ) from exc
        self._quiet(self.verbosity)
        try:
            if self.address:
                self._connect(distributed)
            else:
                self._start_local(distributed, config)
        except BaseException:
            self.close()
            raise
        self._print_dashboard()

    def _quiet(self, verbosity: int) -> None:
        level = _distributed_level(verbosity)
        names = ["distributed"] + [
            n for n in logging.root.manager.loggerDict if n.startswith("distributed.") or n == "tornado.application"
        ]
        for name in names:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            if logger.level < level:
                logger.setLevel(level)

    def _connect(self, distributed: Any) -> None:
        try:
            self.client = distributed.Client(self.address, timeout=self.connect_timeout, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - refused, timed out, bad address: one line for the user
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise DaskConnectError(
                f"cannot reach the Dask scheduler at {self.address} within {self.connect_timeout:g}s ({reason}); "
                f"start one (dask scheduler) or fix --dask-address / DAGEXEC_DASK_ADDRESS, or raise "
                f"--dask-connect-timeout"
            ) from None

    def _start_local(self, distributed: Any, config: Config) -> None:
        import dask

        workers = config.getoption("dask_workers") or min(4, os.cpu_count() or 1)
        # A worker that dies mid-task fails the Dask task at once (KilledWorker): dagexec's
        # retry policy decides what happens next, not hidden re-runs on other workers.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            self.cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=bool(config.getoption("dask_processes", True)),
                dashboard_address="127.0.0.1:0",  # a free port: 8787 may be another cluster's
                silence_logs=_distributed_level(self.verbosity),
            )
        self.client = distributed.Client(self.cluster, set_as_default=False)

    def _print_dashboard(self) -> None:
        if self.verbosity < 0:
            return
        try:
            info = self.client.scheduler_info(n_workers=0)
            link = self.client.dashboard_link if "dashboard" in info.get("services", {}) else None
        except Exception:  # noqa: BLE001 - no dashboard to show
            link = None
        if not link:
            return
        if self.cli:
            print(f"dagexec: Dask dashboard: {link}", file=sys.stderr, flush=True)
        else:  # a library call does not write to stderr on its own
            log.info("Dask dashboard: %s", link)

    def close(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            self.client = self.cluster = None
            for name, level in self._levels.items():
                logging.getLogger(name).setLevel(level)
            self._levels.clear()
