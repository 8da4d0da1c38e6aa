"""The ``dask`` executor plugin: task bodies run on a Dask cluster (``--executor dask``); see docs/distributed.md.

With ``--dask-address`` (or ``DAGEXEC_DASK_ADDRESS``, then Dask's own
``DASK_SCHEDULER_ADDRESS``) it connects to a running scheduler; otherwise it
starts a ``LocalCluster`` for the run and closes it afterwards. Each run's
executor (`executor`) opens its client (`session`) when the run asks for it,
before the run is recorded, and closes it when the run ends; the DAG file and
its neighbours travel by value (`shipping`); `remote` runs on the worker.
"""

from __future__ import annotations

from typing import Any

from dagexec_core import Config, hookimpl

from .executor import DaskExecutor, task_resources
from .session import DaskSession, seconds_option

__all__ = ["DaskExecutor", "task_resources"]


@hookimpl
def dagexec_addoption(parser: Any) -> None:
    parser.add_argument(
        "--dask-address",
        default=None,
        help="Dask scheduler to use with --executor dask (default: DAGEXEC_DASK_ADDRESS, DASK_SCHEDULER_ADDRESS, "
        "else a LocalCluster for the run)",
    )
    parser.add_argument("--dask-workers", type=int, default=None, help="workers of the local Dask cluster")
    parser.add_argument(
        "--dask-connect-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up reaching the Dask scheduler after SECONDS (default 10)",
    )
    parser.add_argument(
        "--dask-no-workers-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail an attempt that no Dask worker could run for SECONDS (default 60)",
    )


@hookimpl
def dagexec_configure(config: Config) -> None:
    if config.getoption("executor") == "dask":  # wrong values fail before anything starts
        seconds_option(config, "dask_connect_timeout")
        seconds_option(config, "dask_no_workers_timeout")


@hookimpl(trylast=True)
def dagexec_executor(config: Config) -> DaskExecutor | None:
    if config.getoption("executor") != "dask":
        return None
    # Connect here, before the run is recorded: an unreachable scheduler is a usage error, not a crashed run.
    return DaskExecutor(config, DaskSession(config))
