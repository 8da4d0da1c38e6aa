"""Which code travels to Dask workers by value: the DAG file and the modules beside it.

The CLI imports a DAG file under a made-up module name
(``dagexec_dagfile_<stem>``), and the modules it imports from its own folder
(``helpers.py``, a package beside it) are importable only because that folder
was on ``sys.path`` here. A worker has neither, so these modules are
registered with cloudpickle to be pickled by value: a task's function reaches
the worker with its code and the globals it uses. Everything else (the
standard library, installed packages, dagexec itself) still goes by
reference and must be installed on the workers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

#: Top-level packages that are never shipped: the worker's own dagexec runs the body.
NEVER_SHIPPED = frozenset({"dagexec_core", "dagexec_plugins"})


def modules_beside(dag_path: Path, modules: dict[str, ModuleType] | None = None) -> list[ModuleType]:
    """The imported modules that come from ``dag_path``'s folder itself, with their submodules.

    That is what ``import NAME`` finds only while the folder is on
    ``sys.path``, as the CLI puts it while loading the DAG file: the DAG file,
    a module ``NAME.py`` beside it, a package ``NAME/`` beside it and every
    module inside. A package one level down (``src/pkg``, installed with
    ``pip install -e``) or a ``.venv`` in the folder is reached through
    another ``sys.path`` entry, so it is installed code and goes by reference.
    """
    folder = os.path.realpath(dag_path.parent)
    table = modules if modules is not None else sys.modules
    beside: dict[str, bool] = {}

    def top_is_beside(top: str) -> bool:
        if top not in beside:
            module = table.get(top)
            file = getattr(module, "__file__", None)
            if top in NEVER_SHIPPED or module is None:
                beside[top] = False
            elif isinstance(file, str):
                where = os.path.dirname(os.path.realpath(file))
                if getattr(module, "__path__", None) is not None:  # a package: NAME/__init__.py
                    where = os.path.dirname(where)
                beside[top] = where == folder
            else:  # a namespace package (a folder NAME/ without __init__.py), or a built-in module
                paths = getattr(module, "__path__", None) or ()
                beside[top] = any(os.path.dirname(os.path.realpath(p)) == folder for p in paths)
        return beside[top]

    return [m for name, m in list(table.items()) if top_is_beside(name.partition(".")[0])]


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
