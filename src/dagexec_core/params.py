"""Run parameters: declared on the DAG, given to `run` or on the command line, kept with the run.

A DAG declares its parameters as ``Dag("etl", params={"day": str, "limit": 100})``:
a type makes the parameter required and of that type, a value makes it optional
with that default (and of the default's type). A DAG that declares nothing
takes any parameters, unchecked. Values are JSON (they are stored with the
run, `META_KEY`), handed to tasks as the read-only mapping ``ctx.params``.

On the command line ``--param KEY=VALUE`` reads VALUE as JSON when it parses
and as a string otherwise; for a parameter declared ``str`` the text is always
kept as given, so ``--param day=20261201`` stays ``"20261201"``.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError

#: The run meta key (`Storage.put_meta`) that keeps a run's parameters.
META_KEY = "params"
#: The types a parameter may be declared with.
PARAM_TYPES: tuple[type, ...] = (str, int, float, bool, list, dict)

EMPTY: Mapping[str, Any] = types.MappingProxyType({})


class ParamsError(UsageError):
    """Parameters that do not fit the DAG's declaration, or that cannot be read (exit 2)."""


class Raw(str):
    """A ``--param`` value as typed: JSON when it parses, the text itself for a ``str`` parameter."""

    __slots__ = ()


def check_declaration(dag_name: str, declared: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check ``Dag(params=...)``: each value a type of `PARAM_TYPES` (required) or a JSON default."""
    if declared is None:
        return None
    if not isinstance(declared, Mapping):
        raise ParamsError(f"Dag({dag_name!r}, params=...) takes a dict of name -> type or default, not {declared!r}")
    out: dict[str, Any] = {}
    for name, spec in declared.items():
        if not isinstance(name, str) or not name:
            raise ParamsError(f"DAG {dag_name!r}: parameter names are non-empty strings, not {name!r}")
        if isinstance(spec, type):
            if spec not in PARAM_TYPES:
                kinds = ", ".join(t.__name__ for t in PARAM_TYPES)
                raise ParamsError(
                    f"DAG {dag_name!r}: parameter {name!r} is declared as {spec.__name__}; declare one of {kinds}, "
                    f"or give a default value"
                )
        else:
            _json_text(spec, f"the default of parameter {name!r} of DAG {dag_name!r}")
        out[name] = spec
    return out


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{what} must be a JSON value (str, number, bool, None, list, dict): {exc}") from None


def _type_name(value: Any) -> str:
    return type(value).__name__


def _fits(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def resolve(dag_name: str, declared: Mapping[str, Any] | None, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters of a run: ``given`` checked against the declaration, defaults filled in.

    Raises `ParamsError` naming every unknown and every missing parameter, or the first
    value of the wrong type.
    """
    given = dict(given or {})
    if declared is None:
        return {k: _plain(k, v, None) for k, v in given.items()}
    unknown = [k for k in given if k not in declared]
    missing = [k for k, spec in declared.items() if isinstance(spec, type) and k not in given]
    if unknown or missing:
        parts = []
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, list(declared), n=1, cutoff=0.6)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            parts.append(f"unknown parameter(s) {', '.join(hints)}")
        if missing:
            parts.append(f"missing required parameter(s) {', '.join(repr(k) for k in missing)}")
        takes = ", ".join(f"{k}: {_describe(s)}" for k, s in declared.items()) or "none"
        raise ParamsError(f"DAG {dag_name!r}: {'; '.join(parts)}; it takes {takes} (give them with --param KEY=VALUE)")
    out: dict[str, Any] = {}
    for name, spec in declared.items():
        kind = spec if isinstance(spec, type) else (None if spec is None else type(spec))
        out[name] = _plain(name, given[name], kind, dag_name) if name in given else spec
    return out


def _describe(spec: Any) -> str:
    return f"{spec.__name__} (required)" if isinstance(spec, type) else f"default {json.dumps(spec)}"


def _plain(name: str, value: Any, kind: type | None, dag_name: str = "") -> Any:
    if isinstance(value, Raw):
        if kind is str:
            return str(value)
        value = parse_value(value)
    if kind is not None and not _fits(value, kind):
        where = f" of DAG {dag_name!r}" if dag_name else ""
        raise ParamsError(
            f"parameter {name!r}{where} takes a {kind.__name__}, not {_type_name(value)} {json.dumps(value)}"
            if _is_json(value)
            else f"parameter {name!r}{where} takes a {kind.__name__}, not {value!r}"
        )
    if kind is float and isinstance(value, int):
        value = float(value)
    _json_text(value, f"parameter {name!r}")
    return value


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def parse_value(text: str) -> Any:
    """``--param`` value text: JSON when it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return str(text)


def parse_cli(pairs: Iterable[str] | None, files: Iterable[str] | None) -> dict[str, Any] | None:
    """``--params-file`` files (in order), then ``--param KEY=VALUE`` pairs over them; None when neither."""
    pairs, files = list(pairs or ()), list(files or ())
    if not pairs and not files:
        return None
    out: dict[str, Any] = {}
    for file in files:
        path = Path(file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ParamsError(f"--params-file {file!r}: cannot read it ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ParamsError(
                f'--params-file {file!r} is not JSON ({exc}); it holds one object, {{"day": "..."}}'
            ) from None
        if not isinstance(data, dict):
            raise ParamsError(
                f"--params-file {file!r} holds {_type_name(data)}; it must hold a JSON object of name: value"
            )
        out.update(data)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamsError(f"--param {pair!r}: write it as KEY=VALUE, e.g. --param day=2026-12-01")
        out[key] = Raw(text)
    return out


def frozen(values: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The read-only mapping tasks see as ``ctx.params`` (a copy: nested values cannot leak between tasks)."""
    if not values:
        return EMPTY
    return types.MappingProxyType(json.loads(json.dumps(dict(values))))


def for_run(
    dag_name: str,
    declared: Mapping[str, Any] | None,
    given: Mapping[str, Any] | None,
    stored: Mapping[str, Any] | None,
    *,
    run_id: str | None = None,
    change: bool = False,
) -> tuple[dict[str, Any], bool]:
    """The parameters of a new run (``run_id`` None) or of a resumed one, and whether to store them.

    A resume keeps the stored parameters. Parameters given to a resume must equal
    them, unless ``change`` asks for the new ones.
    """
    if run_id is None:
        return resolve(dag_name, declared, given), True
    kept = dict(stored or {})
    if given is None:
        values = resolve(dag_name, declared, kept) if declared is not None else kept
        return values, values != kept
    values = resolve(dag_name, declared, given)
    if values != kept and not change:
        diff = [
            f"{k}: {json.dumps(kept.get(k))} -> {json.dumps(values.get(k))}"
            for k in sorted(set(kept) | set(values))
            if kept.get(k, _NO) != values.get(k, _NO)
        ]
        raise ParamsError(
            f"run {run_id} ran with other parameters ({'; '.join(diff)}); resume it without --param to keep them, "
            f"or add --change-params to run its remaining tasks with the new ones"
        )
    return values, values != kept


_NO = object()


def describe(values: Mapping[str, Any] | None) -> str:
    """One line for ``dagexec show``: ``day="2026-12-01", limit=100``."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in (values or {}).items())


def as_options(params: Mapping[str, Any] | None, change: bool | None) -> dict[str, Any]:
    """`run(params=..., change_params=...)` as config options (left out when not given, so the CLI's stay)."""
    out: dict[str, Any] = {}
    if params is not None:
        if not isinstance(params, Mapping):
            raise ParamsError(f"params= takes a dict of name -> value, not {_type_name(params)}")
        out["params"] = dict(params)
    if change:
        out["change_params"] = True
    return out


def attach(run: Any, stored: Any) -> dict[str, Any] | None:
    """Give ``run`` its parameters (``run.run_params``) as it opens; the values to store, or None.

    ``stored`` is what a resumed run keeps (`META_KEY`); for a new run pass None and
    call before the run is created, so bad parameters create nothing.
    """
    resumed = run.resumed_from is not None
    if resumed and stored is None:
        run.storage.get_run(run.run_id)  # an unknown run is named as such, before its parameters
    if stored is not None and not isinstance(stored, dict):
        raise ParamsError(f"the stored parameters of run {run.run_id} are not an object: {stored!r}")
    values, store = for_run(
        run.dag.name,
        run.dag.params,
        run.config.getoption("params"),
        stored,
        run_id=run.run_id if resumed else None,
        change=bool(run.config.getoption("change_params")),
    )
    run.run_params = frozen(values)
    return values if store and (values or stored is not None) else None


def store(run: Any, values: dict[str, Any] | None) -> None:
    """Keep ``values`` with the run (after `attach`, once the run exists)."""
    if values is not None:
        run.storage.put_meta(run.run_id, META_KEY, values)
