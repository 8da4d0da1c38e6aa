"""What the commands that load or run a DAG share: DAG files, run flags, the report and exit codes.

Exit codes: 0 every task completed; 1 a task failed; 2 usage, loading or
validation error; 130 the run was cancelled (it stays resumable).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import shlex
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    import pluggy

    from .config import Config
    from .dag import Dag
    from .plugins import PluginManager
    from .results import RunReport
    from .stages import Storage

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130

#: Defaults of the command line that `run()` does not share: progress shows on a terminal.
CLI_DEFAULTS: dict[str, Any] = {"progress": "auto"}


def split_target(target: str) -> tuple[Path, str | None]:
    """``path/to/file.py[:DAG]`` -> (path, dag name or None)."""
    path, sep, name = target.rpartition(":")
    if sep and path and not name.endswith(".py") and "/" not in name and "\\" not in name:
        return Path(path), name or None
    return Path(target), None


def load_dags(path: Path) -> dict[str, Dag]:
    """Import ``path`` and return the `Dag` objects it defines, by DAG name."""
    from .dag import Dag

    if not path.is_file():
        raise UsageError(f"DAG file {str(path)!r} not found; pass the path of a .py file that defines a Dag")
    modname = f"dagexec_dagfile_{path.stem}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    sys.path.insert(0, str(path.resolve().parent))
    # A DAG file makes long-lived objects only (a generated one half a million at 100,000 tasks): the
    # collections its import triggers scan them again and again for no garbage, 0.12 s of a 0.4 s import.
    collecting = gc.isenabled()
    gc.disable()
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if Path(f.filename) == path.resolve() or f.filename == str(path)
        ]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        raise UsageError(f"{where}: importing the DAG file raised {type(exc).__name__}: {exc}") from exc
    finally:
        if collecting:
            gc.enable()
        sys.path.remove(str(path.resolve().parent))
    dags: dict[str, Dag] = {}
    for value in vars(module).values():
        if isinstance(value, Dag):
            dags.setdefault(value.name, value)
    for value in vars(module).values():
        if isinstance(value, Dag) and not getattr(value, "source_file", None):
            value.source_file = str(path)
    return dags


def pick_dag(target: str) -> tuple[Dag, Path]:
    path, name = split_target(target)
    dags = load_dags(path)
    if not dags:
        raise UsageError(f"{path} defines no Dag; create one with dag = Dag('name')")
    if name is not None:
        if name not in dags:
            raise UsageError(f"{path} has no DAG named {name!r}; it defines: {', '.join(sorted(dags))}")
        return dags[name], path
    if len(dags) > 1:
        listed = ", ".join(sorted(dags))
        raise UsageError(
            f"{path} defines several DAGs ({listed}); choose one with {path}:NAME, e.g. {path}:{sorted(dags)[0]}"
        )
    return next(iter(dags.values())), path


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} tasks at once cannot run anything: give 1 or more")
    return value


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", "-c", type=positive_int, default=None, help="tasks running at once (default 32)")
    p.add_argument("--state", default=None, help="SQLite state file (default .dagexec/state.db)")
    p.add_argument("--no-persist", action="store_true", help="keep no state (nothing to resume)")
    p.add_argument(
        "--no-check-outputs",
        dest="check_outputs",
        action="store_false",
        default=None,
        help="with --no-persist: hand outputs to dependents as returned, without their JSON round trip",
    )
    p.add_argument("--executor", default=None, help="task executor: local (default), process, dask")
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    p.add_argument(
        "--param",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="a run parameter, read by tasks as ctx.params; VALUE is JSON when it parses, else text (repeatable)",
    )
    p.add_argument(
        "--capture",
        action="store_true",
        default=None,
        help="keep what tasks print to stdout/stderr with their logs (dagexec logs RUN_ID)",
    )
    p.add_argument(
        "--params-file", action="append", default=None, metavar="FILE.json", help="run parameters from a JSON object"
    )


def add_plugin_options(p: argparse.ArgumentParser, pm: PluginManager | None) -> None:
    """The flags plugins add (``dagexec_addoption``), under "plugin options".

    Their defaults are left to `Config`, which applies them below
    ``[tool.dagexec]`` and the environment, as `run()` does: a flag not given
    does not override the project's setting.
    """
    if pm is None:
        return
    from .plugins import call_hook

    group = p.add_argument_group("plugin options")
    call_hook(pm, "dagexec_addoption", parser=group)
    for action in group._group_actions:
        action.default = argparse.SUPPRESS


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """Every parsed option except the CLI's own plumbing, for `Config`."""
    skip = {"func", "target", "command", "plugin_args", "json", "no_persist", "resume", "verbose", "quiet"}
    skip |= {"param", "params_file"}
    opts = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    from .params import parse_cli

    given = parse_cli(getattr(args, "param", None), getattr(args, "params_file", None))
    if given is not None:
        opts["params"] = given
    if getattr(args, "no_persist", False):
        opts["persist"] = False
    opts["verbosity"] = getattr(args, "verbose", 0) - getattr(args, "quiet", 0)  # -v/-q for plugins (progress)
    return opts


def report_exit(report: Any, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(report_json(report), indent=2, default=str))
    elif args.quiet < 1:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(report.counts().items()))
        print(f"run {report.run_id} of DAG {report.dag_name!r} {report.status}: {counts} in {report.duration:.2f}s")
        for name in report.failed:
            print(f"  FAILED {name}: {report.records[name].error}")
        command = replay_command(report, args)
        if command:
            print(f"  fix the cause, then replay the failed tasks (their skipped dependents follow): {command}")
        if report.status == "cancelled":
            print(f"  resume with: dagexec resume {report.run_id}")
    if report.status == "cancelled":
        return EXIT_CANCELLED
    return EXIT_OK if report.ok else EXIT_FAILED


def replay_command(report: Any, args: argparse.Namespace) -> str | None:
    """The command that replays a persisted run's failed tasks (a mapped element through its map)."""
    if not report.failed or report.status == "cancelled" or not getattr(report, "persisted", True):
        return None
    names = dict.fromkeys(n.partition("[")[0] if n.endswith("]") and "[" in n else n for n in report.failed)
    command = f"dagexec resume {report.run_id}" + "".join(f" --replay {shlex.quote(n)}" for n in names)
    state = getattr(args, "state", None)
    return command + (f" --state {shlex.quote(state)}" if state else "")


def report_json(report: Any) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "dag": report.dag_name,
        "status": report.status,
        "ok": report.ok,
        "duration": report.duration,
        "counts": report.counts(),
        "failed": report.failed,
        "metrics": report.metrics,
        "tasks": {n: r.to_dict() for n, r in report.records.items()},
    }


# ---------------------------------------------------------------------------
# the heavy parts, imported by the command that needs them
# ---------------------------------------------------------------------------
# Every command's parser is built on each call (`dagexec --help` lists them all),
# so the modules that define commands import these names, not the engine,
# pluggy or the patterns behind them: `dagexec --version` stays an interpreter's
# start and argparse.


def run_dag(dag: Dag, **kwargs: Any) -> RunReport:
    """`dagexec_core.run`, imported on the first call."""
    from .api import run

    return run(dag, **kwargs)


def build_plugin_manager(**kwargs: Any) -> PluginManager:
    """`dagexec_core.plugins.build_plugin_manager`, imported on the first call."""
    from .plugins import build_plugin_manager as build

    return build(**kwargs)


@contextmanager
def configured(config: Config) -> Iterator[Config]:
    """`dagexec_core.plugins.configured` (configure, then unconfigure), imported on the first call."""
    from .plugins import configured as lifecycle

    with lifecycle(config):
        yield config


def call_hook(pm: pluggy.PluginManager, name: str, **kwargs: Any) -> Any:
    """`dagexec_core.plugins.call_hook`, imported on the first call."""
    from .plugins import call_hook as call

    return call(pm, name, **kwargs)


def recorded_branches(storage: Storage, run_id: str) -> dict[str, Any]:
    """`dagexec_core.patterns.recorded_branches`, imported on the first call."""
    from .patterns import recorded_branches as read

    return read(storage, run_id)
