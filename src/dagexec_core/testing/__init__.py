"""The testing kit: call one task, control time, and prove a replacement stage keeps its contract.

For DAG authors (with the ``dagexec`` pytest plugin's fixtures ``dagexec_run``
and ``dagexec_clock``): `call_task`, `acall_task`, `task_context`,
`VirtualClock`. For plugin authors: the contract suites `StorageContract`,
`DeadLetterQueueContract`, `CircuitBreakerContract`, `ExecutorContract` and
`RetryPolicyContract`, which need pytest (imported only when one is used).
See docs/testing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._call import CallRun, acall_task, call_task, task_context
from ._clock import VirtualClock, VirtualTimer
from ._support import ContractError

if TYPE_CHECKING:
    from ._executor_contract import ExecutorContract
    from ._stage_contracts import CircuitBreakerContract, DeadLetterQueueContract, RetryPolicyContract
    from ._storage_contract import StorageContract

_CONTRACTS = {
    "StorageContract": "._storage_contract",
    "ExecutorContract": "._executor_contract",
    "DeadLetterQueueContract": "._stage_contracts",
    "CircuitBreakerContract": "._stage_contracts",
    "RetryPolicyContract": "._stage_contracts",
}


def __getattr__(name: str) -> Any:
    # The suites import pytest: loaded on first use, so call_task and the clock work without it.
    module = _CONTRACTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    "CallRun",
    "CircuitBreakerContract",
    "ContractError",
    "DeadLetterQueueContract",
    "ExecutorContract",
    "RetryPolicyContract",
    "StorageContract",
    "VirtualClock",
    "VirtualTimer",
    "acall_task",
    "call_task",
    "task_context",
]
