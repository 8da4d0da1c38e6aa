"""Tracing: one OpenTelemetry span per run, per task and per attempt (off unless asked for).

Tracing is on when one of these is given, in this order:

- the ``tracer_provider`` option (``run(dag, tracer_provider=provider)``):
  spans go to that provider, which the caller owns;
- the ``trace`` option (``--trace otlp|console|none``);
- the standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``,
  ``none``), or ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set; ``OTEL_SDK_DISABLED=true``
  turns it off.

When it is off, the event hooks below are not registered at all, so the
engine does not call them: tracing off costs nothing per task.

Spans follow the OpenTelemetry CI/CD conventions: the run is a pipeline run
(``RUN <dag>``, kind SERVER, ``cicd.pipeline.*``), each task a pipeline task
run (``cicd.pipeline.task.*``), each attempt a child of its task. The attempt
span is current while the task body runs, so spans a body creates are its
children.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from dagexec_core import TaskState, UsageError, __version__, hookimpl

if TYPE_CHECKING:
    import argparse

    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    from dagexec_core import Config, DeadLetter, RunReport, RunView, Task, TaskRecord

EXPORTERS = ("otlp", "console", "none")
#: Where the tracing plugin keeps its objects in ``config.stash``.
STASH_KEY = "dagexec.tracing"
#: Run meta key holding the first trace of a run, so a resumed run links to it.
META_KEY = "dagexec.trace"
#: OpenTelemetry context key (and carrier field) naming the exporters, for worker processes.
EXPORTERS_KEY = "dagexec-trace-exporters"

PIPELINE_NAME = "cicd.pipeline.name"
PIPELINE_RUN_ID = "cicd.pipeline.run.id"
PIPELINE_RESULT = "cicd.pipeline.result"
PIPELINE_ACTION = "cicd.pipeline.action.name"
TASK_NAME = "cicd.pipeline.task.name"
TASK_RUN_ID = "cicd.pipeline.task.run.id"
TASK_RESULT = "cicd.pipeline.task.run.result"
ERROR_TYPE = "error.type"

_RESULTS = {
    TaskState.COMPLETED: "success",
    TaskState.FAILED: "failure",
    TaskState.DEAD_LETTERED: "failure",
    TaskState.SKIPPED: "skip",
    TaskState.CANCELLED: "cancellation",
}


class TracingConfigError(UsageError):
    """Tracing was asked for but cannot be set up (unknown exporter, missing package)."""


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1e9)


def _error_type(error: BaseException | str | None) -> str:
    if isinstance(error, BaseException):
        cls = type(error)
        return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    if error:
        head = error.split(":", 1)[0].strip()
        if head and " " not in head:
            return head
    return "_OTHER"


def _is_timeout(error: BaseException | str | None) -> bool:
    if isinstance(error, BaseException):
        return isinstance(error, TimeoutError)
    return bool(error) and _error_type(error) in ("TaskTimeoutError", "TimeoutError")


# ---------------------------------------------------------------------------
# deciding on/off and building the SDK
# ---------------------------------------------------------------------------


def _env_exporters(environ: Mapping[str, str]) -> list[str]:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if names:
        return [n for n in names if n != "none"]
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return ["otlp"]
    return []


def wanted_exporters(option: str | Sequence[str] | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The exporters asked for by the ``trace`` option, else by the OTEL_* variables (empty: off)."""
    environ = os.environ if environ is None else environ
    if option is None or option == "":
        names = _env_exporters(environ)
    else:
        raw = option.split(",") if isinstance(option, str) else list(option)
        names = [n.strip().lower() for n in raw if n.strip()]
        names = [] if "none" in names else names
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"unknown trace exporter {unknown[0]!r} (from --trace/trace= or OTEL_TRACES_EXPORTER); "
            f"choose one of {', '.join(EXPORTERS)}"
        )
    return names


def _otlp_exporter(environ: Mapping[str, str]) -> Any:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError as exc:
            raise TracingConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter: "
                "pip install opentelemetry-exporter-otlp-proto-grpc (or use http/protobuf, port 4318)"
            ) from exc
        return GrpcExporter()
    if protocol != "http/protobuf":
        raise TracingConfigError(
            f"OTLP protocol {protocol!r} is not supported for traces; set OTEL_EXPORTER_OTLP_PROTOCOL "
            "to http/protobuf (Jaeger's port 4318) or grpc"
        )
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise TracingConfigError("tracing to OTLP needs the OTLP exporter: pip install 'dagexec[otlp]'") from exc
    return OTLPSpanExporter()


def build_tracer_provider(exporters: Sequence[str], environ: Mapping[str, str] | None = None) -> SdkTracerProvider:
    """An SDK `TracerProvider` configured from the OTEL_* variables, exporting to ``exporters``.

    ``service.name`` is ``OTEL_SERVICE_NAME`` (or ``OTEL_RESOURCE_ATTRIBUTES``),
    ``dagexec`` when neither sets it. The sampler follows ``OTEL_TRACES_SAMPLER``
    and the batch processor ``OTEL_BSP_*``, as the SDK reads them.
    """
    environ = os.environ if environ is None else environ
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError as exc:  # pragma: no cover - the SDK is a dependency
        raise TracingConfigError("tracing needs the OpenTelemetry SDK: pip install opentelemetry-sdk") from exc
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "dagexec"}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for name in exporters:
        if name == "otlp":
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(environ)))
        elif name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    return provider


# ---------------------------------------------------------------------------
# the span bookkeeping of one run
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# crossing a process boundary (process executor, remote workers)
# ---------------------------------------------------------------------------


def inject_context(context: contextvars.Context | None) -> dict[str, str]:
    """The W3C ``traceparent`` (and baggage) of the span current in ``context``, for another process.

    An executor calls it in the parent with the ``context`` the engine gave
    ``submit``, and sends the dict along with the task; the worker runs the
    body inside `remote_context`. Empty when tracing is off.
    """
    carrier: dict[str, str] = {}
    if context is None:
        return carrier
    context.run(propagate.inject, carrier)
    if carrier:
        exporters = context.run(otel_context.get_value, EXPORTERS_KEY)
        if exporters:
            carrier[EXPORTERS_KEY] = str(exporters)
    return carrier


@contextlib.contextmanager
def remote_context(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """In a worker process: make the parent's attempt span the parent of spans made here.

    The first time, a worker whose parent built its own exporter (``--trace``,
    OTEL_* variables) builds the same one from its inherited environment and
    makes it global, so ``trace.get_tracer(...)`` in a task body exports;
    spans are flushed after each body, since a worker can be killed at any
    time. With no carrier (tracing off) this does nothing.
    """
    if not carrier:
        yield
        return
    provider: Any = trace.get_tracer_provider()
    exporters = [n for n in carrier.get(EXPORTERS_KEY, "").split(",") if n]
    if exporters and isinstance(provider, trace.ProxyTracerProvider):
        provider = build_tracer_provider(exporters)
        trace.set_tracer_provider(provider)
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()


# ---------------------------------------------------------------------------
# the always-registered plugin: options and the on/off decision
# ---------------------------------------------------------------------------


class Tracing:
    """What the plugin keeps per configuration (``config.stash[STASH_KEY]``)."""

    def __init__(self, provider: Any, owned: bool, events: TraceEvents) -> None:
        self.provider = provider
        self.owned = owned
        self.events = events


class Plugin:
    """Decides at configure time whether to trace; registers `TraceEvents` only if so."""

    @hookimpl
    def dagexec_addoption(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--trace",
            choices=EXPORTERS,
            default=None,
            dest="trace",
            help="export OpenTelemetry spans: otlp (OTEL_EXPORTER_OTLP_* variables), console (stderr) or none; "
            "default: on when OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT is set",
        )

    @hookimpl
    def dagexec_configure(self, config: Config) -> None:
        provider = config.getoption("tracer_provider")
        owned = False
        exporters: list[str] = []
        if provider is None:
            exporters = wanted_exporters(config.getoption("trace"))
            if not exporters:
                return
            provider = build_tracer_provider(exporters)
            owned = True
            # Body code calls trace.get_tracer(...): give it this provider unless the
            # application has set up its own.
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
        events = TraceEvents(provider.get_tracer("dagexec", __version__), exporters if owned else ())
        config.stash[STASH_KEY] = Tracing(provider, owned, events)
        config.pluginmanager.register(events, name="tracing.events")

    @hookimpl
    def dagexec_unconfigure(self, config: Config) -> None:
        tracing: Tracing | None = config.stash.pop(STASH_KEY, None)
        if tracing is None:
            return
        tracing.events.close_all("the run ended without finishing (it raised)")
        if config.pluginmanager.is_registered(tracing.events):
            config.pluginmanager.unregister(tracing.events)
        provider: Any = tracing.provider
        if tracing.owned:
            # Deliver every span before the CLI exits. A provider made global
            # stays usable for later runs in this process; a private one is done.
            made_global = trace.get_tracer_provider() is tracing.provider
            if made_global:
                provider.force_flush()
            else:
                provider.shutdown()
        else:
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush()
