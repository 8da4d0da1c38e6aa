"""`plan_resume` answers in columns (the engine's table); this holds it to the per-task walk it replaced.

The reference below is that walk as it was (a `TaskPlan` per task, in task order), kept here as the
model. Both are fed the same random crashed runs: every state a record can have, retries, mapped
elements (of a map and of no map), tasks of the DAG without a record, a task added since, crash
metadata naming tasks again or not, replays, a DAG unchanged (its digest) or not, and completed tasks
gone from the DAG. The plans (or the refusals) must be equal, task by task.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from dagexec_core import Dag, TaskRecord, TaskState, fingerprint_digest
from dagexec_core.dag import Task
from dagexec_core.errors import DagChangedError, UsageError
from dagexec_core.resume import (
    TERMINAL_STATES,
    TaskPlan,
    _caught_again,
    _replayed,
    base_name,
    changed_message,
    is_mapped_name,
    plan_resume,
    poison_message,
    previous_crash,
)

S = TaskState
T0 = 1_700_000_000.0


def _reference(
    *,
    run_id: str,
    dag_name: str,
    tasks: Sequence[Task],
    records: Mapping[str, TaskRecord],
    fingerprint: Mapping[str, Sequence[str]],
    crash_meta: Any,
    replay: Sequence[str],
    now: float,
) -> dict[str, Any]:
    """The per-task walk `plan_resume` was before it answered in columns."""
    index = {t.name: i for i, t in enumerate(tasks)}
    digest = getattr(fingerprint, "digest", None)
    same_dag = digest is not None and digest == fingerprint_digest({t.name: t.deps for t in tasks})
    changed_text: list[str] = []
    for name, rec in records.items():
        if rec.state is not S.COMPLETED:
            continue
        if name in index:
            if same_dag:
                continue
        else:
            if is_mapped_name(name, index):
                continue
            changed_text.append(f"completed task {name!r} is no longer in the DAG")
            continue
        if list(tasks[index[name]].deps) != list(fingerprint.get(name, [])):
            changed_text.append(
                f"dependencies of completed task {name!r} changed from {list(fingerprint.get(name, []))} "
                f"to {list(tasks[index[name]].deps)}"
            )
    if changed_text:
        raise DagChangedError(changed_message(run_id, dag_name, changed_text))
    if replay:
        children: list[list[int]] = [[] for _ in tasks]
        for i, t in enumerate(tasks):
            for d in t.deps:
                children[index[d]].append(i)
        to_reset = _replayed(dag_name, tasks, index, children, records, replay)
    else:
        to_reset = set()
    replayed = {tasks[i].name for i in to_reset}
    previous = previous_crash(crash_meta)
    in_flight: dict[str, list[Any]] = {}
    poison_elements: dict[str, str] = {}
    stored_extra: dict[str, TaskRecord] = {}
    for name, rec in records.items():
        if name in index:
            continue
        stored_extra[name] = rec
        if rec.state is S.RUNNING and base_name(name) not in replayed:
            in_flight[name] = [rec.attempts, rec.started_at]
            if _caught_again(previous, name, rec.started_at):
                poison_elements[name] = poison_message(run_id, name, previous, in_flight[name])
    plans: list[TaskPlan] = []
    new_names: list[str] = []
    poison: list[tuple[int, str]] = []
    for i, task in enumerate(tasks):
        found = records.get(task.name)
        if found is None:
            if not same_dag:
                new_names.append(task.name)
            plans.append(TaskPlan(S.PENDING))
            continue
        plan = TaskPlan(found.state, found.attempts, found.started_at, found.finished_at, found.error)
        crashed = False
        if i in to_reset:
            plan.state, plan.attempts, plan.error = S.PENDING, 0, None
            for k in [k for k in stored_extra if k.startswith(task.name + "[")]:
                del stored_extra[k]
        elif found.state is S.COMPLETED:
            plan.output = found.output
        elif found.state in (S.RUNNING, S.RETRYING, S.READY, S.CANCELLED):
            if found.state is S.RUNNING and task.map_over is None:
                in_flight[task.name] = [found.attempts, found.started_at]
                if _caught_again(previous, task.name, found.started_at):
                    crashed = True
                    poison.append((i, poison_message(run_id, task.name, previous, in_flight[task.name])))
                else:
                    plan.attempts = max(0, found.attempts - 1)
            if not crashed:
                plan.state = S.PENDING
        if plan.state is found.state and plan.state in TERMINAL_STATES and not crashed:
            plan.kept, plan.trace_id = True, found.trace_id
        plan.changed = plan.state is not found.state
        plans.append(plan)
    new_meta = None
    if in_flight != previous["in_flight"]:
        crash = previous["count"] + 1 if in_flight else previous["count"]
        new_meta = {"count": crash, "in_flight": in_flight, "found_at": now}
    return {
        "tasks": plans,
        "new_names": new_names,
        "poison": poison,
        "poison_elements": poison_elements,
        "stored_extra": stored_extra,
        "replayed": replayed,
        "crash_meta": new_meta,
    }


class _Digested(dict):  # type: ignore[type-arg]
    """A stored fingerprint that carries the digest of the DAG it was made with, as the SQLite storage's does."""

    digest: str | None = None


def _noop() -> None:
    return None


def _case(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    n = rng.randint(2, 40)
    dag = Dag("random")
    names = [f"t{i}" for i in range(n)]
    maps: list[str] = []
    for i, name in enumerate(names):
        deps = rng.sample(names[:i], min(i, rng.randint(0, 3)))
        if deps and rng.random() < 0.15:
            dag.add(name, _noop, deps=deps, map_over=deps[0])
            maps.append(name)
        else:
            dag.add(name, _noop, deps=deps, retry=rng.randint(1, 3))
    tasks = [dag[n] for n in dag.topological_order()]
    fingerprint = _Digested({t.name: list(t.deps) for t in tasks})
    if rng.random() < 0.7:
        fingerprint.digest = dag.fingerprint_digest()  # the DAG the run was made with
    if rng.random() < 0.2:  # a task added since the run was made
        added = rng.choice(names)
        del fingerprint[added]
        fingerprint.digest = "another dag"
    if rng.random() < 0.1:  # a task whose dependencies changed since
        t = rng.choice(tasks)
        fingerprint[t.name] = [*fingerprint.get(t.name, []), "gone"]
        fingerprint.digest = None
    states = [*S, *[S.RUNNING] * 4, *[S.COMPLETED] * 3]  # crashes leave many in flight
    records: dict[str, TaskRecord] = {}

    def record(name: str) -> TaskRecord:
        state = rng.choice(states)
        attempts = rng.randint(0, 3)
        started = T0 + rng.randint(0, 5) if state is not S.PENDING else None
        finished = (started or T0) + 1 if state in TERMINAL_STATES else None
        error = "ValueError: no" if state in (S.FAILED, S.DEAD_LETTERED, S.RETRYING) else None
        output = [name, attempts] if state is S.COMPLETED else None
        trace = rng.choice([None, "ab" * 16, "cd" * 16])
        return TaskRecord(name, state, attempts, error, started, finished, output, trace)

    stored = rng.sample(names, rng.randint(0, n))
    for name in stored:
        records[name] = record(name)
    for m in maps:
        for k in range(rng.randint(0, 3)):
            records[f"{m}[{k}]"] = record(f"{m}[{k}]")
    if rng.random() < 0.1:
        records["gone"] = TaskRecord("gone", rng.choice([S.COMPLETED, S.FAILED]), 1)
    if rng.random() < 0.1:
        records["t0[1]"] = record("t0[1]")  # an element of a task that is not a map
    order = list(records)
    rng.shuffle(order)  # the storage's order is its own
    records = {name: records[name] for name in order}
    in_flight = {
        name: [rng.randint(0, 3), rng.choice([T0 + rng.randint(0, 5), rec.started_at])]
        for name, rec in records.items()
        if rng.random() < 0.3
    }
    crash_meta = rng.choice([None, {"count": rng.randint(1, 3), "in_flight": in_flight, "found_at": T0}])
    replay: list[str] = rng.sample(names, rng.randint(0, 2)) if rng.random() < 0.3 else []
    if rng.random() < 0.05:
        replay.append("nowhere")
    return {
        "run_id": "r1",
        "dag_name": dag.name,
        "tasks": tasks,
        "records": records,
        "fingerprint": fingerprint,
        "crash_meta": crash_meta,
        "replay": replay,
        "now": T0 + 100,
        "dag": dag,
    }


@pytest.mark.parametrize("seed", range(300))
def test_the_columns_are_the_per_task_plan(seed: int) -> None:
    case = _case(seed)
    dag: Dag = case.pop("dag")
    try:
        want = _reference(**case)
    except (DagChangedError, UsageError) as exc:
        with pytest.raises(type(exc)) as got_error:
            plan_resume(**case, dag_digest=dag.fingerprint_digest())
        assert str(got_error.value) == str(exc)
        return
    plan = plan_resume(
        **case, dag_digest=dag.fingerprint_digest(), index={t.name: i for i, t in enumerate(case["tasks"])}
    )
    assert plan.tasks == want["tasks"]
    assert plan.changed == [i for i, t in enumerate(want["tasks"]) if t.changed]
    assert plan.kept == {i: t.trace_id for i, t in enumerate(want["tasks"]) if t.kept}
    for key in ("new_names", "poison", "poison_elements", "stored_extra", "replayed", "crash_meta"):
        assert getattr(plan, key) == want[key], key
    assert plan.pending() == [i for i, t in enumerate(want["tasks"]) if t.state is S.PENDING]
    without_digest = plan_resume(**case)  # the digest computed here, not given
    assert without_digest.tasks == want["tasks"]
