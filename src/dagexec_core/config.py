"""`Config`: the options of one invocation, merged from defaults, pyproject.toml and the caller."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    import pluggy

DEFAULTS: dict[str, Any] = {
    "state": os.path.join(".dagexec", "state.db"),
    "persist": True,
    "concurrency": 32,
    "executor": "local",
    "durability": "normal",
    "grace_period": 10.0,
    "breaker_max_wait": 300.0,
    # retry delays and breaker cooldowns read this clock (a test's VirtualClock); None: the real one
    "clock": None,
}

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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: cannot read [tool.dagexec]: {exc}") from exc
    table = data.get("tool", {}).get("dagexec", {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.dagexec] must be a table")
    return {k.replace("-", "_"): v for k, v in table.items()}


class Config:
    """Options and the plugin manager of one invocation (CLI call or `run()`).

    Precedence, lowest first: built-in defaults, ``[tool.dagexec]`` in the
    project's pyproject.toml, then the options given to `run()` or on the
    command line.
    """

    def __init__(
        self,
        pluginmanager: pluggy.PluginManager,
        options: Mapping[str, Any] | None = None,
        *,
        rootdir: Path | None = None,
        dag_path: Path | None = None,
    ) -> None:
        self.pluginmanager = pluginmanager
        self.rootdir = rootdir or find_rootdir(dag_path.parent if dag_path else Path.cwd())
        self.dag_path = dag_path
        self.inifile_options = read_pyproject(self.rootdir)
        self.options: dict[str, Any] = {**DEFAULTS, **self.inifile_options}
        for key, value in (options or {}).items():
            if value is not None:
                self.options[key] = value
        #: Free space for plugins to keep per-invocation objects.
        self.stash: dict[str, Any] = {}

    @property
    def hook(self) -> Any:
        return self.pluginmanager.hook

    def getoption(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def __repr__(self) -> str:
        return f"<Config rootdir={str(self.rootdir)!r}>"
