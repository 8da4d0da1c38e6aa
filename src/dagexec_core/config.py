"""`Config`: the options of one invocation, merged from defaults, pyproject.toml, the environment and the caller."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    import pluggy

#: The options of the core and the built-in plugins that no ``dagexec_addoption``
#: flag declares (Python objects, tables, tuning). None: no default value.
DEFAULTS: dict[str, Any] = {
    "state": os.path.join(".dagexec", "state.db"),
    "persist": True,
    "concurrency": 32,
    "executor": "local",
    "durability": "normal",
    "grace_period": 10.0,
    "breaker_max_wait": 300.0,
    "breaker_poll": 0.05,
    "event_poll_interval": 0.1,
    "process_start_method": "spawn",
    "progress_interval": 5.0,
    "serializer": None,
    "retry": None,
    "retry_tags": None,
    "breakers": None,
    "breaker_defaults": None,
    "breaker_tags": None,
    "tracer_provider": None,
    "meter_provider": None,
    "dask_processes": None,
    "create_state": None,  # False: storage opened by a reading command must not create the file
    "read_only": None,  # True: a reading command opens the state file read-only (runs, show, dlq list)
    "verbosity": None,  # -v/-q of the command line, for plugins that print
    "dask_connect_timeout": 10.0,
    "dask_no_workers_timeout": 60.0,
    # without persistence, outputs still make their JSON round trip (docs/reliability.md)
    "check_outputs": True,
    # retry delays and breaker cooldowns read this clock (a test's VirtualClock); None: the real one
    "clock": None,
    # task logs kept with the run (docs/logs.md)
    "capture": False,
    "log_level": "INFO",
    "log_max_bytes": 1_000_000,
    "log_max_lines": 10_000,
}

#: The ``DAGEXEC_*`` variables that are not options (they steer plugin loading);
#: every other one is an option (``DAGEXEC_CONCURRENCY=8`` is ``concurrency = 8``).
#: A new variable that is not an option goes here, and in docs/configuration.md.
NON_OPTION_VARIABLES = ("DAGEXEC_PLUGINS", "DAGEXEC_DISABLED_PLUGINS", "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD")
ENV_PREFIX = "DAGEXEC_"

#: Keyword parameters of `run()` that steer the call and are not options.
_CALL_PARAMETERS = frozenset({"dag", "resume", "plugins", "config", "handle", "replay", "signals", "plugin_args"})

ROOT_MARKERS = ("pyproject.toml", "setup.cfg", ".git")


def find_rootdir(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding a project marker, else ``start``."""
    start = start.resolve()
    for d in (start, *start.parents):
        if any((d / m).exists() for m in ROOT_MARKERS):
            return d
    return start


def read_pyproject(rootdir: Path) -> dict[str, Any]:
    """The ``[tool.dagexec]`` table of ``rootdir/pyproject.toml`` (empty if none)."""
    path = rootdir / "pyproject.toml"
    if not path.is_file():
        return {}
    import tomllib  # here, not at the top: `dagexec --version` builds the parser that imports this module

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: cannot read [tool.dagexec]: {exc}") from exc
    table = data.get("tool", {}).get("dagexec", {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.dagexec] must be a table")
    return {k.replace("-", "_"): v for k, v in table.items()}


def plugin_options(pm: pluggy.PluginManager) -> dict[str, argparse.Action]:
    """Every option a plugin adds through ``dagexec_addoption``, by dest."""
    from .plugins import call_hook

    parser = argparse.ArgumentParser(add_help=False, conflict_handler="resolve")
    call_hook(pm, "dagexec_addoption", parser=parser)
    return {a.dest: a for a in parser._actions if a.dest not in (None, argparse.SUPPRESS)}


def run_parameters() -> set[str]:
    """The keyword parameters of `run()` and `arun()` that carry options (``state``, ``concurrency``...)."""
    import inspect

    from .api import arun, run

    names: set[str] = set()
    for fn in (run, arun):
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.add(p.name)
    return names - _CALL_PARAMETERS


def did_you_mean(name: str, known: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean 'concurrency'?)`` for the closest known name, or nothing."""
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    if not close:
        return ""
    return f" (did you mean {prefix}{close[0].upper()}?)" if prefix else f" (did you mean {close[0]!r}?)"


def env_options(known: Mapping[str, argparse.Action | None], environ: Mapping[str, str]) -> dict[str, Any]:
    """Options set as ``DAGEXEC_NAME`` variables; an unknown one is an error with a "did you mean".

    A value is converted like the command line converts its flag (the option's
    ``type``), else read as a TOML value (``8``, ``2.5``, ``true``) when it is one,
    else kept as a string.
    """
    found: dict[str, Any] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var in NON_OPTION_VARIABLES:
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if name not in known:
            hint = did_you_mean(name, known, prefix=ENV_PREFIX)
            raise UsageError(
                f"environment variable {var} is not a dagexec option{hint}; every DAGEXEC_* variable is an option "
                f"or one of {', '.join(NON_OPTION_VARIABLES)} (docs/configuration.md): fix or unset it"
            )
        action = known[name]
        convert = getattr(action, "type", None)
        if callable(convert):
            try:
                found[name] = convert(raw)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise UsageError(f"environment variable {var}={raw!r} is not a valid {name}: {exc}") from None
            continue
        import tomllib

        try:
            found[name] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            found[name] = raw
    return found


def check_concurrency(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"option concurrency must be a whole number of tasks, 1 or more, not {value!r}")


class Config:
    """Options and the plugin manager of one invocation (CLI call or `run()`).

    Precedence, lowest first: built-in `DEFAULTS`, the defaults of options
    that plugins add through ``dagexec_addoption``, the caller's ``defaults``
    (the command line's own, such as ``progress="auto"``), ``[tool.dagexec]``
    in the project's pyproject.toml, ``DAGEXEC_*`` environment variables, then
    the options given to `run()` or on the command line. An option none of
    these knows is an error naming the closest known one.
    """

    def __init__(
        self,
        pluginmanager: pluggy.PluginManager,
        options: Mapping[str, Any] | None = None,
        *,
        rootdir: Path | None = None,
        dag_path: Path | None = None,
        defaults: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.pluginmanager = pluginmanager
        self.rootdir = rootdir or find_rootdir(dag_path.parent if dag_path else Path.cwd())
        self.dag_path = dag_path
        added = plugin_options(pluginmanager)
        known: dict[str, argparse.Action | None] = {**dict.fromkeys(DEFAULTS), **dict.fromkeys(run_parameters())}
        known.update(added)
        self.inifile_options = read_pyproject(self.rootdir)
        for key in self.inifile_options:
            if key not in known:
                raise UsageError(
                    f"{self.rootdir / 'pyproject.toml'}: [tool.dagexec] has unknown option {key!r}"
                    f"{did_you_mean(key, known)}; the options are listed in docs/configuration.md"
                )
        for key in options or {}:
            if key not in known:
                raise UsageError(
                    f"unknown option {key!r}{did_you_mean(key, known)}; the options are listed in "
                    f"docs/configuration.md, and `dagexec run FILE --help` shows those plugins add"
                )
        self.options: dict[str, Any] = {k: v for k, v in DEFAULTS.items() if v is not None}
        self.options.update(
            {dest: a.default for dest, a in added.items() if a.default not in (None, argparse.SUPPRESS)}
        )
        self.options.update(defaults or {})
        self.options.update(self.inifile_options)
        self.options.update(env_options(known, os.environ if environ is None else environ))
        self.options.update({k: v for k, v in (options or {}).items() if v is not None})
        check_concurrency(self.options.get("concurrency"))
        #: Free space for plugins to keep per-invocation objects.
        self.stash: dict[str, Any] = {}

    @property
    def hook(self) -> Any:
        return self.pluginmanager.hook

    def getoption(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def __repr__(self) -> str:
        return f"<Config rootdir={str(self.rootdir)!r}>"
