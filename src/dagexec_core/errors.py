"""Every error dagexec raises, each naming the thing at fault and the fix."""

from __future__ import annotations


class DagexecError(Exception):
    """Base of every dagexec error."""


# -- DAG definition -----------------------------------------------------------


class DagValidationError(DagexecError):
    """The DAG cannot run as defined."""


class CycleError(DagValidationError):
    """The dependencies form a loop; ``.cycle`` lists it in order, first name repeated last."""

    def __init__(self, dag: str, cycle: list[str]) -> None:
        self.dag = dag
        self.cycle = cycle
        super().__init__(
            f"DAG {dag!r} has a dependency cycle: {' -> '.join(cycle)}; "
            f"remove one of these dependencies to break the loop"
        )


class MissingDependencyError(DagValidationError):
    """A task depends on a name that is not in the DAG."""

    def __init__(self, dag: str, task: str, missing: str, suggestion: str | None) -> None:
        self.dag = dag
        self.task = task
        self.missing = missing
        self.suggestion = suggestion
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        super().__init__(f"task {task!r} depends on {missing!r}, which is not in DAG {dag!r}{hint}")


class DuplicateTaskError(DagValidationError):
    def __init__(self, dag: str, task: str) -> None:
        self.dag = dag
        self.task = task
        super().__init__(
            f"DAG {dag!r} already has a task named {task!r}; give the second one another name with name=..."
        )


class SelfDependencyError(DagValidationError):
    def __init__(self, dag: str, task: str) -> None:
        self.dag = dag
        self.task = task
        super().__init__(f"task {task!r} in DAG {dag!r} depends on itself; remove {task!r} from its deps")


class TaskDefinitionError(DagValidationError):
    """A task's options are wrong (bad trigger, bad retry, bad timeout...)."""


class IllegalTransitionError(DagexecError):
    """The engine tried a state change that the transition table forbids."""


# -- running ------------------------------------------------------------------


class TaskTimeoutError(DagexecError, TimeoutError):
    """An attempt ran past its task's ``timeout``."""


class CircuitOpenError(DagexecError):
    """A task waited longer than its budget for its circuit breaker to close."""


class OutputSerializationError(DagexecError, TypeError):
    """A task returned a value that cannot be stored as JSON."""


class TaskInterruptedError(DagexecError):
    """A task was in flight at two consecutive crashes of the process driving its run (found on resume):
    the likely cause of both, so it is dead-lettered rather than started a third time."""


class TaskPicklingError(DagexecError, TypeError):
    """A task's function, arguments or output cannot cross to or from a worker process.

    Never retried: the same value fails the same way on every attempt.
    """

    retryable = False


class TaskCancelledError(DagexecError):
    """The run was cancelled while the task was running."""


class RunLockedError(DagexecError):
    """Another process is driving this run."""


class RunNotFoundError(DagexecError):
    pass


class StateFileError(DagexecError):
    """The state file is corrupt, foreign, from a newer schema, or cannot be written."""


class DagChangedError(DagexecError):
    """A stored run cannot be resumed because the DAG changed incompatibly."""


# -- plugins ------------------------------------------------------------------


class PluginError(DagexecError):
    """A plugin failed to load or one of its hooks raised."""


class PluginLoadError(PluginError):
    pass


class PluginHookError(PluginError):
    pass


class UsageError(DagexecError):
    """Wrong command-line or API usage (exit code 2)."""


# -- workflow patterns ----------------------------------------------------------


class EventTimeoutError(DagexecError, TimeoutError):
    """A task waited longer than its ``timeout`` for an event that never came."""


class BranchError(DagexecError, ValueError):
    """A conditional task chose a name that is not one of its branches."""


# -- Dask -----------------------------------------------------------------------


class DaskConnectError(PluginHookError, UsageError):
    """The Dask scheduler named by ``--dask-address`` (or the environment) could not be reached in time.

    Raised by the ``dask`` plugin's ``dagexec_executor`` hook, before a run is recorded; a
    `PluginHookError` so that it reaches the caller as itself, not wrapped.
    """


class DaskClusterError(DagexecError):
    """The Dask cluster ended an attempt without running it to the end; the task's retry policy decides."""


class DaskWorkerLostError(DaskClusterError):
    """The Dask worker running an attempt died (``KilledWorker``, or seen leaving the cluster)."""


class DaskNoWorkersError(DaskClusterError):
    """No Dask worker able to run the attempt was there for ``dask_no_workers_timeout`` seconds."""


class DaskWorkerVersionError(DagexecError):
    """A Dask worker has another dagexec version than the machine driving the run, or none. Never retried."""

    retryable = False


class DaskResourceTagError(TaskDefinitionError):
    """A ``dask:NAME=AMOUNT`` tag of a task is malformed. Never retried."""

    retryable = False


# -- not found (exit code 2 on the command line, like every usage error) -----------


class StateFileMissingError(StateFileError):
    """There is no state file where one was named (a command that reads runs never creates one)."""


class DeadLetterNotFoundError(DagexecError, KeyError):
    """No dead letter has the id given."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "no such dead letter"


#: Errors that mean "the thing you named is not there": a run, a dead letter, the state file. The CLI
#: exits 2 for each, as for a DAG file that is not found.
NOT_FOUND_ERRORS: tuple[type[DagexecError], ...] = (RunNotFoundError, StateFileMissingError, DeadLetterNotFoundError)
