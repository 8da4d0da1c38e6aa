"""A fresh `dagexec` process imports what its command needs, and nothing heavier.

`dagexec --version` and `--help` build the parser only; a run imports no
OpenTelemetry unless tracing or metrics are on, and never pandas (which
sqlite-utils imports whenever it is installed, adding a third of a second to
every first run). Each case runs the real `dagexec` executable in its own
process; a ``sitecustomize`` module on ``PYTHONPATH`` writes the process's
``sys.modules`` when it exits, so what is checked is what the command imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DAGEXEC = str(Path(sys.executable).with_name("dagexec"))

#: Never imported to print the version or the help.
NOT_FOR_THE_PARSER = ("asyncio", "pluggy", "attrs", "sqlite_utils", "pandas", "numpy", "opentelemetry")
#: Never imported by a run with tracing and metrics off.
NOT_FOR_A_PLAIN_RUN = ("opentelemetry", "pandas", "numpy")
#: Never imported by a run on the local executor: the plugin loader reads entry points without
#: importlib.metadata (~10 ms), the process and Dask executors import their machinery when chosen.
NOT_FOR_A_LOCAL_RUN = ("importlib.metadata", "multiprocessing", "pickle", "dask", "distributed", "cloudpickle", "uuid")

SITECUSTOMIZE = """\
import atexit
import json
import os
import sys


def _write_modules():
    with open(os.environ["IMPORTS_TEST_MODULES_OUT"], "w") as f:
        json.dump(sorted(sys.modules), f)


atexit.register(_write_modules)
"""

FLOW = '''\
"""A DAG as a user writes it: a sync and an async task, the second receiving the first's output."""
from dagexec_core import Dag

dag = Dag("small")


@dag.task
def extract():
    return [1, 2, 3]


@dag.task(deps=["extract"])
async def load(extract):
    return len(extract)
'''


def imported_by(tmp_path: Path, *args: str, full: bool = False) -> list[str]:
    """The top-level packages (``full``: the modules) a `dagexec` process run with ``args`` in ``tmp_path``
    had imported at exit."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    (tmp_path / "flow.py").write_text(FLOW, encoding="utf-8")
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DAGEXEC_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["IMPORTS_TEST_MODULES_OUT"] = str(out)
    proc = subprocess.run([DAGEXEC, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file(), f"the sitecustomize hook did not run: {proc.stderr}"
    modules = json.loads(out.read_text(encoding="utf-8"))
    return sorted(modules if full else {m.split(".")[0] for m in modules})


def heavy(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [m for m in forbidden if m in modules]


def test_the_hook_sees_what_a_run_imports(tmp_path: Path) -> None:
    """The check can fail: a run does import the engine's asyncio and pluggy."""
    modules = imported_by(tmp_path, "run", "flow.py", "--no-persist", "-q")
    assert {"asyncio", "pluggy", "dagexec_core", "dagexec_plugins"} <= set(modules)


@pytest.mark.parametrize("args", [("--version",), ("--help",)], ids=" ".join)
def test_version_and_help_import_the_parser_only(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert heavy(imported_by(tmp_path, *args), NOT_FOR_THE_PARSER) == []


def test_a_run_without_the_sqlite_plugin_imports_no_opentelemetry_or_pandas(tmp_path: Path) -> None:
    modules = imported_by(tmp_path, "run", "flow.py", "--no-persist", "-p", "no:sqlite", "-q")
    assert heavy(modules, (*NOT_FOR_A_PLAIN_RUN, "sqlite_utils")) == []


@pytest.mark.parametrize(
    "args",
    [
        ("run", "flow.py", "--no-persist", "-q"),
        ("run", "flow.py", "--state", "state.db", "-q"),
    ],
    ids=["no-persist", "new-state-file"],
)
def test_a_run_imports_no_sqlite_utils_pandas_or_opentelemetry(tmp_path: Path, args: tuple[str, ...]) -> None:
    # sqlite_utils, not only pandas: it is installed everywhere (a dependency), pandas only in some places,
    # so the check fails the same way on every machine. A new state file gets its schema as plain SQL.
    assert heavy(imported_by(tmp_path, *args), (*NOT_FOR_A_PLAIN_RUN, "sqlite_utils")) == []


def test_a_local_run_imports_no_entry_point_metadata_nor_other_executors(tmp_path: Path) -> None:
    modules = imported_by(tmp_path, "run", "flow.py", "--state", "state.db", "-q", full=True)
    assert heavy(modules, NOT_FOR_A_LOCAL_RUN) == []
    # the plugins are loaded (their options exist), only their machinery waits
    assert {"dagexec_plugins.process", "dagexec_plugins.dask", "importlib"} <= set(modules)
    assert "dagexec_plugins.dask.executor" not in modules


def test_tracing_on_imports_opentelemetry(tmp_path: Path) -> None:
    """The lazy import still happens when tracing is asked for (spans to stderr)."""
    modules = imported_by(tmp_path, "run", "flow.py", "--no-persist", "-p", "no:sqlite", "--trace", "console", "-q")
    assert "opentelemetry" in modules


def test_the_help_still_lists_every_command(tmp_path: Path) -> None:
    proc = subprocess.run([DAGEXEC, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "validate", "graph", "plugins", "resume", "runs", "show", "dlq", "emit", "report"):
        assert f"    {command}" in proc.stdout, command
    assert textwrap.dedent(proc.stdout).startswith("usage: dagexec")


def test_every_public_name_and_submodule_is_reachable_from_the_package(tmp_path: Path) -> None:
    """The names are imported on first use; a fresh interpreter still reaches each one, and the submodules."""
    script = (
        "import dagexec_core\n"
        "missing = [n for n in dagexec_core.__all__ if getattr(dagexec_core, n, None) is None]\n"
        "assert not missing, missing\n"
        "assert dagexec_core.state.TRANSITIONS and dagexec_core.plugins.DEFAULT_PLUGINS\n"
        "assert not hasattr(dagexec_core, 'no_such_name')\n"
        "from dagexec_core import *  # noqa: F403\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
