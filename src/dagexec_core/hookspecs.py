"""Hook specifications: the only door between the engine and its stages.

Every hook is named ``dagexec_*``. Implementations may take any subset of a
hook's arguments. Provider hooks stop at the first non-None result; the
built-in default of each is ``trylast`` so any other plugin wins. Event hooks
are broadcast to every plugin.

Use in dagplugins.py: define a function with the hook's name, decorated with
``@dagexec_core.hookimpl``, in a ``dagplugins.py`` beside your DAG file (or
in a module named with ``-p``, or an installed plugin). A misspelt hook name
is an error that names the closest hook.

Event hooks run on the event-loop thread, most of them inside a scheduler
step: while one runs no task is launched and no finished task is taken, so a
slow hook stalls every task. Hand slow work (network calls, files) to a
thread or queue of your own. Each event hook says whether the record it
receives is durable in the state file yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import argparse

    from .config import Config
    from .dag import Task
    from .results import RunReport
    from .stages import CircuitBreaker, DeadLetter, DeadLetterQueue, RetryPolicyLike, Storage, TaskExecutor
    from .state import TaskRecord
    from .view import RunView

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

    Historic: a plugin registered later still receives the call.

    Use in dagplugins.py: rarely; a plugin that offers hooks to other plugins
    registers their specifications here::

        @hookimpl
        def dagexec_addhooks(pluginmanager):
            pluginmanager.add_hookspecs(my_hookspecs)
    """


@hookspec
def dagexec_addoption(parser: argparse.ArgumentParser) -> None:
    """Add options, as command-line flags of ``dagexec run`` and ``resume``.

    :param parser: an ``argparse`` parser (or argument group) to call
        ``add_argument`` on. Parsed values reach plugins as
        ``config.getoption(dest)``.

    The option exists everywhere, not only on the command line: its default
    applies in `run()` too, and ``[tool.dagexec]``, a ``DAGEXEC_<DEST>``
    variable or a keyword of `run()` may set it (precedence: default,
    pyproject, environment, flag or keyword). Plugins known before the
    command line is parsed (built-ins, entry points, ``DAGEXEC_PLUGINS``,
    ``-p``, and the DAG file's ``dagplugins.py``) can add flags.

    Use in dagplugins.py::

        @hookimpl
        def dagexec_addoption(parser):
            parser.add_argument("--slack-channel", default="#etl", help="where to post failures")
    """


@hookspec(historic=True)
def dagexec_configure(config: Config) -> None:
    """Called once the configuration is complete, before any run starts.

    :param config: the `Config` (options, plugin manager, root directory).

    Historic: a plugin registered later still receives the call. An
    exception raised here stops the invocation with an error naming the
    plugin.

    Use in dagplugins.py: read options, open connections, register more
    plugins::

        @hookimpl
        def dagexec_configure(config):
            config.stash["slack"] = SlackClient(config.getoption("slack_channel"))
    """


@hookspec
def dagexec_unconfigure(config: Config) -> None:
    """Called once when the configuration is torn down (after the run, also when it raised).

    :param config: the `Config`.

    Use in dagplugins.py: close what ``dagexec_configure`` opened::

        @hookimpl
        def dagexec_unconfigure(config):
            config.stash.pop("slack").close()
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
    when not persisting). Called once per run, and by ``dagexec runs``,
    ``show``, ``dlq`` and ``emit`` to read the state.

    Use in dagplugins.py: return your own storage object to keep state
    elsewhere, or None to leave it to the built-in::

        @hookimpl
        def dagexec_storage(config):
            if str(config.getoption("state")).startswith("redis://"):
                return RedisStorage(config.getoption("state"))
    """


@hookspec(firstresult=True)
def dagexec_executor(config: Config) -> TaskExecutor | None:
    """Return the `TaskExecutor` that runs task bodies.

    :param config: the `Config`; ``config.getoption("executor")`` is the
        name asked for (``local``, ``process``, ``dask``).

    Stops at the first non-None result. Built-ins: ``local`` (threads and the
    event loop) and ``process`` (sync bodies in worker processes that are
    killed when they overrun their timeout). Called once per run.

    Use in dagplugins.py: answer only to your own executor name::

        @hookimpl
        def dagexec_executor(config):
            if config.getoption("executor") == "counting":
                return CountingExecutor()
    """


@hookspec(firstresult=True)
def dagexec_retry_policy(task: Task, config: Config, run: RunView) -> RetryPolicyLike | None:
    """Return the retry policy for ``task``.

    :param task: the `Task` that failed.
    :param config: the `Config`.
    :param run: the `RunView` (``run_id``, ``storage``): for state kept per run,
        such as the built-in retry budget.

    Stops at the first non-None result. Built-in: ``retry`` (the task's
    ``retry=``, then its tags', then the run default). Called once per task,
    when it first fails, on the event-loop thread inside a scheduler step;
    the policy's ``next_delay(attempt, error)`` returns the seconds to wait,
    or None to give up.

    Use in dagplugins.py::

        @hookimpl
        def dagexec_retry_policy(task):
            if "flaky-api" in task.tags:
                return RetryPolicy(max_attempts=5, backoff="exponential", base=1)
    """


@hookspec(firstresult=True)
def dagexec_circuit_breaker(name: str, config: Config, run: RunView) -> CircuitBreaker | None:
    """Return the `CircuitBreaker` for breaker group ``name``.

    :param name: the group named by tasks' ``breaker=`` (or by their tags
        through the ``breaker_tags`` option).
    :param config: the `Config`.
    :param run: the `RunView`; the built-in breaker keeps its state with it
        (``run.storage.put_meta``) so a resumed run starts where it stopped.

    Stops at the first non-None result. Built-in: ``breaker``. Called once
    per group per run; every task of the group shares the object.

    Use in dagplugins.py: share a breaker between processes::

        @hookimpl
        def dagexec_circuit_breaker(name):
            if name == "payments":
                return SharedRedisBreaker(name)
    """


@hookspec(firstresult=True)
def dagexec_dead_letter_queue(config: Config, storage: Storage) -> DeadLetterQueue | None:
    """Return the `DeadLetterQueue` for tasks whose retries are exhausted.

    :param config: the `Config`.
    :param storage: the run's `Storage`, so a queue can live beside it.

    Stops at the first non-None result. Built-in: ``deadletter``. Called
    once per run.

    Use in dagplugins.py::

        @hookimpl
        def dagexec_dead_letter_queue(config):
            return SqsDeadLetterQueue(config.getoption("dlq_url"))
    """


# -------------------------------------------------------------------------
# Event hooks (broadcast; the metrics stage)
#
# They run on the event-loop thread. Those about tasks and breakers run inside
# a scheduler step, which launches nothing until they return: a slow hook
# stalls every task. Each says whether what it receives is durable yet.
# -------------------------------------------------------------------------


@hookspec
def dagexec_run_started(run: RunView) -> None:
    """A run starts (or resumes).

    :param run: the `RunView`: ``run_id``, ``dag``, ``config``, ``resumed_from``,
        counts; a tracing plugin calls ``run.set_trace_ids(trace_id)`` here.

    Runs on the event-loop thread, after the run is opened in the state file
    (its row is durable) and before the first task starts; a slow hook delays
    the whole run.

    Use in dagplugins.py::

        @hookimpl
        def dagexec_run_started(run):
            print(f"run {run.run_id} of {run.dag.name}: {len(run.dag)} tasks")
    """


@hookspec
def dagexec_task_started(run: RunView, task: Task, attempt: int) -> None:
    """An attempt of ``task`` is about to start.

    :param run: the `RunView`.
    :param task: the `Task`.
    :param attempt: 1 for the first attempt.

    Runs on the event-loop thread inside a scheduler step: a slow hook stalls
    every task. The task's RUNNING record is durable before this is called.
    Called inside the context (``contextvars``) the task body will run in,
    so a tracing plugin can make its span current for the body.

    Use in dagplugins.py::

        @hookimpl
        def dagexec_task_started(task, attempt):
            if attempt > 1:
                print(f"{task.name}: attempt {attempt}")
    """


@hookspec
def dagexec_task_retrying(run: RunView, task: Task, attempt: int, error: BaseException, delay: float) -> None:
    """An attempt failed and the task will be retried after ``delay`` seconds.

    :param run: the `RunView`.
    :param task: the `Task`.
    :param attempt: the attempt that failed.
    :param error: its exception.
    :param delay: seconds until the next attempt.

    Runs on the event-loop thread inside a scheduler step: a slow hook stalls
    every task. The RETRYING record is not durable yet: the step writes it,
    with the step's other changes, after the hook returns.

    Use in dagplugins.py::

        @hookimpl
        def dagexec_task_retrying(task, attempt, error, delay):
            print(f"{task.name} attempt {attempt} failed ({error!r}); again in {delay:.1f}s")
    """


@hookspec
def dagexec_task_finished(run: RunView, task: Task, record: TaskRecord) -> None:
    """``task`` reached a final state: completed, failed, dead-lettered, skipped or cancelled.

    :param run: the `RunView`.
    :param task: the `Task`.
    :param record: its `TaskRecord`.

    Runs on the event-loop thread inside a scheduler step: a slow hook stalls
    every task. The record is not durable yet: the step writes it after the
    hook returns, and before any dependent of the task starts. (A
    dead-lettered task's FAILED record is already durable.)

    Use in dagplugins.py::

        @hookimpl
        def dagexec_task_finished(task, record):
            if record.state.failed:
                alert(f"{task.name} failed: {record.error}")
    """


@hookspec
def dagexec_task_dead_lettered(run: RunView, task: Task, entry: DeadLetter) -> None:
    """``task`` was pushed to the dead-letter queue.

    :param run: the `RunView`.
    :param task: the `Task`.
    :param entry: the `DeadLetter` stored.

    Runs on the event-loop thread inside a scheduler step: a slow hook stalls
    every task. The entry is durable in the queue, and the task's FAILED
    record before it; its DEAD_LETTERED record is written after the hook
    returns.

    Use in dagplugins.py::

        @hookimpl
        def dagexec_task_dead_lettered(task, entry):
            page_oncall(f"{task.name} dead-lettered as {entry.id}: {entry.message}")
    """


@hookspec
def dagexec_breaker_state_changed(name: str, old: str, new: str) -> None:
    """Breaker group ``name`` moved from ``old`` to ``new``.

    :param name: the breaker group.
    :param old: ``closed``, ``open`` or ``half_open``.
    :param new: the new state.

    Runs on the event-loop thread while tasks are scheduled (inside a step, or
    when the loop polls an open breaker): a slow hook stalls every task. No
    record comes with it; the built-in breaker stores its
    state with the run (``put_meta``) when it changes.

    Use in dagplugins.py::

        @hookimpl
        def dagexec_breaker_state_changed(name, old, new):
            print(f"breaker {name}: {old} -> {new}")
    """


@hookspec
def dagexec_run_finished(run: RunView, report: RunReport) -> None:
    """A run finished, failed or was cancelled.

    :param run: the `RunView`.
    :param report: the `RunReport`.

    Runs on the event-loop thread after the last step: every record and the
    run's final status are durable.

    Use in dagplugins.py::

        @hookimpl
        def dagexec_run_finished(run, report):
            print(f"{run.run_id}: {report.status} {report.counts()}")
    """
