"""The ``dagexec`` commands for stored runs: resume, runs, show and the dead-letter queue.

They reach the state only through the ``dagexec_storage`` and
``dagexec_dead_letter_queue`` hooks, so a storage plugin serves them too.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The engine, pluggy and patterns through cli_common, imported when a command runs (see there).
from .cli_common import (
    CLI_DEFAULTS,
    add_plugin_options,
    add_run_options,
    build_plugin_manager,
    call_hook,
    configured,
    load_dags,
    pick_dag,
    recorded_branches,
    report_exit,
    run_dag,
    run_options,
)
from .config import Config
from .errors import PluginError, RunNotFoundError, StateFileError, StateFileMissingError, UsageError
from .params import META_KEY as PARAMS_META
from .params import describe as describe_params
from .tasklogs import line_counts

if TYPE_CHECKING:
    from .dag import Dag
    from .plugins import PluginManager
    from .stages import DeadLetter, DeadLetterQueue, RunInfo, Storage
    from .state import TaskRecord

EXIT_OK, EXIT_FAILED = 0, 1
#: Parsed arguments of these commands that are not run options.
_NOT_OPTIONS = frozenset({"run_id", "replay", "entry_ids", "run", "action", "all", "limit"})


# ---------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------


def add_commands(sub: Any, pm: PluginManager | None) -> None:
    """Add ``resume``, ``runs``, ``show`` and ``dlq`` to the ``dagexec`` parser."""

    p_resume = sub.add_parser(
        "resume",
        help="continue a stored run (its DAG file is remembered)",
        description="Continue run RUN_ID: completed tasks are not run again, their outputs are reloaded.",
    )
    p_resume.add_argument("run_id", metavar="RUN_ID")
    p_resume.add_argument(
        "target",
        metavar="FILE[:DAG]",
        nargs="?",
        default=None,
        help="the DAG file (default: the file the run was started from)",
    )
    p_resume.add_argument(
        "--replay",
        metavar="TASK",
        action="append",
        default=None,
        help="run TASK again, with its skipped or failed dependents (repeatable)",
    )
    add_run_options(p_resume)
    p_resume.add_argument(
        "--change-params",
        action="store_true",
        default=None,
        help="run the remaining tasks with the --param values given, not the ones the run was started with",
    )
    add_plugin_options(p_resume, pm)
    p_resume.set_defaults(func=cmd_resume)

    p_runs = sub.add_parser("runs", help="list recent runs in the state file")
    _add_state_option(p_runs)
    p_runs.add_argument("--limit", "-n", type=int, default=20, help="how many runs (default 20)")
    p_runs.add_argument("--json", action="store_true")
    p_runs.set_defaults(func=cmd_runs)

    p_show = sub.add_parser("show", help="every task of a stored run: state, attempts, duration, error")
    p_show.add_argument("run_id", metavar="RUN_ID")
    _add_state_option(p_show)
    p_show.add_argument("--timeline", action="store_true", help="every state change, in order, with its time")
    p_show.add_argument("--json", action="store_true")
    p_show.set_defaults(func=cmd_show)

    p_dlq = sub.add_parser(
        "dlq",
        help="the dead-letter queue: tasks whose retries were exhausted",
        description="list: the entries; show ID: one with its traceback; replay ID...|--run RUN_ID: re-run the "
        "tasks and the dependents skipped because of them, inside their run; purge ID...|--run RUN_ID|--all.",
    )
    p_dlq.add_argument("action", choices=DLQ_ACTIONS, metavar="{list,show,replay,purge}")
    p_dlq.add_argument("entry_ids", metavar="ID", nargs="*")
    p_dlq.add_argument("--run", metavar="RUN_ID", default=None, help="the dead letters of this run")
    p_dlq.add_argument("--all", action="store_true", help="purge: every dead letter in the state file")
    p_dlq.add_argument(
        "--dag",
        dest="target",
        metavar="FILE[:DAG]",
        default=None,
        help="replay: the DAG file (default: the file the run was started from)",
    )
    _add_state_option(p_dlq)
    p_dlq.add_argument("--json", action="store_true")
    p_dlq.set_defaults(func=cmd_dlq)


def _add_state_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", default=None, help="SQLite state file (default .dagexec/state.db)")


# ---------------------------------------------------------------------------
# reaching the state
# ---------------------------------------------------------------------------


@contextmanager
def open_state(args: argparse.Namespace, read_only: bool = False) -> Iterator[tuple[Config, Storage]]:
    """The storage (and its config) of ``--state``, through the ``dagexec_storage`` hook.

    Each opening has its own plugin manager, so every plugin sees one
    configure/unconfigure pair per manager. Reading never creates a state file;
    ``read_only`` asks the storage to open it for reading only (a directory the
    user cannot write), as ``runs``, ``show`` and ``dlq list|show`` do.
    """
    if getattr(args, "no_persist", False):
        raise UsageError("a stored run needs the state file: drop --no-persist")
    options: dict[str, Any] = {"create_state": False, "read_only": read_only}
    if getattr(args, "state", None):
        options["state"] = args.state
    pm = build_plugin_manager(plugin_args=args.plugin_args)
    config = Config(pm, options)
    with configured(config):
        storage: Storage | None = call_hook(pm, "dagexec_storage", config=config)
        if storage is None or not getattr(storage, "persistent", False):
            raise PluginError(
                f"no plugin provides persistent storage for state {config.getoption('state')!r}; "
                f"is the 'sqlite' plugin blocked?"
            )
        yield config, storage


def dead_letter_queue(config: Config, storage: Storage) -> DeadLetterQueue:
    dlq: DeadLetterQueue | None = call_hook(
        config.pluginmanager, "dagexec_dead_letter_queue", config=config, storage=storage
    )
    if dlq is None:
        raise PluginError("no plugin provides a dead-letter queue (is 'deadletter' blocked?)")
    return dlq


def _stored_dag(info: RunInfo, target: str | None, remembered: Path | None) -> tuple[Dag, Path]:
    """The DAG of a stored run: from ``target``, or the file the run remembers (checked unchanged)."""

    if target is not None:
        return pick_dag(target)
    assert remembered is not None
    path = remembered
    dags = load_dags(path)
    if info.dag_name not in dags:
        found = ", ".join(sorted(dags)) or "none"
        raise UsageError(
            f"run {info.run_id} is of DAG {info.dag_name!r}, which {path} no longer defines (it defines: {found}); "
            f"pass the file that does: dagexec resume {info.run_id} FILE:{info.dag_name}"
        )
    return dags[info.dag_name], path


def _continue(
    args: argparse.Namespace, pm: PluginManager, run_id: str, target: str | None, replay: list[str], name_it: str
) -> tuple[int, Any]:
    """Resume ``run_id``. Without ``target`` the file the run remembers is imported only when it is unchanged
    (`provenance`); ``name_it`` is the command line that names the file instead, for the refusal."""
    from .provenance import check_unchanged, recorded_code  # imports pluggy: not at CLI start

    # Read only: a file closed by its last writer is checkpointed, 15 ms of a 100,000-task resume's start
    # that the run's own writer does later. A file of an older schema is upgraded by the run: read it
    # as the run will open it.
    try:
        with open_state(args, read_only=True) as (_, storage):
            info = storage.get_run(run_id)
            recorded = recorded_code(storage, info) if target is None else None
    except StateFileMissingError:
        raise
    except StateFileError:
        with open_state(args) as (_, storage):
            info = storage.get_run(run_id)
            recorded = recorded_code(storage, info) if target is None else None
    remembered = None
    if target is None:
        remembered = check_unchanged(info, recorded, name_it + _state_flag(args))
        if getattr(args, "quiet", 0) < 1:
            print(f"resuming run {run_id} with {remembered} (unchanged since the run last ran)", file=sys.stderr)
    dag, path = _stored_dag(info, target, remembered)
    # dagplugins.py beside the DAG file applies, as for `dagexec run FILE`
    run_pm = build_plugin_manager(plugin_args=args.plugin_args, dag_path=path)
    options = {k: v for k, v in run_options(args).items() if k not in _NOT_OPTIONS}
    config = Config(run_pm, options, dag_path=path, defaults=CLI_DEFAULTS)
    with configured(config):
        report = run_dag(dag, config=config, resume=run_id, replay=replay)
    return report_exit(report, args), report


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def _state_flag(args: argparse.Namespace) -> str:
    return f" --state {shlex.quote(args.state)}" if getattr(args, "state", None) else ""


def cmd_resume(args: argparse.Namespace, pm: PluginManager) -> int:
    name_it = f"dagexec resume {args.run_id} FILE" + "".join(f" --replay {shlex.quote(t)}" for t in args.replay or [])
    code, _ = _continue(args, pm, args.run_id, args.target, args.replay or [], name_it)
    return code


def cmd_runs(args: argparse.Namespace, pm: PluginManager) -> int:
    with open_state(args, read_only=True) as (_, storage):
        runs = storage.list_runs(args.limit)
        if args.json:
            print(json.dumps([{**r.to_dict(), "params": _params(storage, r.run_id)} for r in runs], indent=2))
    if args.json:
        return EXIT_OK
    if not runs:
        print("no runs recorded yet")
        return EXIT_OK
    rows = [("RUN", "DAG", "STATUS", "STARTED", "DURATION", "TASKS")]
    for r in runs:
        rows.append((r.run_id, r.dag_name, r.status, _when(r.started_at), _duration(r), _counts(r.counts)))
    _table(rows)
    return EXIT_OK


def cmd_show(args: argparse.Namespace, pm: PluginManager) -> int:
    with open_state(args, read_only=True) as (_, storage):
        info = storage.get_run(args.run_id)
        records = storage.load_records(args.run_id)
        branches = recorded_branches(storage, args.run_id)
        params = _params(storage, args.run_id)
        read_logs = getattr(storage, "read_logs", None)  # lines each task logged (docs/logs.md)
        logged = line_counts(read_logs(args.run_id, records=False)) if read_logs is not None else None
        timeline: list[dict[str, Any]] | None = None
        if args.timeline:
            log = getattr(storage, "transitions", None)
            if log is None:
                raise UsageError(f"the storage {type(storage).__name__} keeps no transition log: drop --timeline")
            timeline = log(args.run_id)
    if args.json:
        shown: dict[str, Any] = {**info.to_dict(), "tasks": [r.to_dict() for r in records.values()]}
        shown["branches"] = branches  # what each conditional task chose (docs/patterns.md)
        shown["params"] = params
        if logged is not None:
            for task in shown["tasks"]:
                task["log_lines"] = logged.get(task["name"], 0)
        if timeline is not None:
            shown["transitions"] = timeline
        print(json.dumps(shown, indent=2))
        return EXIT_OK
    if timeline is not None:
        start = info.started_at
        rows = [("AT", "TASK", "STATE", "ATTEMPT", "ERROR")]
        for t in timeline:
            rows.append((f"+{t['at'] - start:.3f}s", t["task"], t["state"], str(t["attempts"]), _short(t["error"])))
        _table(rows)
        return EXIT_OK
    print(
        f"run {info.run_id} of DAG {info.dag_name!r}: {info.status}, started {_when(info.started_at)}, "
        f"{_duration(info)}; {_counts(info.counts)}"
    )
    if params:
        print(f"params: {describe_params(params)}")
    if info.trace_id:
        print(f"trace id: {info.trace_id}")
        # a traced resume's tasks point to its own trace; name the others (--json shows every task's)
        others = sorted({r.trace_id for r in records.values() if r.trace_id and r.trace_id != info.trace_id})
        if others:
            print(f"resumed in trace(s): {', '.join(others)}")
    task_rows = [("TASK", "STATE", "ATTEMPTS", "DURATION", "LOGGED", "ERROR")]
    for rec in records.values():
        lines = "-" if logged is None else str(logged.get(rec.name, 0))
        task_rows.append((rec.name, rec.state.value, str(rec.attempts), _seconds(rec), lines, _short(rec.error)))
    _table(task_rows)
    if logged:
        print(f"task logs: dagexec logs {info.run_id} [TASK]{_state_flag(args)}")
    for name, choice in branches.items():  # conditional tasks (docs/patterns.md)
        print(f"{name} chose {', '.join(choice) if isinstance(choice, list) else choice or 'no branch'}")
    return EXIT_OK


def cmd_dlq(args: argparse.Namespace, pm: PluginManager) -> int:
    if args.action != "purge" and args.all:
        raise UsageError(f"dlq {args.action}: --all only goes with purge")
    return int(DLQ_ACTIONS[args.action](args, pm))


def cmd_dlq_list(args: argparse.Namespace, pm: PluginManager) -> int:
    with open_state(args, read_only=True) as (config, storage):
        entries = dead_letter_queue(config, storage).list(args.run)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return EXIT_OK
    if not entries:
        print("the dead-letter queue is empty")
        return EXIT_OK
    rows = [("ID", "RUN", "TASK", "ATTEMPTS", "WHEN", "ERROR")]
    for e in entries:
        rows.append(
            (e.id, e.run_id, e.task, str(e.attempts), _when(e.created_at), _short(f"{e.error_type}: {e.message}"))
        )
    _table(rows)
    return EXIT_OK


def cmd_dlq_show(args: argparse.Namespace, pm: PluginManager) -> int:
    with open_state(args, read_only=True) as (config, storage):
        if len(args.entry_ids) != 1:
            raise UsageError("dlq show: give one dead-letter ID (see `dagexec dlq list`)")
        entry = _get(dead_letter_queue(config, storage), args.entry_ids[0])
    if args.json:
        print(json.dumps(entry.to_dict(), indent=2))
        return EXIT_OK
    print(f"dead letter {entry.id}: task {entry.task!r} of run {entry.run_id} (DAG {entry.dag_name!r})")
    print(f"  attempts: {entry.attempts}")
    print(f"  when:     {_when(entry.created_at)}")
    print(f"  error:    {entry.error_type}: {entry.message}")
    if entry.trace_id:
        print(f"  trace id: {entry.trace_id}")
    print(entry.traceback.rstrip())
    return EXIT_OK


def cmd_dlq_replay(args: argparse.Namespace, pm: PluginManager) -> int:
    with open_state(args) as (config, storage):
        queue = dead_letter_queue(config, storage)
        entries = _select(queue, args, what="replay")
    runs = {e.run_id for e in entries}
    if len(runs) > 1:
        raise UsageError(
            f"the dead letters given belong to {len(runs)} runs ({', '.join(sorted(runs))}); "
            f"replay one run at a time (--run RUN_ID)"
        )
    run_id = entries[0].run_id
    # an element of a dynamic map ("name[3]") is replayed through its collector, which maps again
    tasks = sorted({_base_task(e.task) for e in entries})
    chosen = " ".join(args.entry_ids) if args.entry_ids else f"--run {run_id}"
    code, report = _continue(args, pm, run_id, args.target, tasks, f"dagexec dlq replay {chosen} --dag FILE")
    # The replayed entries are settled: a task that failed again has a fresh entry.
    with open_state(args) as (config, storage):
        queue = dead_letter_queue(config, storage)
        for e in entries:
            queue.remove(e.id)
    if not args.json and getattr(args, "quiet", 0) < 1:
        ok = [t for t in tasks if t in report.records and report.records[t].state.value == "completed"]
        print(f"replayed {', '.join(tasks)} in run {run_id}: {len(ok)} of {len(tasks)} completed")
    return code


def cmd_dlq_purge(args: argparse.Namespace, pm: PluginManager) -> int:
    with open_state(args) as (config, storage):
        queue = dead_letter_queue(config, storage)
        entries = queue.list() if args.all else _select(queue, args, what="purge")
        for e in entries:
            queue.remove(e.id)
    print(f"purged {len(entries)} dead letter(s)")
    return EXIT_OK


DLQ_ACTIONS = {"list": cmd_dlq_list, "show": cmd_dlq_show, "replay": cmd_dlq_replay, "purge": cmd_dlq_purge}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _get(queue: DeadLetterQueue, entry_id: str) -> DeadLetter:
    try:
        return queue.get(entry_id)
    except KeyError as exc:
        raise UsageError(str(exc.args[0]) if exc.args else f"no dead letter {entry_id!r}") from None


def _select(queue: DeadLetterQueue, args: argparse.Namespace, *, what: str) -> list[DeadLetter]:
    if args.entry_ids and args.run:
        raise UsageError(f"dlq {what}: give dead-letter IDs or --run RUN_ID, not both")
    if args.run:
        entries = queue.list(args.run)
        if not entries:
            raise RunNotFoundError(f"run {args.run} has no dead letters; `dagexec dlq list` shows the queue")
        return entries
    if not args.entry_ids:
        hint = " or --all" if what == "purge" else ""
        raise UsageError(f"dlq {what}: give dead-letter IDs (see `dagexec dlq list`), --run RUN_ID{hint}")
    return [_get(queue, i) for i in args.entry_ids]


def _params(storage: Storage, run_id: str) -> dict[str, Any]:
    """The parameters kept with a run (docs/parameters.md); {} for a run given none."""
    return dict(storage.get_meta(run_id, PARAMS_META) or {})


def _base_task(name: str) -> str:
    base, sep, rest = name.partition("[")
    return base if sep and rest.endswith("]") else name


def _when(ts: float | None) -> str:
    # local time with its UTC offset, so a time read off another machine's output is not ambiguous
    return "-" if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(" ", "seconds")


def _duration(info: RunInfo) -> str:
    end = info.finished_at if info.finished_at is not None else time.time()
    suffix = "" if info.finished_at is not None else " so far"
    return f"{end - info.started_at:.2f}s{suffix}"


def _seconds(rec: TaskRecord) -> str:
    d = rec.duration
    return "-" if d is None else f"{d:.3f}s"


def _counts(counts: Any) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(dict(counts).items())) or "-"


def _short(text: str | None, width: int = 80) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
