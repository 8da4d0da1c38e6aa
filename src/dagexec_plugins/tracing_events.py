"""The spans of the tracing plugin: one per run, per task and per attempt.

`tracing.Plugin` registers `TraceEvents` only when tracing is on, and imports
this module (and with it OpenTelemetry) only then.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from dagexec_core import TaskState, hookimpl

from .tracing import (
    _RESULTS,
    ERROR_TYPE,
    EXPORTERS_KEY,
    META_KEY,
    PIPELINE_ACTION,
    PIPELINE_NAME,
    PIPELINE_RESULT,
    PIPELINE_RUN_ID,
    TASK_NAME,
    TASK_RESULT,
    TASK_RUN_ID,
    _attribute_value,
    _error_type,
    _is_timeout,
    _ns,
)

if TYPE_CHECKING:
    from dagexec_core import DeadLetter, RunReport, RunView, Task, TaskRecord


class _RunSpans:
    __slots__ = ("span", "ctx", "recording", "tasks", "task_ctx", "attempts", "dead_letters", "trace_id")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.ctx = trace.set_span_in_context(span)
        #: False when the sampler dropped the run: its task and attempt spans are not made at all.
        self.recording = span.is_recording()
        self.tasks: dict[str, trace.Span] = {}
        self.task_ctx: dict[str, otel_context.Context] = {}
        self.attempts: dict[str, trace.Span] = {}
        self.dead_letters: dict[str, str] = {}
        self.trace_id = format(span.get_span_context().trace_id, "032x")


class TraceEvents:
    """The event hooks that make spans; registered only when tracing is on."""

    def __init__(self, tracer: trace.Tracer, exporters: Sequence[str] = ()) -> None:
        self.tracer = tracer
        self.runs: dict[int, _RunSpans] = {}
        #: Told to worker processes (`inject_context`) so they can export their spans too.
        self.exporters = ",".join(exporters)

    # -- run -------------------------------------------------------------

    def _original_trace(self, run: RunView) -> SpanContext | None:
        """The run span of the first traced invocation of a resumed run, if one was stored."""
        if not run.resumed_from:
            return None
        try:
            stored = run.storage.get_meta(run.run_id, META_KEY)
        except Exception:  # storage without meta support: no link
            return None
        if not isinstance(stored, dict) or not stored.get("trace_id") or not stored.get("span_id"):
            return None
        return SpanContext(
            int(stored["trace_id"], 16),
            int(stored["span_id"], 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )

    @hookimpl
    def dagexec_run_started(self, run: RunView) -> None:
        dag = run.dag.name
        original = self._original_trace(run)
        attributes: dict[str, Any] = {
            PIPELINE_NAME: dag,
            PIPELINE_RUN_ID: run.run_id,
            PIPELINE_ACTION: "RUN",
            "dagexec.task.count": run.task_count,
        }
        if run.resumed_from:
            attributes["dagexec.resumed"] = True
        for key, value in run.run_params.items():  # docs/parameters.md
            attributes[f"dagexec.param.{key}"] = _attribute_value(value)
        parent = None
        if not trace.get_current_span().get_span_context().is_valid and os.environ.get("TRACEPARENT"):
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            parent = TraceContextTextMapPropagator().extract({"traceparent": os.environ["TRACEPARENT"]})
        span = self.tracer.start_span(
            f"RUN {dag}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            links=[Link(original, {"dagexec.link": "resumes"})] if original is not None else None,
        )
        rs = _RunSpans(span)
        self.runs[id(run)] = rs
        if original is None:  # the first traced invocation of this run: later resumes link to it
            sc = span.get_span_context()
            try:
                run.storage.put_meta(
                    run.run_id, META_KEY, {"trace_id": rs.trace_id, "span_id": format(sc.span_id, "016x")}
                )
            except Exception:  # storage without meta support: resumed runs start unlinked traces
                pass
        # this invocation's trace, stored with every record it writes (a resume's differs from run.trace_id);
        # the run's own trace is the first traced invocation's
        run.set_trace_ids(rs.trace_id, run=format(original.trace_id, "032x") if original is not None else None)

    @hookimpl
    def dagexec_run_finished(self, run: RunView, report: RunReport) -> None:
        rs = self.runs.pop(id(run), None)
        if rs is None:
            return
        self._close_leftovers(rs, "cancellation" if report.status == "cancelled" else "error")
        span = rs.span
        failed = report.failed
        status = report.status
        span.set_attribute("dagexec.run.status", status)
        if status == "completed":
            span.set_attribute(PIPELINE_RESULT, "success")
        elif status == "cancelled":
            span.set_attribute(PIPELINE_RESULT, "cancellation")
        else:
            records = report.records
            first = records[failed[0]].error if failed else None
            span.set_attribute(PIPELINE_RESULT, "failure")
            span.set_attribute(ERROR_TYPE, _error_type(first))
            shown = ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
            span.set_status(Status(StatusCode.ERROR, f"{len(failed)} task(s) failed: {shown}"))
        span.end()

    def close_all(self, reason: str) -> None:
        """End the spans of runs that never finished (the run raised)."""
        for rs in self.runs.values():
            self._close_leftovers(rs, "error")
            rs.span.set_attribute(PIPELINE_RESULT, "error")
            rs.span.set_attribute(ERROR_TYPE, "_OTHER")
            rs.span.set_status(Status(StatusCode.ERROR, reason))
            rs.span.end()
        self.runs.clear()

    def _close_leftovers(self, rs: _RunSpans, result: str) -> None:
        for spans in (rs.attempts, rs.tasks):
            for span in spans.values():
                span.set_attribute(TASK_RESULT, result)
                span.end()
            spans.clear()

    # -- tasks -------------------------------------------------------------

    def _task_span(self, rs: _RunSpans, run: RunView, task: Task, start: float | None = None) -> trace.Span:
        name = task.name
        attributes: dict[str, Any] = {
            TASK_NAME: name,
            TASK_RUN_ID: f"{run.run_id}/{name}",
            "dagexec.priority": task.priority,
        }
        if task.breaker is not None:
            attributes["dagexec.breaker.name"] = task.breaker
        span = self.tracer.start_span(name, context=rs.ctx, attributes=attributes, start_time=_ns(start))
        rs.tasks[name] = span
        rs.task_ctx[name] = trace.set_span_in_context(span)
        return span

    @hookimpl
    def dagexec_task_started(self, run: RunView, task: Task, attempt: int) -> None:
        # Runs inside the context the body will run in: attaching here makes
        # the attempt span current for the body, and nothing else.
        rs = self.runs.get(id(run))
        if rs is None:
            return
        if not rs.recording:
            # A run the sampler dropped: spans a body makes hang off the dropped
            # run span, so a parent-based sampler drops them too.
            otel_context.attach(rs.ctx)
            return
        name = task.name
        if name not in rs.tasks:
            self._task_span(rs, run, task)
        attributes: dict[str, Any] = {TASK_NAME: name, "dagexec.attempt": attempt}
        if task.breaker is not None:
            attributes["dagexec.breaker.name"] = task.breaker
            breaker_state = run.breaker_state(task.breaker)
            if breaker_state is not None:
                attributes["dagexec.breaker.state"] = breaker_state
        span = self.tracer.start_span(f"{name} attempt {attempt}", context=rs.task_ctx[name], attributes=attributes)
        rs.attempts[name] = span
        ctx = trace.set_span_in_context(span)
        if self.exporters:
            ctx = otel_context.set_value(EXPORTERS_KEY, self.exporters, ctx)
        otel_context.attach(ctx)
        run.set_trace_ids(rs.trace_id, task=name)

    @hookimpl
    def dagexec_task_retrying(self, run: RunView, task: Task, attempt: int, error: BaseException, delay: float) -> None:
        rs = self.runs.get(id(run))
        if rs is None or not rs.recording:
            return
        span = rs.attempts.pop(task.name, None)
        if span is not None:
            span.set_attribute("dagexec.retry.delay", delay)
            self._fail_span(span, error, "timeout" if _is_timeout(error) else "failure")
            span.end()
        tspan = rs.tasks.get(task.name)
        if tspan is not None:
            tspan.add_event(
                "dagexec.retry",
                {"dagexec.attempt": attempt, "dagexec.retry.delay": delay, ERROR_TYPE: _error_type(error)},
            )

    @hookimpl
    def dagexec_task_dead_lettered(self, run: RunView, task: Task, entry: DeadLetter) -> None:
        rs = self.runs.get(id(run))
        if rs is None or not rs.recording:
            return
        rs.dead_letters[task.name] = entry.id

    @hookimpl
    def dagexec_task_finished(self, run: RunView, task: Task, record: TaskRecord) -> None:
        rs = self.runs.get(id(run))
        if rs is None or not rs.recording:
            return
        name = task.name
        end = _ns(record.finished_at)
        state = record.state
        result = _RESULTS.get(state, "error")
        error: BaseException | str | None = None
        if state is TaskState.FAILED or state is TaskState.DEAD_LETTERED:
            last = run.last_error(name)
            error = last if last is not None else record.error
            if _is_timeout(error):
                result = "timeout"
        attempt = rs.attempts.pop(name, None)
        if attempt is not None:
            attempt.set_attribute(TASK_RESULT, result)
            if error is not None:
                self._fail_span(attempt, error, result)
            attempt.end(end_time=end)
        tspan = rs.tasks.pop(name, None)
        rs.task_ctx.pop(name, None)
        if tspan is None:  # never attempted: skipped, collected map, breaker gave up
            tspan = self._task_span(rs, run, task, start=record.started_at or record.finished_at)
            del rs.tasks[name], rs.task_ctx[name]
        tspan.set_attribute(TASK_RESULT, result)
        tspan.set_attribute("dagexec.attempts", record.attempts)
        dl = rs.dead_letters.pop(name, None)
        if dl is not None:
            tspan.set_attribute("dagexec.dead_letter.id", dl)
        if error is not None:
            tspan.set_attribute(ERROR_TYPE, _error_type(error))
            tspan.set_status(Status(StatusCode.ERROR, str(record.error or error)))
        tspan.end(end_time=end)

    @staticmethod
    def _fail_span(span: trace.Span, error: BaseException | str, result: str) -> None:
        span.set_attribute(TASK_RESULT, result)
        span.set_attribute(ERROR_TYPE, _error_type(error))
        if isinstance(error, BaseException):
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        else:
            span.set_status(Status(StatusCode.ERROR, error))

    # -- breakers ------------------------------------------------------------

    @hookimpl
    def dagexec_breaker_state_changed(self, name: str, old: str, new: str) -> None:
        attributes = {"dagexec.breaker.name": name, "dagexec.breaker.old_state": old, "dagexec.breaker.state": new}
        now = time.time_ns()
        for rs in self.runs.values():
            rs.span.add_event("dagexec.breaker.state_changed", attributes, timestamp=now)
