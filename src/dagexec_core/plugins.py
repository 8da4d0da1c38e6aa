"""The plugin manager: which plugins load, in what order, and errors that name the plugin."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from . import entrypoints, hookspecs
from .config import find_rootdir
from .errors import PluginHookError, PluginLoadError

if TYPE_CHECKING:
    from .config import Config

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
        for ep in sorted(entrypoints.entry_points(ENTRY_POINT_GROUP), key=lambda e: e.name):
            if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
                continue
            dist_name, dist_version = entrypoints.dist_info(ep)
            where = f"entry point {ep.value!r} of distribution {dist_name or '?'}"
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {ep.name!r} ({where}) failed to import: {type(exc).__name__}: {exc}; "
                    f"fix or uninstall it, or skip it with -p no:{ep.name}"
                ) from exc
            pm.register_plugin(_instantiate(obj), ep.name, "entrypoint", dist_version, _file_of(obj))

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
    check_hook_names(pm)
    return pm


def check_hook_names(pm: PluginManager) -> None:
    """Reject an implementation of a hook that has no specification, naming the closest hook.

    pluggy's ``check_pending``, with the plugin's file and a "did you mean".
    Optional hooks (``hookimpl(optionalhook=True)``) and hooks whose
    specification a plugin adds through ``dagexec_addhooks`` pass.
    """
    known = sorted(name for name in vars(pm.hook) if not name.startswith("_") and getattr(pm.hook, name).has_spec())
    for name in sorted(vars(pm.hook)):
        if name.startswith("_"):
            continue
        caller = getattr(pm.hook, name)
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            info = pm.infos.get(impl.plugin_name)
            code = getattr(impl.function, "__code__", None)
            where = (info.file if info else None) or (code.co_filename if code else None) or impl.plugin_name
            if code is not None and code.co_filename == where:
                where = f"{where}:{code.co_firstlineno}"
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the hooks are listed in docs/hooks.md"
            raise PluginLoadError(
                f"plugin {impl.plugin_name!r} ({where}) implements unknown hook {name!r} ({hint}); "
                f"rename it, or mark it @hookimpl(optionalhook=True) if another plugin may define it"
            )


def _import(modname: str, name: str, what: str) -> ModuleType:
    """Import a plugin module; a failure names the file it was imported from, and the line."""
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (modname == exc.name or modname.startswith(exc.name + ".")):
            raise PluginLoadError(
                f"{what} {name!r} failed to import: ModuleNotFoundError: no module named {exc.name!r} on sys.path; "
                f"install it, add its folder to PYTHONPATH, or put its hooks in a dagplugins.py beside the DAG file"
            ) from exc
        where = _origin(modname, exc)
        raise PluginLoadError(f"{what} {name!r} ({where}) failed to import: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        where = _origin(modname, exc)
        raise PluginLoadError(f"{what} {name!r} ({where}) failed to import: {type(exc).__name__}: {exc}") from exc


def _origin(modname: str, exc: BaseException) -> str:
    """``file:line`` of the module that failed to import (its own line where the error arose)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    module = sys.modules.get(modname)
    filename = getattr(module, "__file__", None)
    if filename is None:
        try:
            spec = importlib.util.find_spec(modname)
        except Exception:
            spec = None
        filename = spec.origin if spec is not None else None
    if filename is None:
        return modname
    return f"{filename}:{_line_in(exc.__traceback__, filename)}"


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


@contextmanager
def configured(config: Config) -> Iterator[Config]:
    """``dagexec_configure`` → the caller's work → ``dagexec_unconfigure``: the one lifecycle of a `Config`.

    Every entry point (`run`/`arun`, ``dagexec run``, ``resume``, the commands that open a state file) goes
    through here, as pytest's do through ``Config._do_configure`` / ``_ensure_unconfigure``. A raising
    ``dagexec_configure`` is a `PluginHookError` naming the plugin, its file and line; the plugins configured
    before it are unconfigured. Unconfigure runs however the work ends.
    """
    pm = config.pluginmanager
    try:
        pm.hook.dagexec_configure.call_historic(kwargs={"config": config})
    except Exception as exc:
        error = hook_error(pm, "dagexec_configure", exc)
        with suppress(Exception):  # the configure error is the one to tell; let go of what others hold
            pm.hook.dagexec_unconfigure(config=config)
        raise error from exc
    try:
        yield config
    finally:
        call_hook(pm, "dagexec_unconfigure", config=config)
