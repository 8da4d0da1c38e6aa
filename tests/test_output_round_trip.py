"""The output rule as a property: what a dependent receives equals what a resume reloads, for any plain value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagexec_core import Dag, run
from dagexec_plugins.sqlite import SqliteStorage

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
keys = st.text() | st.integers() | st.none() | st.floats(allow_nan=False, allow_infinity=False)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


def has_colliding_keys(value: Any) -> bool:
    """Two keys that JSON writes as the same string ({1: .., '1': ..}) keep one value: a documented loss."""
    if isinstance(value, dict):
        as_json = [k if isinstance(k, str) else _json_key(k) for k in value]
        return len(set(as_json)) < len(as_json) or any(has_colliding_keys(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_colliding_keys(v) for v in value)
    return False


def _json_key(k: Any) -> str:
    if k is None:
        return "null"
    if isinstance(k, bool):
        return "true" if k else "false"
    if isinstance(k, float) and math.isfinite(k):
        return repr(k)
    return str(k)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_a_dependent_receives_what_a_resume_reloads(tmp_path: Path, value: Any) -> None:
    dag = Dag("prop")
    dag.add("produce", lambda: value)
    dag.add("consume", lambda produce: produce, deps=["produce"])
    db = tmp_path / "prop.db"
    db.unlink(missing_ok=True)
    stored = run(dag, state=str(db), signals=False)
    assert stored.ok
    received = stored.outputs["consume"]
    reloaded = SqliteStorage(db).load_records(stored.run_id)["produce"].output
    assert repr(received) == repr(reloaded)  # the same value and the same types, tuple or list, 1 or '1'
    memory = run(dag, persist=False, signals=False)
    assert repr(memory.outputs["consume"]) == repr(received)
    if not has_colliding_keys(value):
        # and it is the value returned, up to JSON's shapes: tuples are lists, keys are strings
        assert _json_shape(value) == received


def _json_shape(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_shape(v) for v in value]
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else _json_key(k)): _json_shape(v) for k, v in value.items()}
    return value
