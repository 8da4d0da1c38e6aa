"""Tracing: one OpenTelemetry span per run, per task and per attempt (off unless asked for).

Tracing is on when one of these is given, in this order:

- the ``tracer_provider`` option (``run(dag, tracer_provider=provider)``):
  spans go to that provider, which the caller owns;
- the ``trace`` option (``--trace otlp|console|none``);
- the standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``,
  ``none``), or ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set; ``OTEL_SDK_DISABLED=true``
  turns it off.

When it is off, the event hooks (`tracing_events.TraceEvents`) are not
registered at all, so the engine does not call them, and OpenTelemetry is not
imported: tracing off costs nothing per task and nothing at start.

Spans follow the OpenTelemetry CI/CD conventions: the run is a pipeline run
(``RUN <dag>``, kind SERVER, ``cicd.pipeline.*``), each task a pipeline task
run (``cicd.pipeline.task.*``), each attempt a child of its task. The attempt
span is current while the task body runs, so spans a body creates are its
children.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagexec_core import TaskState, UsageError, __version__, hookimpl

if TYPE_CHECKING:
    import argparse

    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    from dagexec_core import Config

    from .tracing_events import TraceEvents

# OpenTelemetry is imported when tracing is on (`tracing_events`, the SDK), or
# when a carrier crosses a process: a run with tracing off does not import it.

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


def _attribute_value(value: Any) -> Any:
    """A parameter as a span attribute: str, bool, int and float as they are, anything else as JSON."""
    if isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value, sort_keys=True)


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
# crossing a process boundary (process executor, remote workers)
# ---------------------------------------------------------------------------


def inject_context(context: contextvars.Context | None) -> dict[str, str]:
    """The W3C ``traceparent`` (and baggage) of the span current in ``context``, for another process.

    An executor calls it in the parent with the ``context`` the engine gave
    ``submit``, and sends the dict along with the task; the worker runs the
    body inside `remote_context`. Empty when tracing is off.
    """
    carrier: dict[str, str] = {}
    if context is None or "opentelemetry.context" not in sys.modules:
        return carrier  # nothing in this process imported OpenTelemetry: no span can be current
    from opentelemetry import context as otel_context
    from opentelemetry import propagate

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
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace

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
            from opentelemetry import trace

            provider = build_tracer_provider(exporters)
            owned = True
            # Body code calls trace.get_tracer(...): give it this provider unless the
            # application has set up its own.
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
        from .tracing_events import TraceEvents

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
            from opentelemetry import trace

            made_global = trace.get_tracer_provider() is tracing.provider
            if made_global:
                provider.force_flush()
            else:
                provider.shutdown()
        else:
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush()
