"""dagexec: run DAGs of Python tasks with durable state and replaceable stages."""

from __future__ import annotations

from . import patterns
from .api import RunHandle, arun, run
from .config import Config
from .context import TaskContext
from .dag import Dag, Task
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
from .hookspecs import hookimpl, hookspec
from .outputs import JsonSerializer, Serializer
from .plugins import call_hook
from .results import RunReport
from .retry import RetryPolicy
from .stages import (
    CircuitBreaker,
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

__version__ = "0.1.0"

# The user's API, then what a plugin author needs (stage protocols, the run's view, errors). The
# engine's implementation class is not here: hooks receive a `RunView`.
__all__ = [
    "FAILED_STATES",
    "TERMINAL_STATES",
    "BranchError",
    "CircuitBreaker",
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
