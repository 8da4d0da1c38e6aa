"""What a run imports: blocked plugins cost nothing, and neither does a state file that needs no migration.

`dagexec run` in a subprocess, with a `dagplugins.py` beside the DAG file that writes the modules the
process has imported once the run is over (its `dagexec_unconfigure`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DAGEXEC = str(Path(sys.executable).with_name("dagexec"))

FLOW = """
from helpers import inc, one
from dagexec_core import Dag

dag = Dag("flow")
dag.add("one", one)
dag.add("two", inc, deps=["one"])
"""

DAGPLUGINS = """
import json
import os
import sys

from dagexec_core import hookimpl


@hookimpl
def dagexec_unconfigure(config):
    with open(os.environ["MODULES_OUT"], "w") as f:
        json.dump(sorted(sys.modules), f)
"""


def _modules(project: Path, *args: str) -> set[str]:
    out = project / "modules.json"
    env = dict(os.environ, MODULES_OUT=str(out), DAGEXEC_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run(
        [DAGEXEC, "run", "flow.py", "-q", *args], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return {m.split(".")[0] for m in json.loads(out.read_text())} | set(json.loads(out.read_text()))


def _project(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "helpers.py").write_text("def one():\n    return 1\n\n\ndef inc(one):\n    return one + 1\n")
    (tmp_path / "dagplugins.py").write_text(DAGPLUGINS)
    return tmp_path


def test_without_tracing_and_metrics_no_opentelemetry_and_no_sqlite_utils(tmp_path: Path) -> None:
    project = _project(tmp_path)
    first = _modules(project, "-p", "no:tracing", "-p", "no:metrics")
    assert "opentelemetry" not in first and "dagexec_plugins.tracing" not in first
    # creating the state file needs no sqlite-utils either: a new file gets the schema as plain SQL
    assert {"sqlite_utils", "pandas", "dagexec_plugins.sqlite.migrations"}.isdisjoint(first)
    assert "dagexec_plugins.sqlite.write" in first
    again = _modules(project, "-p", "no:tracing", "-p", "no:metrics")
    assert {"opentelemetry", "sqlite_utils", "pandas", "dagexec_plugins.tracing"}.isdisjoint(again)
    assert "dagexec_plugins.sqlite.write" in again  # the run did persist


def test_metrics_plugin_loaded_but_off_and_the_process_executor_import_no_opentelemetry(tmp_path: Path) -> None:
    project = _project(tmp_path)
    # -v: the progress plugin listens to task starts, so the executor is handed a context for each attempt
    loaded = _modules(project, "-p", "no:tracing", "--executor", "process", "-v")
    assert "dagexec_plugins.metrics" in loaded and "dagexec_plugins.process" in loaded
    assert "opentelemetry" not in loaded and "dagexec_plugins.tracing" not in loaded


def test_the_probe_sees_opentelemetry_when_tracing_is_on(tmp_path: Path) -> None:
    modules = _modules(_project(tmp_path), "--trace", "console")
    assert "opentelemetry" in modules and "dagexec_plugins.tracing_events" in modules
