"""The ``dask`` executor plugin: task bodies run on a Dask cluster (``--executor dask``); see docs/distributed.md.

With ``--dask-address`` (or ``DAGEXEC_DASK_ADDRESS``, then Dask's own
``DASK_SCHEDULER_ADDRESS``) it connects to a running scheduler; otherwise it
starts a ``LocalCluster`` for the invocation and closes it afterwards. The
client lives from configure to unconfigure (`session`), the executor of each
run sends attempts through it (`executor`), the DAG file and its neighbours
travel by value (`shipping`) and `remote` is what runs on the worker.
"""

from __future__ import annotations

from typing import Any

from dagexec_core import hookimpl
from dagexec_core.config import Config

from .executor import DaskExecutor, task_resources

__all__ = ["DaskExecutor", "task_resources"]

#: Where the session of an invocation is kept in ``config.stash``.
STASH_KEY = "dagexec.dask"


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
    # Connect before any run is recorded: a wrong address is a usage error, not a crashed run.
    if config.getoption("executor") != "dask" or STASH_KEY in config.stash:
        return
    from .session import DaskSession

    config.stash[STASH_KEY] = DaskSession(config)


@hookimpl
def dagexec_unconfigure(config: Config) -> None:
    session = config.stash.pop(STASH_KEY, None)
    if session is not None:
        session.close()


@hookimpl(trylast=True)
def dagexec_executor(config: Config) -> DaskExecutor | None:
    if config.getoption("executor") != "dask":
        return None
    return DaskExecutor(config, config.stash.get(STASH_KEY))
