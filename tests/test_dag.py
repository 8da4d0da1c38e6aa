"""DAG definition and validation: the errors a user meets before anything runs."""

from __future__ import annotations

import pytest

from dagexec_core import (
    CycleError,
    Dag,
    DuplicateTaskError,
    MissingDependencyError,
    RetryPolicy,
    SelfDependencyError,
)
from dagexec_core.errors import TaskDefinitionError


def noop() -> None:
    return None


def test_decorator_bare_and_with_options_register_tasks() -> None:
    dag = Dag("etl")

    @dag.task
    def extract() -> int:
        return 1

    @dag.task(deps=["extract"], priority=3, retry=2, timeout=5, tags=["io"], breaker="db")
    def load(extract: int) -> int:
        return extract

    assert len(dag) == 2
    task = dag["load"]
    assert task.deps == ("extract",) and task.priority == 3 and task.timeout == 5
    assert task.retry == RetryPolicy(max_attempts=2) and task.max_attempts == 2
    assert task.tags == frozenset({"io"}) and task.breaker == "db"
    assert task.dep_params == ("extract",)


def test_add_without_decorator_and_topological_order_respects_deps() -> None:
    dag = Dag("d")
    dag.add("c", noop, deps=["b"])
    dag.add("b", noop, deps=["a"])
    dag.add("a", noop)
    assert dag.topological_order() == ["a", "b", "c"]


def test_cycle_error_names_the_loop_in_order() -> None:
    dag = Dag("etl")
    dag.add("extract", noop, deps=["load"])
    dag.add("transform", noop, deps=["extract"])
    dag.add("load", noop, deps=["transform"])
    dag.add("other", noop)
    with pytest.raises(CycleError) as info:
        dag.validate()
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and set(cycle) == {"extract", "transform", "load"}
    # each name is followed by a task that depends on it
    for before, after in zip(cycle, cycle[1:], strict=False):
        assert before in dag[after].deps
    assert " -> ".join(cycle) in str(info.value)


def test_missing_dependency_suggests_the_closest_name() -> None:
    dag = Dag("etl")
    dag.add("transform", noop)
    dag.add("load", noop, deps=["transfrom"])
    with pytest.raises(MissingDependencyError) as info:
        dag.validate()
    assert str(info.value) == (
        "task 'load' depends on 'transfrom', which is not in DAG 'etl' (did you mean 'transform'?)"
    )


def test_duplicate_and_self_dependency_are_rejected() -> None:
    dag = Dag("d")
    dag.add("a", noop)
    with pytest.raises(DuplicateTaskError, match="already has a task named 'a'"):
        dag.add("a", noop)
    dag.add("b", noop, deps=["b"])
    with pytest.raises(SelfDependencyError, match="'b' in DAG 'd' depends on itself"):
        dag.validate()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"trigger": "sometimes"}, "trigger='sometimes' is not one of"),
        ({"timeout": 0}, "timeout must be a positive"),
        ({"retry": 0}, "retry= takes a RetryPolicy"),
    ],
)
def test_bad_task_options_name_the_task(options: dict[str, object], message: str) -> None:
    dag = Dag("d")
    with pytest.raises(TaskDefinitionError, match=message):
        dag.add("t", noop, **options)  # type: ignore[arg-type]


def test_ctx_and_dependency_parameters_are_detected() -> None:
    dag = Dag("d")
    dag.add("a", noop)
    dag.add("b", noop)

    async def body(a: int, ctx: object) -> None:
        return None

    task = dag.add("c", body, deps=["a", "b"])
    assert task.is_async and task.wants_ctx and task.dep_params == ("a",)
