"""The built-in stages keep the contracts the testing kit gives plugin authors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dagexec_core import RetryPolicy
from dagexec_core.testing import (
    CircuitBreakerContract,
    DeadLetterQueueContract,
    ExecutorContract,
    RetryPolicyContract,
    StorageContract,
    VirtualClock,
)
from dagexec_plugins.breaker import Breaker, BreakerSettings
from dagexec_plugins.deadletter import MemoryDeadLetterQueue
from dagexec_plugins.local import LocalExecutor
from dagexec_plugins.memory import MemoryStorage
from dagexec_plugins.process import ProcessExecutor
from dagexec_plugins.retry import TaskRetry
from dagexec_plugins.sqlite import SqliteStorage


class TestSqliteStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> SqliteStorage:
        return SqliteStorage(tmp_path / "state.db")

    def reopen(self, storage: Any) -> SqliteStorage:
        return SqliteStorage(storage.path)


class TestMemoryStorage(StorageContract):
    persistent = False

    @pytest.fixture
    def storage(self) -> MemoryStorage:
        return MemoryStorage()


class TestSqliteDeadLetterQueue(DeadLetterQueueContract):
    @pytest.fixture
    def dlq(self, tmp_path: Path) -> Any:
        return SqliteStorage(tmp_path / "state.db").dead_letter_queue()


class TestMemoryDeadLetterQueue(DeadLetterQueueContract):
    @pytest.fixture
    def dlq(self) -> MemoryDeadLetterQueue:
        return MemoryDeadLetterQueue()


class TestBuiltinBreaker(CircuitBreakerContract):
    failure_threshold = 3
    cooldown = 10.0

    @pytest.fixture
    def breaker(self, dagexec_clock: VirtualClock) -> Breaker:
        settings = BreakerSettings(failure_threshold=3, cooldown=10.0)
        return Breaker("payments", settings, clock=dagexec_clock.monotonic)


class TestBuiltinBreakerWithProbes(CircuitBreakerContract):
    failure_threshold = 1
    cooldown = 0.5
    probes = 2

    @pytest.fixture
    def breaker(self, dagexec_clock: VirtualClock) -> Breaker:
        return Breaker("db", BreakerSettings(failure_threshold=1, cooldown=0.5, probe=2), clock=dagexec_clock.monotonic)


class TestRetryPolicy(RetryPolicyContract):
    @pytest.fixture
    def policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=4, backoff="exponential", base=0.5, jitter="full")


class TestBuiltinRetryStage(RetryPolicyContract):
    """What the ``retry`` plugin hands the engine: a policy per task, drawing on the run's budget."""

    @pytest.fixture
    def policy(self) -> TaskRetry:
        return TaskRetry("load", RetryPolicy(max_attempts=3, base=2.0, jitter="decorrelated"), None, "r1")


class TestLocalExecutor(ExecutorContract):
    @pytest.fixture
    def executor(self) -> LocalExecutor:
        return LocalExecutor()


class TestProcessExecutor(ExecutorContract):
    in_process = False

    @pytest.fixture
    def executor(self) -> ProcessExecutor:
        return ProcessExecutor(start_method="forkserver")
