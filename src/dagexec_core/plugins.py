"""The plugin manager: which plugins load, in what order, and errors that name the plugin."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .config import find_rootdir
from .errors import PluginHookError, PluginLoadError

#: The built-in plugins, registered in this order (later ones run first).
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("memory", "dagexec_plugins.memory"),
    ("sqlite", "dagexec_plugins.sqlite"),
    ("local", "dagexec_plugins.local"),
    ("process", "dagexec_plugins.process"),
    ("retry", "dagexec_plugins.retry"),
    ("breaker", "dagexec_plugins.breaker"),
    ("deadletter", "dagexec_plugins.deadletter"),
    ("dask", "dagexec_plugins.dask"),
    ("tracing", "dagexec_plugins.tracing"),
    ("metrics", "dagexec_plugins.metrics"),
    ("progress", "dagexec_plugins.progress"),
)

ENTRY_POINT_GROUP = "dagexec"
DAGPLUGINS_FILE = "dagplugins.py"


@attrs.frozen
class PluginInfo:
    name: str
    source: str  # builtin | entrypoint | env | option | dagplugins | api
    version: str | None
    file: str | None

    def to_dict(self, hooks: list[str]) -> dict[str, Any]:
        return {**attrs.asdict(self), "hooks": hooks}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus where each plugin came from."""

    def __init__(self) -> None:
        super().__init__("dagexec")
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.hook.dagexec_addhooks.call_historic(kwargs={"pluginmanager": self})

    def register_plugin(
        self, plugin: object, name: str, source: str, version: str | None = None, file: str | None = None
    ) -> None:
        if self.is_blocked(name):
            return
        if file is None:
            file = _file_of(plugin)
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"plugin {name!r} ({file or source}) is invalid: {exc}") from exc
        self.infos[name] = PluginInfo(name, source, version, file)

    def plugin_hooks(self, name: str) -> list[str]:
        plugin = self.get_plugin(name)
        if plugin is None:
            return []
        return sorted(caller.name for caller in self.get_hookcallers(plugin) or [])

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            info = self.infos.get(name) or PluginInfo(name, "api", None, _file_of(plugin))
            out.append(info.to_dict(self.plugin_hooks(name)))
        return out


def _file_of(plugin: object) -> str | None:
    target = plugin if isinstance(plugin, ModuleType) else type(plugin)
    try:
        return inspect.getsourcefile(target)
    except TypeError:
        return None


def parse_plugin_args(args: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split ``-p`` values into (names to load, names to block from ``no:NAME``)."""
    load, block = [], []
    for arg in args:
        if arg.startswith("no:"):
            block.append(arg[3:])
        else:
            load.append(arg)
    return load, block


def _env_list(var: str) -> list[str]:
    return [p.strip() for p in os.environ.get(var, "").split(",") if p.strip()]


def build_plugin_manager(
    *,
    plugin_args: Sequence[str] = (),
    plugins: Sequence[object] = (),
    dag_path: Path | None = None,
    rootdir: Path | None = None,
) -> PluginManager:
    """Build a fresh manager in DESIGN's load order.

    1. block ``-p no:NAME`` and ``DAGEXEC_DISABLED_PLUGINS``;
    2. built-ins (`DEFAULT_PLUGINS`);
    3. entry points of group ``dagexec`` (unless ``DAGEXEC_DISABLE_PLUGIN_AUTOLOAD``);
    4. modules named in ``DAGEXEC_PLUGINS`` and ``-p NAME``, and plugin objects given to `run()`;
    5. ``dagplugins.py`` from the project root down to the DAG file's directory (the nearest registered last, so it runs first).
    """
    pm = PluginManager()
    load, block = parse_plugin_args(plugin_args)
    for name in [*block, *_env_list("DAGEXEC_DISABLED_PLUGINS")]:
        pm.set_blocked(name)

    for name, modname in DEFAULT_PLUGINS:
        if pm.is_blocked(name):
            continue
        module = _import(modname, name, "built-in plugin")
        pm.register_plugin(_instantiate(module), name, "builtin", None, getattr(module, "__file__", None))

    if not os.environ.get("DAGEXEC_DISABLE_PLUGIN_AUTOLOAD"):
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
                continue
            dist = ep.dist
            where = f"entry point {ep.value!r} of distribution {dist.name if dist else '?'}"
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {ep.name!r} ({where}) failed to import: {type(exc).__name__}: {exc}; "
                    f"fix or uninstall it, or skip it with -p no:{ep.name}"
                ) from exc
            pm.register_plugin(_instantiate(obj), ep.name, "entrypoint", dist.version if dist else None, _file_of(obj))

    for modname in [*_env_list("DAGEXEC_PLUGINS"), *load]:
        if pm.is_blocked(modname) or pm.get_plugin(modname) is not None:
            continue
        module = _import(modname, modname, "plugin named by -p/DAGEXEC_PLUGINS")
        pm.register_plugin(_instantiate(module), modname, "option")

    for i, obj in enumerate(plugins):
        name = getattr(obj, "__name__", None) or f"{type(obj).__name__}-{i}"
        pm.register_plugin(obj, str(name), "api")

    if dag_path is not None:
        for path in find_dagplugins(dag_path, rootdir):
            name = f"dagplugins:{path}"
            if pm.is_blocked("dagplugins") or pm.get_plugin(name) is not None:
                continue
            pm.register_plugin(load_dagplugins(path), name, "dagplugins", None, str(path))
    return pm


def _import(modname: str, name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(modname)
    except Exception as exc:
        where = getattr(exc, "filename", None) or modname
        raise PluginLoadError(f"{what} {name!r} ({where}) failed to import: {type(exc).__name__}: {exc}") from exc


def _instantiate(obj: Any) -> object:
    """A module may offer ``Plugin``: a class instantiated per manager, so plugins keep no module state."""
    factory = getattr(obj, "Plugin", None) if isinstance(obj, ModuleType) else None
    if factory is not None:
        return factory()
    if inspect.isclass(obj):
        return obj()
    return obj


def find_dagplugins(dag_path: Path, rootdir: Path | None = None) -> list[Path]:
    """``dagplugins.py`` files from the root down to the DAG file's directory."""
    start = dag_path.resolve().parent
    root = (rootdir or find_rootdir(start)).resolve()
    found = []
    for d in (start, *start.parents):
        candidate = d / DAGPLUGINS_FILE
        if candidate.is_file():
            found.append(candidate)
        if d == root:
            break
    return list(reversed(found))


def load_dagplugins(path: Path) -> ModuleType:
    """Import a ``dagplugins.py`` by path; errors name its file and line."""
    modname = f"dagplugins_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(modname, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise PluginLoadError(f"{exc.filename or path}:{exc.lineno}: syntax error in dagplugins.py: {exc.msg}") from exc
    except Exception as exc:
        line = _line_in(exc.__traceback__, str(path))
        raise PluginLoadError(f"{path}:{line}: dagplugins.py failed to import: {type(exc).__name__}: {exc}") from exc
    sys.modules[modname] = module
    return module


def _line_in(tb: TracebackType | None, filename: str) -> int | str:
    line: int | str = "?"
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line


def hook_error(pm: pluggy.PluginManager, hookname: str, exc: BaseException) -> PluginHookError:
    """Turn an exception from a hook into an error naming the plugin, its file and line."""
    impls = getattr(pm.hook, hookname).get_hookimpls()
    codes = {impl.function.__code__: impl for impl in impls if hasattr(impl.function, "__code__")}
    culprit = None
    where = ""
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        impl = codes.get(frame.f_code)
        if impl is not None:
            culprit = impl
            where = f"{frame.f_code.co_filename}:{lineno}"
    if culprit is None:
        return PluginHookError(f"hook {hookname} raised {type(exc).__name__}: {exc}")
    return PluginHookError(
        f"plugin {culprit.plugin_name!r} ({where}) raised {type(exc).__name__} in hook {hookname}: {exc}"
    )


def call_hook(pm: pluggy.PluginManager, hookname: str, **kwargs: Any) -> Any:
    """Call a hook; an exception raised by an implementation names its plugin."""
    try:
        return getattr(pm.hook, hookname)(**kwargs)
    except (PluginHookError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise hook_error(pm, hookname, exc) from exc
