"""The default retry stage: the task's ``retry=``, else the run's default policy."""

from __future__ import annotations

from dagexec_core import hookimpl
from dagexec_core.config import Config
from dagexec_core.dag import Task
from dagexec_core.retry import RetryPolicy

NO_RETRY = RetryPolicy(max_attempts=1)


@hookimpl(trylast=True)
def dagexec_retry_policy(task: Task, config: Config) -> RetryPolicy:
    if task.retry is not None:
        return task.retry
    default = config.getoption("retry")
    if isinstance(default, RetryPolicy):
        return default
    if isinstance(default, int) and default >= 1:
        return RetryPolicy(max_attempts=default)
    return NO_RETRY
