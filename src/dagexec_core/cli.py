"""The ``dagexec`` command line: run, validate, graph and inspect plugins.

Exit codes: 0 every task completed; 1 a task failed; 2 usage, loading or
validation error; 130 the run was cancelled (it stays resumable).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .cli_common import (
    CLI_DEFAULTS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_plugin_options,
    add_run_options,
    pick_dag,
    report_exit,
    run_options,
    split_target,
)
from .errors import NOT_FOUND_ERRORS, DagChangedError, DagexecError, DagValidationError, PluginError, UsageError

if TYPE_CHECKING:
    from .dag import Dag
    from .plugins import PluginManager

# `dagexec --version` and `--help` build the parser and nothing else: the engine,
# pluggy, attrs and the plugins are imported by the commands that use them
# (tests/test_cold_imports.py checks it).


# ---------------------------------------------------------------------------
# loading DAG files
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------


def build_parser(pm: PluginManager | None) -> argparse.ArgumentParser:
    # Options every subcommand takes, before or after its name. SUPPRESS keeps a
    # subcommand's default from overwriting what was given before the name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-p",
        dest="plugin_args",
        action="append",
        default=argparse.SUPPRESS,
        metavar="NAME",
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
    add_run_options(p_run)
    p_run.add_argument("--resume", metavar="RUN_ID", default=None, help="continue a stored run")
    p_run.add_argument(
        "--change-params", action="store_true", default=None, help="with --resume: take the --param values given"
    )
    add_plugin_options(p_run, pm)
    p_run.set_defaults(func=cmd_run)

    p_val = sub.add_parser("validate", help="check a DAG without running it")
    p_val.add_argument("target", metavar="FILE[:DAG]")
    p_val.set_defaults(func=cmd_validate)

    p_graph = sub.add_parser("graph", help="print a DAG as Mermaid, Graphviz dot or an HTML page")
    p_graph.add_argument("target", metavar="FILE[:DAG]")
    p_graph.add_argument("--format", choices=("mermaid", "dot", "html"), default="mermaid")
    p_graph.add_argument("-o", "--output", metavar="FILE", default=None, help="write to FILE, not standard output")
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


def cmd_run(args: argparse.Namespace, pm: PluginManager, dag: Dag, path: Path) -> int:
    from .api import run as run_dag
    from .config import Config
    from .plugins import configured

    config = Config(pm, run_options(args), dag_path=path, defaults=CLI_DEFAULTS)
    if config.getoption("persist") is False:
        config.options["state"] = ":memory:"
    with configured(config):
        report = run_dag(dag, config=config, resume=args.resume)
    return report_exit(report, args)


def cmd_validate(args: argparse.Namespace, pm: PluginManager, dag: Dag, path: Path) -> int:
    dag.validate()
    print(f"DAG {dag.name!r} in {path} is valid: {len(dag)} tasks")
    return EXIT_OK


def cmd_graph(args: argparse.Namespace, pm: PluginManager, dag: Dag, path: Path) -> int:
    dag.validate()
    order = dag.topological_order()
    if args.format == "html":
        from .report import dag_data, render_html

        page = render_html(dag_data(dag))
        if args.output is None:
            print(page)
        else:
            Path(args.output).write_text(page, encoding="utf-8")
            if args.quiet < 1:
                print(args.output)
        return EXIT_OK
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
    text = "\n".join(lines)
    if args.output is None:
        print(text)
    else:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
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


def _add_report(sub: Any, pm: PluginManager | None) -> None:
    p = sub.add_parser(
        "report",
        help="write a stored run as one self-contained HTML page: graph, timeline, tasks, dead letters",
        description="Write run RUN_ID as one HTML file that needs no server and fetches nothing.",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("-o", "--output", metavar="FILE", default=None, help="the HTML file (default: RUN_ID.html here)")
    p.add_argument("--state", default=None, help="SQLite state file (default .dagexec/state.db)")
    p.add_argument(
        "--trace-url",
        metavar="TEMPLATE",
        default=None,
        help="link each task to its trace, e.g. http://localhost:16686/trace/{trace_id}",
    )
    p.add_argument("--open", action="store_true", help="open the page in the web browser")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace, pm: PluginManager) -> int:
    from .cli_runs import dead_letter_queue, open_state
    from .report import render_html, run_data

    template = args.trace_url
    if template is not None and ("{trace_id}" not in template or not template.startswith(("http://", "https://"))):
        raise UsageError(
            f"--trace-url {template!r} must be an http(s) address with a {{trace_id}} placeholder, "
            f"e.g. http://localhost:16686/trace/{{trace_id}}"
        )
    with open_state(args) as (config, storage):
        storage.get_run(args.run_id)  # a clear error for an unknown run, before anything else
        try:
            letters = dead_letter_queue(config, storage).list(args.run_id)
        except PluginError:  # the dead-letter plugin is blocked: the page shows none
            letters = []
        data = run_data(storage, args.run_id, dead_letters=letters, trace_url=template)
    out = Path(args.output if args.output is not None else f"{args.run_id}.html")
    try:
        out.write_text(render_html(data), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the report to {str(out)!r}: {exc.strerror or exc}") from None
    print(out)
    if args.open:
        import webbrowser

        webbrowser.open(out.resolve().as_uri())
    return EXIT_OK


COMMANDS.append(_add_report)


def _log_commands(sub: Any, pm: PluginManager | None) -> None:
    from .cli_logs import add_commands  # logs, prune

    add_commands(sub, pm)


COMMANDS.append(_log_commands)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

NEEDS_DAG = {"run", "validate", "graph"}


def _setup_logging(verbose: int, quiet: int) -> None:
    import logging

    level = logging.WARNING - 10 * verbose + 10 * quiet
    logging.basicConfig(
        level=max(logging.DEBUG, level), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except DagValidationError as exc:
        print(f"dagexec: invalid DAG: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, PluginError, DagChangedError) as exc:  # a DAG that no longer fits its run: as a changed file
        print(f"dagexec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NOT_FOUND_ERRORS as exc:  # a run, dead letter or state file that is not there: 2, as for a DAG file
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
    plugin_args = getattr(known, "plugin_args", None) or [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-p"]
    if known is not None and known.command == "resume" and dag_path is None:
        dag_path = _remembered_dag_file(known, plugin_args)
    from .plugins import build_plugin_manager

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
        # phase 2 reports usage errors and prints --version
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_known_args(argv)
    except SystemExit:
        return None, argv


def _remembered_dag_file(known: argparse.Namespace, plugin_args: list[str]) -> Path | None:
    """The DAG file a stored run remembers, so its dagplugins.py can add flags to ``resume``.

    This imports that dagplugins.py before the command runs, so the same check
    that lets `resume` import the remembered DAG file (DESIGN §6, the state
    file is data) gates it: a file that changed, moved or appeared gives None,
    and the command itself then refuses with the one-line error.
    """
    from .cli_runs import open_state
    from .provenance import check_unchanged, recorded_code

    state_args = argparse.Namespace(state=getattr(known, "state", None), plugin_args=plugin_args)
    try:
        with open_state(state_args, read_only=True) as (_, storage):
            info = storage.get_run(known.run_id)
            return check_unchanged(info, recorded_code(storage, info), "dagexec resume RUN_ID FILE")
    except DagexecError:
        return None  # the command itself reports a missing state file or run, or refuses changed code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
