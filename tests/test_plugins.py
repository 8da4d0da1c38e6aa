"""The plugin system: load order, replacing stages, blocking, and errors that name the plugin."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dagexec_core import Dag, run
from dagexec_core.errors import PluginHookError, PluginLoadError
from dagexec_core.plugins import build_plugin_manager, find_dagplugins

PLUGIN_DIST = Path(__file__).parent / "plugin_dist"


@pytest.fixture(scope="session")
def counting_dist() -> str:
    """The third-party distribution, pip-installed into this environment if it is not yet."""
    try:
        return importlib.metadata.version("dagexec-counting")
    except importlib.metadata.PackageNotFoundError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", str(PLUGIN_DIST)], check=True)
        importlib.invalidate_caches()
        return importlib.metadata.version("dagexec-counting")


def write_dag_project(root: Path, dagplugins: str | None, *, sub: str = "") -> Path:
    (root / "pyproject.toml").write_text("[project]\nname='proj'\n")
    where = root / sub if sub else root
    where.mkdir(parents=True, exist_ok=True)
    dag_file = where / "flow.py"
    dag_file.write_text(
        textwrap.dedent(
            """
            from dagexec_core import Dag
            dag = Dag("flow")

            @dag.task
            def a():
                return 1

            @dag.task(deps=["a"])
            def b(a):
                return a + 1
            """
        )
    )
    if dagplugins is not None:
        (root / "dagplugins.py").write_text(textwrap.dedent(dagplugins))
    return dag_file


def load_dag(path: Path) -> Dag:
    from dagexec_core.cli_common import pick_dag

    return pick_dag(str(path))[0]


RECORDING_EXECUTOR = """
    import asyncio, contextvars, functools
    from dagexec_core import hookimpl

    SEEN = []

    class Recorder:
        name = "recorder"
        enforces_timeout = False
        def start(self, loop, concurrency):
            self.loop = loop
        def submit(self, task, kwargs, timeout, context=None):
            SEEN.append(task.name)
            fut = self.loop.create_future()
            fut.set_result(task.fn(**kwargs))
            return fut
        def shutdown(self, cancel=False):
            pass

    @hookimpl
    def dagexec_executor(config):
        return Recorder()
"""


def test_dagplugins_in_a_parent_directory_replaces_the_executor(tmp_path: Path) -> None:
    dag_file = write_dag_project(tmp_path, RECORDING_EXECUTOR, sub="pipelines/daily")
    dag = load_dag(dag_file)
    report = run(dag, persist=False, signals=False)
    assert report.outputs == {"a": 1, "b": 2}
    plugin = next(m for n, m in sys.modules.items() if n.startswith("dagplugins_") and hasattr(m, "SEEN"))
    assert plugin.SEEN[-2:] == ["a", "b"]


def test_nearest_dagplugins_registers_last_and_wins(tmp_path: Path) -> None:
    dag_file = write_dag_project(
        tmp_path,
        """
        from dagexec_core import hookimpl, RetryPolicy
        @hookimpl
        def dagexec_retry_policy(task):
            return RetryPolicy(max_attempts=2, backoff="fixed", base=0)
        """,
        sub="inner",
    )
    (tmp_path / "inner" / "dagplugins.py").write_text(
        "from dagexec_core import hookimpl, RetryPolicy\n"
        "@hookimpl\n"
        "def dagexec_retry_policy(task):\n"
        "    return RetryPolicy(max_attempts=4, backoff='fixed', base=0)\n"
    )
    assert [p.parent.name for p in find_dagplugins(dag_file)] == [tmp_path.name, "inner"]
    dag = Dag("r")

    def boom() -> None:
        raise OSError("down")

    dag.add("t", boom)
    dag.source_file = str(dag_file)
    report = run(dag, persist=False, signals=False)
    assert report.records["t"].attempts == 4


@pytest.mark.parametrize("stage", ["storage", "retry", "breaker", "dead_letter_queue"])
def test_every_provider_stage_can_be_replaced_from_dagplugins(tmp_path: Path, stage: str) -> None:
    plugins = {
        "storage": """
            from dagexec_plugins.memory import MemoryStorage
            from dagexec_core import hookimpl
            class Tagged(MemoryStorage):
                pass
            INSTANCES = []
            @hookimpl
            def dagexec_storage(config):
                s = Tagged(); INSTANCES.append(s); return s
            """,
        "retry": """
            from dagexec_core import hookimpl, RetryPolicy
            INSTANCES = []
            @hookimpl
            def dagexec_retry_policy(task, config):
                INSTANCES.append(task.name)
                return RetryPolicy(max_attempts=3, backoff="fixed", base=0)
            """,
        "breaker": """
            from dagexec_core import hookimpl
            INSTANCES = []
            class Never:
                name = "never"; state = "open"
                def allow(self): return False
                def record_success(self): pass
                def record_failure(self, error): pass
            @hookimpl
            def dagexec_circuit_breaker(name, config):
                INSTANCES.append(name); return Never()
            """,
        "dead_letter_queue": """
            from dagexec_core import hookimpl
            INSTANCES = []
            class ListQueue:
                def push(self, entry): INSTANCES.append(entry); return entry.id
                def list(self, run_id=None): return list(INSTANCES)
                def get(self, entry_id): return next(e for e in INSTANCES if e.id == entry_id)
                def remove(self, entry_id): pass
            @hookimpl
            def dagexec_dead_letter_queue(config, storage):
                return ListQueue()
            """,
    }
    dag_file = write_dag_project(tmp_path, plugins[stage])
    dag = Dag("x")
    dag.source_file = str(dag_file)

    def flaky() -> None:
        raise OSError("down")

    dag.add("t", flaky, breaker="svc" if stage == "breaker" else None)
    report = run(dag, persist=False, signals=False, breaker_max_wait=0.05)
    plugin = next(
        m
        for n, m in sys.modules.items()
        if n.startswith("dagplugins_") and getattr(m, "__file__", "") == str(tmp_path / "dagplugins.py")
    )
    assert plugin.INSTANCES, f"the {stage} stage from dagplugins.py was not used"
    rec = report.records["t"]
    if stage == "retry":
        assert rec.attempts == 3
    if stage == "breaker":
        assert "CircuitOpenError" in (rec.error or "") and plugin.INSTANCES == ["svc"]
    if stage == "dead_letter_queue":
        assert plugin.INSTANCES[0].task == "t" and plugin.INSTANCES[0].error_type.endswith("OSError")


def test_syntax_error_in_dagplugins_names_file_and_line(tmp_path: Path) -> None:
    dag_file = write_dag_project(tmp_path, "x = 1\ndef broken(:\n    pass\n")
    with pytest.raises(PluginLoadError) as info:
        build_plugin_manager(dag_path=dag_file)
    assert f"{tmp_path / 'dagplugins.py'}:2" in str(info.value)


def test_import_error_in_dagplugins_names_file_and_line(tmp_path: Path) -> None:
    dag_file = write_dag_project(tmp_path, "import os\nimport not_a_real_module_xyz\n")
    with pytest.raises(PluginLoadError, match=r"dagplugins.py:2: .*ModuleNotFoundError"):
        build_plugin_manager(dag_path=dag_file)


def test_hook_that_raises_names_the_plugin_and_its_file(tmp_path: Path) -> None:
    dag_file = write_dag_project(
        tmp_path,
        """
        from dagexec_core import hookimpl
        @hookimpl
        def dagexec_task_finished(run, task, record):
            raise RuntimeError("metrics backend unreachable")
        """,
    )
    dag = load_dag(dag_file)
    with pytest.raises(PluginHookError) as info:
        run(dag, persist=False, signals=False)
    msg = str(info.value)
    assert "dagplugins.py:5)" in msg and "dagexec_task_finished" in msg and "metrics backend unreachable" in msg


def test_block_builtin_with_p_no_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = build_plugin_manager(plugin_args=["no:breaker"])
    assert pm.get_plugin("breaker") is None and pm.get_plugin("retry") is not None
    monkeypatch.setenv("DAGEXEC_DISABLED_PLUGINS", "retry, deadletter")
    pm = build_plugin_manager()
    assert pm.get_plugin("retry") is None and pm.get_plugin("deadletter") is None


def test_plugins_named_by_env_and_p_are_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_env_plugin.py").write_text(
        "from dagexec_core import hookimpl\n@hookimpl\ndef dagexec_run_started(run):\n    run.blackboard['env'] = True\n"
    )
    (tmp_path / "my_opt_plugin.py").write_text(
        "from dagexec_core import hookimpl\n@hookimpl\ndef dagexec_run_started(run):\n    run.blackboard['opt'] = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DAGEXEC_PLUGINS", "my_env_plugin")
    pm = build_plugin_manager(plugin_args=["my_opt_plugin"])
    assert pm.infos["my_env_plugin"].source == "option" and pm.get_plugin("my_opt_plugin") is not None
    with pytest.raises(PluginLoadError, match="'nope_plugin'.*ModuleNotFoundError"):
        build_plugin_manager(plugin_args=["nope_plugin"])


def test_third_party_distribution_is_discovered_through_its_entry_point(counting_dist: str, tmp_path: Path) -> None:
    pm = build_plugin_manager()
    info = pm.infos["counting"]
    assert info.source == "entrypoint" and info.version == counting_dist == "1.2.3"
    log = tmp_path / "count.log"
    dag = Dag("tp")
    dag.add("one", lambda: 1)
    dag.add("two", lambda one: one + 1, deps=["one"])
    report = run(dag, persist=False, signals=False, executor="counting", counting_log=str(log))
    assert report.outputs["two"] == 2
    assert log.read_text().split() == ["one", "two"]


def test_autoload_can_be_disabled(counting_dist: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGEXEC_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert build_plugin_manager().get_plugin("counting") is None
    assert build_plugin_manager(plugin_args=["no:counting"]).get_plugin("counting") is None


def test_third_party_cli_flag_and_plugins_listing(counting_dist: str, tmp_path: Path) -> None:
    dag_file = write_dag_project(tmp_path, None)
    log = tmp_path / "cli.log"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagexec_core.cli",
            "run",
            str(dag_file),
            "--no-persist",
            "--executor",
            "counting",
            "--counting-log",
            str(log),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split() == ["a", "b"]
    listing = subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    import json

    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["counting"]["version"] == "1.2.3" and "dagexec_executor" in rows["counting"]["hooks"]
    assert rows["local"]["source"] == "builtin"


def test_broken_entry_point_names_plugin_and_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "site" / "broken_dist-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-dist\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dagexec]\nbroken = broken_plugin_mod\n")
    (tmp_path / "site" / "broken_plugin_mod.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(PluginLoadError) as info:
        build_plugin_manager()
    msg = str(info.value)
    assert "'broken'" in msg and "broken-dist" in msg and "needs libfoo" in msg and "-p no:broken" in msg
    assert build_plugin_manager(plugin_args=["no:broken"]).get_plugin("broken") is None


def test_event_hooks_receive_run_task_and_record(tmp_path: Path) -> None:
    seen: list[tuple[str, Any]] = []

    class Watcher:
        from dagexec_core import hookimpl

        @hookimpl
        def dagexec_run_started(self, run: Any) -> None:
            seen.append(("run_started", run.dag.name))

        @hookimpl
        def dagexec_task_started(self, task: Any, attempt: int) -> None:
            seen.append(("task_started", (task.name, attempt)))

        @hookimpl
        def dagexec_task_finished(self, record: Any) -> None:
            seen.append(("task_finished", (record.name, record.state.value)))

        @hookimpl
        def dagexec_run_finished(self, report: Any) -> None:
            seen.append(("run_finished", report.status))

    dag = Dag("w")
    dag.add("a", lambda: 1)
    run(dag, persist=False, signals=False, plugins=[Watcher()])
    assert seen == [
        ("run_started", "w"),
        ("task_started", ("a", 1)),
        ("task_finished", ("a", "completed")),
        ("run_finished", "completed"),
    ]
