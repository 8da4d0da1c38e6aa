"""`StorageContract`: what the engine relies on from a `Storage` (``dagexec_storage``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..errors import RunLockedError, RunNotFoundError
from ..stages import DeadLetter, RunInfo, Storage
from ..state import TaskState
from ._support import broken, check

SUITE = "StorageContract"
NAMES = ["extract", "transform", "load"]
FINGERPRINT = {"extract": [], "transform": ["extract"], "load": ["transform"]}


def _info(run_id: str, dag: str = "etl", started: float | None = None, n: int = 3) -> RunInfo:
    return RunInfo(run_id=run_id, dag_name=dag, status="running", started_at=started or time.time(), task_count=n)


def _row(
    name: str, state: str, attempts: int = 1, output: Any = None, error: str | None = None, trace: str | None = None
) -> tuple[Any, ...]:
    now = time.time()
    finished = None if state in ("running", "retrying", "pending") else now
    text = json.dumps(output) if state == "completed" else None
    return (name, state, attempts, now, finished, text, error, trace)


class StorageContract:
    """Subclass in your tests and override the ``storage`` fixture (a fresh storage with no runs).

    Class settings:

    - ``persistent``: the storage keeps runs past the process (it must say so
      with its ``persistent`` attribute). The engine hands a persistent storage
      every transition, with outputs as JSON text, and resumes runs from it.
      False for storage like the built-in ``memory`` one: the contract then
      checks what the engine still asks of it (runs, meta, task state).
    - ``reopen(storage)``: for a persistent storage, open the same data again
      as a new instance (another process resuming the run); override it.
    """

    persistent: ClassVar[bool] = True

    @pytest.fixture
    def storage(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__}: override the `storage` fixture to return a fresh instance of your storage"
        )

    def reopen(self, storage: Any) -> Any:
        """A new instance over the same data, for the persistent promises (override for a persistent storage)."""
        raise NotImplementedError(
            f"{type(self).__name__}: a persistent storage's contract opens its data again as a new instance "
            f"(another process resuming a run): override reopen(self, storage) to return one, or set "
            f"persistent = False for a storage that keeps nothing past the process"
        )

    # -- runs ----------------------------------------------------------------------

    def test_says_whether_it_persists(self, storage: Any) -> None:
        check(isinstance(storage, Storage), SUITE, "it has every Storage method", repr(storage))
        check(
            storage.persistent is self.persistent,
            SUITE,
            f"persistent is {self.persistent} (the engine builds rows for a persistent storage only)",
            f"it is {storage.persistent!r}; set persistent = {storage.persistent!r} on the test class if that is meant",
        )

    def test_a_created_run_is_found_running_with_every_task_pending(self, storage: Any) -> None:
        info = _info("r1")
        storage.create_run(info, NAMES, FINGERPRINT)
        got = storage.get_run("r1")
        promise = "get_run returns the run create_run recorded, running"
        check(isinstance(got, RunInfo), SUITE, promise, f"got {got!r}")
        check((got.run_id, got.dag_name, got.status) == ("r1", "etl", "running"), SUITE, promise, repr(got))
        check(abs(got.started_at - info.started_at) < 1e-3, SUITE, promise, f"started_at {got.started_at}")
        check(got.task_count == 3, SUITE, promise, f"task_count {got.task_count}")
        records = storage.load_records("r1")
        check(
            set(records) == set(NAMES) and all(r.state is TaskState.PENDING for r in records.values()),
            SUITE,
            "a new run's records are every task, PENDING",
            repr(records),
        )

    def test_an_unknown_run_is_not_found(self, storage: Any) -> None:
        for call in (storage.get_run, storage.load_records):
            try:
                call("no-such-run")
            except RunNotFoundError:
                continue
            except Exception as exc:  # noqa: BLE001 - the subject of the check
                broken(
                    SUITE,
                    "an unknown run raises RunNotFoundError (the CLI exits 2 on it)",
                    f"{call.__name__} raised {type(exc).__name__}: {exc}",
                )
            broken(SUITE, "an unknown run raises RunNotFoundError", f"{call.__name__} returned")

    def test_finish_run_records_status_and_time(self, storage: Any) -> None:
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        finished = time.time()
        storage.finish_run("r1", "failed", finished, {"completed": 2, "dead_lettered": 1})
        got = storage.get_run("r1")
        promise = "finish_run records the run's final status and time"
        check(got.status == "failed", SUITE, promise, f"status {got.status!r}")
        check(
            got.finished_at is not None and abs(got.finished_at - finished) < 1e-3,
            SUITE,
            promise,
            f"finished_at {got.finished_at}",
        )

    def test_list_runs_newest_first_within_the_limit(self, storage: Any) -> None:
        base = time.time()
        for k in range(3):
            storage.create_run(_info(f"r{k}", started=base + k), NAMES, FINGERPRINT)
            storage.finish_run(f"r{k}", "completed", base + k + 0.5, {"completed": 3})
        runs = storage.list_runs(limit=2)
        check(
            [r.run_id for r in runs] == ["r2", "r1"],
            SUITE,
            "list_runs gives the newest runs first, at most limit",
            f"list_runs(limit=2) gave {[r.run_id for r in runs]}",
        )

    # -- records ---------------------------------------------------------------------

    def test_records_follow_the_rows_in_write_order(self, storage: Any) -> None:
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        storage.write("r1", [_row("extract", "running"), _row("extract", "completed", output=[1, 2])])
        storage.write("r1", [_row("transform", "running"), _row("transform", "retrying", error="E: first")])
        storage.write("r1", [_row("transform", "running", attempts=2)])
        storage.write(
            "r1",
            [
                _row("transform", "failed", attempts=2, error="E: second"),
                _row("transform", "dead_lettered", attempts=2, error="E: second"),
                _row("load", "skipped", attempts=0),
            ],
        )
        records = storage.load_records("r1")
        got = {n: (r.state.value, r.attempts, r.error) for n, r in records.items()}
        expected = {
            "extract": ("completed", 1, None),
            "transform": ("dead_lettered", 2, "E: second"),
            "load": ("skipped", 0, None),
        }
        check(
            got == expected,
            SUITE,
            "a task's record is the last row written for it (rows apply in order)",
            f"records {got}, expected {expected}",
        )
        check(
            records["transform"].started_at is not None and records["transform"].finished_at is not None,
            SUITE,
            "a record keeps started_at and finished_at",
            repr(records["transform"]),
        )

    def test_a_step_of_many_rows_is_written_whole(self, storage: Any) -> None:
        names = [f"t{k}" for k in range(600)]
        storage.create_run(_info("big", n=len(names)), names, {n: [] for n in names})
        storage.write("big", [_row(n, "running") for n in names])
        storage.write("big", [_row(n, "completed", output=k) for k, n in enumerate(names)])
        records = storage.load_records("big")
        done = sum(1 for r in records.values() if r.state is TaskState.COMPLETED)
        check(done == 600, SUITE, "every row of a large step is kept", f"{done} of 600 completed")

    def test_completed_outputs_come_back_decoded(self, storage: Any) -> None:
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        value = {"rows": [1, 2.5, None, True], "name": "é ✓"}
        storage.write("r1", [_row("extract", "completed", output=value), _row("transform", "completed", output=None)])
        records = storage.load_records("r1")
        if not self.persistent:
            # The engine keeps outputs itself for such storage and never hands it output text.
            check(
                storage.persistent is False,
                SUITE,
                "a storage that keeps no outputs says persistent = False",
                repr(storage.persistent),
            )
            return
        check(
            records["extract"].output == value,
            SUITE,
            "a completed record's output is its JSON text decoded",
            f"got {records['extract'].output!r}",
        )
        check(
            records["transform"].output is None,
            SUITE,
            "an output of None comes back None",
            repr(records["transform"].output),
        )

    def test_trace_ids_are_kept_with_records(self, storage: Any) -> None:
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        trace = "0af7651916cd43dd8448eb211c80319c"
        storage.write("r1", [_row("extract", "running", trace=trace), _row("extract", "completed", 1, 5, None, trace)])
        got = storage.load_records("r1")["extract"].trace_id
        check(got == trace, SUITE, "a record keeps the trace id of the row that wrote it", repr(got))

    # -- resume ------------------------------------------------------------------------

    def _crashed_run(self, storage: Any) -> None:
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        storage.write("r1", [_row("extract", "running"), _row("extract", "completed", output={"n": 3})])
        storage.write("r1", [_row("transform", "running")])
        storage.finish_run("r1", "crashed", time.time(), {"completed": 1, "running": 1, "pending": 1})

    def _check_resume(self, storage: Any, where: str) -> None:
        info, records, fingerprint = storage.resume_run("r1")
        promise = f"resume_run {where} returns the run, its records with outputs, and its fingerprint"
        check(info.run_id == "r1" and info.dag_name == "etl", SUITE, promise, repr(info))
        check(records["extract"].state is TaskState.COMPLETED, SUITE, promise, repr(records.get("extract")))
        if self.persistent:
            check(records["extract"].output == {"n": 3}, SUITE, promise, f"output {records['extract'].output!r}")
        check(
            records["transform"].state is TaskState.RUNNING and records["transform"].attempts == 1,
            SUITE,
            f"{promise}: a task a crash caught is RUNNING with its attempts",
            repr(records.get("transform")),
        )
        load = records.get("load")
        check(
            load is None or load.state is TaskState.PENDING,
            SUITE,
            f"{promise}: a task never started is pending or left out",
            repr(load),
        )
        check(
            {n: list(fingerprint.get(n, [])) for n in NAMES} == FINGERPRINT,
            SUITE,
            f"{promise}: the fingerprint is every task's dependencies as created",
            f"{ {n: list(fingerprint.get(n, [])) for n in NAMES} }",
        )

    def test_resume_returns_records_outputs_and_fingerprint(self, storage: Any) -> None:
        self._crashed_run(storage)
        self._check_resume(storage, "on the same instance")
        storage.write("r1", [_row("transform", "pending", attempts=1)])
        storage.write("r1", [_row("transform", "running", attempts=2), _row("transform", "completed", 2, [1])])
        storage.finish_run("r1", "completed", time.time(), {"completed": 3})
        check(
            storage.get_run("r1").status == "completed",
            SUITE,
            "a resumed run is finished like a new one",
            storage.get_run("r1").status,
        )

    def test_a_run_resumes_from_a_new_instance(self, storage: Any) -> None:
        self._crashed_run(storage)
        if not self.persistent:
            check(
                storage.persistent is False,
                SUITE,
                "a storage that cannot resume across processes says so",
                repr(storage.persistent),
            )
            return
        storage.close()
        again = self.reopen(storage)
        try:
            self._check_resume(again, "from another instance (another process)")
        finally:
            again.close()

    def test_a_run_being_driven_is_not_resumed_by_another(self, storage: Any) -> None:
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        if not self.persistent:
            check(
                storage.persistent is False,
                SUITE,
                "a storage no other process can open says so",
                repr(storage.persistent),
            )
            return
        other = self.reopen(storage)
        try:
            try:
                other.resume_run("r1")
            except RunLockedError as exc:
                check("r1" in str(exc), SUITE, "the refusal names the run", str(exc))
            else:
                broken(
                    SUITE,
                    "a run whose driver is alive is not resumed by another (RunLockedError)",
                    "resume_run from a second instance succeeded while the first still drives the run",
                )
            storage.finish_run("r1", "crashed", time.time(), {})
            info, _, _ = other.resume_run("r1")
            check(info.run_id == "r1", SUITE, "once its driver let go, the run can be resumed", repr(info))
        finally:
            other.close()

    def test_add_tasks_adds_pending_tasks_and_keeps_known_ones(self, storage: Any) -> None:
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        storage.write("r1", [_row("extract", "completed", output=[1, 2])])
        storage.add_tasks(
            "r1",
            ["load[0]", "load[1]", "extract"],
            {"load[0]": ["transform"], "load[1]": ["transform"], "extract": ["other"]},
        )
        records = storage.load_records("r1")
        promise = "add_tasks records new tasks PENDING and leaves a task the run has as it was"
        check(
            records.get("load[0]") is not None and records["load[0]"].state is TaskState.PENDING,
            SUITE,
            promise,
            repr(records.get("load[0]")),
        )
        check(records["extract"].state is TaskState.COMPLETED, SUITE, promise, repr(records["extract"]))
        storage.finish_run("r1", "crashed", time.time(), {})
        _, _, fingerprint = storage.resume_run("r1")
        check(
            list(fingerprint.get("extract", [])) == [],
            SUITE,
            "add_tasks keeps the dependencies first recorded for a known task",
            repr(fingerprint.get("extract")),
        )
        check(
            list(fingerprint.get("load[1]", [])) == ["transform"],
            SUITE,
            "the fingerprint holds the dependencies of added tasks",
            repr(fingerprint.get("load[1]")),
        )

    # -- meta and task state -------------------------------------------------------------

    def test_meta_is_kept_per_run_and_key(self, storage: Any) -> None:
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        storage.create_run(_info("r2"), NAMES, FINGERPRINT)
        check(
            storage.get_meta("r1", "breaker:db") is None,
            SUITE,
            "an unset meta key reads None",
            repr(storage.get_meta("r1", "breaker:db")),
        )
        storage.put_meta("r1", "breaker:db", {"state": "open", "failures": 3})
        storage.put_meta("r1", "retry_budget_spent", 1)
        storage.put_meta("r1", "retry_budget_spent", 2)
        storage.put_meta("r2", "retry_budget_spent", 7)
        got = (
            storage.get_meta("r1", "breaker:db"),
            storage.get_meta("r1", "retry_budget_spent"),
            storage.get_meta("r2", "retry_budget_spent"),
        )
        check(
            got == ({"state": "open", "failures": 3}, 2, 7),
            SUITE,
            "put_meta keeps a JSON value per run and key; the last put wins",
            repr(got),
        )

    def test_task_state_is_kept_per_dag_and_task_across_runs(self, storage: Any) -> None:
        check(
            storage.load_task_state("etl", "load") is None,
            SUITE,
            "a task without state reads None",
            repr(storage.load_task_state("etl", "load")),
        )
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        storage.save_task_state("etl", "load", {"cursor": 10, "seen": ["a"]})
        storage.save_task_state("other", "load", 99)
        storage.finish_run("r1", "completed", time.time(), {})
        storage.create_run(_info("r2"), NAMES, FINGERPRINT)
        got = storage.load_task_state("etl", "load")
        check(
            got == {"cursor": 10, "seen": ["a"]},
            SUITE,
            "ctx.state saved in one run is read back in the next (per DAG and task)",
            repr(got),
        )
        check(
            storage.load_task_state("other", "load") == 99,
            SUITE,
            "task state is kept per DAG",
            repr(storage.load_task_state("other", "load")),
        )
        got["cursor"] = 11
        check(
            storage.load_task_state("etl", "load") == {"cursor": 10, "seen": ["a"]},
            SUITE,
            "changing a value read back does not change the stored state until it is saved",
            repr(storage.load_task_state("etl", "load")),
        )

    def test_persistent_data_survives_a_new_instance(self, storage: Any) -> None:
        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        storage.write("r1", [_row("extract", "completed", output=[1])])
        storage.put_meta("r1", "k", "v")
        storage.save_task_state("etl", "load", {"cursor": 1})
        storage.finish_run("r1", "completed", time.time(), {"completed": 1})
        if not self.persistent:
            check(
                storage.persistent is False,
                SUITE,
                "a storage that keeps nothing past the process says so",
                repr(storage.persistent),
            )
            return
        storage.close()
        again = self.reopen(storage)
        try:
            promise = "runs, records, meta and task state survive the process (a new instance reads them)"
            check(again.get_run("r1").status == "completed", SUITE, promise, repr(again.get_run("r1")))
            check(
                again.load_records("r1")["extract"].output == [1],
                SUITE,
                promise,
                repr(again.load_records("r1")["extract"]),
            )
            check(again.get_meta("r1", "k") == "v", SUITE, promise, repr(again.get_meta("r1", "k")))
            check(
                again.load_task_state("etl", "load") == {"cursor": 1},
                SUITE,
                promise,
                repr(again.load_task_state("etl", "load")),
            )
        finally:
            again.close()

    # -- the dead-letter queue -----------------------------------------------------------------

    def test_the_dead_letter_queue_the_engine_gets_for_it_keeps_entries(self, storage: Any, tmp_path: Path) -> None:
        from ..config import Config
        from ..plugins import build_plugin_manager, call_hook

        storage.create_run(_info("r1"), NAMES, FINGERPRINT)
        pm = build_plugin_manager()
        dlq = call_hook(pm, "dagexec_dead_letter_queue", config=Config(pm, {}, rootdir=tmp_path), storage=storage)
        entry = DeadLetter(
            "e1", "r1", "etl", "load", 3, "builtins.ValueError", "bad row", "Traceback...\n", time.time()
        )
        dlq.push(entry)
        check(
            [e.id for e in dlq.list("r1")] == ["e1"],
            SUITE,
            "the dead-letter queue for this storage keeps what is pushed",
            repr(dlq.list("r1")),
        )
        if not self.persistent or not callable(getattr(storage, "dead_letter_queue", None)):
            return
        storage.close()
        again = self.reopen(storage)
        try:
            got = again.dead_letter_queue().get("e1")
            check(got == entry, SUITE, "dead letters kept by a persistent storage survive the process", repr(got))
        finally:
            again.close()

    def test_a_run_through_the_engine_resumes_without_redoing_work(self, storage: Any, tmp_path: Path) -> None:
        from .. import Dag, hookimpl, run

        class Provides:
            @hookimpl
            def dagexec_storage(self) -> Any:
                return storage

        calls: list[str] = []
        flaky = {"fail": True}
        dag = Dag("storage-contract")
        dag.source_file = str(tmp_path / "flow.py")

        def extract() -> list[int]:
            calls.append("extract")
            return [1, 2, 3]

        def transform(extract: list[int]) -> int:
            calls.append("transform")
            if flaky["fail"]:
                raise ValueError("not yet")
            return sum(extract)

        dag.add("extract", extract)
        dag.add("transform", transform, deps=["extract"])

        first = run(dag, plugins=[Provides()], signals=False)
        check(
            first.failed == ["transform"] and first.outputs == {"extract": [1, 2, 3]},
            SUITE,
            "a run with this storage records its outcome",
            f"failed {first.failed}, outputs {first.outputs}",
        )
        if not self.persistent:
            check(
                storage.get_run(first.run_id).status == "failed",
                SUITE,
                "a finished run is found with its status",
                storage.get_run(first.run_id).status,
            )
            return
        flaky["fail"] = False
        storage.close()
        again = self.reopen(storage)

        class ProvidesAgain:
            @hookimpl
            def dagexec_storage(self) -> Any:
                return again

        try:
            second = run(dag, resume=first.run_id, replay=["transform"], plugins=[ProvidesAgain()], signals=False)
        finally:
            again.close()
        check(
            second.ok and second.outputs.get("transform") == 6,
            SUITE,
            "a resumed run reloads completed outputs for its dependents",
            f"outputs {second.outputs}",
        )
        check(calls.count("extract") == 1, SUITE, "a resumed run does not run completed tasks again", repr(calls))
