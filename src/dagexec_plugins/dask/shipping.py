"""Which code travels to Dask workers by value: the DAG file and the modules beside it.

The CLI imports a DAG file under a made-up module name
(``dagexec_dagfile_<stem>``), and the modules it imports from its own folder
(``helpers.py``, a package beside it) are importable only because that folder
was on ``sys.path`` here. A worker has neither, so these modules are
registered with cloudpickle to be pickled by value: a task's function reaches
the worker with its code and the globals it uses. Everything else (the
standard library, installed distributions, dagexec itself) still goes by
reference and must be installed on the workers.
"""

from __future__ import annotations

import importlib.metadata
import os
import site
import sys
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

#: Top-level packages that are never shipped: the worker's own dagexec runs the body.
NEVER_SHIPPED = frozenset({"dagexec_core", "dagexec_plugins"})


def _install_dirs() -> list[str]:
    """Where the interpreter's own and installed modules live (never shipped, even inside the DAG folder)."""
    paths = sysconfig.get_paths()
    dirs = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return [os.path.realpath(d) + os.sep for d in dirs if d]


def modules_beside(dag_path: Path, modules: dict[str, ModuleType] | None = None) -> list[ModuleType]:
    """The imported modules whose file lies in ``dag_path``'s folder (or below it), except installed ones.

    Installed means: under a site-packages or standard-library directory, or
    the top-level package of an installed distribution (an editable install
    beside the DAG file included).
    """
    folder = os.path.realpath(dag_path.parent) + os.sep
    installed = _install_dirs()
    found: list[ModuleType] = []
    for name, module in list((modules if modules is not None else sys.modules).items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or name.partition(".")[0] in NEVER_SHIPPED:
            continue
        real = os.path.realpath(file)
        if real.startswith(folder) and not any(real.startswith(d) for d in installed):
            found.append(module)
    if found:
        distributed_tops = importlib.metadata.packages_distributions()
        found = [m for m in found if m.__name__.partition(".")[0] not in distributed_tops]
    return found


def register_by_value(modules: Iterable[ModuleType]) -> Callable[[], None]:
    """Make cloudpickle pickle ``modules`` by value; return the function that undoes it."""
    import cloudpickle

    already = set(cloudpickle.list_registry_pickle_by_value())
    added = []
    for module in modules:
        if module.__name__ not in already:
            cloudpickle.register_pickle_by_value(module)
            added.append(module)

    def undo() -> None:
        for module in added:
            try:
                cloudpickle.unregister_pickle_by_value(module)
            except ValueError:  # already undone
                pass

    return undo


def by_value_blob(fn: Callable[..., Any]) -> bytes:
    """``fn`` pickled by value, with the module it comes from (see `Shipped`)."""
    import cloudpickle

    module = sys.modules[fn.__module__]
    undo = register_by_value([module])
    try:
        return bytes(cloudpickle.dumps(fn))
    finally:
        undo()


class Shipped:
    """A function that Dask pickles by value, whatever pickler it uses.

    Dask pickles a task graph with the standard pickler first, which would
    send a module-level function by reference (and the scheduler would need
    to import its module). This object reduces to ``pickle.loads(blob)``, so
    the scheduler and the worker rebuild the function from its bytes.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.blob = by_value_blob(fn)
        self.__name__ = getattr(fn, "__name__", "shipped")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        import pickle

        return (pickle.loads, (self.blob,))
