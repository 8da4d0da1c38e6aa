"""How task outputs become text in the state file: JSON, or a serializer the user registers."""

from __future__ import annotations

import json
from typing import Any, Protocol

from .errors import OutputSerializationError


class Serializer(Protocol):
    def dumps(self, value: Any) -> str: ...

    def loads(self, text: str) -> Any: ...


#: One encoder for every output: ``json.dumps`` with options builds a new one per call.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class JsonSerializer:
    """The default: plain JSON. Nothing is ever unpickled from a state file."""

    def dumps(self, value: Any) -> str:
        return _ENCODE(value)

    def loads(self, text: str) -> Any:
        return json.loads(text)


def encode_output(serializer: Serializer, task: str, value: Any) -> str:
    """Serialise ``value`` or raise `OutputSerializationError` naming the task and type."""
    try:
        return serializer.dumps(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise OutputSerializationError(
            f"task {task!r} returned a {type(value).__module__}.{type(value).__qualname__}, "
            f"which cannot be stored as JSON ({exc}); return plain data (dict, list, str, "
            f"numbers, bool, None) or pass serializer= to run()"
        ) from exc
