"""One configure -> run -> unconfigure lifecycle: every entry point names a plugin whose configure raises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

DAGEXEC = str(Path(sys.executable).with_name("dagexec"))

FLOW = """
from helpers import double
from dagexec_core import Dag

dag = Dag("flow")
dag.add("one", lambda: 21)
dag.add("two", double, deps=["one"])
"""

DAGPLUGINS = """
import os
from dagexec_core import hookimpl

unconfigured = os.environ.get("UNCONFIGURED_MARK")


@hookimpl
def dagexec_configure(config):
    if os.environ.get("FAIL_CONFIGURE"):
        raise RuntimeError("the license server is down")


@hookimpl
def dagexec_unconfigure(config):
    if unconfigured:
        open(unconfigured, "a").write("unconfigured\\n")
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(textwrap.dedent(FLOW))
    (tmp_path / "helpers.py").write_text("def double(one):\n    return one * 2\n")
    (tmp_path / "dagplugins.py").write_text(textwrap.dedent(DAGPLUGINS))
    return tmp_path


def _dagexec(cwd: Path, *args: str, fail: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FAIL_CONFIGURE"}
    env["DAGEXEC_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["UNCONFIGURED_MARK"] = str(cwd / "unconfigured.txt")
    if fail:
        env["FAIL_CONFIGURE"] = "1"
    return subprocess.run([DAGEXEC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _raise_line(project: Path) -> int:
    lines = (project / "dagplugins.py").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if "raise RuntimeError" in line)


def _assert_named(proc: subprocess.CompletedProcess[str], project: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    # one error line (resume says first which file it resumes with)
    err_lines = [line for line in proc.stderr.splitlines() if not line.startswith("resuming run ")]
    assert len(err_lines) == 1, proc.stderr
    line = err_lines[0]
    assert line.startswith("dagexec: error: plugin ")
    assert f"{project / 'dagplugins.py'}:{_raise_line(project)}" in line
    assert "RuntimeError in hook dagexec_configure: the license server is down" in line


def test_dagexec_run_names_the_dagplugins_file_and_line_whose_configure_raises(tmp_path: Path) -> None:
    project = _project(tmp_path)
    proc = _dagexec(project, "run", "flow.py", fail=True)
    _assert_named(proc, project)
    assert proc.stdout == ""
    # the plugins configured before the raising one were unconfigured
    assert (project / "unconfigured.txt").read_text().splitlines() == ["unconfigured"]


def test_dagexec_resume_names_the_dagplugins_file_and_line_whose_configure_raises(tmp_path: Path) -> None:
    project = _project(tmp_path)
    first = _dagexec(project, "run", "flow.py", "--json", fail=False)
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    proc = _dagexec(project, "resume", run_id, fail=True)
    _assert_named(proc, project)
    healthy = _dagexec(project, "resume", run_id, "--json", fail=False)
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["tasks"]["two"]["state"] == "completed"
