"""The default retry stage: which policy a task gets, and the run's retry budget.

Precedence, first match wins:

1. the task's own ``retry=``;
2. ``retry_tags``: a table of tag -> policy; the first entry (in the table's
   order) naming one of the task's tags;
3. ``retry``: the run default (``run(retry=...)``, ``--retry``, or
   ``[tool.dagexec]`` in pyproject.toml);
4. no retry.

``retry_budget`` caps the retries of the whole run: once that many retries
were made, further failures are final and their error says so.
"""

from __future__ import annotations

import argparse
import logging
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagexec_core import Config, RetryPolicy, Task, UsageError, hookimpl

if TYPE_CHECKING:
    from dagexec_core import RunView

log = logging.getLogger("dagexec.retry")

NO_RETRY = RetryPolicy(max_attempts=1)

#: Where the budget's spent count is kept with the run, so a resumed run goes on counting.
BUDGET_META_KEY = "retry_budget_spent"


def default_policy(config: Config) -> RetryPolicy | None:
    return RetryPolicy.coerce(config.getoption("retry"), where="option retry")


def tag_policies(config: Config) -> dict[str, RetryPolicy]:
    table = config.getoption("retry_tags") or {}
    if not isinstance(table, Mapping):
        raise UsageError(f"option retry_tags must be a table of tag -> policy, not {table!r}")
    out: dict[str, RetryPolicy] = {}
    for tag, value in table.items():
        policy = RetryPolicy.coerce(value, where=f"option retry_tags.{tag}")
        if policy is not None:
            out[str(tag)] = policy
    return out


def budget_limit(config: Config) -> int | None:
    value = config.getoption("retry_budget")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"option retry_budget = {value!r}: give a number of retries >= 0 for the whole run")
    return value


STASH_KEY = "dagexec.retry.parsed"


def _parsed(config: Config) -> tuple[RetryPolicy | None, dict[str, RetryPolicy]]:
    """The run default and tag policies, parsed once for as long as the options stay the same objects."""
    raw = (config.getoption("retry"), config.getoption("retry_tags"))
    cached = config.stash.get(STASH_KEY)
    if cached is not None and cached[0][0] is raw[0] and cached[0][1] is raw[1]:
        return cached[1]  # type: ignore[no-any-return]
    parsed = (default_policy(config), tag_policies(config))
    config.stash[STASH_KEY] = (raw, parsed)
    return parsed


def policy_for(task: Task, config: Config) -> RetryPolicy:
    """The `RetryPolicy` of ``task`` under the documented precedence."""
    if task.retry is not None:
        return task.retry
    default, tags = _parsed(config)
    if task.tags:
        for tag, policy in tags.items():
            if tag in task.tags:
                return policy
    return default or NO_RETRY


class RetryBudget:
    """At most ``limit`` retries across one run; the count is kept with the run."""

    def __init__(self, limit: int, run: RunView | None = None) -> None:
        self.limit = limit
        self.run = run
        self.spent = 0
        if run is not None and run.resumed_from:
            saved = run.storage.get_meta(run.run_id, BUDGET_META_KEY)
            if isinstance(saved, int):
                self.spent = saved

    @property
    def left(self) -> int:
        return max(0, self.limit - self.spent)

    def take(self) -> bool:
        if self.spent >= self.limit:
            return False
        self.spent += 1
        if self.run is not None:
            self.run.storage.put_meta(self.run.run_id, BUDGET_META_KEY, self.spent)
        return True


class TaskRetry:
    """One task's policy in one run: remembers its previous delay and draws on the run's budget."""

    def __init__(self, task: str, policy: RetryPolicy, budget: RetryBudget | None, run_id: str | None) -> None:
        self.task = task
        self.policy = policy
        self.max_attempts = policy.max_attempts
        self.budget = budget
        self.run_id = run_id
        self.previous: float | None = None

    def next_delay(self, attempt: int, error: BaseException | None) -> float | None:
        delay = self.policy.next_delay(attempt, error, previous=self.previous)
        if delay is None:
            return None
        if self.budget is not None and not self.budget.take():
            why = (
                f"not retried: the retry budget of run {self.run_id} ({self.budget.limit} retries) is spent; "
                f"raise retry_budget or fix the failures"
            )
            if error is not None:
                error.add_note(why)
            log.warning("task %r attempt %d failed and is %s", self.task, attempt, why)
            return None
        self.previous = delay
        return delay

    def __repr__(self) -> str:
        return f"<TaskRetry {self.task!r} {self.policy!r}>"


class Plugin:
    """Instantiated per plugin manager: the per-run budgets live here, not in the module."""

    def __init__(self) -> None:
        self.budgets: weakref.WeakKeyDictionary[Any, RetryBudget] = weakref.WeakKeyDictionary()

    @hookimpl
    def dagexec_addoption(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--retry",
            type=int,
            default=None,
            metavar="N",
            help="default attempts per task (1 = no retry) for tasks without retry= or a tag policy",
        )
        parser.add_argument(
            "--retry-budget",
            dest="retry_budget",
            type=int,
            default=None,
            metavar="N",
            help="at most N retries across the whole run; after that failures are final",
        )

    @hookimpl
    def dagexec_configure(self, config: Config) -> None:
        # Fail before the run starts, not at the first failure, on a bad table.
        default_policy(config)
        tag_policies(config)
        budget_limit(config)

    @hookimpl(trylast=True)
    def dagexec_retry_policy(self, task: Task, config: Config, run: RunView | None = None) -> TaskRetry:
        policy = policy_for(task, config)
        budget = None
        limit = budget_limit(config)
        if limit is not None:
            key: Any = run if run is not None else config
            budget = self.budgets.get(key)
            if budget is None:
                budget = self.budgets[key] = RetryBudget(limit, run)
        return TaskRetry(task.name, policy, budget, run.run_id if run is not None else None)
