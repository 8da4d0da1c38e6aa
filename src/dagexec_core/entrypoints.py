"""The ``dagexec`` entry points of the installed distributions, found without `importlib.metadata`.

Importing `importlib.metadata` costs about 10 ms (it brings ``email``, ``zipfile``,
``csv``, ``socket``...), a twentieth of a whole small `dagexec run`. Where every
entry of `sys.path` is a folder (or missing) and the only finder that lists
distributions is the standard `importlib.machinery.PathFinder`, which is what
a virtualenv, a pip install and an editable install give, the distributions
are exactly the ``*.dist-info``/``*.egg-info`` folders of those entries, and
this module reads their ``entry_points.txt`` the way `importlib.metadata` does:
the same order, the first distribution of a name on `sys.path` wins, the same
syntax (the ``importlib_metadata`` backport's finder, which some packages
register, searches the same folders). Anywhere else (a zip or an ``.egg`` on
`sys.path`, a finder of its own) it hands over to `importlib.metadata`. A test compares both on the test
environment, where a third-party plugin distribution is installed.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

#: `importlib.metadata.EntryPoint.pattern`: ``module[:attr.path] [extras]``.
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")
_SEPARATORS = re.compile(r"[-_.]+")


class EntryPoint:
    """One entry point: what `importlib.metadata.EntryPoint` offers that the plugin loader uses."""

    __slots__ = ("name", "value", "group", "_folder", "_headers")

    def __init__(self, name: str, value: str, group: str, folder: str) -> None:
        self.name = name
        self.value = value
        self.group = group
        self._folder = folder
        self._headers: dict[str, str] | None = None

    def load(self) -> Any:
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"entry point {self.name!r} = {self.value!r} is not 'module:attr'")
        module = importlib.import_module(match.group("module"))
        attrs = filter(None, (match.group("attr") or "").split("."))
        return functools.reduce(getattr, attrs, module)

    def header(self, key: str) -> str | None:
        """A header of the distribution's metadata (``Name``, ``Version``), read when first asked."""
        if self._headers is None:
            self._headers = {}
            meta = "METADATA" if self._folder.lower().endswith(".dist-info") else "PKG-INFO"
            try:
                with open(os.path.join(self._folder, meta), encoding="utf-8") as f:
                    for line in f:
                        if not line.strip():
                            break  # the headers end at the first blank line
                        name, sep, value = line.partition(":")
                        if sep and not line[0].isspace():
                            self._headers.setdefault(name.strip().lower(), value.strip())
            except OSError:
                pass
        return self._headers.get(key.lower())


def _fast_path_applies() -> bool:
    """True when the distributions are exactly the metadata folders of `sys.path`'s folders."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is PathFinder or getattr(finder, "find_distributions", None) is None:
            continue
        kind = type(finder)
        if (kind.__module__, kind.__qualname__) == ("importlib_metadata", "MetadataPathFinder"):
            continue  # the backport (Dask brings it) searches sys.path's folders the same way
        return False
    for entry in sys.path:
        if os.path.isfile(entry) or entry.lower().endswith(".egg"):
            return False  # a zip or an egg: importlib.metadata reads those
    return True


def _normalize(name: str) -> str:
    return _SEPARATORS.sub("-", name).lower().replace("-", "_")


def _distributions() -> Iterator[str]:
    """The metadata folder of each distribution, the first of each name on `sys.path`, in `importlib.metadata`'s order."""
    seen: set[str] = set()
    for entry in sys.path:
        root = entry or "."
        try:
            children = os.listdir(root)
        except OSError:
            continue
        groups: dict[str, list[str]] = {}
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                groups.setdefault(_normalize(low.rpartition(".")[0].partition("-")[0]), []).append(child)
        for normalized, folders in groups.items():
            for child in folders:
                if normalized in seen:
                    break
                seen.add(normalized)
                yield os.path.join(entry, child)


def _read_group(path: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of section ``[group]`` of ``path``'s ``entry_points.txt``."""
    try:
        with open(os.path.join(path, "entry_points.txt"), encoding="utf-8") as f:
            text = f.read()
    except OSError:  # no entry points (or a legacy egg-info file)
        return []
    found = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section == group:
            name, _, value = line.partition("=")
            found.append((name.strip(), value.strip()))
    return found


def entry_points(group: str) -> list[Any]:
    """The entry points of ``group``: `EntryPoint` objects here, `importlib.metadata`'s elsewhere.

    Both have ``name``, ``value``, ``group`` and ``load()``; the distribution's name and
    version are `dist_info` of either.
    """
    if not _fast_path_applies():
        import importlib.metadata

        return list(importlib.metadata.entry_points(group=group))
    found: list[Any] = []
    for path in _distributions():
        for name, value in _read_group(path, group):
            found.append(EntryPoint(name, value, group, path))
    return found


def dist_info(ep: Any) -> tuple[str | None, str | None]:
    """(distribution name, version) of an entry point from `entry_points`."""
    if isinstance(ep, EntryPoint):
        return ep.header("Name"), ep.header("Version")
    dist = getattr(ep, "dist", None)
    return (dist.name, dist.version) if dist is not None else (None, None)
