"""Progress: log lines when stderr is a pipe, a live bar on a real terminal, -q and -v."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

DAG_FILE = textwrap.dedent(
    """
    from dagexec_core import Dag

    dag = Dag("report")

    @dag.task
    def fetch():
        return 1

    @dag.task(deps=["fetch"])
    def render(fetch):
        return fetch + 1

    @dag.task(deps=["fetch"])
    def upload():
        raise OSError("bucket missing")

    @dag.task(deps=["upload"])
    def announce():
        return None
    """
)


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return env


def _dag_file(tmp_path: Path) -> Path:
    path = tmp_path / "report.py"
    path.write_text(DAG_FILE)
    return path


def run_piped(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", *args, "run", str(_dag_file(tmp_path)), "--no-persist"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_a_terminal_progress_is_plain_log_lines_on_stderr(tmp_path: Path) -> None:
    proc = run_piped(tmp_path)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[dagexec] ")]
    assert lines[0].startswith("[dagexec] run ") and "of DAG 'report' started: 4 tasks" in lines[0]
    assert "failed: 4/4 done, 0 running, 1 failed" in lines[-1]
    assert "\x1b[" not in proc.stderr  # no terminal control codes in a log file
    assert "task 'fetch' completed" not in proc.stderr
    assert "run " in proc.stdout  # the summary stays on stdout


def test_verbose_adds_a_line_per_task_and_quiet_removes_progress(tmp_path: Path) -> None:
    verbose = run_piped(tmp_path, "-v")
    for line in (
        "task 'fetch' started",
        "task 'fetch' completed in",
        "task 'upload' dead_lettered in",
        "task 'announce' skipped",
    ):
        assert line in verbose.stderr, verbose.stderr
    quiet = run_piped(tmp_path, "-q")
    assert "[dagexec] run" not in quiet.stderr
    assert "[dagexec] task" not in quiet.stderr


def test_progress_off_shows_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagexec_core.cli",
            "run",
            str(_dag_file(tmp_path)),
            "--no-persist",
            "--progress",
            "off",
        ],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "[dagexec] run" not in proc.stderr


def test_on_a_terminal_progress_is_a_live_bar(tmp_path: Path) -> None:
    master, slave = os.openpty()
    env = {**_env(), "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagexec_core.cli", "run", str(_dag_file(tmp_path)), "--no-persist"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:  # keep the terminal buffer from filling up until the child is gone
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    stdout, _ = proc.communicate(timeout=60)
    reader.join(timeout=30)
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 1
    assert "\x1b[" in screen  # drawn with terminal control codes
    assert "report" in screen and "4/4" in screen
    assert "1 failed" in screen and "ETA" in screen
    assert "[dagexec] run" not in screen  # not the log-line fallback
    assert b"run " in stdout


def test_dagexec_resume_reports_progress_and_honours_quiet(tmp_path: Path) -> None:
    import json

    dag_file = _dag_file(tmp_path)
    first = subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", "run", str(dag_file), "--json"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    run_id = json.loads(first.stdout)["run_id"]

    def resume(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagexec_core.cli", *flags, "resume", run_id],
            env=_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    shown = resume()
    assert f"[dagexec] run {run_id} of DAG 'report' resumed: 4 tasks (4 already done)" in shown.stderr, shown.stderr
    assert "[dagexec]" not in resume("-q").stderr
