"""`TaskRecord`: a frozen value, built without attrs' per-field ``object.__setattr__`` (a resume reads 50,000)."""

from __future__ import annotations

import copy
import inspect
import pickle

import attrs
import pytest

from dagexec_core import TaskRecord, TaskState


def test_a_record_has_the_declared_fields_defaults_and_order() -> None:
    """`TaskRecord.__new__` takes the fields as attrs declares them: same names, order and defaults."""
    params = list(inspect.signature(TaskRecord).parameters.values())
    fields = attrs.fields(TaskRecord)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert (p.default is inspect.Parameter.empty) == (f.default is attrs.NOTHING), f.name
        if f.default is not attrs.NOTHING:
            assert p.default == f.default, f.name
    record = TaskRecord("a")
    assert type(record) is TaskRecord
    defaults = {f.name: f.default for f in fields[1:]}
    assert attrs.asdict(record, recurse=False) == {"name": "a", **defaults}


def test_a_record_is_frozen_compares_by_value_and_survives_copy_pickle_and_evolve() -> None:
    record = TaskRecord("a", TaskState.COMPLETED, 2, None, 1.0, 2.5, {"rows": [1, 2]}, "ab" * 16)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.state = TaskState.FAILED  # type: ignore[misc]
    assert record == TaskRecord(
        name="a",
        state=TaskState.COMPLETED,
        attempts=2,
        started_at=1.0,
        finished_at=2.5,
        output={"rows": [1, 2]},
        trace_id="ab" * 16,
    )
    assert record != attrs.evolve(record, attempts=3)
    assert attrs.evolve(record, attempts=3).attempts == 3 and attrs.evolve(record, attempts=3).output == record.output
    for again in (copy.copy(record), copy.deepcopy(record), pickle.loads(pickle.dumps(record))):
        assert type(again) is TaskRecord and again == record
    assert record.duration == 1.5 and record.to_dict()["state"] == "completed"


def test_a_subclass_of_record_is_built_field_by_field() -> None:
    @attrs.frozen(init=False)
    class Tagged(TaskRecord):
        pass

    tagged = Tagged("t", TaskState.FAILED, 1, "ValueError: no")
    assert type(tagged) is Tagged and (tagged.name, tagged.state, tagged.error) == (
        "t",
        TaskState.FAILED,
        "ValueError: no",
    )
    assert copy.copy(tagged) == tagged and type(copy.copy(tagged)) is Tagged
