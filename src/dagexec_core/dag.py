"""The DAG model: tasks, their dependencies and options, and validation."""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import FunctionType
from typing import Any, TypeVar

import attrs

from .errors import (
    CycleError,
    DuplicateTaskError,
    MissingDependencyError,
    SelfDependencyError,
    TaskDefinitionError,
)
from .retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])

TRIGGER_RULES = ("all_success", "all_done", "one_failed", "none_failed", "one_success")


def _as_retry(value: RetryPolicy | int | None) -> RetryPolicy | None:
    if value is None or isinstance(value, RetryPolicy):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return RetryPolicy(max_attempts=value)
    raise TaskDefinitionError(f"retry= takes a RetryPolicy or a number of attempts >= 1, not {value!r}")


def chosen_branches(output: Any) -> frozenset[str]:
    """The branch names a conditional's output selects: a name, a list of names, or None for none."""
    if output is None:
        return frozenset()
    if isinstance(output, str):
        return frozenset((output,))
    return frozenset(output)


_CO_COROUTINE = inspect.CO_COROUTINE
_CO_VARARGS = inspect.CO_VARARGS
_CO_VARKEYWORDS = inspect.CO_VARKEYWORDS


def call_facts(fn: Callable[..., Any]) -> tuple[bool, tuple[str, ...] | frozenset[str], bool]:
    """(is a coroutine function, its parameter names, takes ``**kwargs``), as `inspect` would say.

    A plain function (nothing set on it: no ``__wrapped__``, ``__signature__``
    or coroutine mark) is read from its code object, about 20 times faster
    than ``inspect.signature``, which a generated DAG of 100,000 tasks would
    otherwise call 100,000 times; anything else (partials, methods, classes,
    decorated functions, builtins) goes through `inspect`.
    """
    if type(fn) is FunctionType and not fn.__dict__:
        code = fn.__code__
        flags = code.co_flags
        count = code.co_argcount + code.co_kwonlyargcount
        if flags & _CO_VARARGS:
            count += 1
        var_kw = bool(flags & _CO_VARKEYWORDS)
        return bool(flags & _CO_COROUTINE), code.co_varnames[: count + var_kw], var_kw
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return inspect.iscoroutinefunction(fn), (), False
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return inspect.iscoroutinefunction(fn), frozenset(params), var_kw


#: `Task`'s fields in order; `Dag.add` fills them positionally (a test checks each lands in its field).
_FIELDS = (
    "name",
    "fn",
    "deps",
    "priority",
    "retry",
    "timeout",
    "tags",
    "breaker",
    "trigger",
    "static_kwargs",
    "map_over",
    "branches",
    "resumable",
    "is_async",
    "dep_params",
    "wants_ctx",
)
_NO_TAGS: frozenset[str] = frozenset()


def _checked(name: str, trigger: str, timeout: float | None) -> None:
    """The checks every task passes, however it is built."""
    if trigger not in TRIGGER_RULES:
        raise TaskDefinitionError(f"task {name!r}: trigger={trigger!r} is not one of {', '.join(TRIGGER_RULES)}")
    if timeout is not None and not timeout > 0:
        raise TaskDefinitionError(f"task {name!r}: timeout must be a positive number of seconds")


def _dep_params(deps: tuple[str, ...], params: tuple[str, ...] | frozenset[str], var_kw: bool) -> tuple[str, ...]:
    """The dependencies a function with these parameters takes, in ``deps`` order."""
    if var_kw:
        return deps
    return tuple([d for d in deps if d in params]) if deps and params else ()


class _TaskSlots:
    """The slots of `Task`, and the fast way `Dag.add` fills them.

    A frozen attrs instance sets each of its 16 fields through
    ``object.__setattr__``: 1.3 µs of the 2.8 µs a task cost to define, 0.13 s
    of a 100,000-task DAG file's import (and of a resume's start). An instance
    of this unfrozen class takes plain slot stores, then becomes a `Task`:
    `Task` reuses these slots and adds none, so the two have the same layout
    and ``__class__`` may change. `Dag.add` alone builds tasks this way, after
    the checks `Task.__attrs_post_init__` makes; ``Task(...)`` is attrs' own.
    """

    __slots__ = (*_FIELDS, "__weakref__")

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        deps: tuple[str, ...],
        priority: int,
        retry: RetryPolicy | None,
        timeout: float | None,
        tags: frozenset[str],
        breaker: str | None,
        trigger: str,
        static_kwargs: dict[str, Any],
        map_over: str | None,
        branches: tuple[str, ...] | None,
        resumable: bool,
        is_async: bool,
        dep_params: tuple[str, ...],
        wants_ctx: bool,
    ) -> None:
        self.name = name
        self.fn = fn
        self.deps = deps
        self.priority = priority
        self.retry = retry
        self.timeout = timeout
        self.tags = tags
        self.breaker = breaker
        self.trigger = trigger
        self.static_kwargs = static_kwargs
        self.map_over = map_over
        self.branches = branches
        self.resumable = resumable
        self.is_async = is_async
        self.dep_params = dep_params
        self.wants_ctx = wants_ctx
        self.__class__ = Task  # frozen from here on


@attrs.frozen(eq=False)
class Task(_TaskSlots):
    """One node of a DAG: a function and how to run it."""

    # `Dag.add` passes these positionally, in this order (`_FIELDS`; a test checks each lands in its field).
    name: str
    fn: Callable[..., Any]
    deps: tuple[str, ...] = ()
    priority: int = 0
    retry: RetryPolicy | None = None
    timeout: float | None = None
    tags: frozenset[str] = frozenset()
    breaker: str | None = None
    trigger: str = "all_success"
    #: Extra keyword arguments always passed to ``fn`` (used by patterns).
    static_kwargs: dict[str, Any] = attrs.field(factory=dict)
    #: Set by `Dag.map`: the upstream whose output is split into one task per element.
    map_over: str | None = None
    #: Set by `patterns.branch`: the child tasks this conditional chooses among.
    branches: tuple[str, ...] | None = None
    #: The task checkpoints its own progress (a loop, ``ctx.state``): an attempt cut
    #: short by a crash does not use up its retries, a resume runs it again.
    resumable: bool = False
    is_async: bool = attrs.field(init=False)
    #: Dependencies that ``fn`` takes as parameters, in ``deps`` order.
    dep_params: tuple[str, ...] = attrs.field(init=False)
    wants_ctx: bool = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        is_async, params, var_kw = call_facts(self.fn)
        setattr_ = object.__setattr__
        setattr_(self, "is_async", is_async)
        setattr_(self, "dep_params", _dep_params(self.deps, params, var_kw))
        setattr_(self, "wants_ctx", "ctx" in params)
        _checked(self.name, self.trigger, self.timeout)

    @property
    def max_attempts(self) -> int:
        return self.retry.max_attempts if self.retry is not None else 1

    def __repr__(self) -> str:
        return f"<Task {self.name!r} deps={list(self.deps)!r}>"


class Dag:
    """A named set of tasks and the dependencies between them."""

    def __init__(self, name: str, *, description: str = "", params: dict[str, Any] | None = None) -> None:
        if not name or not isinstance(name, str):
            raise TaskDefinitionError("a Dag needs a non-empty name: Dag('etl')")
        self.name = name
        self.description = description
        #: The parameters runs take: name -> a type (required) or a default value; None takes any (docs/parameters.md).
        self.params: dict[str, Any] | None = None
        if params is not None:
            from .params import check_declaration

            self.params = check_declaration(name, params)
        self._tasks: dict[str, Task] = {}
        self._order: list[str] | None = None
        #: `validate` passed since the last `add` (checking 100,000 tasks again costs 0.1 s).
        self._valid = False
        #: `fingerprint_digest` of the DAG as it stands, None until asked for since the last `add`.
        self._digest: str | None = None
        #: ``retry=N`` -> its policy: one frozen value shared by every task given the same N
        #: (building a validated RetryPolicy costs more than the rest of a task's definition).
        self._retry_of: dict[int, RetryPolicy] = {}
        #: Plain function -> `call_facts` of it: read once per function, not once per task.
        self._facts: dict[Callable[..., Any], tuple[bool, tuple[str, ...] | frozenset[str], bool]] = {}
        #: The file that defined the DAG: its dagplugins.py files apply to runs from the API too.
        self.source_file: str | None = sys._getframe(1).f_globals.get("__file__")

    # -- building ----------------------------------------------------------

    def add(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        deps: Iterable[str] = (),
        priority: int = 0,
        retry: RetryPolicy | int | None = None,
        timeout: float | None = None,
        tags: Iterable[str] = (),
        breaker: str | None = None,
        trigger: str = "all_success",
        static_kwargs: dict[str, Any] | None = None,
        map_over: str | None = None,
        branches: Iterable[str] | None = None,
        resumable: bool = False,
    ) -> Task:
        """Add ``fn`` as task ``name``; the same options as `task`."""
        if name in self._tasks:
            raise DuplicateTaskError(self.name, name)
        # A generated DAG passes tuples of distinct names: kept as given (deduplicated otherwise).
        if type(deps) is tuple:
            if len(deps) > 1 and len(set(deps)) != len(deps):
                deps = tuple(dict.fromkeys(deps))
        elif isinstance(deps, str):
            deps = (deps,)
        else:
            deps = tuple(dict.fromkeys(deps))
        if retry is not None and not isinstance(retry, RetryPolicy):
            shared = self._retry_of.get(retry) if type(retry) is int else None
            if shared is None:
                shared = _as_retry(retry)
                if type(retry) is int and shared is not None:
                    self._retry_of[retry] = shared
            retry = shared
        if timeout is not None or trigger != "all_success":
            _checked(name, trigger, timeout)
        # What the function takes, read once per function: generated DAGs give thousands of tasks one.
        if type(fn) is FunctionType:
            facts = self._facts.get(fn)
            if facts is None:
                facts = call_facts(fn)
                if not fn.__dict__:  # a plain function: nothing set on it can change what inspect says
                    self._facts[fn] = facts
        else:
            facts = call_facts(fn)
        is_async, params, var_kw = facts
        # Positional, in field order (`_FIELDS`): keywords cost a third of the call at 100,000 tasks.
        task: Task = _TaskSlots(  # type: ignore[assignment]  # it is a Task once built
            name,
            fn,
            deps,
            priority,
            retry,
            timeout,
            frozenset(tags) if tags else _NO_TAGS,
            breaker,
            trigger,
            {} if static_kwargs is None else dict(static_kwargs),
            map_over,
            None if branches is None else tuple(branches),
            resumable,
            is_async,
            (deps if var_kw else tuple([d for d in deps if d in params]) if params else ()) if deps else (),
            "ctx" in params,
        )
        self._tasks[name] = task
        self._order = None
        self._valid = False
        self._digest = None
        return task

    def task(self, fn: F | None = None, /, *, name: str | None = None, **options: Any) -> Any:
        """Decorator: ``@dag.task`` or ``@dag.task(deps=[...], retry=3, timeout=30, ...)``."""

        def decorate(f: F) -> F:
            self.add(name or f.__name__, f, **options)
            return f

        if fn is not None:
            return decorate(fn)
        return decorate

    def map(
        self,
        fn: Callable[..., Any],
        *,
        over: str,
        name: str | None = None,
        **options: Any,
    ) -> Task:
        """One task per element of ``over``'s output, created at run time.

        Each element runs as task ``{name}[{i}]`` with the element passed as
        ``item`` (and ``index``), or, when ``fn`` has no ``item`` parameter, as
        its first positional parameter, as Python's ``map`` does
        (``dag.map(str.upper, over=...)``); task ``name`` itself collects their
        outputs into a list in index order, so dependents of ``name`` receive
        the list. A function that can take no element is a `TaskDefinitionError`.
        """
        from .patterns import element_first

        task_name = name or getattr(fn, "__name__", None) or type(fn).__name__
        deps = (over, *[d for d in options.pop("deps", ()) if d != over])
        body = element_first(fn, task=task_name, over=over, deps=deps)
        return self.add(task_name, body, deps=deps, map_over=over, **options)

    def fan_out_in(
        self,
        prefix: str,
        count: int,
        worker: Callable[..., Any],
        aggregator: Callable[..., Any],
        *,
        after: Iterable[str] = (),
        **options: Any,
    ) -> Task:
        """``count`` parallel tasks ``{prefix}_{i}`` joined by ``{prefix}_aggregate``; see `patterns.fan_out_in`."""
        from .patterns import fan_out_in

        return fan_out_in(self, prefix, count, worker, aggregator, after=after, **options)

    def pipeline(self, name: str, steps: Sequence[Callable[..., Any]], **options: Any) -> Task:
        """Chain ``steps``, each receiving the previous output; see `patterns.pipeline`."""
        from .patterns import pipeline

        return pipeline(self, name, steps, **options)

    # -- reading -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __getitem__(self, name: str) -> Task:
        return self._tasks[name]

    @property
    def tasks(self) -> dict[str, Task]:
        return dict(self._tasks)

    def __repr__(self) -> str:
        return f"<Dag {self.name!r} with {len(self)} tasks>"

    # -- validation --------------------------------------------------------

    def validate(self) -> None:
        """Raise a `DagValidationError` subclass if the DAG cannot run."""
        if self._valid:
            return
        if self._order is None:
            self._sort(strict=True)
        else:
            self._check_each()  # sorted already: no cycle, but unknown names were passed over
        self._valid = True

    def _check_each(self) -> None:
        """The checks of `validate` short of cycles, task by task in insertion order: the first
        task with a dependency on itself or on no task, or naming a branch that does not depend
        on it, raises."""
        names = self._tasks
        known = names.__contains__
        for name, task in names.items():
            deps = task.deps
            if not deps or (name not in deps and all(map(known, deps))):
                if task.branches:
                    self._check_branches(name, task.branches)
                continue
            for dep in deps:
                if dep == name or dep not in names:
                    if dep == name:
                        raise SelfDependencyError(self.name, name)
                    close = difflib.get_close_matches(dep, list(names), n=1, cutoff=0.6)
                    raise MissingDependencyError(self.name, name, dep, close[0] if close else None)

    def _check_branches(self, name: str, branches: Sequence[str]) -> None:
        names = self._tasks
        for branch in branches:
            if branch not in names or name not in names[branch].deps:
                raise TaskDefinitionError(
                    f"conditional task {name!r} in DAG {self.name!r} names branch {branch!r}, "
                    f"which is not a task depending on it; add {branch!r} with deps=[{name!r}]"
                )

    def fingerprint_digest(self) -> str:
        """`dagexec_core.fingerprint_digest` of this DAG's dependency lists in `topological_order`:
        what a resume compares with the stored run's. Kept until the next `add`."""
        digest = self._digest
        if digest is None:
            import json

            from .stages import fingerprint_digest

            tasks = self._tasks
            fingerprint = {n: tasks[n].deps for n in self.topological_order()}
            # `fingerprint_text`'s JSON, without the encoder's check for circular lists (tuples of names have none)
            text = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode(fingerprint)
            digest = self._digest = fingerprint_digest(text=text)
        return digest

    def topological_order(self) -> list[str]:
        """Task names so that every task comes after its dependencies.

        Ties keep insertion order; raises `CycleError` naming the loop.
        """
        if self._order is None:
            self._sort(strict=False)
            assert self._order is not None
        return list(self._order)

    def _sort(self, strict: bool) -> None:
        """Kahn's walk, FIFO, so ties keep insertion order: the order runs and stored digests depend on.

        It walks insertion indices, not names (a third faster at 100,000 tasks). A dependency on no
        task is passed over, unless ``strict`` (`validate`): then, as when the walk finds a cycle,
        `_check_each` names the first task in error, as `validate` always has, before the cycle.
        """
        tasks = self._tasks
        names = list(tasks)
        n = len(names)
        position = dict(zip(names, range(n), strict=True)).get
        indegree = [0] * n
        children: list[list[int]] = [[] for _ in range(n)]
        branching: list[int] = []
        i = 0
        for task in tasks.values():
            deps = task.deps
            if deps:
                count = len(deps)
                for dep in deps:
                    j = position(dep)
                    if j is not None:
                        children[j].append(i)
                    else:
                        if strict:
                            self._check_each()
                        count -= 1
                indegree[i] = count
            if task.branches:
                branching.append(i)
            i += 1
        order = [k for k in range(n) if not indegree[k]]
        for node in order:  # grows while it is walked: Kahn's queue and the result in one list
            for child in children[node]:
                left = indegree[child] - 1
                indegree[child] = left
                if not left:
                    order.append(child)
        if len(order) != n:
            if strict:
                self._check_each()
            raise CycleError(self.name, self._find_cycle({names[k] for k in range(n) if indegree[k] > 0}))
        if strict:
            for k in branching:
                self._check_branches(names[k], tasks[names[k]].branches or ())
        self._order = [names[k] for k in order]

    def _find_cycle(self, candidates: set[str]) -> list[str]:
        # Walk dependencies inside the unsorted remainder until a name repeats.
        start = next(n for n in self._tasks if n in candidates)
        path: list[str] = []
        seen: dict[str, int] = {}
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(d for d in self._tasks[node].deps if d in candidates)
        loop = path[seen[node] :] + [node]
        loop.reverse()  # present as "a -> b" meaning b depends on a... read in run order
        return loop

    def roots(self) -> list[str]:
        return [t.name for t in self._tasks.values() if not t.deps]

    def select(self, names: Sequence[str]) -> list[Task]:
        return [self._tasks[n] for n in names]
