"""The ``dask`` executor plugin: task bodies run on a Dask cluster (``--executor dask``); see docs/distributed.md.

With ``--dask-address`` (or ``DAGEXEC_DASK_ADDRESS``, then Dask's own
``DASK_SCHEDULER_ADDRESS``) it connects to a running scheduler; otherwise it
starts a ``LocalCluster`` for the run and closes it afterwards. Each run's
executor (`executor`) opens its client (`session`) when the run asks for it,
before the run is recorded, and closes it when the run ends; the DAG file and
its neighbours travel by value (`shipping`); `remote` runs on the worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagexec_core import Config, hookimpl

if TYPE_CHECKING:
    from .executor import DaskExecutor, task_resources

# The executor and the session are imported when a run asks for Dask: a run on the local
# executor does not pay for them.
__all__ = ["DaskExecutor", "task_resources"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import executor

        return getattr(executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        from .session import seconds_option

        seconds_option(config, "dask_connect_timeout")
        seconds_option(config, "dask_no_workers_timeout")


@hookimpl(trylast=True)
def dagexec_executor(config: Config) -> DaskExecutor | None:
    if config.getoption("executor") != "dask":
        return None
    from .executor import DaskExecutor
    from .session import DaskSession

    # Connect here, before the run is recorded: an unreachable scheduler is a usage error, not a crashed run.
    return DaskExecutor(config, DaskSession(config))
