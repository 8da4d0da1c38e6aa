"""What runs on a Dask worker: check the worker's dagexec, load the task's function, call the body.

This module travels to the cluster by value (cloudpickle), like the DAG file:
the scheduler needs nothing of dagexec to hold the task, and the version check
below is this machine's code even on a worker with another dagexec, or none.
So it imports only the standard library at module level.

`run_remote` never raises for a cluster problem: it returns an envelope,
``("ok", value)``, ``("version", worker, found)`` or ``("unloadable", worker,
reason)``, and the coordinator turns the last two into errors that name the
task. An exception the body raises travels back as itself.
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any


def worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # noqa: BLE001 - only used to name the worker
        return "a Dask worker"


def call(fn: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
    if is_async:
        # A worker thread has no event loop of its own: the body gets a fresh one.
        return asyncio.run(fn(**kwargs))
    return fn(**kwargs)


def run_remote(
    fn_blob: bytes, kwargs_blob: bytes | None, carrier: dict[str, str] | None, version: str, is_async: bool
) -> tuple[Any, ...]:
    """Run one attempt of a task body on this worker; see the module docstring for what it returns."""
    try:
        import dagexec_core

        found: str | None = dagexec_core.__version__
    except ImportError:
        found = None
    if found != version:
        return ("version", worker_address(), found)
    try:
        fn = pickle.loads(fn_blob)
        kwargs = pickle.loads(kwargs_blob) if kwargs_blob else {}
    except Exception as exc:  # noqa: BLE001 - a module the function needs is not on this worker
        return ("unloadable", worker_address(), f"{type(exc).__name__}: {exc}")
    if not carrier:
        return ("ok", call(fn, kwargs, is_async))
    from dagexec_plugins.tracing import remote_context

    with remote_context(carrier):
        return ("ok", call(fn, kwargs, is_async))
