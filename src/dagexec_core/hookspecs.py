"""Hook specifications: the only door between the engine and its stages.

Every hook is named ``dagexec_*``. Implementations may take any subset of a
hook's arguments. Provider hooks stop at the first non-None result; the
built-in default of each is ``trylast`` so any other plugin wins. Event hooks
are broadcast to every plugin.

Use in dagplugins.py: define a function with the hook's name, decorated with
``@dagexec_core.hookimpl``, in a ``dagplugins.py`` beside your DAG file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import argparse

    from .config import Config
    from .dag import Task
    from .engine import Run, RunReport
    from .stages import CircuitBreaker, DeadLetter, DeadLetterQueue, RetryPolicyLike, Storage, TaskExecutor
    from .state import TaskRecord

hookspec = pluggy.HookspecMarker("dagexec")
hookimpl = pluggy.HookimplMarker("dagexec")


# -------------------------------------------------------------------------
# Set-up hooks
# -------------------------------------------------------------------------


@hookspec(historic=True)
def dagexec_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Add new hook specifications, called once when a plugin is registered.

    :param pluginmanager: the run's plugin manager; call
        ``pluginmanager.add_hookspecs(module)``.

    Use in dagplugins.py: rarely; a plugin that offers hooks to other plugins
    registers their specifications here.
    """


@hookspec
def dagexec_addoption(parser: argparse.ArgumentParser) -> None:
    """Add command-line flags to ``dagexec run`` (and ``resume``).

    :param parser: an ``argparse`` parser (or argument group) to call
        ``add_argument`` on. Parsed values reach plugins as
        ``config.getoption(dest)``.

    Only plugins known before the command line is parsed (built-ins, entry
    points, ``DAGEXEC_PLUGINS``, ``-p``) can add flags.
    """


@hookspec(historic=True)
def dagexec_configure(config: Config) -> None:
    """Called once the configuration is complete, before any run starts.

    :param config: the `Config` (options, plugin manager, root directory).

    Historic: a plugin registered later still receives the call.
    Use in dagplugins.py: read options, open connections, set defaults.
    """


@hookspec
def dagexec_unconfigure(config: Config) -> None:
    """Called once when the configuration is torn down (after the run).

    :param config: the `Config`.
    """


# -------------------------------------------------------------------------
# Provider hooks (firstresult: return None to decline)
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def dagexec_storage(config: Config) -> Storage | None:
    """Return the `Storage` that keeps runs and task records.

    :param config: the `Config`; ``config.getoption("state")`` is the state
        path (``":memory:"`` when not persisting).

    Stops at the first non-None result. Built-in: ``sqlite`` (``memory``
    when not persisting). Called once per run.
    Use in dagplugins.py: return your own storage object to keep state
    elsewhere.
    """


@hookspec(firstresult=True)
def dagexec_executor(config: Config) -> TaskExecutor | None:
    """Return the `TaskExecutor` that runs task bodies.

    :param config: the `Config`; ``config.getoption("executor")`` is the
        name asked for (``local``, ``process``, ``dask``).

    Stops at the first non-None result. Built-ins: ``local`` (threads and the
    event loop) and ``process`` (sync bodies in worker processes that are
    killed when they overrun their timeout). Called once per run.
    """


@hookspec(firstresult=True)
def dagexec_retry_policy(task: Task, config: Config, run: Run) -> RetryPolicyLike | None:
    """Return the retry policy for ``task``.

    :param task: the `Task` that failed.
    :param config: the `Config`.
    :param run: the `Run` (``run_id``, ``storage``): for state kept per run,
        such as the built-in retry budget.

    Stops at the first non-None result. Built-in: ``retry`` (the task's
    ``retry=``, then its tags', then the run default). Called once per task,
    when it first fails; the policy's ``next_delay(attempt, error)`` returns
    the seconds to wait, or None to give up.
    """


@hookspec(firstresult=True)
def dagexec_circuit_breaker(name: str, config: Config, run: Run) -> CircuitBreaker | None:
    """Return the `CircuitBreaker` for breaker group ``name``.

    :param name: the group named by tasks' ``breaker=`` (or by their tags
        through the ``breaker_tags`` option).
    :param config: the `Config`.
    :param run: the `Run`; the built-in breaker keeps its state with it
        (``run.storage.put_meta``) so a resumed run starts where it stopped.

    Stops at the first non-None result. Built-in: ``breaker``. Called once
    per group per run; every task of the group shares the object.
    """


@hookspec(firstresult=True)
def dagexec_dead_letter_queue(config: Config, storage: Storage) -> DeadLetterQueue | None:
    """Return the `DeadLetterQueue` for tasks whose retries are exhausted.

    :param config: the `Config`.
    :param storage: the run's `Storage`, so a queue can live beside it.

    Stops at the first non-None result. Built-in: ``deadletter``. Called
    once per run.
    """


# -------------------------------------------------------------------------
# Event hooks (broadcast; the metrics stage)
# -------------------------------------------------------------------------


@hookspec
def dagexec_run_started(run: Run) -> None:
    """A run starts (or resumes).

    :param run: the `Run`: ``run_id``, ``dag``, ``config``, ``resumed_from``.
    """


@hookspec
def dagexec_task_started(run: Run, task: Task, attempt: int) -> None:
    """An attempt of ``task`` is about to start.

    :param run: the `Run`.
    :param task: the `Task`.
    :param attempt: 1 for the first attempt.

    Called inside the context (``contextvars``) the task body will run in,
    so a tracing plugin can make its span current for the body.
    """


@hookspec
def dagexec_task_retrying(run: Run, task: Task, attempt: int, error: BaseException, delay: float) -> None:
    """An attempt failed and the task will be retried after ``delay`` seconds.

    :param run: the `Run`.
    :param task: the `Task`.
    :param attempt: the attempt that failed.
    :param error: its exception.
    :param delay: seconds until the next attempt.
    """


@hookspec
def dagexec_task_finished(run: Run, task: Task, record: TaskRecord) -> None:
    """``task`` reached a final state: completed, failed, skipped or cancelled.

    :param run: the `Run`.
    :param task: the `Task`.
    :param record: its `TaskRecord`.
    """


@hookspec
def dagexec_task_dead_lettered(run: Run, task: Task, entry: DeadLetter) -> None:
    """``task`` was pushed to the dead-letter queue.

    :param run: the `Run`.
    :param task: the `Task`.
    :param entry: the `DeadLetter` stored.
    """


@hookspec
def dagexec_breaker_state_changed(name: str, old: str, new: str) -> None:
    """Breaker group ``name`` moved from ``old`` to ``new``.

    :param name: the breaker group.
    :param old: ``closed``, ``open`` or ``half_open``.
    :param new: the new state.
    """


@hookspec
def dagexec_run_finished(run: Run, report: RunReport) -> None:
    """A run finished, failed or was cancelled.

    :param run: the `Run`.
    :param report: the `RunReport`.
    """
