"""Run parameters: declared on the DAG, given on the command line or to run(), kept with the run and resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from dagexec_core import Dag, run
from dagexec_core.errors import UsageError
from dagexec_core.params import ParamsError, parse_cli, resolve

FLOW = """
    import json
    from pathlib import Path

    from dagexec_core import Dag
    from helpers import record

    dag = Dag("etl", params={"day": str, "limit": 100, "ratio": 0.5})


    @dag.task
    def extract(ctx):
        record("extract", dict(ctx.params))
        return ctx.params["limit"]


    @dag.task(deps=["extract"])
    def load(extract, ctx):
        record("load", dict(ctx.params))
        if Path("fail-load").exists():
            raise RuntimeError("load is told to fail")
        return extract
"""

HELPERS = """
    import json
    from pathlib import Path


    def record(task, params):
        with open("seen.jsonl", "a") as f:
            f.write(json.dumps({"task": task, "params": params}) + "\\n")
"""


def dagexec(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", *argv, "--state", "state.db"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "flow.py").write_text(textwrap.dedent(FLOW))
    (folder / "helpers.py").write_text(textwrap.dedent(HELPERS))
    return folder


def seen(folder: Path) -> list[dict[str, Any]]:
    path = folder / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_id_of(proc: subprocess.CompletedProcess[str]) -> str:
    return str(json.loads(proc.stdout)["run_id"])


def test_cli_params_reach_tasks_typed_as_declared_and_are_kept_with_the_run(project: Path) -> None:
    (project / "more.json").write_text(json.dumps({"limit": 7, "ratio": 2}))
    proc = dagexec(
        "run",
        "flow.py",
        "--params-file",
        "more.json",
        "--param",
        "day=20261201",
        "--param",
        "limit=12",
        "--json",
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr
    expected = {"day": "20261201", "limit": 12, "ratio": 2.0}  # str keeps the text; --param wins over the file
    assert [s["params"] for s in seen(project)] == [expected, expected]
    run_id = run_id_of(proc)

    shown = dagexec("show", run_id, "--json", cwd=project)
    assert json.loads(shown.stdout)["params"] == expected
    text = dagexec("show", run_id, cwd=project).stdout
    assert 'params: day="20261201", limit=12, ratio=2.0' in text
    runs = json.loads(dagexec("runs", "--json", cwd=project).stdout)
    assert [r["params"] for r in runs] == [expected]


def test_unknown_missing_and_mistyped_params_are_usage_errors_naming_them(project: Path) -> None:
    proc = dagexec("run", "flow.py", "--param", "dya=2026-12-01", "--param", "extra=1", cwd=project)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "unknown parameter(s) 'dya' (did you mean 'day'?), 'extra'" in err
    assert "missing required parameter(s) 'day'" in err
    assert not seen(project)

    proc = dagexec("run", "flow.py", "--param", "day=x", "--param", "limit=many", cwd=project)
    assert proc.returncode == 2
    assert "parameter 'limit' of DAG 'etl' takes a int, not str" in proc.stderr

    proc = dagexec("run", "flow.py", "--param", "day", cwd=project)
    assert proc.returncode == 2
    assert "--param 'day': write it as KEY=VALUE" in proc.stderr

    (project / "bad.json").write_text("[1, 2]")
    proc = dagexec("run", "flow.py", "--params-file", "bad.json", cwd=project)
    assert proc.returncode == 2
    assert "it must hold a JSON object" in proc.stderr
    assert not seen(project)
    # nothing was created for the refused runs
    assert json.loads(dagexec("runs", "--json", cwd=project).stdout or "[]") == []


def test_a_resumed_run_keeps_its_params_and_refuses_others_unless_asked(project: Path) -> None:
    (project / "fail-load").touch()
    first = dagexec("run", "flow.py", "--param", "day=2026-12-01", "--param", "limit=3", "--json", cwd=project)
    assert first.returncode == 1, first.stderr
    run_id = run_id_of(first)
    (project / "fail-load").unlink()

    refused = dagexec(
        "resume", run_id, "--replay", "load", "--param", "day=2026-12-02", "--param", "limit=3", cwd=project
    )
    assert refused.returncode == 2
    assert f'run {run_id} ran with other parameters (day: "2026-12-01" -> "2026-12-02")' in refused.stderr
    assert "--change-params" in refused.stderr
    assert [s["task"] for s in seen(project)] == ["extract", "load"]  # the refusal ran nothing

    kept = dagexec("resume", run_id, "--replay", "load", "--json", cwd=project)
    assert kept.returncode == 0, kept.stderr
    original = {"day": "2026-12-01", "limit": 3, "ratio": 0.5}
    assert seen(project)[-1] == {"task": "load", "params": original}
    assert json.loads(dagexec("show", run_id, "--json", cwd=project).stdout)["params"] == original

    # the same values again are no change
    (project / "fail-load").touch()
    again = dagexec("run", "flow.py", "--param", "day=d", "--json", cwd=project)
    second = run_id_of(again)
    (project / "fail-load").unlink()
    same = dagexec("resume", second, "--replay", "load", "--param", "day=d", "--param", "limit=100", cwd=project)
    assert same.returncode == 0, same.stderr

    # and a change asked for is taken and kept
    (project / "fail-load").touch()
    third = run_id_of(dagexec("run", "flow.py", "--param", "day=d", "--json", cwd=project))
    (project / "fail-load").unlink()
    changed = dagexec("resume", third, "--replay", "load", "--param", "day=e", "--change-params", cwd=project)
    assert changed.returncode == 0, changed.stderr
    assert seen(project)[-1] == {"task": "load", "params": {"day": "e", "limit": 100, "ratio": 0.5}}
    assert json.loads(dagexec("show", third, "--json", cwd=project).stdout)["params"]["day"] == "e"
    # `run --resume` takes the same flag
    again = dagexec("run", "flow.py", "--resume", third, "--param", "day=f", cwd=project)
    assert again.returncode == 2 and "--change-params" in again.stderr
    again = dagexec("run", "flow.py", "--resume", third, "--param", "day=f", "--change-params", cwd=project)
    assert again.returncode == 0, again.stderr
    assert json.loads(dagexec("show", third, "--json", cwd=project).stdout)["params"]["day"] == "f"


def test_ctx_params_is_read_only_and_the_api_takes_params(tmp_path: Path) -> None:
    dag = Dag("api", params={"n": int, "tags": ["a"]})
    seen_values: list[Any] = []

    @dag.task
    def body(ctx: Any) -> int:
        seen_values.append(dict(ctx.params))
        with pytest.raises(TypeError):
            ctx.params["n"] = 5
        return int(ctx.params["n"]) * 2

    report = run(dag, state=str(tmp_path / "s.db"), params={"n": 21})
    assert report.ok and report.outputs["body"] == 42
    assert seen_values == [{"n": 21, "tags": ["a"]}]
    with pytest.raises(ParamsError, match="missing required parameter"):
        run(dag, state=str(tmp_path / "s.db"))
    with pytest.raises(ParamsError, match="takes a int, not bool"):
        run(dag, state=str(tmp_path / "s.db"), params={"n": True})


def test_a_dag_declaring_nothing_takes_any_json_params_and_an_empty_declaration_none(tmp_path: Path) -> None:
    assert resolve("d", None, parse_cli(["a=1", "b=[1, 2]", "c=text", "d="], None)) == {
        "a": 1,
        "b": [1, 2],
        "c": "text",
        "d": "",
    }
    with pytest.raises(ParamsError, match="unknown parameter"):
        resolve("d", {}, {"a": 1})
    with pytest.raises(ParamsError, match="must be a JSON value"):
        resolve("d", None, {"a": object()})
    with pytest.raises(UsageError, match="declared as set"):
        Dag("bad", params={"x": set})


@pytest.mark.usefixtures("restore_global_tracer_provider")
def test_params_are_attributes_of_the_run_span(tmp_path: Path, spans: Any) -> None:
    provider, exporter = spans
    dag = Dag("traced", params={"day": str, "sizes": [1, 2]})

    @dag.task
    def only() -> None:
        return None

    assert run(dag, persist=False, tracer_provider=provider, params={"day": "2026-12-01"}).ok
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "RUN traced"]
    assert root.attributes["dagexec.param.day"] == "2026-12-01"
    assert root.attributes["dagexec.param.sizes"] == "[1, 2]"


def test_the_docs_example_runs_and_its_error_is_the_one_printed(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "parameters.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "flow.py").write_text(code)
    proc = dagexec("run", "flow.py", "--param", "day=2026-12-01", "--param", "limit=3", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"]["load"]["state"] == "completed"
    run_id = run_id_of(proc)
    assert 'params: day="2026-12-01", limit=3' in dagexec("show", run_id, cwd=tmp_path).stdout
    bad = dagexec("run", "flow.py", "--param", "dya=2026-12-01", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() in doc


def test_tasks_in_worker_processes_read_the_same_params(project: Path) -> None:
    proc = dagexec("run", "flow.py", "--executor", "process", "--param", "day=d", "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert [s["params"] for s in seen(project)] == [{"day": "d", "limit": 100, "ratio": 0.5}] * 2


def test_a_run_killed_mid_way_resumes_with_its_params(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            import json
            import time
            from pathlib import Path

            from dagexec_core import Dag

            dag = Dag("killed", params={"day": str})


            @dag.task
            def waits(ctx):
                with open("seen.jsonl", "a") as f:
                    f.write(json.dumps({"task": "waits", "params": dict(ctx.params)}) + "\\n")
                deadline = time.monotonic() + 120
                while not Path("go").exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
                return ctx.params["day"]
            """
        )
    )
    driver = subprocess.Popen(
        [sys.executable, "-m", "dagexec_core.cli", "run", "flow.py", "--state", "state.db", "--param", "day=monday"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not seen(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen(tmp_path), "the task never started"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    (run,) = json.loads(dagexec("runs", "--json", cwd=tmp_path).stdout)
    assert run["status"] == "crashed" and run["params"] == {"day": "monday"}
    (tmp_path / "go").touch()
    resumed = dagexec("resume", run["run_id"], "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert [s["params"] for s in seen(tmp_path)] == [{"day": "monday"}, {"day": "monday"}]
