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
    DaskClusterError,
    DaskConnectError,
    DaskNoWorkersError,
    DaskResourceTagError,
    DaskWorkerLostError,
    DaskWorkerVersionError,
    DeadLetterNotFoundError,
    DuplicateTaskError,
    EventTimeoutError,
    MissingDependencyError,
    OutputSerializationError,
    PluginError,
    PluginHookError,
    PluginLoadError,
    RunLockedError,
    RunNotFoundError,
    SelfDependencyError,
    StateFileError,
    StateFileMissingError,
    TaskPicklingError,
    TaskTimeoutError,
    UsageError,
)

if TYPE_CHECKING:
    from . import patterns
    from .api import RunHandle, arun, run
    from .config import Config
    from .context import TaskContext
    from .dag import Dag, Task
    from .hookspecs import hookimpl, hookspec
    from .outputs import JsonSerializer, Serializer
    from .params import ParamsError
    from .plugins import call_hook
    from .results import RunReport
    from .retry import RetryPolicy
    from .stages import (
        CircuitBreaker,
        Clock,
        DeadLetter,
        DeadLetterQueue,
        HistoryEntry,
        RecordRow,
        RetryPolicyLike,
        RunHistory,
        RunInfo,
        Storage,
        TaskExecutor,
        fingerprint_digest,
        fingerprint_text,
    )
    from .state import FAILED_STATES, TERMINAL_STATES, TaskRecord, TaskState
    from .view import RunView

#: Where each lazily imported public name lives.
_LAZY: dict[str, str] = {
    "patterns": ".patterns",
    "Config": ".config",
    "TaskContext": ".context",
    "Dag": ".dag",
    "Task": ".dag",
    "RunHandle": ".api",
    "arun": ".api",
    "run": ".api",
    "RunReport": ".results",
    "hookimpl": ".hookspecs",
    "hookspec": ".hookspecs",
    "JsonSerializer": ".outputs",
    "Serializer": ".outputs",
    "call_hook": ".plugins",
    "RetryPolicy": ".retry",
    "CircuitBreaker": ".stages",
    "Clock": ".stages",
    "DeadLetter": ".stages",
    "DeadLetterQueue": ".stages",
    "HistoryEntry": ".stages",
    "RecordRow": ".stages",
    "RetryPolicyLike": ".stages",
    "RunHistory": ".stages",
    "RunInfo": ".stages",
    "Storage": ".stages",
    "TaskExecutor": ".stages",
    "fingerprint_digest": ".stages",
    "fingerprint_text": ".stages",
    "FAILED_STATES": ".state",
    "TERMINAL_STATES": ".state",
    "TaskRecord": ".state",
    "TaskState": ".state",
    "RunView": ".view",
    "ParamsError": ".params",
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

# The user's API, then what a plugin author needs (stage protocols, the run's view, errors). The
# engine's implementation class is not here: hooks receive a `RunView`.
__all__ = [
    "FAILED_STATES",
    "TERMINAL_STATES",
    "BranchError",
    "CircuitBreaker",
    "Clock",
    "CircuitOpenError",
    "Config",
    "CycleError",
    "Dag",
    "DagChangedError",
    "DagValidationError",
    "DagexecError",
    "DaskClusterError",
    "DaskConnectError",
    "DaskNoWorkersError",
    "DaskResourceTagError",
    "DaskWorkerLostError",
    "DaskWorkerVersionError",
    "DeadLetter",
    "DeadLetterNotFoundError",
    "DeadLetterQueue",
    "DuplicateTaskError",
    "EventTimeoutError",
    "HistoryEntry",
    "JsonSerializer",
    "MissingDependencyError",
    "OutputSerializationError",
    "ParamsError",
    "PluginError",
    "PluginHookError",
    "PluginLoadError",
    "RecordRow",
    "RetryPolicy",
    "RetryPolicyLike",
    "RunHandle",
    "RunHistory",
    "RunInfo",
    "RunLockedError",
    "RunNotFoundError",
    "RunReport",
    "RunView",
    "SelfDependencyError",
    "Serializer",
    "StateFileError",
    "StateFileMissingError",
    "Storage",
    "Task",
    "TaskContext",
    "TaskExecutor",
    "TaskPicklingError",
    "TaskRecord",
    "TaskState",
    "TaskTimeoutError",
    "UsageError",
    "__version__",
    "arun",
    "call_hook",
    "fingerprint_digest",
    "fingerprint_text",
    "hookimpl",
    "hookspec",
    "patterns",
    "run",
]
