"""DAG definition and validation: the errors a user meets before anything runs."""

from __future__ import annotations

import functools
import inspect

import attrs
import pytest

from dagexec_core import (
    CycleError,
    Dag,
    DuplicateTaskError,
    MissingDependencyError,
    RetryPolicy,
    SelfDependencyError,
)
from dagexec_core.dag import Task, call_facts
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


def _wrapped(fn):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        return fn(*args, **kwargs)

    return wrapper


class _Callable:
    def __call__(self, a: int, ctx: object) -> None:
        return None

    def method(self, b: int, /, *rest: int, ctx: object = None) -> None:
        return None


def _positional(a: int, /, b: int, *args: int, c: int, **kwargs: int) -> None:
    return None


async def _coroutine(extract: object, *, ctx: object) -> None:
    return None


def _with_signature() -> None:
    return None


_with_signature.__signature__ = inspect.signature(_positional)  # type: ignore[attr-defined]


def _marked(x: int) -> None:
    return None


_marked.note = "an attribute set on the function"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "fn",
    [
        noop,
        _positional,
        _coroutine,
        lambda a, b=2, *c, d, **e: None,
        _wrapped(_coroutine),
        _wrapped(_positional),
        functools.partial(_positional, 1),
        _Callable(),
        _Callable().method,
        _with_signature,
        _marked,
        len,
        dict,
    ],
    ids=repr,
)
def test_call_facts_read_from_the_code_agree_with_inspect(fn: object) -> None:
    """What `Dag.add` reads of a function (fast for plain functions) is what `inspect` says."""
    try:
        params = inspect.signature(fn).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    is_async, names, var_kw = call_facts(fn)  # type: ignore[arg-type]
    assert is_async == inspect.iscoroutinefunction(fn)
    assert set(names) == set(params)
    assert var_kw == any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_every_add_option_lands_in_its_own_field() -> None:
    """`Dag.add` builds the task positionally, for speed: each option must reach the field of its name."""
    dag = Dag("d")
    dag.add("up", noop)
    dag.add("down", noop, deps=["up"])
    options = {
        "deps": ("up",),
        "priority": 7,
        "retry": RetryPolicy(max_attempts=4),
        "timeout": 2.5,
        "tags": frozenset({"io"}),
        "breaker": "db",
        "trigger": "all_done",
        "static_kwargs": {"k": 1},
        "map_over": "up",
        "branches": ("down",),
        "resumable": True,
    }
    task = dag.add("t", noop, **options)  # type: ignore[arg-type]
    direct = Task(name="t", fn=noop, **options)  # type: ignore[arg-type]
    for field in attrs.fields(Task):
        assert getattr(task, field.name) == getattr(direct, field.name), field.name
    for name, value in options.items():
        assert getattr(task, name) == value, name


def test_retry_given_as_a_number_is_the_same_policy_for_every_task() -> None:
    dag = Dag("d")
    a = dag.add("a", noop, retry=3)
    b = dag.add("b", noop, retry=3)
    c = dag.add("c", noop, retry=2)
    assert a.retry == RetryPolicy(max_attempts=3) and a.retry is b.retry
    assert c.max_attempts == 2
    with pytest.raises(TaskDefinitionError, match="retry= takes a RetryPolicy"):
        dag.add("d", noop, retry=True)  # type: ignore[arg-type]


def test_validate_and_the_digest_are_kept_until_the_next_add() -> None:
    """A DAG validated once is not checked again, and its digest not recomputed, until a task is added."""
    from dagexec_core import fingerprint_digest

    dag = Dag("kept")
    dag.add("a", lambda: 1)
    dag.add("b", lambda a: a, deps=["a"])
    dag.validate()
    digest = dag.fingerprint_digest()
    assert digest == fingerprint_digest({"a": (), "b": ("a",)})
    dag.validate()  # nothing changed
    dag.add("c", lambda missing: 0, deps=["missing"])
    with pytest.raises(MissingDependencyError, match="missing"):
        dag.validate()
    dag.add("missing", lambda: 0)
    dag.validate()
    assert dag.fingerprint_digest() != digest
    assert dag.fingerprint_digest() == fingerprint_digest({"a": (), "missing": (), "b": ("a",), "c": ("missing",)})


def _reference_order(dag: Dag) -> list[str]:
    """Kahn's walk on names, FIFO (the walk the order of every stored run was made with)."""
    tasks = {t.name: t for t in dag}
    indegree = {n: sum(d in tasks for d in t.deps) for n, t in tasks.items()}
    children: dict[str, list[str]] = {n: [] for n in tasks}
    for name, task in tasks.items():
        for dep in task.deps:
            if dep in tasks:
                children[dep].append(name)
    order = [n for n, d in indegree.items() if d == 0]
    for node in order:
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                order.append(child)
    return order


@pytest.mark.parametrize("seed", range(40))
def test_topological_order_is_kahns_fifo_walk_whatever_the_insertion_order(seed: int) -> None:
    """The order decides which task runs first among equals and the digest every stored run keeps:
    the walk on indices gives exactly the names' walk, tasks added before or after their dependencies."""
    import random

    rng = random.Random(seed)
    n = rng.randint(1, 300)
    names = [f"t{i}" for i in range(n)]
    edges = {name: rng.sample(names[:i], min(i, rng.randint(0, 4))) for i, name in enumerate(names)}
    insertion = names[:]
    rng.shuffle(insertion)  # dependents often come first
    dag = Dag("random")
    for name in insertion:
        dag.add(name, noop, deps=edges[name])
    assert dag.topological_order() == _reference_order(dag)
    dag.validate()
    assert dag.topological_order() == _reference_order(dag)
    unknown = Dag("with an unknown name")
    for name in insertion:
        unknown.add(name, noop, deps=[*edges[name], "nowhere"] if name == insertion[-1] else edges[name])
    assert unknown.topological_order() == _reference_order(unknown)  # passed over, as before
    with pytest.raises(MissingDependencyError, match="nowhere"):
        unknown.validate()


def test_validate_names_the_first_task_in_error_before_any_cycle() -> None:
    """Errors come in insertion order, whatever the walk meets first; a cycle only when nothing else is wrong."""
    dag = Dag("d")
    dag.add("a", noop, deps=["b"])
    dag.add("b", noop, deps=["a"])  # a cycle...
    dag.add("choose", noop, branches=["x"])  # ...after a conditional naming a branch that is not its dependent
    dag.add("x", noop)
    dag.add("c", noop, deps=["c"])
    with pytest.raises(TaskDefinitionError, match="names branch 'x'"):
        dag.validate()
    dag = Dag("d")
    dag.add("a", noop, deps=["b"])
    dag.add("b", noop, deps=["a"])
    dag.add("c", noop, deps=["c"])
    dag.add("d", noop, deps=["nowhere"])
    with pytest.raises(SelfDependencyError):
        dag.validate()
    dag = Dag("d")
    dag.add("a", noop, deps=["b"])
    dag.add("b", noop, deps=["a"])
    with pytest.raises(CycleError):
        dag.validate()
    with pytest.raises(CycleError):
        dag.topological_order()  # no order was kept for a DAG with a cycle


async def _async_with_ctx(a: int, ctx: object) -> int:
    return a


def _takes_everything(**kwargs: object) -> None:
    return None


@pytest.mark.parametrize(
    ("fn", "deps"),
    [
        (noop, ()),
        (noop, ("a", "b")),
        (_async_with_ctx, ("a", "b")),
        (_takes_everything, ("b", "a")),
        (functools.partial(_positional, 1), ("a",)),
        (_Callable(), ("a",)),
        (_wrapped(_coroutine), ("a",)),
    ],
    ids=repr,
)
def test_a_task_added_is_the_task_attrs_builds(fn: object, deps: tuple[str, ...]) -> None:
    """`Dag.add` fills a task's slots directly (then freezes it): every field, the derived ones too,
    equals what ``Task(...)`` computes, twice for the same function (read once per function), and the
    task is as frozen."""
    dag = Dag("d")
    dag.add("a", noop)
    dag.add("b", noop)
    for name in ("t1", "t2"):
        task = dag.add(name, fn, deps=deps, retry=2, tags=("io",) if name == "t1" else ())  # type: ignore[arg-type]
        direct = Task(name, fn, deps, 0, task.retry, tags=frozenset(task.tags))  # type: ignore[arg-type]
        assert type(task) is Task
        for field in attrs.fields(Task):
            assert getattr(task, field.name) == getattr(direct, field.name), field.name
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            task.name = "other"  # type: ignore[misc]
        assert attrs.evolve(task, priority=3).priority == 3
    assert dag.add("dup", noop, deps=("a", "a", "b")).deps == ("a", "b")
    assert dag.add("gen", noop, deps=(d for d in ["b", "a", "b"])).deps == ("b", "a")
