"""Which modules travel to Dask workers by value: those importable only from the DAG file's own folder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from dagexec_plugins.dask.shipping import modules_beside


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    return module


def test_the_dag_file_and_the_modules_and_packages_beside_it_travel_and_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    for rel in (
        "flow.py",
        "helpers.py",
        "lib/__init__.py",
        "lib/deep/maths.py",
        "nslib/part.py",
        "src/installed/__init__.py",
        ".venv/lib/python3.11/site-packages/numpyish/__init__.py",
    ):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("")
    (tmp_path / "elsewhere.py").write_text("")
    nslib = ModuleType("nslib")
    nslib.__path__ = [str(folder / "nslib")]  # a namespace package: no __init__.py
    lib = _load("lib", folder / "lib" / "__init__.py")
    lib.__path__ = [str(folder / "lib")]
    installed = _load("installed", folder / "src" / "installed" / "__init__.py")
    installed.__path__ = [str(folder / "src" / "installed")]
    numpyish = _load("numpyish", folder / ".venv/lib/python3.11/site-packages/numpyish/__init__.py")
    numpyish.__path__ = [str(folder / ".venv/lib/python3.11/site-packages/numpyish")]
    table = {
        "dagexec_dagfile_flow": _load("dagexec_dagfile_flow", folder / "flow.py"),
        "helpers": _load("helpers", folder / "helpers.py"),
        "lib": lib,
        "lib.deep.maths": _load("lib.deep.maths", folder / "lib" / "deep" / "maths.py"),
        "nslib": nslib,
        "nslib.part": _load("nslib.part", folder / "nslib" / "part.py"),
        "installed": installed,
        "numpyish": numpyish,
        "elsewhere": _load("elsewhere", tmp_path / "elsewhere.py"),
        "json": sys.modules["json"],
        "sys": sys,
    }
    shipped = {m.__name__ for m in modules_beside(folder / "flow.py", table)}
    assert shipped == {"dagexec_dagfile_flow", "helpers", "lib", "lib.deep.maths", "nslib", "nslib.part"}


def test_dagexec_itself_never_travels_even_from_a_dag_file_beside_its_source() -> None:
    import dagexec_core

    src = Path(dagexec_core.__file__).resolve().parent.parent  # a package directly in this folder
    shipped = {m.__name__.partition(".")[0] for m in modules_beside(src / "flow.py")}
    assert not shipped & {"dagexec_core", "dagexec_plugins"}
