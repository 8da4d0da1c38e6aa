"""The ``dagexec logs`` and ``dagexec prune`` commands: task logs kept with a run, and deleting old runs."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .tasklogs import format_entry

if TYPE_CHECKING:  # pluggy and attrs are not imported by `dagexec --version` (tests/test_cold_imports.py)
    from .plugins import PluginManager
    from .stages import Storage

EXIT_OK = 0
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_commands(sub: Any, pm: PluginManager | None) -> None:
    p_logs = sub.add_parser(
        "logs",
        help="what a run's tasks logged (ctx.log, and their prints with --capture), per attempt",
        description="Print the logs kept for run RUN_ID: every task's attempts, or TASK's, oldest first.",
    )
    p_logs.add_argument("run_id", metavar="RUN_ID")
    p_logs.add_argument("task", metavar="TASK", nargs="?", default=None, help="only this task")
    p_logs.add_argument("--attempt", type=int, default=None, metavar="N", help="only attempt N")
    p_logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing attempts as they finish, until the run ends"
    )
    p_logs.add_argument("--state", default=None, help="SQLite state file (default .dagexec/state.db)")
    p_logs.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per logged attempt and line: task, attempt, lines, dropped, records "
        "([time, level, message, trace_id, span_id])",
    )
    p_logs.set_defaults(func=cmd_logs)

    p_prune = sub.add_parser(
        "prune",
        help="delete old runs with their records, dead letters and logs",
        description="Delete finished runs started longer ago than --older-than and/or beyond the newest --keep "
        "(with both: only runs that are both). A run being driven is never deleted.",
    )
    p_prune.add_argument("--older-than", metavar="AGE", default=None, help="e.g. 30d, 12h, 90m, 2w")
    p_prune.add_argument("--keep", type=int, default=None, metavar="N", help="keep the newest N runs")
    p_prune.add_argument("--vacuum", action="store_true", help="then give the freed space back to the disk")
    p_prune.add_argument("--dry-run", action="store_true", help="list the runs that would be deleted")
    p_prune.add_argument("--state", default=None, help="SQLite state file (default .dagexec/state.db)")
    p_prune.set_defaults(func=cmd_prune)


def _needs(storage: Storage, method: str, command: str) -> Any:
    found = getattr(storage, method, None)
    if found is None:
        raise UsageError(f"the storage {type(storage).__name__} keeps no task logs: `dagexec {command}` cannot read it")
    return found


def cmd_logs(args: argparse.Namespace, pm: PluginManager) -> int:
    from .cli_runs import open_state

    if args.attempt is not None and args.attempt < 1:
        raise UsageError(f"--attempt {args.attempt}: attempts count from 1")
    with open_state(args, read_only=not args.follow) as (_, storage):
        read = _needs(storage, "read_logs", "logs")
        after = 0
        printed = 0
        while True:
            entries = read(args.run_id, args.task, args.attempt, after)
            for e in entries:
                if args.json:  # one JSON object per attempt and line, so --follow streams too
                    print(json.dumps(e), flush=True)
                else:
                    print(format_entry(e["task"], e["attempt"], e["records"], e["dropped"]), flush=True)
                after = max(after, int(e["id"]))
                printed += 1
            if not args.follow:
                break
            if not entries and storage.get_run(args.run_id).status != "running":
                # one last read: attempts written just before the run finished
                if not read(args.run_id, args.task, args.attempt, after):
                    break
                continue
            if not entries:
                time.sleep(0.2)
    if not printed and not args.follow:
        what = f"task {args.task!r} of run {args.run_id}" if args.task else f"run {args.run_id}"
        if args.attempt is not None:
            what = f"attempt {args.attempt} of {what}"
        print(f"no logs kept for {what}", file=sys.stderr)
    return EXIT_OK


def parse_age(text: str) -> float:
    """``30d`` -> seconds."""
    m = _AGE.match(text)
    if m is None:
        raise UsageError(f"--older-than {text!r}: give a number and a unit, s m h d or w, e.g. 30d")
    return float(m.group(1)) * _UNIT[m.group(2)]


def cmd_prune(args: argparse.Namespace, pm: PluginManager) -> int:
    from .cli_runs import open_state

    if args.older_than is None and args.keep is None:
        raise UsageError("prune: say which runs go, --older-than AGE (e.g. 30d) and/or --keep N")
    if args.keep is not None and args.keep < 0:
        raise UsageError(f"--keep {args.keep}: give 0 or more runs to keep")
    cutoff = time.time() - parse_age(args.older_than) if args.older_than is not None else None
    with open_state(args, read_only=args.dry_run) as (_, storage):
        if args.dry_run:
            runs = storage.list_runs(1 << 30)
            doomed = [
                r.run_id
                for n, r in enumerate(runs)
                if r.status != "running"
                and (cutoff is None or r.started_at < cutoff)
                and (args.keep is None or n >= args.keep)
            ]
        else:
            doomed = _needs(storage, "prune", "prune")(older_than=cutoff, keep=args.keep, vacuum=args.vacuum)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(doomed)} run(s)" + (f": {', '.join(doomed)}" if doomed and len(doomed) <= 20 else ""))
    return EXIT_OK
