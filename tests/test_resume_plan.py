"""Resume planning as a pure function: stored records + crash metadata + DAG structure -> the plan.

No loop, no file: these pin the rules of docs/reliability.md one by one. The end-to-end proofs (a
SIGKILLed driver, a real state file) are in test_crash_resume.py and test_recovery.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from dagexec_core import Dag, TaskRecord, TaskState, UsageError
from dagexec_core.errors import DagChangedError
from dagexec_core.resume import ResumePlan, plan_resume

S = TaskState
T0 = 1_700_000_000.0


def _etl() -> Dag:
    dag = Dag("etl")
    dag.add("extract", lambda: [1, 2])
    dag.add("transform", lambda extract: extract, deps=["extract"])
    dag.add("load", lambda transform: transform, deps=["transform"])
    return dag


def _plan(
    dag: Dag,
    records: Sequence[TaskRecord],
    *,
    crash_meta: Any = None,
    replay: Sequence[str] = (),
    fingerprint: Mapping[str, Sequence[str]] | None = None,
) -> ResumePlan:
    tasks = [dag[n] for n in dag.topological_order()]
    return plan_resume(
        run_id="r1",
        dag_name=dag.name,
        tasks=tasks,
        records={r.name: r for r in records},
        fingerprint=fingerprint if fingerprint is not None else {t.name: list(t.deps) for t in tasks},
        crash_meta=crash_meta,
        replay=replay,
        now=T0 + 100,
    )


def _by_name(dag: Dag, plan: ResumePlan) -> dict[str, Any]:
    return {n: plan.tasks[i] for i, n in enumerate(dag.topological_order())}


def test_completed_tasks_are_kept_with_output_and_trace_and_the_rest_is_pending() -> None:
    dag = _etl()
    plan = _plan(
        dag,
        [
            TaskRecord("extract", S.COMPLETED, 1, None, T0, T0 + 1, [1, 2], "ab" * 16),
            TaskRecord("transform", S.PENDING),
            TaskRecord("load", S.PENDING),
        ],
    )
    tasks = _by_name(dag, plan)
    assert (tasks["extract"].state, tasks["extract"].output, tasks["extract"].kept) == (S.COMPLETED, [1, 2], True)
    assert tasks["extract"].trace_id == "ab" * 16 and not tasks["extract"].changed
    assert [dag.topological_order()[i] for i in plan.pending()] == ["transform", "load"]
    assert plan.crash_meta is None and plan.poison == [] and plan.new_names == []


def test_an_attempt_cut_by_a_crash_uses_no_attempt_and_the_crash_is_remembered() -> None:
    dag = _etl()
    plan = _plan(
        dag,
        [
            TaskRecord("extract", S.COMPLETED, 1, None, T0, T0 + 1, [1, 2]),
            TaskRecord("transform", S.RUNNING, 2, "ValueError: once", T0 + 5),
            TaskRecord("load", S.PENDING),
        ],
    )
    transform = _by_name(dag, plan)["transform"]
    assert (transform.state, transform.attempts, transform.changed) == (S.PENDING, 1, True)
    assert plan.poison == []
    assert plan.crash_meta == {"count": 1, "in_flight": {"transform": [2, T0 + 5]}, "found_at": T0 + 100}


def test_a_task_in_flight_at_two_consecutive_crashes_is_the_poison_pill() -> None:
    dag = _etl()
    previous = {"count": 1, "in_flight": {"transform": [1, T0 + 5]}, "found_at": T0 + 50}
    plan = _plan(
        dag,
        [
            TaskRecord("extract", S.COMPLETED, 1, None, T0, T0 + 1, [1, 2]),
            TaskRecord("transform", S.RUNNING, 2, None, T0 + 60),
            TaskRecord("load", S.PENDING),
        ],
        crash_meta=previous,
    )
    transform = _by_name(dag, plan)["transform"]
    # not started a third time: it stays RUNNING with its attempts, to be failed once the run is open
    assert (transform.state, transform.attempts, transform.changed) == (S.RUNNING, 2, False)
    [(i, message)] = plan.poison
    assert dag.topological_order()[i] == "transform"
    assert "task 'transform' was running at two consecutive crashes of the process driving run r1" in message
    assert "crash 1: attempt 1" in message and "crash 2: attempt 2" in message
    assert message.endswith("dagexec resume r1 --replay transform")
    assert plan.crash_meta == {"count": 2, "in_flight": {"transform": [2, T0 + 60]}, "found_at": T0 + 100}


def test_the_same_attempt_seen_again_is_the_same_crash_not_a_second_one() -> None:
    dag = _etl()
    previous = {"count": 1, "in_flight": {"transform": [2, T0 + 5]}, "found_at": T0 + 50}
    plan = _plan(
        dag,
        [
            TaskRecord("extract", S.COMPLETED, 1, None, T0, T0 + 1, [1, 2]),
            TaskRecord("transform", S.RUNNING, 2, None, T0 + 5),
            TaskRecord("load", S.PENDING),
        ],
        crash_meta=previous,
    )
    assert plan.poison == []
    assert _by_name(dag, plan)["transform"].state is S.PENDING
    assert plan.crash_meta is None  # nothing new to store


def test_malformed_crash_metadata_counts_as_none() -> None:
    dag = _etl()
    plan = _plan(dag, [TaskRecord("extract", S.RUNNING, 1, None, T0)], crash_meta={"in_flight": "garbage"})
    assert plan.poison == [] and plan.crash_meta is not None and plan.crash_meta["count"] == 1


def test_replay_resets_the_task_and_the_dependents_it_skipped() -> None:
    dag = _etl()
    plan = _plan(
        dag,
        [
            TaskRecord("extract", S.COMPLETED, 1, None, T0, T0 + 1, [1, 2]),
            TaskRecord("transform", S.DEAD_LETTERED, 3, "ValueError: bad", T0 + 1, T0 + 2),
            TaskRecord("load", S.SKIPPED, 0, None, None, T0 + 2),
        ],
        replay=["transform"],
    )
    tasks = _by_name(dag, plan)
    assert [(tasks[n].state, tasks[n].attempts, tasks[n].error) for n in ("transform", "load")] == [
        (S.PENDING, 0, None),
        (S.PENDING, 0, None),
    ]
    assert tasks["extract"].state is S.COMPLETED
    assert plan.replayed == {"transform", "load"}


def test_replaying_a_task_not_in_the_dag_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"cannot replay \['transfrom'\]: not tasks of DAG 'etl'"):
        _plan(_etl(), [TaskRecord("extract", S.COMPLETED, 1, None, T0, T0 + 1, [1])], replay=["transfrom"])


def test_a_completed_task_gone_from_the_dag_refuses_the_resume() -> None:
    with pytest.raises(DagChangedError, match="completed task 'old' is no longer in the DAG; start a new run"):
        _plan(_etl(), [TaskRecord("old", S.COMPLETED, 1, None, T0, T0 + 1, 1)])


def test_changed_dependencies_of_a_completed_task_refuse_the_resume() -> None:
    dag = _etl()
    with pytest.raises(DagChangedError, match=r"dependencies of completed task 'transform' changed from \[\] to"):
        _plan(
            dag,
            [TaskRecord("transform", S.COMPLETED, 1, None, T0, T0 + 1, 1)],
            fingerprint={"extract": [], "transform": [], "load": ["transform"]},
        )


def test_new_tasks_are_added_pending_and_mapped_elements_are_kept_aside() -> None:
    dag = Dag("m")
    dag.add("numbers", lambda: [1, 2, 3])
    dag.map(lambda item: item * 2, over="numbers", name="double")
    previous = {"count": 1, "in_flight": {"double[1]": [1, T0 + 3]}}
    plan = _plan(
        dag,
        [
            TaskRecord("numbers", S.COMPLETED, 1, None, T0, T0 + 1, [1, 2, 3]),
            TaskRecord("double[0]", S.COMPLETED, 1, None, T0 + 1, T0 + 2, 2),
            TaskRecord("double[1]", S.RUNNING, 2, None, T0 + 9),
        ],
        crash_meta=previous,
    )
    assert plan.new_names == ["double"]
    assert set(plan.stored_extra) == {"double[0]", "double[1]"}
    assert set(plan.poison_elements) == {"double[1]"}
    assert "--replay double" in plan.poison_elements["double[1]"]
