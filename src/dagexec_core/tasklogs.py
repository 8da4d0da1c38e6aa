"""Task logs: what each attempt logs through ``ctx.log`` (and prints, with ``--capture``), bounded, kept with the run.

An attempt's records are collected in memory (`AttemptLog`, at most
``log_max_lines`` lines and ``log_max_bytes`` bytes, the oldest dropped and
counted beyond that) and handed to storage (the optional
``Storage.write_logs``) in the scheduler step that ends the attempt. A task
that never touches ``ctx.log`` costs nothing: the attempt's log is routed
(a context variable, `CURRENT`) only when ``ctx.log`` is first read, or, with
``capture``, when the attempt is submitted.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

#: The log of the attempt whose body is running in this context (a task's thread or asyncio task).
CURRENT: contextvars.ContextVar[AttemptLog | None] = contextvars.ContextVar("dagexec_attempt_log", default=None)

#: One finished attempt's log, as `Storage.write_logs` receives it:
#: ``(task, attempt, records_json, lines, dropped)``; ``records_json`` is a JSON list of
#: ``[at, level, message, trace_id, span_id]``, ``lines`` how many it holds, ``dropped`` how many
#: older records the cap left out.
LogRow = tuple[str, int, str, int, int]

#: Bytes a record costs besides its message, for the cap (time, level, ids).
_RECORD_OVERHEAD = 32
TASK_LOGGER = "dagexec.task"


def _span_ids() -> tuple[str | None, str | None]:
    """The OpenTelemetry trace and span of the running attempt, when tracing is loaded (core never imports it)."""
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return None, None
    sc = otel.get_current_span().get_span_context()
    if not sc.is_valid:
        return None, None
    return format(sc.trace_id, "032x"), format(sc.span_id, "016x")


class AttemptLog:
    """The records of one attempt of one task: the newest within the caps, and how many older were dropped."""

    __slots__ = (
        "task",
        "attempt",
        "level",
        "max_bytes",
        "max_lines",
        "records",
        "size",
        "dropped",
        "lock",
        "partial",
        "capture",
    )

    def __init__(self, task: str, attempt: int, level: int, max_bytes: int, max_lines: int) -> None:
        self.task = task
        self.attempt = attempt
        self.level = level
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        self.records: deque[list[Any]] = deque()
        self.size = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.partial: dict[str, str] = {}  # stream level -> text printed after its last newline
        self.capture = False  # printed text goes here too (--capture)

    def add(self, level: str, text: str) -> None:
        if len(text) > self.max_bytes:
            text = text[: self.max_bytes] + f"... [{len(text) - self.max_bytes} characters cut]"
        trace_id, span_id = _span_ids()
        record = [round(time.time(), 6), level, text, trace_id, span_id]
        cost = len(text) + _RECORD_OVERHEAD
        with self.lock:
            records = self.records
            records.append(record)
            self.size += cost
            while len(records) > 1 and (self.size > self.max_bytes or len(records) > self.max_lines):
                old = records.popleft()
                self.size -= len(old[2]) + _RECORD_OVERHEAD
                self.dropped += 1

    def write_stream(self, level: str, text: str) -> None:
        """Text printed to stdout/stderr: one record per line."""
        with self.lock:
            text = self.partial.pop(level, "") + text
            lines = text.split("\n")
            if lines[-1]:
                self.partial[level] = lines[-1]
        for line in lines[:-1]:
            self.add(level, line)

    def row(self) -> LogRow | None:
        for level, text in list(self.partial.items()):
            del self.partial[level]
            self.add(level, text)
        if not self.records and not self.dropped:
            return None
        records = list(self.records)
        return (self.task, self.attempt, json.dumps(records), len(records), self.dropped)


class RunLogs:
    """The task logs of one run: the attempts in flight and the rows waiting for the next step's write."""

    def __init__(self, storage: Any, run_id: str, *, level: int, max_bytes: int, max_lines: int, capture: bool) -> None:
        self.storage = storage
        self.run_id = run_id
        self.level = level
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        self.capture = capture
        #: task name -> the log of its attempt in flight (the engine checks it is non-empty before `close`)
        self.open: dict[str, AttemptLog] = {}
        self.rows: list[LogRow] = []
        #: task name -> its last attempt whose log was closed
        self.closed: dict[str, int] = {}

    def attempt(self, task: str, attempt: int) -> AttemptLog:
        log = self.open.get(task)
        if log is not None and log.attempt == attempt:
            return log
        log = AttemptLog(task, attempt, self.level, self.max_bytes, self.max_lines)
        newer = self.open.get(task)
        if attempt > self.closed.get(task, 0) and (newer is None or newer.attempt < attempt):
            self.open[task] = log
        # else: a thread abandoned by an attempt that already ended (a timeout) logs into a log kept nowhere
        return log

    def route(self, context: contextvars.Context | None, task: str, attempt: int) -> contextvars.Context:
        """``context`` (a fresh copy when None) with `CURRENT` set to this attempt's log (``--capture``)."""
        if context is None:
            context = contextvars.copy_context()
        context.run(CURRENT.set, self.attempt(task, attempt))
        return context

    def close(self, task: str) -> None:
        """The attempt of ``task`` in flight ended: its log goes out with this step's write."""
        log = self.open.pop(task, None)
        if log is None:
            return
        self.closed[task] = log.attempt
        row = log.row()
        if row is not None:
            self.rows.append(row)

    def flush(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            self.storage.write_logs(self.run_id, rows)


#: Lines of the failing attempt's log a dead-letter entry shows, and their width.
TAIL_LINES = 20
TAIL_WIDTH = 300


# ---------------------------------------------------------------------------
# routing log records and printed text to the attempt
# ---------------------------------------------------------------------------


class _Handler(logging.Handler):
    """On the ``dagexec.task`` logger: keep each record in its attempt's log, then pass it on as before."""

    def emit(self, record: logging.LogRecord) -> None:
        log = CURRENT.get()
        if log is not None and record.levelno >= log.level:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            log.add(record.levelname, text)
        parent = logging.getLogger("dagexec")
        if record.levelno >= parent.getEffectiveLevel():  # what -v/-q show on stderr, unchanged
            parent.handle(record)


class _Stream(io.TextIOBase):
    """sys.stdout / sys.stderr while runs capture: a task's text goes to its attempt's log, the rest through."""

    def __init__(self, real: TextIO, level: str) -> None:
        self.real = real
        self.level = level

    def write(self, text: str) -> int:
        log = CURRENT.get()
        if log is None or not log.capture:
            return self.real.write(text)
        log.write_stream(self.level, text)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return self.real.isatty()

    def fileno(self) -> int:
        return self.real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.real.encoding

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _Installed:
    """What runs in this process have changed in `logging` and `sys`, restored when the last one ends."""

    lock = threading.Lock()
    runs = 0
    captures = 0
    handler: _Handler | None = None
    saved: tuple[int, bool] = (logging.NOTSET, True)
    streams: tuple[TextIO, TextIO] | None = None


def start(run: Any) -> RunLogs | None:
    """Keep the task logs of ``run`` when its storage can (``write_logs``); None otherwise."""
    storage = run.storage
    if not getattr(run, "persist", False) or getattr(storage, "write_logs", None) is None:
        return None
    cfg = run.config
    level = logging.getLevelName(str(cfg.getoption("log_level", "INFO")).upper())
    if not isinstance(level, int):
        from .errors import UsageError

        raise UsageError(f"log_level {cfg.getoption('log_level')!r} is not a level: DEBUG, INFO, WARNING or ERROR")
    logs = RunLogs(
        storage,
        run.run_id,
        level=level,
        max_bytes=int(cfg.getoption("log_max_bytes", 1_000_000)),
        max_lines=int(cfg.getoption("log_max_lines", 10_000)),
        capture=bool(cfg.getoption("capture", False)),
    )
    with _Installed.lock:
        if _Installed.runs == 0:
            task_logger = logging.getLogger(TASK_LOGGER)
            _Installed.saved = (task_logger.level, task_logger.propagate)
            _Installed.handler = _Handler()
            task_logger.addHandler(_Installed.handler)
            task_logger.propagate = False
        _Installed.runs += 1
        task_logger = logging.getLogger(TASK_LOGGER)
        shown = logging.getLogger("dagexec").getEffectiveLevel()
        task_logger.setLevel(min(level, shown, task_logger.getEffectiveLevel()))
        if logs.capture:
            if _Installed.captures == 0:
                _Installed.streams = (sys.stdout, sys.stderr)
                sys.stdout = _Stream(sys.stdout, "STDOUT")
                sys.stderr = _Stream(sys.stderr, "STDERR")
            _Installed.captures += 1
    return logs


def finish(logs: RunLogs | None) -> None:
    """The run ends: write the logs of attempts still open (cancelled, abandoned)."""
    if logs is None:
        return
    for task in list(logs.open):
        logs.close(task)
    logs.flush()


def tail_text(logs: RunLogs | None, task: str, attempt: int) -> str:
    """The last lines ``task`` logged in ``attempt``, for its dead-letter entry ("" when none).

    The attempt ended in the step that fails the task, so its log is among the rows that step writes.
    """
    if logs is None:
        return ""
    for row in reversed(logs.rows):
        if row[0] == task and row[1] == attempt:
            lines = [f"{r[1]} {r[2]}" for r in json.loads(row[2])[-TAIL_LINES:]]
            lines = [ln if len(ln) <= TAIL_WIDTH else ln[: TAIL_WIDTH - 3] + "..." for ln in lines]
            return f"\nlast {len(lines)} log line(s) of attempt {attempt}:\n" + "\n".join(lines) + "\n"
    return ""


def stop(logs: RunLogs | None) -> None:
    """Undo `start` (when the last run of this process that kept logs ends)."""
    if logs is None:
        return
    with _Installed.lock:
        if logs.capture:
            _Installed.captures -= 1
            if _Installed.captures == 0 and _Installed.streams is not None:
                sys.stdout, sys.stderr = _Installed.streams
                _Installed.streams = None
        _Installed.runs -= 1
        if _Installed.runs == 0:
            task_logger = logging.getLogger(TASK_LOGGER)
            if _Installed.handler is not None:
                task_logger.removeHandler(_Installed.handler)
                _Installed.handler = None
            task_logger.setLevel(_Installed.saved[0])
            task_logger.propagate = _Installed.saved[1]


def route_ctx(run: Any, task: str, attempt: int) -> None:
    """``ctx.log`` was read in an attempt's body: route its records to the attempt's log."""
    logs: RunLogs | None = getattr(run, "task_logs", None)
    if logs is not None and CURRENT.get() is None:
        CURRENT.set(logs.attempt(task, attempt))


def route_capture(logs: RunLogs, context: contextvars.Context | None, task: str, attempt: int) -> contextvars.Context:
    """With ``capture``: the attempt's body runs in ``context`` with its prints going to its log."""
    context = logs.route(context, task, attempt)
    logs.open[task].capture = True
    return context


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


def format_entry(
    task: str, attempt: int, records: Sequence[Sequence[Any]], dropped: int, state: str | None = None
) -> str:
    """One attempt's log as `dagexec logs` prints it: a heading, then one line per record."""
    what = f" ({state})" if state else ""
    lines = [
        f"== {task} attempt {attempt}{what}: {len(records)} line(s)"
        + (f", {dropped} older dropped" if dropped else "")
        + " =="
    ]
    for at, level, text, trace_id, span_id in records:
        when = datetime.fromtimestamp(at).astimezone().strftime("%H:%M:%S.%f")[:-3]
        ids = f" [trace {trace_id} span {span_id}]" if trace_id else ""
        for k, part in enumerate(str(text).split("\n")):
            lines.append(f"{when} {level:<7} {part}{ids}" if k == 0 else f"{'':>20}{part}")
    return "\n".join(lines)


def line_counts(entries: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Task -> lines logged over all its attempts (kept and dropped), for `dagexec show`."""
    out: dict[str, int] = {}
    for e in entries:
        out[e["task"]] = out.get(e["task"], 0) + int(e["lines"]) + int(e["dropped"])
    return out
