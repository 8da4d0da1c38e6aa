"""Reads: runs, task records (a task's newest log entry), the transition log, metadata, run histories."""

from __future__ import annotations

import json
import json.decoder
import operator
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from dagexec_core import JsonSerializer, RunHistory, RunInfo, StateFileError, TaskRecord, TaskState

from .base import StorageBase
from .schema import LOG_ID_BITS

_STATES = {s.value: s for s in TaskState}
_FIRST = operator.itemgetter(0)
#: The C scanner behind ``json.loads`` (see `SqliteStorage._load`).
_JSON_SCAN: Callable[[str, int], tuple[Any, int]] = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]


class Reads(StorageBase):
    """The reading half of `SqliteStorage` (a mixin)."""

    _RUN_COLUMNS = (
        "run_id, dag_name, status, started_at, finished_at, task_count, counts, trace_id, meta, dag_file, "
        "lock_pid, lock_host, lock_started, lock_heartbeat, num, log_applied"
    )

    def _run_info(self, row: Sequence[Any], with_counts: bool = True, lazy: bool = False) -> RunInfo:
        run_id, dag_name, status, started, finished, task_count, counts, trace_id, meta, dag_file = row[:10]
        if status == "running" and self._holder(row[10:14]) is None:
            status = "crashed"  # its driver died without finishing it: resumable
        counts_map: Mapping[str, int]
        if not with_counts:
            counts_map = {}
        elif counts is None or status in ("running", "crashed"):
            args = (run_id, row[14], row[15], task_count or 0)
            counts_map = _CountedLater(self, args) if lazy else self._count_states(*args)
        else:
            counts_map = self._json(counts, f"the task counts of run {run_id}", dict)
        meta_map = self._json(meta, f"the metadata of run {run_id}", dict) if meta else {}
        if dag_file:
            meta_map["dag_file"] = dag_file
        return RunInfo(
            run_id=run_id,
            dag_name=dag_name,
            status=status,
            started_at=started,
            finished_at=finished,
            task_count=task_count or 0,
            counts=counts_map,
            trace_id=trace_id,
            meta=meta_map,
        )

    def _count_states(self, run_id: str, num: int | None, mark: int | None, task_count: int) -> dict[str, int]:
        """Tasks per state: their newest log entries, else their ``tasks`` rows, else pending."""
        if num is None or mark is None:  # written before schema 4, never resumed since: all in ``tasks``
            return dict(self._query("SELECT state, count(*) FROM tasks WHERE run_id = ? GROUP BY state", (run_id,)))
        hi = (int(num) << LOG_ID_BITS) + (1 << LOG_ID_BITS) - 1
        counts = dict(
            self._query(
                "SELECT state, count(*) FROM ("
                "SELECT state FROM tasks WHERE run_id = ?1 AND name NOT IN "
                "(SELECT task FROM transitions WHERE id BETWEEN ?2 AND ?3) "
                "UNION ALL SELECT state FROM (SELECT task, state, max(id) FROM transitions "
                "WHERE id BETWEEN ?2 AND ?3 GROUP BY task)) GROUP BY state",
                (run_id, mark + 1, hi),
            )
        )
        missing = task_count - sum(counts.values())
        if missing > 0:
            counts["pending"] = counts.get("pending", 0) + missing
        return counts

    def list_runs(self, limit: int = 20) -> list[RunInfo]:
        rows = self._query(f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [self._run_info(r) for r in rows]

    def get_run(self, run_id: str, counts: bool = True) -> RunInfo:
        """The run; the counts of a run not finished are read from its log when first asked for
        (`_CountedLater`): most callers want the run's status, file or metadata, and counting
        100,000 tasks costs 0.05 s, three times over before a resume starts its first task."""
        rows = self._query(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise self._not_found(run_id)
        return self._run_info(rows[0], counts, lazy=True)

    def load_records(self, run_id: str) -> dict[str, TaskRecord]:
        self.get_run(run_id)
        return self._load(run_id)

    def _task_names_and_parts(self, run_id: str) -> tuple[list[str], list[str]]:
        """A run's task names in order (its dependency documents' names, then any name with a ``tasks``
        row only), and the documents' texts, oldest first."""
        decoded: list[tuple[bool, Any]] = []
        parts: list[str] = []
        for deps, listed in self._query(
            "SELECT deps, names FROM run_fingerprints WHERE run_id = ? ORDER BY part", (run_id,)
        ):
            try:
                part = json.loads(listed if listed is not None else deps)
                if not isinstance(part, (dict, list)):
                    raise ValueError(f"a JSON object or array was expected, not {type(part).__name__}")
            except ValueError as exc:
                raise StateFileError(
                    f"the stored task list of run {run_id} cannot be decoded ({exc}); the state file is "
                    f"damaged: start a new run"
                ) from exc
            decoded.append((listed is not None, part))
            parts.append(deps)
        legacy = self._query("SELECT name FROM tasks WHERE run_id = ?", (run_id,))
        if len(decoded) == 1 and decoded[0][0] and isinstance(decoded[0][1], list) and not legacy:
            return decoded[0][1], parts  # one names document, as most runs have: no name twice (`_names_text`)
        names: dict[str, None] = {}
        for _, part in decoded:
            names.update(dict.fromkeys(part))
        names.update(dict.fromkeys(r[0] for r in legacy))
        return list(names), parts

    def _task_names(self, run_id: str) -> list[str]:
        return self._task_names_and_parts(run_id)[0]

    def _load(self, run_id: str, names: Sequence[str] | None = None, pending: bool = True) -> dict[str, TaskRecord]:
        """Every record of a run, outputs decoded (never unpickled).

        A run's tasks are the names in its dependency documents; a task's record is its newest entry
        in the run's log after ``log_applied``, else its ``tasks`` row (a run written before schema 4),
        else pending (left out with ``pending=False``).
        """
        if names is None:
            names = self._task_names(run_id)
        found: dict[str, Sequence[Any]] = {}
        # Rows before schema 4: a run's rows were written in task order, so they are read as one range of
        # the table in rowid order (no sort, no lookup through the key per row); ``+run_id`` keeps SQLite
        # off the key.
        lo, hi = self._query("SELECT min(rowid), max(rowid) FROM tasks WHERE run_id = ?", (run_id,))[0]
        if lo is not None:
            rows = self._query(
                "SELECT name, state, attempts, error, started_at, finished_at, output, trace_id FROM tasks "
                "WHERE rowid BETWEEN ? AND ? AND +run_id = ?",
                (lo, hi, run_id),
            )
            found.update(zip(map(_FIRST, rows), rows, strict=True))
        run = self._query("SELECT num, log_applied FROM runs WHERE run_id = ?", (run_id,))
        if run and run[0][0] is not None and run[0][1] is not None:
            # the log read in id order, newest last: one range of its tree, no sort
            top = (int(run[0][0]) << LOG_ID_BITS) + (1 << LOG_ID_BITS) - 1
            rows = self._query(
                "SELECT task, state, attempts, error, started_at, finished_at, output, trace_id FROM transitions "
                "WHERE id BETWEEN ? AND ?",
                (run[0][1] + 1, top),
            )
            found.update(zip(map(_FIRST, rows), rows, strict=True))  # a task's newest entry is the one kept
        not_started = TaskState.PENDING
        # JSON (the default) is read by the decoder's C scanner, without json.loads' per-call layers; a
        # text the scanner does not take whole goes through json.loads, which names what is wrong with it.
        scan = _JSON_SCAN if type(self.serializer) is JsonSerializer else None
        loads = self.serializer.loads
        states = _STATES
        completed = TaskState.COMPLETED
        records: dict[str, TaskRecord] = {}

        def record(row: Sequence[Any]) -> TaskRecord:
            name, state, attempts, error, started, finished, output, trace_id = row
            st = states.get(state)
            if st is None:
                raise self._damaged(f"task {name!r} of run {run_id} has the unknown state {state!r}")
            value = None
            if st is completed and output is not None and output != "null":
                try:
                    if scan is not None:
                        try:
                            value, end = scan(output, 0)
                        except (StopIteration, ValueError):
                            end = -1
                        if end != len(output):
                            value = loads(output)
                    else:
                        value = loads(output)
                except RecursionError:
                    # stored by a run that decoded it deeper in its stack than here? decode it on a fresh stack
                    value = _on_fresh_stack(loads, output, name, run_id)
                except ValueError as exc:
                    raise StateFileError(
                        f"the stored output of task {name!r} in run {run_id} cannot be decoded ({exc}); "
                        f"was it written with another serializer= ?"
                    ) from exc
            return TaskRecord(name, st, attempts, error, started, finished, value, trace_id)

        if pending:
            for n in names:
                row = found.pop(n, None)
                if row is not None:
                    records[n] = record(row)
                else:
                    records[n] = TaskRecord(n, not_started, 0, None, None, None, None, None)
            for n, row in found.items():  # logged, but in no task list (a storage written to directly)
                records[n] = record(row)
            return records
        # A resume's: the tasks with an entry only (half of a run killed half-way), in the order of the task
        # list; those without an output to decode (most: a no-op's None is stored as "null") built here.
        for n in filter(found.__contains__, names):
            row = found[n]
            st = states.get(row[1])
            output = row[6]
            if st is not None and (st is not completed or output is None or output == "null"):
                records[n] = TaskRecord(n, st, row[2], row[3], row[4], row[5], None, row[7])
            else:
                records[n] = record(row)
        if len(records) < len(found):
            for n, row in found.items():  # logged, but in no task list (a storage written to directly)
                if n not in records:
                    records[n] = record(row)
        return records

    def transitions(self, run_id: str) -> list[dict[str, Any]]:
        """The append-only log of a run's state changes, oldest first (for timelines)."""
        found = self._query("SELECT num FROM runs WHERE run_id = ?", (run_id,))
        if not found or found[0][0] is None:
            return []
        lo = int(found[0][0]) << LOG_ID_BITS
        rows = self._query(
            "SELECT task, state, attempts, at, error FROM transitions WHERE id BETWEEN ? AND ? ORDER BY id",
            (lo, lo + (1 << LOG_ID_BITS) - 1),
        )
        return [{"task": t, "state": s, "attempts": a, "at": at, "error": e} for t, s, a, at, e in rows]

    def load_task_state(self, dag_name: str, task_name: str) -> Any:
        rows = self._query("SELECT value FROM task_state WHERE dag_name = ? AND task = ?", (dag_name, task_name))
        if not rows or rows[0][0] is None:
            return None
        return self._json(rows[0][0], f"the state of task {task_name!r} of DAG {dag_name!r}")

    def get_meta(self, run_id: str, key: str) -> Any:
        rows = self._query("SELECT value FROM run_meta WHERE run_id = ? AND key = ?", (run_id, key))
        return self._json(rows[0][0], f"run metadata {key!r} of run {run_id}") if rows and rows[0][0] else None

    def run_history(self, run_id: str) -> Any:
        """Every dependency list, log entry (oldest first) and meta value of a run: a `RunHistory`
        (the optional `Storage.run_history`).

        Read only, for ``dagexec report``: the log holds each step's whole record, so the entries give
        every attempt's start and end; entries written before schema 4 carry no start or end.
        """

        self.get_run(run_id, counts=False)
        names, parts = self._task_names_and_parts(run_id)
        deps: dict[str, Sequence[str]] = {}
        for text in parts:
            part = json.loads(text)
            if isinstance(part, dict):
                deps.update(part)
        for name in names:
            deps.setdefault(name, ())
        entries: list[Any] = []
        num = self._query("SELECT num FROM runs WHERE run_id = ?", (run_id,))[0][0]
        if num is not None:
            lo = int(num) << LOG_ID_BITS
            entries = self._query(
                "SELECT task, state, attempts, at, started_at, finished_at, error, trace_id FROM transitions "
                "WHERE id BETWEEN ? AND ? ORDER BY id",
                (lo, lo + (1 << LOG_ID_BITS) - 1),
            )
        meta = {k: json.loads(v) for k, v in self._query("SELECT key, value FROM run_meta WHERE run_id = ?", (run_id,))}
        return RunHistory(deps, [tuple(e) for e in entries], meta)


class _CountedLater(Mapping[str, int]):
    """`RunInfo.counts` of a run not finished: tasks per state, counted from its log when first read.

    Read after its storage was closed (``dagexec show`` prints them after the file is closed), they
    are counted through a connection of their own, opened for reading only.
    """

    def __init__(self, storage: Reads, args: tuple[str, int | None, int | None, int]) -> None:
        self._storage: Reads | None = storage
        self._args = args
        self._counts: dict[str, int] | None = None

    def _get(self) -> dict[str, int]:
        if self._counts is None:
            storage = self._storage
            assert storage is not None
            if storage._closed:
                reader = type(storage)(storage.path, create=False, read_only=True)
                try:
                    self._counts = reader._count_states(*self._args)
                finally:
                    if reader._conn is not None:
                        reader._conn.close()
            else:
                self._counts = storage._count_states(*self._args)
            self._storage = None
        return self._counts

    def __getitem__(self, state: str) -> int:
        return self._get()[state]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._get(),))  # a pickled or copied RunInfo carries the counts, not the storage


class StoredFingerprint(Mapping[str, Sequence[str]]):
    """A run's stored dependency lists (task -> deps), decoded on first use.

    ``digest`` is the `fingerprint_digest` of the DAG the run was created with (None for a run
    migrated from schema 1): the engine compares it with its own DAG's before reading any list.
    """

    def __init__(self, parts: Sequence[str], digest: str | None, run_id: str = "") -> None:
        self.digest = digest
        self._parts = list(parts)
        self._run_id = run_id
        self._decoded: dict[str, Sequence[str]] | None = None

    def _map(self) -> dict[str, Sequence[str]]:
        if self._decoded is None:
            merged: dict[str, Sequence[str]] = {}
            for text in self._parts:
                try:
                    part = json.loads(text)
                except ValueError as exc:
                    raise StateFileError(
                        f"the stored dependencies of run {self._run_id} cannot be decoded ({exc}); "
                        f"the state file is damaged: start a new run"
                    ) from exc
                for name, deps in part.items():
                    merged.setdefault(name, deps)  # a task keeps the dependencies first recorded for it
            self._decoded = merged
        return self._decoded

    def __getitem__(self, name: str) -> Sequence[str]:
        return self._map()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._map())


def _on_fresh_stack(loads: Callable[[str], Any], text: str, name: str, run_id: str) -> Any:
    """Decode a deeply nested output in a thread of its own: the whole recursion limit is left for it."""
    result: list[Any] = []
    failed: list[BaseException] = []

    def decode() -> None:
        try:
            result.append(loads(text))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    thread = threading.Thread(target=decode, name="dagexec-decode")
    thread.start()
    thread.join()
    if failed:
        raise StateFileError(
            f"the stored output of task {name!r} in run {run_id} cannot be decoded "
            f"({type(failed[0]).__name__}: {failed[0]}); replay the task: dagexec resume {run_id} --replay {name}"
        )
    return result[0]
