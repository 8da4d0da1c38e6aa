"""Resume planning: from what a state file holds to what a resumed run does, as one pure function.

`plan_resume` takes the stored records of a run, the metadata of the crashes
of its driver and the structure of the DAG, and answers which tasks are kept
(completed, failed, dead-lettered, skipped), which run again (pending), and
which were in flight at two consecutive crashes (poison pills, dead-lettered
without a third start). It reads no file and runs no loop; the engine applies
the plan. The rules are docs/reliability.md's:

- A task left RUNNING by a crash goes back to PENDING, and the attempt the
  crash cut does not count (its attempts drop by one).
- A task RUNNING at the previous crash too, in an earlier attempt, is the
  likely cause: it is not started a third time but failed with
  `TaskInterruptedError` (the engine does that once the run is open).
- The same attempt seen again (same start) is the same crash seen twice, not
  a second crash.
- ``replay`` names go back to PENDING with no attempts, with the dependents
  they had skipped or failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from .dag import Task
from .errors import DagChangedError, UsageError
from .stages import fingerprint_digest
from .state import (
    CANCELLED,
    COMPLETED,
    DEAD_LETTERED,
    FAILED,
    PENDING,
    READY,
    RETRYING,
    RUNNING,
    SKIPPED,
    TERMINAL_STATES,
    TaskRecord,
    TaskState,
)

#: Run metadata key: the tasks the last crash of a run's driver caught in flight, and how many crashes so far.
CRASH_META = "dagexec.crashes"


@attrs.define
class TaskPlan:
    """What a resumed run starts one task of the DAG with (`ResumePlan.tasks`, one task's row of the plan)."""

    state: TaskState
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    output: Any = None
    #: The state differs from the stored record's: the run writes it when it opens.
    changed: bool = False
    #: Kept exactly as stored (a final state): it keeps the trace id that wrote it.
    kept: bool = False
    trace_id: str | None = None


@attrs.define
class ResumePlan:
    """The outcome of `plan_resume`: the engine's columns, each in the order of the tasks given.

    A task without a stored record is pending, as the engine's table starts. Columns, not an object per
    task: at 100,000 tasks the engine takes them as its own table (`tasks` gives the rows, to read).
    """

    states: list[TaskState]
    attempts: list[int]
    started: list[float | None]
    finished: list[float | None]
    errors: list[str | None]
    outputs: list[Any]
    #: Tasks kept exactly as stored (a final state) -> the trace id that wrote them, which they keep.
    kept: dict[int, str | None]
    #: Tasks whose state differs from the stored record's, in order: the run writes them when it opens.
    changed: list[int]
    #: Tasks of the DAG the stored run does not have (added to it as PENDING).
    new_names: list[str]
    #: Indices of tasks in flight at two consecutive crashes, with their error, in order: failed once the run is open.
    poison: list[tuple[int, str]]
    #: Mapped elements ("name[3]") in flight at two consecutive crashes: failed when their map expands.
    poison_elements: dict[str, str]
    #: Stored records of names not in the DAG (mapped elements), reused when their map expands.
    stored_extra: dict[str, TaskRecord]
    #: Base names of the tasks replayed (their dead letters leave the queue).
    replayed: set[str]
    #: The crash metadata to store (`CRASH_META`), or None to leave it as it is.
    crash_meta: dict[str, Any] | None

    @property
    def tasks(self) -> list[TaskPlan]:
        """The plan of each task, as one object per task."""
        changed = set(self.changed)
        return [
            TaskPlan(
                state,
                self.attempts[i],
                self.started[i],
                self.finished[i],
                self.errors[i],
                self.outputs[i],
                i in changed,
                i in self.kept,
                self.kept.get(i),
            )
            for i, state in enumerate(self.states)
        ]

    def pending(self) -> list[int]:
        return [i for i, s in enumerate(self.states) if s is PENDING]


def plan_resume(
    *,
    run_id: str,
    dag_name: str,
    tasks: Sequence[Task],
    records: Mapping[str, TaskRecord],
    fingerprint: Mapping[str, Sequence[str]],
    crash_meta: Any = None,
    replay: Sequence[str] = (),
    now: float,
    dag_digest: str | None = None,
    index: Mapping[str, int] | None = None,
) -> ResumePlan:
    """Plan the resume of run ``run_id`` of DAG ``dag_name`` (``tasks`` in topological order).

    ``records`` and ``fingerprint`` (task -> its dependencies when the run was
    made; it may carry a ``digest`` attribute) are what storage's
    ``resume_run`` gives; ``crash_meta`` the stored `CRASH_META` value;
    ``now`` the time the crash is found at. Raises `DagChangedError` when a
    completed task left the DAG or changed its dependencies, `UsageError`
    when ``replay`` names a task that is not in the DAG. ``dag_digest``, when
    given, is the `fingerprint_digest` of ``tasks`` (`Dag.fingerprint_digest`,
    kept with the DAG), so that it is not computed again here; ``index`` the
    position of each task in ``tasks``, when the caller has it.
    """
    if index is None:
        index = {t.name: i for i, t in enumerate(tasks)}
    # stored records of names the DAG does not have (mapped elements), in the order stored
    extras = [name for name in records if name not in index]
    # the DAG the run was created with: every task of it is the stored run's, those without a record pending
    same_dag = _check_unchanged(run_id, dag_name, tasks, index, records, fingerprint, dag_digest, extras)
    if replay:
        children: list[list[int]] = [[] for _ in tasks]
        for c, t in enumerate(tasks):
            for d in t.deps:
                children[index[d]].append(c)
        to_reset = _replayed(dag_name, tasks, index, children, records, replay)
    else:
        to_reset = set()
    replayed = {tasks[i].name for i in to_reset}
    previous = previous_crash(crash_meta)
    in_flight: dict[str, list[Any]] = {}
    poison_elements: dict[str, str] = {}
    stored_extra: dict[str, TaskRecord] = {}
    for name in extras:
        rec = records[name]
        stored_extra[name] = rec
        if rec.state is RUNNING and base_name(name) not in replayed:
            in_flight[name] = [rec.attempts, rec.started_at]  # a mapped element (re-made when its map expands)
            if _caught_again(previous, name, rec.started_at):
                poison_elements[name] = poison_message(run_id, name, previous, in_flight[name])
    n = len(tasks)
    states: list[TaskState] = [PENDING] * n
    attempts: list[int] = [0] * n
    started: list[float | None] = [None] * n
    finished: list[float | None] = [None] * n
    errors: list[str | None] = [None] * n
    outputs: list[Any] = [None] * n
    kept: dict[int, str | None] = {}
    changed: list[int] = []
    poison: list[tuple[int, str]] = []
    position = index.get
    for name, found in records.items():
        i = position(name)
        if i is None:
            continue
        stored = found.state
        if stored is COMPLETED and i not in to_reset:  # most of them: kept as stored, with output and trace
            states[i] = stored
            attempts[i] = found.attempts
            started[i], finished[i] = found.started_at, found.finished_at
            errors[i] = found.error
            outputs[i] = found.output
            kept[i] = found.trace_id
            continue
        state, tries, error = stored, found.attempts, found.error
        crashed = False
        if i in to_reset:
            state, tries, error = PENDING, 0, None
            for k in [k for k in stored_extra if k.startswith(name + "[")]:
                del stored_extra[k]
        elif stored in (RUNNING, RETRYING, READY, CANCELLED):
            # A map collector's attempt is its elements': it expands again, reusing completed ones;
            # a resumable task (a loop) continues from its own checkpoint.
            if stored is RUNNING and tasks[i].map_over is None:
                # Cut short by the crash of the process driving the run: that attempt does not count,
                # unless the task was in flight at the crash before too (the likely cause).
                in_flight[name] = [found.attempts, found.started_at]
                if _caught_again(previous, name, found.started_at):
                    crashed = True  # stays RUNNING: failed (and dead-lettered) once the run is open
                    poison.append((i, poison_message(run_id, name, previous, in_flight[name])))
                else:
                    tries = max(0, found.attempts - 1)
            if not crashed:
                state = PENDING
        states[i], attempts[i], errors[i] = state, tries, error
        started[i], finished[i] = found.started_at, found.finished_at
        if state is stored and state in TERMINAL_STATES and not crashed:
            kept[i] = found.trace_id
        if state is not stored:
            changed.append(i)
    # in the order of the tasks, as the engine fails them and writes them
    poison.sort(key=_first)
    changed.sort()
    new_names = [] if same_dag else [t.name for t in tasks if t.name not in records]
    new_meta = None
    if in_flight != previous["in_flight"]:  # the same records seen again are the same crash, not a new one
        crash = previous["count"] + 1 if in_flight else previous["count"]
        new_meta = {"count": crash, "in_flight": in_flight, "found_at": now}
    return ResumePlan(
        states,
        attempts,
        started,
        finished,
        errors,
        outputs,
        kept,
        changed,
        new_names,
        poison,
        poison_elements,
        stored_extra,
        replayed,
        new_meta,
    )


def _first(item: tuple[int, str]) -> int:
    return item[0]


def _check_unchanged(
    run_id: str,
    dag_name: str,
    tasks: Sequence[Task],
    index: Mapping[str, int],
    records: Mapping[str, TaskRecord],
    fingerprint: Mapping[str, Sequence[str]],
    dag_digest: str | None,
    extras: Sequence[str],
) -> bool:
    """Raise `DagChangedError` if a completed task left the DAG or changed its dependencies; True when
    the DAG is the one the run was created with (same digest). ``extras``: the names of ``records`` that
    are not tasks of the DAG."""
    # The DAG the run was created with, unchanged (same digest): no stored dependency list is read,
    # and only the records of names it does not have can be of a completed task that left it.
    digest = getattr(fingerprint, "digest", None)
    if digest is not None and dag_digest is None:
        dag_digest = fingerprint_digest({t.name: t.deps for t in tasks})
    same_dag = digest is not None and digest == dag_digest
    changed: list[str] = []
    for name in extras if same_dag else records:
        rec = records[name]
        if rec.state is not COMPLETED:
            continue
        if name in index:
            if same_dag:
                continue
        else:
            if is_mapped_name(name, index):
                continue
            changed.append(f"completed task {name!r} is no longer in the DAG")
            continue
        if list(tasks[index[name]].deps) != list(fingerprint.get(name, [])):
            changed.append(
                f"dependencies of completed task {name!r} changed from {list(fingerprint.get(name, []))} "
                f"to {list(tasks[index[name]].deps)}"
            )
    if changed:
        raise DagChangedError(changed_message(run_id, dag_name, changed))
    return same_dag


#: How many changes a `DagChangedError` names; the rest are counted.
CHANGES_SHOWN = 10


def changed_message(run_id: str, dag_name: str, changed: Sequence[str]) -> str:
    """The one line saying why a run cannot be resumed: the first `CHANGES_SHOWN` changes, and how many
    more (a DAG file run with other settings can differ from its run in 50,000 tasks)."""
    shown = "; ".join(changed[:CHANGES_SHOWN])
    if len(changed) > CHANGES_SHOWN:
        shown += f"; and {len(changed) - CHANGES_SHOWN:,} more changes of {len(changed):,}"
    return f"run {run_id} of DAG {dag_name!r} cannot be resumed: {shown}; start a new run instead"


def _replayed(
    dag_name: str,
    tasks: Sequence[Task],
    index: Mapping[str, int],
    children: Sequence[Sequence[int]],
    records: Mapping[str, TaskRecord],
    replay: Sequence[str],
) -> set[int]:
    """The replayed tasks, and the dependents they skipped or failed, transitively."""
    names = set(replay)
    unknown = names - set(index)
    if unknown:
        raise UsageError(f"cannot replay {sorted(unknown)}: not tasks of DAG {dag_name!r}")
    to_reset: set[int] = set()
    for name in names:
        i = index[name]
        to_reset.add(i)
        stack = [i]
        while stack:
            for c in children[stack.pop()]:
                child = records.get(tasks[c].name)
                if (
                    c not in to_reset
                    and child is not None
                    and child.state in (SKIPPED, FAILED, DEAD_LETTERED, CANCELLED)
                ):
                    to_reset.add(c)
                    stack.append(c)
    return to_reset


def previous_crash(stored: Any) -> dict[str, Any]:
    """The stored `CRASH_META` value, or an empty one (none stored, or not of the expected shape)."""
    if isinstance(stored, dict) and isinstance(stored.get("in_flight"), dict):
        return {"count": int(stored.get("count") or 0), "in_flight": stored["in_flight"]}
    return {"count": 0, "in_flight": {}}


def _caught_again(previous: Mapping[str, Any], name: str, started_at: float | None) -> bool:
    """Was ``name`` in flight at the previous crash too, in an attempt started before this one?

    The same attempt (same start) seen again is the same crash seen twice (a resume that died before it
    wrote anything), not a second crash."""
    before = previous["in_flight"].get(name)
    return before is not None and before[1] != started_at


def poison_message(run_id: str, name: str, previous: Mapping[str, Any], now: Sequence[Any]) -> str:
    n = int(previous["count"]) + 1
    before = previous["in_flight"][name]
    return (
        f"task {name!r} was running at two consecutive crashes of the process driving run {run_id} "
        f"(crash {n - 1}: attempt {before[0]} started {_utc(before[1])}; crash {n}: attempt {now[0]} "
        f"started {_utc(now[1])}), so it is the likely cause and was not started a third time; fix it, "
        f"then replay it: dagexec resume {run_id} --replay {base_name(name)}"
    )


def base_name(name: str) -> str:
    """``"load"`` for a mapped element ``"load[3]"``; other names as they are."""
    base, sep, rest = name.partition("[")
    return base if sep and rest.endswith("]") else name


def is_mapped_name(name: str, index: Mapping[str, int]) -> bool:
    base, sep, rest = name.partition("[")
    return bool(sep) and rest.endswith("]") and base in index


def _utc(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "at an unknown time"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


__all__ = ["CRASH_META", "ResumePlan", "TaskPlan", "plan_resume"]
