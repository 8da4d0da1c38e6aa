"""Built-in plugins see dagexec through the same door as a third-party plugin: `dagexec_core`'s exports."""

from __future__ import annotations

import ast
from pathlib import Path

import dagexec_core
from dagexec_core import RunView

PLUGINS = Path(__file__).resolve().parent.parent / "src" / "dagexec_plugins"


def _core_imports(path: Path) -> list[tuple[int, str, str]]:
    """Every (line, module, name) ``path`` imports from dagexec_core, at any depth (TYPE_CHECKING, functions)."""
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dagexec_core":
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, "") for a in node.names if a.name.split(".")[0] == "dagexec_core"]
    return found


def test_the_plugin_tree_is_found() -> None:
    files = sorted(p.relative_to(PLUGINS).as_posix() for p in PLUGINS.rglob("*.py"))
    assert "tracing.py" in files and "progress.py" in files and any(f.startswith("dask/") for f in files)


def test_built_in_plugins_import_only_names_dagexec_core_exports() -> None:
    import dagexec_core.testing

    # the two public doors: the package, and its testing kit (for the pytest plugin)
    exported = {"dagexec_core": set(dagexec_core.__all__), "dagexec_core.testing": set(dagexec_core.testing.__all__)}
    wrong = []
    for path in sorted(PLUGINS.rglob("*.py")):
        for line, module, name in _core_imports(path):
            where = f"{path.relative_to(PLUGINS.parent)}:{line}"
            if module not in exported:
                wrong.append(f"{where} imports from {module} (import from dagexec_core instead)")
            elif name and name not in exported[module]:
                wrong.append(f"{where} imports {name}, which {module} does not export")
    assert not wrong, "\n".join(wrong)


def test_the_engine_class_is_not_exported_but_the_run_view_is() -> None:
    assert "Run" not in dagexec_core.__all__
    assert "RunView" in dagexec_core.__all__
    for name in ("Storage", "TaskExecutor", "RecordRow", "UsageError", "PluginError", "PluginHookError", "Config"):
        assert name in dagexec_core.__all__, name
    assert all(hasattr(dagexec_core, name) for name in dagexec_core.__all__)


def test_hooks_receive_an_object_that_keeps_the_run_view_promises(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    class Spy:
        @dagexec_core.hookimpl
        def dagexec_run_started(self, run: RunView) -> None:
            run.set_trace_ids("ab" * 16)
            seen["start"] = (run.run_id, run.dag.name, run.task_count, run.resumed_from, run.record_trace_id)

        @dagexec_core.hookimpl
        def dagexec_task_finished(self, run: RunView, task: dagexec_core.Task) -> None:
            seen[task.name] = (run.counts(), run.output_of(task.name, None), run.last_error(task.name))

    dag = dagexec_core.Dag("door")

    @dag.task
    def one() -> int:
        return 1

    report = dagexec_core.run(dag, state=str(tmp_path / "s.db"), plugins=[Spy()])
    assert seen["start"] == (report.run_id, "door", 1, None, "ab" * 16)
    assert seen["one"] == ({"completed": 1}, 1, None)
    assert report.records["one"].trace_id == "ab" * 16


def test_the_run_view_example_of_hooks_md_runs_as_a_dagplugins_py(tmp_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys

    section = (PLUGINS.parent.parent / "docs" / "hooks.md").read_text().split("## The run plugins see", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S)
    assert example is not None
    (tmp_path / "dagplugins.py").write_text(example.group(1))
    (tmp_path / "flow.py").write_text(
        "from dagexec_core import Dag\ndag = Dag('flow')\ndag.add('a', lambda: 1)\ndag.add('b', lambda a: a, deps=['a'])\n"
    )
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dagexec")), "run", "flow.py", "-q"],
        cwd=tmp_path,
        env=dict(os.environ, DAGEXEC_DISABLE_PLUGIN_AUTOLOAD="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"run \S+: 0 of 2 tasks already done\n", proc.stdout), proc.stdout
