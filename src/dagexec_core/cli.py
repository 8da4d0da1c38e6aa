"""The ``dagexec`` command line: run, validate, graph and inspect plugins.

Exit codes: 0 every task completed; 1 a task failed; 2 usage, loading or
validation error; 130 the run was cancelled (it stays resumable).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config
from .dag import Dag
from .engine import run as run_dag
from .errors import DagexecError, DagValidationError, PluginError, UsageError
from .plugins import PluginManager, build_plugin_manager, call_hook

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130

log = logging.getLogger("dagexec")


# ---------------------------------------------------------------------------
# loading DAG files
# ---------------------------------------------------------------------------


def split_target(target: str) -> tuple[Path, str | None]:
    """``path/to/file.py[:DAG]`` -> (path, dag name or None)."""
    path, sep, name = target.rpartition(":")
    if sep and path and not name.endswith(".py") and "/" not in name and "\\" not in name:
        return Path(path), name or None
    return Path(target), None


def load_dags(path: Path) -> dict[str, Dag]:
    """Import ``path`` and return the `Dag` objects it defines, by DAG name."""
    if not path.is_file():
        raise UsageError(f"DAG file {str(path)!r} not found; pass the path of a .py file that defines a Dag")
    modname = f"dagexec_dagfile_{path.stem}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path.resolve() or f.filename == str(path)]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        raise UsageError(f"{where}: importing the DAG file raised {type(exc).__name__}: {exc}") from exc
    finally:
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


# ---------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", "-c", type=int, default=None, help="tasks running at once (default 32)")
    p.add_argument("--state", default=None, help="SQLite state file (default .dagexec/state.db)")
    p.add_argument("--no-persist", action="store_true", help="keep no state (nothing to resume)")
    p.add_argument("--executor", default=None, help="task executor: local (default), process, dask")
    p.add_argument("--json", action="store_true", help="print the run report as JSON")


def build_parser(pm: PluginManager | None) -> argparse.ArgumentParser:
    # Options every subcommand takes, before or after its name. SUPPRESS keeps a
    # subcommand's default from overwriting what was given before the name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-p", dest="plugin_args", action="append", default=argparse.SUPPRESS, metavar="NAME",
        help="load plugin module NAME; -p no:NAME blocks plugin NAME",
    )
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
    common.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS, help="less output")
    parser = argparse.ArgumentParser(
        prog="dagexec",
        description="Run DAGs of Python tasks with durable state and replaceable stages.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"dagexec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    orig_add = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return orig_add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p_run = sub.add_parser("run", help="run a DAG from a Python file")
    p_run.add_argument("target", metavar="FILE[:DAG]")
    _add_run_options(p_run)
    p_run.add_argument("--resume", metavar="RUN_ID", default=None, help="continue a stored run")
    if pm is not None:
        group = p_run.add_argument_group("plugin options")
        call_hook(pm, "dagexec_addoption", parser=group)
    p_run.set_defaults(func=cmd_run)

    p_val = sub.add_parser("validate", help="check a DAG without running it")
    p_val.add_argument("target", metavar="FILE[:DAG]")
    p_val.set_defaults(func=cmd_validate)

    p_graph = sub.add_parser("graph", help="print a DAG as Mermaid or Graphviz dot")
    p_graph.add_argument("target", metavar="FILE[:DAG]")
    p_graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    p_graph.set_defaults(func=cmd_graph)

    p_plugins = sub.add_parser("plugins", help="list registered plugins and their hooks")
    p_plugins.add_argument("target", metavar="FILE", nargs="?", help="also load dagplugins.py near this DAG file")
    p_plugins.add_argument("--json", action="store_true")
    p_plugins.set_defaults(func=cmd_plugins)

    for extend in COMMANDS:
        extend(sub, pm)
    return parser


#: Functions ``(subparsers, pm) -> None`` adding further subcommands.
COMMANDS: list[Callable[[Any, PluginManager | None], None]] = []


def _stored_run_commands(sub: Any, pm: PluginManager | None) -> None:
    from .cli_runs import add_commands  # resume, runs, show, dlq

    add_commands(sub, pm)


COMMANDS.append(_stored_run_commands)


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """Every parsed option except the CLI's own plumbing, for `Config`."""
    skip = {"func", "target", "command", "plugin_args", "json", "no_persist", "resume", "verbose", "quiet"}
    opts = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if args.no_persist:
        opts["persist"] = False
    opts["verbosity"] = getattr(args, "verbose", 0) - getattr(args, "quiet", 0)  # -v/-q for plugins (progress)
    return opts


def cmd_run(args: argparse.Namespace, pm: PluginManager, dag: Dag, path: Path) -> int:
    config = Config(pm, _run_options(args), dag_path=path)
    if config.getoption("persist") is False:
        config.options["state"] = ":memory:"
    pm.hook.dagexec_configure.call_historic(kwargs={"config": config})
    try:
        report = run_dag(dag, config=config, resume=args.resume)
    finally:
        pm.hook.dagexec_unconfigure(config=config)
    return report_exit(report, args)


def report_exit(report: Any, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(report_json(report), indent=2, default=str))
    elif args.quiet < 1:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(report.counts().items()))
        print(f"run {report.run_id} of DAG {report.dag_name!r} {report.status}: {counts} in {report.duration:.2f}s")
        for name in report.failed:
            print(f"  FAILED {name}: {report.records[name].error}")
        if report.status == "cancelled":
            print(f"  resume with: dagexec run ... --resume {report.run_id}")
    if report.status == "cancelled":
        return EXIT_CANCELLED
    return EXIT_OK if report.ok else EXIT_FAILED


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


def cmd_validate(args: argparse.Namespace, pm: PluginManager, dag: Dag, path: Path) -> int:
    dag.validate()
    print(f"DAG {dag.name!r} in {path} is valid: {len(dag)} tasks")
    return EXIT_OK


def cmd_graph(args: argparse.Namespace, pm: PluginManager, dag: Dag, path: Path) -> int:
    dag.validate()
    order = dag.topological_order()
    if args.format == "dot":
        lines = [f"digraph {json.dumps(dag.name)} {{", "  rankdir=LR;"]
        for name in order:
            lines.append(f"  {json.dumps(name)};")
        for name in order:
            for dep in dag[name].deps:
                lines.append(f"  {json.dumps(dep)} -> {json.dumps(name)};")
        lines.append("}")
    else:
        ids = {name: f"t{i}" for i, name in enumerate(order)}
        lines = ["graph TD"]
        for name in order:
            label = name.replace('"', "#quot;")
            lines.append(f'  {ids[name]}["{label}"]')
        for name in order:
            for dep in dag[name].deps:
                lines.append(f"  {ids[dep]} --> {ids[name]}")
    print("\n".join(lines))
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace, pm: PluginManager, dag: Dag | None, path: Path | None) -> int:
    rows = pm.describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max(len(r["name"]) for r in rows) if rows else 4
    for r in rows:
        version = r["version"] or "-"
        print(f"{r['name']:<{width}}  {r['source']:<10}  {version:<8}  {', '.join(r['hooks'])}")
        if r["file"]:
            print(f"{'':<{width}}  {r['file']}")
    return EXIT_OK


def _add_emit(sub: Any, pm: PluginManager | None) -> None:
    p = sub.add_parser("emit", help="send an event to a run, for its tasks waiting on it")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("event", metavar="EVENT")
    p.add_argument("--payload", default="null", metavar="JSON", help="the event's payload as JSON (default null)")
    p.add_argument("--state", default=None, help="SQLite state file (default .dagexec/state.db)")
    p.set_defaults(func=cmd_emit)


def cmd_emit(args: argparse.Namespace, pm: PluginManager) -> int:
    from .patterns import emit_to_run

    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--payload {args.payload!r} is not JSON ({exc}); quote it for the shell: --payload '{{\"n\": 1}}'"
        ) from None
    from .cli_runs import open_state

    with open_state(args) as (_, storage):  # never creates a state file
        emit_to_run(storage, args.run_id, args.event, payload)
    if args.quiet < 1:
        print(f"event {args.event!r} sent to run {args.run_id}")
    return EXIT_OK


COMMANDS.append(_add_emit)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

NEEDS_DAG = {"run", "validate", "graph"}


def _setup_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING - 10 * verbose + 10 * quiet
    logging.basicConfig(level=max(logging.DEBUG, level), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except DagValidationError as exc:
        print(f"dagexec: invalid DAG: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, PluginError) as exc:
        print(f"dagexec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DagexecError as exc:
        print(f"dagexec: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _main(argv: list[str]) -> int:
    # Phase 1: find -p and the DAG file without plugin options, so the plugin
    # manager (and dagplugins.py next to the file) exists before the full parse.
    pre = build_parser(None)
    wants_help = bool({"-h", "--help"} & set(argv))
    known, _ = _parse_known(pre, argv)
    if known is None and not wants_help:
        pre.parse_args(argv)  # let argparse print the usage error and exit 2
    if known is not None and not getattr(known, "command", None):
        pre.print_help()
        return EXIT_OK if wants_help else EXIT_USAGE
    target = getattr(known, "target", None)
    dag_path = split_target(target)[0] if target else None
    plugin_args = getattr(known, "plugin_args", None) or [
        argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-p"
    ]
    pm = build_plugin_manager(
        plugin_args=plugin_args,
        dag_path=dag_path if dag_path and dag_path.is_file() else None,
    )
    # Phase 2: the full parse, with flags added by plugins.
    args = build_parser(pm).parse_args(argv)
    args.verbose = getattr(args, "verbose", 0)
    args.quiet = getattr(args, "quiet", 0)
    args.plugin_args = getattr(args, "plugin_args", [])
    _setup_logging(args.verbose, args.quiet)
    if args.command in NEEDS_DAG:
        dag, path = pick_dag(args.target)
        return int(args.func(args, pm, dag, path))
    if args.command == "plugins":
        return int(args.func(args, pm, None, dag_path))
    return int(args.func(args, pm))


def _parse_known(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace | None, list[str]]:
    # Unknown plugin flags are fine in phase 1; --help must wait for phase 2.
    argv = [a for a in argv if a not in ("-h", "--help")]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # phase 2 reports usage errors
            return parser.parse_known_args(argv)
    except SystemExit:
        return None, argv


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
