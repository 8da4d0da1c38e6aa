"""Progress of ``dagexec run``: a live bar on a terminal, plain log lines otherwise.

Only the CLI turns it on (its ``--progress`` flag defaults to ``auto``); a
library call to `run()` shows nothing unless given ``progress="bar"`` or
``"log"``. ``auto`` is a bar (rich, extra ``progress``) when stderr is a
terminal, log lines otherwise. ``-q`` hides it; ``-v`` adds a line per task.

Log lines, for CI logs and files: one when the run starts, one every
``progress_interval`` seconds (default 5) with done/total, running, failed and
ETA, one when it ends; with ``-v`` one per task attempt and result. Failures
are logged by the engine itself, so they are not repeated here.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from dagexec_core import FAILED_STATES, TERMINAL_STATES, TaskState, UsageError, hookimpl

if TYPE_CHECKING:
    import argparse

    from dagexec_core import Config, RunReport, RunView, Task, TaskRecord

MODES = ("auto", "bar", "log", "off")


def _eta(elapsed: float, done: int, total: int) -> str:
    if done == 0 or done >= total:
        return "-" if done < total else "0s"
    return _seconds(elapsed / done * (total - done))


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.0f}s" if s >= 1 else f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class _Counts:
    __slots__ = ("done", "base", "total", "failed", "started_at")

    def __init__(self, run: RunView) -> None:
        counts = {TaskState(state): n for state, n in run.counts().items()}
        self.done = sum(n for s, n in counts.items() if s in TERMINAL_STATES)
        self.base = self.done  # done before this invocation (resume): not part of the rate
        self.failed = sum(n for s, n in counts.items() if s in FAILED_STATES)
        self.total = run.task_count
        self.started_at = time.monotonic()

    def finished(self, run: RunView, state: TaskState) -> None:
        self.done += 1
        self.total = run.task_count  # dag.map adds tasks as it goes
        if state in FAILED_STATES:
            self.failed += 1


class LogProgress:
    """Plain lines on a stream (stderr when it is not a terminal)."""

    def __init__(self, stream: TextIO, verbosity: int, interval: float) -> None:
        self.stream = stream
        self.verbosity = verbosity
        self.interval = interval
        self.runs: dict[int, _Counts] = {}
        self.next_line = 0.0

    def _line(self, text: str) -> None:
        self.stream.write(f"[dagexec] {text}\n")
        self.stream.flush()

    def _status(self, c: _Counts, run: RunView) -> str:
        elapsed = time.monotonic() - c.started_at
        return (
            f"{c.done}/{c.total} done, {run.running} running, {c.failed} failed, "
            f"{_seconds(elapsed)} elapsed, ETA {_eta(elapsed, c.done - c.base, c.total - c.base)}"
        )

    @hookimpl
    def dagexec_run_started(self, run: RunView) -> None:
        c = _Counts(run)
        self.runs[id(run)] = c
        verb = "resumed" if run.resumed_from else "started"
        already = f" ({c.done} already done)" if c.done else ""
        self._line(f"run {run.run_id} of DAG {run.dag.name!r} {verb}: {c.total} tasks{already}")
        self.next_line = time.monotonic() + self.interval

    @hookimpl
    def dagexec_task_started(self, run: RunView, task: Task, attempt: int) -> None:
        if self.verbosity > 0:
            again = f" (attempt {attempt})" if attempt > 1 else ""
            self._line(f"task {task.name!r} started{again}")

    @hookimpl
    def dagexec_task_finished(self, run: RunView, task: Task, record: TaskRecord) -> None:
        c = self.runs.get(id(run))
        if c is None:
            return
        c.finished(run, record.state)
        if self.verbosity > 0:
            took = ""
            if record.started_at is not None and record.finished_at is not None:
                took = f" in {_seconds(record.finished_at - record.started_at)}"
            self._line(f"task {task.name!r} {record.state.value}{took}")
        now = time.monotonic()
        if now >= self.next_line:
            self.next_line = now + self.interval
            self._line(self._status(c, run))

    @hookimpl
    def dagexec_run_finished(self, run: RunView, report: RunReport) -> None:
        c = self.runs.pop(id(run), None)
        if c is None:
            return
        self._line(f"run {run.run_id} {report.status}: {self._status(c, run)}")


class BarProgress:
    """A rich progress bar on stderr: done/total, running, failed, elapsed, ETA."""

    def __init__(self, stream: TextIO, verbosity: int) -> None:
        try:
            from rich.console import Console
        except ImportError as exc:
            raise UsageError(
                "a progress bar needs rich: pip install 'dagexec[progress]' (or use --progress log)"
            ) from exc
        self.console = Console(file=stream, stderr=stream is sys.stderr)
        self.verbosity = verbosity
        self.bars: dict[int, tuple[Any, Any, _Counts]] = {}
        self.swapped: list[tuple[logging.StreamHandler[Any], Any]] = []

    def _start(self, run: RunView, c: _Counts) -> tuple[Any, Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[running]} running"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        bar = progress.add_task(run.dag.name, total=c.total, completed=c.done, running=0, failed=c.failed)
        progress.start()
        # Log records (the engine's failure lines) go above the bar, not through it.
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler and handler.stream is self.console.file:
                self.swapped.append((handler, handler.stream))
                handler.setStream(_ConsoleWriter(self.console))
        return progress, bar

    @hookimpl
    def dagexec_run_started(self, run: RunView) -> None:
        c = _Counts(run)
        progress, bar = self._start(run, c)
        self.bars[id(run)] = (progress, bar, c)

    @hookimpl
    def dagexec_task_started(self, run: RunView, task: Task, attempt: int) -> None:
        entry = self.bars.get(id(run))
        if entry is None:
            return
        progress, bar, _ = entry
        progress.update(bar, running=run.running)
        if self.verbosity > 0:
            again = f" (attempt {attempt})" if attempt > 1 else ""
            progress.console.print(f"[dim]started[/] {task.name}{again}", highlight=False)

    @hookimpl
    def dagexec_task_finished(self, run: RunView, task: Task, record: TaskRecord) -> None:
        entry = self.bars.get(id(run))
        if entry is None:
            return
        progress, bar, c = entry
        c.finished(run, record.state)
        progress.update(bar, completed=c.done, total=c.total, running=run.running, failed=c.failed)
        if self.verbosity > 0:
            colour = {"completed": "green", "skipped": "yellow"}.get(record.state.value, "red")
            progress.console.print(f"[{colour}]{record.state.value}[/] {task.name}", highlight=False)

    @hookimpl
    def dagexec_run_finished(self, run: RunView, report: RunReport) -> None:
        entry = self.bars.pop(id(run), None)
        if entry is None:
            return
        progress, bar, c = entry
        progress.update(bar, completed=c.done, total=c.total, running=0, failed=c.failed)
        self.stop(progress)

    def stop(self, progress: Any) -> None:
        progress.stop()
        for handler, stream in self.swapped:
            handler.setStream(stream)
        self.swapped.clear()

    def close_all(self) -> None:
        for progress, _, _ in self.bars.values():
            self.stop(progress)
        self.bars.clear()


class _ConsoleWriter:
    """A file-like object printing through a rich console, so lines land above a live bar."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def write(self, text: str) -> int:
        if text.strip():
            self.console.print(text.rstrip("\n"), markup=False, highlight=False)
        return len(text)

    def flush(self) -> None:
        pass


class Plugin:
    """Registers a bar or log-line reporter when the ``progress`` option asks for one."""

    @hookimpl
    def dagexec_addoption(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--progress",
            choices=MODES,
            default=None,  # the command line's default is auto (CLI_DEFAULTS); run()'s is off
            dest="progress",
            help="show progress on stderr: a live bar (auto on a terminal), log lines (auto otherwise) or off "
            "(default: auto)",
        )

    @hookimpl
    def dagexec_configure(self, config: Config) -> None:
        mode = config.getoption("progress") or "off"
        verbosity = int(config.getoption("verbosity", 0) or 0)
        if mode not in MODES:
            raise UsageError(f"progress={mode!r}: choose one of {', '.join(MODES)}")
        if mode == "off" or verbosity < 0:
            return
        stream = sys.stderr
        if mode == "auto":
            mode = "bar" if stream.isatty() and _has_rich() else "log"
        reporter: LogProgress | BarProgress
        if mode == "bar":
            reporter = BarProgress(stream, verbosity)
        else:
            reporter = LogProgress(stream, verbosity, float(config.getoption("progress_interval", 5.0)))
        config.stash["dagexec.progress"] = reporter
        config.pluginmanager.register(reporter, name="progress.events")

    @hookimpl
    def dagexec_unconfigure(self, config: Config) -> None:
        reporter = config.stash.pop("dagexec.progress", None)
        if reporter is None:
            return
        if isinstance(reporter, BarProgress):
            reporter.close_all()  # a run that raised must not leave the terminal in live mode
        if config.pluginmanager.is_registered(reporter):
            config.pluginmanager.unregister(reporter)


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
