"""dagexec: run DAGs of Python tasks with durable state and replaceable stages."""

from __future__ import annotations

from . import patterns
from .config import Config
from .context import TaskContext
from .dag import Dag, Task
from .engine import Run, RunHandle, RunReport, arun, run
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
from .hookspecs import hookimpl, hookspec
from .retry import RetryPolicy
from .stages import DeadLetter, RunInfo
from .state import TaskRecord, TaskState

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
