"""dagexec: run DAGs of Python tasks with durable state and replaceable stages.

The names below are imported on first use (PEP 562), so that ``dagexec
--version`` or a DAG file's ``from dagexec_core import Dag`` does not pay for
the engine, asyncio and pluggy; ``from dagexec_core import run`` works as
always. Errors are imported at once: they are small and every module needs them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from .errors import (
    BranchError,
    CircuitOpenError,
    CycleError,
    DagChangedError,
    DagexecError,
    DagValidationError,
    DuplicateTaskError,
    EventTimeoutError,
    MissingDependencyError,
    OutputSerializationError,
    PluginError,
    RunLockedError,
    SelfDependencyError,
    StateFileError,
    TaskPicklingError,
    TaskTimeoutError,
)

if TYPE_CHECKING:
    from . import patterns
    from .config import Config
    from .context import TaskContext
    from .dag import Dag, Task
    from .engine import Run, RunHandle, RunReport, arun, run
    from .hookspecs import hookimpl, hookspec
    from .retry import RetryPolicy
    from .stages import DeadLetter, RunInfo
    from .state import TaskRecord, TaskState

#: Where each lazily imported public name lives.
_LAZY: dict[str, str] = {
    "patterns": ".patterns",
    "Config": ".config",
    "TaskContext": ".context",
    "Dag": ".dag",
    "Task": ".dag",
    "Run": ".engine",
    "RunHandle": ".engine",
    "RunReport": ".engine",
    "arun": ".engine",
    "run": ".engine",
    "hookimpl": ".hookspecs",
    "hookspec": ".hookspecs",
    "RetryPolicy": ".retry",
    "DeadLetter": ".stages",
    "RunInfo": ".stages",
    "TaskRecord": ".state",
    "TaskState": ".state",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        # `import dagexec_core; dagexec_core.state.TRANSITIONS` worked when this module imported
        # every submodule: it still does.
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f".{name}", __name__)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(where, __name__)
    value = module if where == f".{name}" else getattr(module, name)
    globals()[name] = value  # the next look-up is an ordinary global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "BranchError",
    "CircuitOpenError",
    "Config",
    "CycleError",
    "Dag",
    "DagChangedError",
    "DagValidationError",
    "DagexecError",
    "DeadLetter",
    "DuplicateTaskError",
    "EventTimeoutError",
    "MissingDependencyError",
    "OutputSerializationError",
    "PluginError",
    "RetryPolicy",
    "Run",
    "RunHandle",
    "RunInfo",
    "RunLockedError",
    "RunReport",
    "SelfDependencyError",
    "StateFileError",
    "Task",
    "TaskContext",
    "TaskPicklingError",
    "TaskRecord",
    "TaskState",
    "TaskTimeoutError",
    "__version__",
    "arun",
    "hookimpl",
    "hookspec",
    "patterns",
    "run",
]
