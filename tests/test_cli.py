"""The dagexec command: exit codes, DAG selection, validate, graph, plugins."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dagexec_core.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def two_dags(tmp_path: Path) -> Path:
    return write(
        tmp_path / "two.py",
        """
        from dagexec_core import Dag
        first = Dag("first")
        second = Dag("second")
        first.add("a", lambda: 1)
        second.add("b", lambda: 2)
        second.add("c", lambda b: b * 10, deps=["b"])
        """,
    )


def test_run_quickstart_example_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLES / "quickstart.py"), "--no-persist", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["counts"] == {"completed": 4}
    assert out["tasks"]["load"]["state"] == "completed"


def test_several_dags_without_a_name_lists_them(two_dags: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(two_dags), "--no-persist"]) == 2
    err = capsys.readouterr().err
    assert "defines several DAGs (first, second)" in err and f"{two_dags}:first" in err


def test_dag_chosen_by_name(two_dags: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{two_dags}:second", "--no-persist", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dag"] == "second"
    assert main(["run", f"{two_dags}:third", "--no-persist"]) == 2
    assert "has no DAG named 'third'; it defines: first, second" in capsys.readouterr().err


def test_failed_task_exits_1_and_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(
        tmp_path / "f.py",
        """
        from dagexec_core import Dag
        dag = Dag("f")
        def boom():
            raise ValueError("bad row 7")
        dag.add("boom", boom)
        """,
    )
    assert main(["run", str(f), "--no-persist"]) == 1
    assert "FAILED boom: ValueError: bad row 7" in capsys.readouterr().out


def test_cycle_exits_2_and_shows_the_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(
        tmp_path / "c.py",
        """
        from dagexec_core import Dag
        dag = Dag("c")
        dag.add("a", lambda: 1, deps=["b"])
        dag.add("b", lambda: 1, deps=["a"])
        """,
    )
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "dependency cycle" in err and ("a -> b -> a" in err or "b -> a -> b" in err)
    assert main(["run", str(f), "--no-persist"]) == 2


def test_broken_dag_file_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "broken.py", "from dagexec_core import Dag\ndag = Dag('x')\nraise KeyError('oops')\n")
    assert main(["run", str(f), "--no-persist"]) == 2
    assert f"{f}:3: importing the DAG file raised KeyError" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.py")]) == 2
    assert "not found" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2


def test_validate_and_graph_formats(two_dags: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", f"{two_dags}:second"]) == 0
    assert "is valid: 2 tasks" in capsys.readouterr().out
    assert main(["graph", f"{two_dags}:second", "--format", "mermaid"]) == 0
    mermaid = capsys.readouterr().out.splitlines()
    assert mermaid[0] == "graph TD" and '  t0["b"]' in mermaid and "  t0 --> t1" in mermaid
    assert main(["graph", f"{two_dags}:second", "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith('digraph "second" {') and '"b" -> "c";' in dot


def test_plugins_lists_builtins_with_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["local"]["hooks"] == ["dagexec_executor"] and rows["local"]["file"].endswith("local.py")
    assert main(["-p", "no:local", "plugins", "--json"]) == 0
    assert "local" not in {r["name"] for r in json.loads(capsys.readouterr().out)}


def test_plugin_adds_a_flag_from_dagplugins(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    write(
        tmp_path / "dagplugins.py",
        """
        from dagexec_core import hookimpl
        @hookimpl
        def dagexec_addoption(parser):
            parser.add_argument("--greeting", default="hi")
        @hookimpl
        def dagexec_run_started(run):
            run.blackboard["greeting"] = run.config.getoption("greeting")
        """,
    )
    f = write(
        tmp_path / "g.py",
        """
        from dagexec_core import Dag
        dag = Dag("g")
        @dag.task
        def say(ctx):
            return ctx.lookup("greeting")
        """,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", "run", str(f), "--no-persist", "--greeting", "hello", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"]["say"]["state"] == "completed"
    help_text = subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", "run", str(f), "--help"], capture_output=True, text=True
    ).stdout
    assert "--greeting" in help_text


def test_sigint_cancels_and_exits_130_leaving_run_resumable(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    f = write(
        tmp_path / "slow.py",
        f"""
        import asyncio, pathlib
        from dagexec_core import Dag
        dag = Dag("slow")
        @dag.task
        async def wait():
            pathlib.Path({str(marker)!r}).write_text("x")
            await asyncio.sleep(60)
        dag.add("after", lambda: 1, deps=["wait"])
        """,
    )
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "dagexec_core.cli", "run", str(f), "--no-persist", "--json", "--progress", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the run acknowledges the first signal...
    assert "cancelling" in first and "10.0s to finish" in first
    proc.send_signal(signal.SIGINT)  # ...and the second one skips the grace period
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["status"] == "cancelled"
    assert report["tasks"]["wait"]["state"] == "cancelled" and report["tasks"]["after"]["state"] == "pending"


def test_help_of_a_subcommand_lists_plugin_flags_without_errors() -> None:
    proc = subprocess.run([sys.executable, "-m", "dagexec_core.cli", "run", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "plugin options" in proc.stdout and "--durability" in proc.stdout
