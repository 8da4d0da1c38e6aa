"""How task outputs become text in the state file, and what a dependent receives: the same value.

One rule: a dependent receives exactly what a resume would give it, the value
decoded from the text stored for the output (its round trip). A persisted run
stores the text and hands dependents its decoding; a run without persistence
makes the same round trip by default (``check_outputs``), so a value that a
persisted run would refuse fails there too. With the default JSON serializer:

- JSON is strict (RFC 8259): ``NaN`` and ``Infinity`` are refused;
- a tuple becomes a list; a dict's int, float, bool or None keys become
  strings (``{1: 'one'}`` -> ``{'1': 'one'}``), fresh or resumed alike;
- a set, bytes, an object, or a structure nested deeper than the encoder
  reaches fails its task with `OutputSerializationError`, naming the place in
  the output (``output['rows'][3]``) and the type.
"""

from __future__ import annotations

import json
import json.decoder
from collections.abc import Callable
from typing import Any, Protocol

from .errors import OutputSerializationError


class Serializer(Protocol):
    def dumps(self, value: Any) -> str: ...

    def loads(self, text: str) -> Any: ...


#: One encoder for every output: ``json.dumps`` with options builds a new one per call.
_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
#: The C scanner behind ``json.loads``, without its per-call layers (a text of ours has no whitespace around it).
_SCAN: Callable[[str, int], tuple[Any, int]] = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]


class JsonSerializer:
    """The default: strict JSON (no NaN or Infinity). Nothing is ever unpickled from a state file."""

    def dumps(self, value: Any) -> str:
        return _ENCODE(value)

    def loads(self, text: str) -> Any:
        try:
            value, end = _SCAN(text, 0)
        except (StopIteration, ValueError):
            end = -1
        if end != len(text):
            return json.loads(text)  # names what is wrong with the text
        return value


#: Types whose JSON round trip is the value itself (exact types: a subclass, an IntEnum say, is not).
IDENTITY_TYPES = frozenset({type(None), bool, int, str})


def round_trip(serializer: Serializer, task: str, value: Any, *, keep_text: bool = True) -> tuple[Any, str | None]:
    """``(what a dependent receives, the text to store)`` for ``value``, or `OutputSerializationError`.

    The engine inlines this on its hot path; this is the reference of what it does.
    """
    try:
        if type(serializer) is JsonSerializer and type(value) in IDENTITY_TYPES:
            return value, (_ENCODE(value) if keep_text else None)
        text = serializer.dumps(value)
        return serializer.loads(text), (text if keep_text else None)
    except Exception as exc:  # noqa: BLE001 - any failure of the serializer fails the task, not the run
        raise output_error(serializer, task, value, exc) from exc


def encode_output(serializer: Serializer, task: str, value: Any) -> str:
    """Serialise ``value`` or raise `OutputSerializationError` naming the task, the place and the type."""
    try:
        return serializer.dumps(value)
    except Exception as exc:  # noqa: BLE001
        raise output_error(serializer, task, value, exc) from exc


def output_error(serializer: Serializer, task: str, value: Any, exc: BaseException) -> OutputSerializationError:
    """The error for an output ``serializer`` could not round-trip: where in it, and what."""
    fix = "return plain data (dict, list, str, finite numbers, bool, None) or pass serializer= to run()"
    if type(serializer) is JsonSerializer:
        found = find_unstorable(value, too_deep=isinstance(exc, RecursionError))
        if found is not None:
            where, what = found
            return OutputSerializationError(f"task {task!r} returned an output JSON cannot hold: {where} {what}; {fix}")
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return OutputSerializationError(
        f"task {task!r} returned a {kind}, which cannot be stored ({type(exc).__name__}: {exc}); {fix}"
    )


_CONTAINERS = (dict, list, tuple)
_KEY_TYPES = (str, int, float, bool, type(None))
#: A long path is shown as its first and last this many steps.
_SHOWN_STEPS = 6


def find_unstorable(value: Any, *, too_deep: bool = False) -> tuple[str, str] | None:
    """The first place in ``value`` strict JSON cannot hold: ``("output['k'][1]", "is a builtins.set")``.

    Iterative (a value too deep for the encoder is too deep for recursion); on the error path only.
    A value nested so deep that the encoder gave up is reported at its deepest place.
    """
    # nodes: (object, key within its parent, parent node index); the path is built for the culprit only
    nodes: list[tuple[Any, Any, int]] = [(value, None, -1)]
    depths = [0]
    stack = [0]
    deepest = 0
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        obj = nodes[n][0]
        if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
            return _path(nodes, n), f"is float {obj!r} (JSON, RFC 8259, has no NaN or Infinity: use None or a string)"
        if isinstance(obj, (str, int, float)) or obj is None:
            continue
        if not isinstance(obj, _CONTAINERS):
            kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
            hint = " (return a sorted list)" if isinstance(obj, (set, frozenset)) else ""
            return _path(nodes, n), f"is a {kind}{hint}"
        if id(obj) in seen:
            if _is_ancestor(nodes, n, obj):
                return _path(nodes, n), "contains itself (a circular reference)"
            continue  # the same object twice, side by side: checked already
        seen.add(id(obj))
        depth = depths[n] + 1
        if depths[n] > depths[deepest]:
            deepest = n
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        children: list[int] = []
        for k, v in items:
            if isinstance(obj, dict):
                if not isinstance(k, _KEY_TYPES):
                    kind = f"{type(k).__module__}.{type(k).__qualname__}"
                    return _path(nodes, n), f"has a key of type {kind} ({k!r}); JSON keys are strings"
                if isinstance(k, float) and (k != k or k in (float("inf"), float("-inf"))):
                    return _path(nodes, n), f"has the key {k!r} (JSON, RFC 8259, has no NaN or Infinity)"
            nodes.append((v, k, n))
            depths.append(depth)
            children.append(len(nodes) - 1)
        stack.extend(reversed(children))  # depth first, in order: the first bad place is reported
    if too_deep:  # nothing wrong but the depth: the encoder ran out of recursion
        return _path(nodes, deepest), (
            f"is nested {depths[deepest] + 1} levels deep, deeper than the JSON encoder reaches (RecursionError)"
        )
    return None


def _is_ancestor(nodes: list[tuple[Any, Any, int]], n: int, obj: Any) -> bool:
    n = nodes[n][2]
    while n >= 0:
        if nodes[n][0] is obj:
            return True
        n = nodes[n][2]
    return False


def _path(nodes: list[tuple[Any, Any, int]], n: int) -> str:
    keys: list[Any] = []
    while n > 0:
        _, key, parent = nodes[n]
        keys.append(key)
        n = parent
    keys.reverse()
    steps = [f"[{k!r}]" for k in keys]
    if len(steps) > 2 * _SHOWN_STEPS:
        steps = [*steps[:_SHOWN_STEPS], f"...({len(steps) - 2 * _SHOWN_STEPS} more)...", *steps[-_SHOWN_STEPS:]]
    return "output" + "".join(steps)
