"""The command line and the API say exactly what they mean: flags, options, hook names, plugin imports.

Each test drives ``dagexec`` as a user does: a DAG file in its own folder,
next to a dagplugins.py or helper modules, in a separate process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dagexec_core import Dag, hookimpl, run
from dagexec_core.errors import PluginLoadError, TaskDefinitionError, UsageError

DAGEXEC = str(Path(sys.executable).with_name("dagexec"))

DAG_FILE = """
from dagexec_core import Dag

dag = Dag("flow")

@dag.task
def only():
    return 1
"""

# A plugin option, and a record of what the run saw, so a test can read it back.
OPTION_PLUGIN = """
import json
from pathlib import Path
from dagexec_core import hookimpl

@hookimpl
def dagexec_addoption(parser):
    parser.add_argument("--greeting", default="hello", help="what the plugin says")

@hookimpl
def dagexec_configure(config):
    seen = {k: config.getoption(k) for k in ("greeting", "concurrency", "progress")}
    Path(__file__).with_name("seen.json").write_text(json.dumps(seen))
"""


def write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def dagexec(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DAGEXEC_", "OTEL_"))}
    base["DAGEXEC_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run(
        [DAGEXEC, *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60
    )


def seen(folder: Path) -> dict[str, object]:
    return dict(json.loads((folder / "seen.json").read_text()))


# ---------------------------------------------------------------------------
# flags
# ---------------------------------------------------------------------------


def test_version_is_printed_once(tmp_path: Path) -> None:
    proc = dagexec("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert re.fullmatch(r"dagexec \d+\.\d+\.\d+\S*\n", proc.stdout), proc.stdout


@pytest.mark.parametrize("value", ["0", "-3"])
def test_concurrency_below_one_is_a_usage_error(tmp_path: Path, value: str) -> None:
    write(tmp_path / "flow.py", DAG_FILE)
    proc = dagexec("run", "flow.py", "-c", value, "--no-persist", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--concurrency/-c" in proc.stderr and "1 or more" in proc.stderr
    assert not (tmp_path / ".dagexec").exists()


def test_concurrency_below_one_from_the_api_is_a_usage_error() -> None:
    dag = Dag("d")
    dag.add("a", lambda: 1)
    with pytest.raises(UsageError, match="concurrency must be a whole number of tasks, 1 or more, not 0"):
        run(dag, persist=False, concurrency=0)


def test_dlq_takes_only_its_own_flags(tmp_path: Path) -> None:
    proc = dagexec("dlq", "list", "--concurrency", "3", cwd=tmp_path)
    assert proc.returncode == 2 and "unrecognized arguments: --concurrency 3" in proc.stderr
    help_text = dagexec("dlq", "--help", cwd=tmp_path).stdout
    assert "--state" in help_text and "--run" in help_text
    assert "--executor" not in help_text and "--concurrency" not in help_text and "--progress" not in help_text


# ---------------------------------------------------------------------------
# options a plugin adds
# ---------------------------------------------------------------------------


def test_resume_accepts_the_options_of_the_remembered_dag_files_dagplugins(tmp_path: Path) -> None:
    write(tmp_path / "dagplugins.py", OPTION_PLUGIN)
    write(
        tmp_path / "flow.py",
        """
        from pathlib import Path
        from dagexec_core import Dag

        dag = Dag("flow")

        @dag.task
        def needs_go():
            if not Path(__file__).with_name("go").exists():
                raise RuntimeError("not yet")
            return 1
        """,
    )
    first = dagexec("run", "flow.py", "--greeting", "hi", "--json", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert seen(tmp_path)["greeting"] == "hi"
    run_id = json.loads(first.stdout)["run_id"]
    (tmp_path / "go").write_text("")
    again = dagexec("resume", run_id, "--replay", "needs_go", "--greeting", "bonjour", "-q", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert seen(tmp_path)["greeting"] == "bonjour"


def test_plugin_option_defaults_apply_in_the_api_as_on_the_command_line(tmp_path: Path) -> None:
    write(tmp_path / "dagplugins.py", OPTION_PLUGIN)
    write(
        tmp_path / "flow.py",
        DAG_FILE + "\nif __name__ == '__main__':\n    from dagexec_core import run\n    run(dag)\n",
    )
    cli = dagexec("run", "flow.py", "-q", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert seen(tmp_path)["greeting"] == "hello" and seen(tmp_path)["progress"] == "auto"
    (tmp_path / "seen.json").unlink()
    api = subprocess.run([sys.executable, "flow.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert api.returncode == 0, api.stderr
    # the plugin's default as on the command line; progress stays off in run(), as documented
    assert seen(tmp_path) == {"greeting": "hello", "concurrency": 32, "progress": None}
    assert api.stderr == ""


def test_pyproject_and_environment_override_a_plugin_options_default_and_the_flag_overrides_both(
    tmp_path: Path,
) -> None:
    write(tmp_path / "dagplugins.py", OPTION_PLUGIN)
    write(tmp_path / "flow.py", DAG_FILE)
    write(tmp_path / "pyproject.toml", '[tool.dagexec]\ngreeting = "from pyproject"\nconcurrency = 3\n')
    assert dagexec("run", "flow.py", "-q", cwd=tmp_path).returncode == 0
    assert seen(tmp_path) == {"greeting": "from pyproject", "concurrency": 3, "progress": "auto"}
    env = {"DAGEXEC_GREETING": "from env", "DAGEXEC_CONCURRENCY": "5", "DAGEXEC_PROGRESS": "off"}
    assert dagexec("run", "flow.py", "-q", cwd=tmp_path, env=env).returncode == 0
    assert seen(tmp_path) == {"greeting": "from env", "concurrency": 5, "progress": "off"}
    assert dagexec("run", "flow.py", "-q", "--greeting", "flag", "-c", "2", cwd=tmp_path, env=env).returncode == 0
    assert seen(tmp_path) == {"greeting": "flag", "concurrency": 2, "progress": "off"}


# ---------------------------------------------------------------------------
# unknown names
# ---------------------------------------------------------------------------


MISSPELT_HOOK = """
from dagexec_core import hookimpl

@hookimpl
def dagexec_task_finishd(task, record):
    pass
"""


def test_a_misspelt_hook_in_dagplugins_is_an_error_naming_it_and_the_closest_hook(tmp_path: Path) -> None:
    write(tmp_path / "flow.py", DAG_FILE)
    plugin = write(tmp_path / "dagplugins.py", MISSPELT_HOOK)
    proc = dagexec("run", "flow.py", "--no-persist", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown hook 'dagexec_task_finishd'" in proc.stderr
    assert "did you mean 'dagexec_task_finished'?" in proc.stderr
    assert f"{plugin.resolve()}:4" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_misspelt_hook_in_a_p_module_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "flow.py", DAG_FILE)
    write(tmp_path / "myhooks.py", MISSPELT_HOOK)
    proc = dagexec("-p", "myhooks", "run", "flow.py", "--no-persist", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "plugin 'myhooks'" in proc.stderr and "did you mean 'dagexec_task_finished'?" in proc.stderr


def test_a_misspelt_hook_in_a_plugin_given_to_run_is_an_error() -> None:
    class Plugin:
        @hookimpl
        def dagexec_run_strated(self, run: object) -> None:
            pass

    dag = Dag("d")
    dag.add("a", lambda: 1)
    with pytest.raises(PluginLoadError, match=r"'dagexec_run_strated' \(did you mean 'dagexec_run_started'\?\)"):
        run(dag, persist=False, plugins=[Plugin()])


def test_an_optional_hook_of_another_plugin_is_not_an_error() -> None:
    class Plugin:
        @hookimpl(optionalhook=True)
        def dagexec_something_else(self) -> None:
            pass

    dag = Dag("d")
    dag.add("a", lambda: 1)
    assert run(dag, persist=False, plugins=[Plugin()]).ok


def test_an_unknown_option_given_to_run_is_an_error_with_the_closest_option() -> None:
    dag = Dag("d")
    dag.add("a", lambda: 1)
    with pytest.raises(UsageError, match=r"unknown option 'concurency' \(did you mean 'concurrency'\?\)"):
        run(dag, persist=False, concurency=4)
    with pytest.raises(UsageError, match=r"unknown option 'retry_budjet' \(did you mean 'retry_budget'\?\)"):
        run(dag, persist=False, retry_budjet=4)  # an option the retry plugin adds


def test_an_unknown_option_in_pyproject_is_an_error_with_the_closest_option(tmp_path: Path) -> None:
    write(tmp_path / "flow.py", DAG_FILE)
    write(tmp_path / "dagplugins.py", OPTION_PLUGIN)
    write(tmp_path / "pyproject.toml", "[tool.dagexec]\ngreting = 'x'\n")
    proc = dagexec("run", "flow.py", "--no-persist", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{tmp_path / 'pyproject.toml'}: [tool.dagexec] has unknown option 'greting'" in proc.stderr
    assert "(did you mean 'greeting'?)" in proc.stderr


def test_an_unknown_dagexec_variable_is_an_error_with_the_closest_option(tmp_path: Path) -> None:
    write(tmp_path / "flow.py", DAG_FILE)
    proc = dagexec("run", "flow.py", "--no-persist", cwd=tmp_path, env={"DAGEXEC_CONCURENCY": "4"})
    assert proc.returncode == 2
    assert "environment variable DAGEXEC_CONCURENCY is not a dagexec option" in proc.stderr
    assert "(did you mean DAGEXEC_CONCURRENCY?)" in proc.stderr


def test_a_plugin_named_with_p_that_fails_to_import_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "flow.py", DAG_FILE)
    plugin = write(tmp_path / "broken_plugin.py", "import os\n\nLIMIT = 1 / 0\n")
    env = {"PYTHONPATH": str(tmp_path)}
    proc = dagexec("-p", "broken_plugin", "run", "flow.py", "--no-persist", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert f"'broken_plugin' ({plugin}:3) failed to import: ZeroDivisionError" in proc.stderr
    by_env = dagexec("run", "flow.py", "--no-persist", cwd=tmp_path, env={**env, "DAGEXEC_PLUGINS": "broken_plugin"})
    assert by_env.returncode == 2 and f"({plugin}:3)" in by_env.stderr
    missing = dagexec("-p", "no_such_plugin", "run", "flow.py", "--no-persist", cwd=tmp_path)
    assert missing.returncode == 2 and "no module named 'no_such_plugin' on sys.path" in missing.stderr


# ---------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------


def test_runs_shows_start_times_with_their_utc_offset(tmp_path: Path) -> None:
    write(tmp_path / "flow.py", DAG_FILE)
    assert dagexec("run", "flow.py", "-q", cwd=tmp_path).returncode == 0
    listing = dagexec("runs", cwd=tmp_path, env={"TZ": "Asia/Kolkata"})
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+05:30", listing.stdout), listing.stdout
    utc = dagexec("runs", cwd=tmp_path, env={"TZ": "UTC"})
    assert re.search(r"\d\d:\d\d:\d\d\+00:00", utc.stdout), utc.stdout


# ---------------------------------------------------------------------------
# dag.map
# ---------------------------------------------------------------------------


def test_map_passes_the_element_as_the_first_positional_parameter(tmp_path: Path) -> None:
    write(
        tmp_path / "flow.py",
        """
        import json
        from pathlib import Path
        from dagexec_core import Dag

        dag = Dag("m")
        dag.add("numbers", lambda: [1, 2, 3])
        dag.add("words", lambda: ["a", "b"])
        dag.map(lambda x: x * 2, over="numbers", name="doubled")
        dag.map(str.upper, over="words", name="upper")

        async def shifted(n, ctx, index):
            return [n + 1, ctx.task, index]

        dag.map(shifted, over="numbers")

        @dag.task(deps=["doubled", "upper", "shifted"])
        def write(doubled, upper, shifted):
            Path(__file__).with_name("out.json").write_text(json.dumps([doubled, upper, shifted]))
        """,
    )
    proc = dagexec("run", "flow.py", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doubled, upper, shifted = json.loads((tmp_path / "out.json").read_text())
    assert doubled == [2, 4, 6] and upper == ["A", "B"]
    assert shifted == [[2, "shifted[0]", 0], [3, "shifted[1]", 1], [4, "shifted[2]", 2]]


def test_map_of_module_functions_and_builtins_runs_in_worker_processes(tmp_path: Path) -> None:
    write(
        tmp_path / "helpers.py",
        """
        import json
        from pathlib import Path

        def numbers():
            return [1, 2, 3]

        def words():
            return ["x", "y"]

        def factor():
            return 10

        def scale(x, factor):
            return x * factor

        def report(scaled, upper):
            Path("out.json").write_text(json.dumps([scaled, upper]))
        """,
    )
    write(
        tmp_path / "flow.py",
        """
        from dagexec_core import Dag
        from helpers import factor, numbers, report, scale, words

        dag = Dag("p")
        dag.add("numbers", numbers)
        dag.add("factor", factor)
        dag.add("words", words)
        dag.map(scale, over="numbers", name="scaled", deps=["factor"])
        dag.map(str.upper, over="words", name="upper")
        dag.add("report", report, deps=["scaled", "upper"])
        """,
    )
    proc = dagexec("run", "flow.py", "-q", "--executor", "process", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out.json").read_text()) == [[10, 20, 30], ["X", "Y"]]


def test_a_mapped_function_that_can_take_no_element_fails_when_the_dag_is_defined(tmp_path: Path) -> None:
    write(
        tmp_path / "flow.py",
        """
        from dagexec_core import Dag

        dag = Dag("m")
        dag.add("numbers", lambda: [1, 2, 3])

        def count(numbers, ctx):
            return len(numbers)

        dag.map(count, over="numbers")
        """,
    )
    proc = dagexec("run", "flow.py", "--no-persist", cwd=tmp_path)
    assert proc.returncode == 2
    assert "flow.py:10" in proc.stderr and "task 'count'" in proc.stderr
    assert "ctx, numbers receive their own values" in proc.stderr
    with pytest.raises(TaskDefinitionError, match="takes no such parameter"):
        Dag("d").map(lambda: 1, over="x", name="nothing")
    with pytest.raises(TaskDefinitionError, match="takes no such parameter"):
        Dag("d").map(lambda *, y: 1, over="x", name="keyword_only")
