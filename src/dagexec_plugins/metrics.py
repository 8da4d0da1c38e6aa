"""Metrics: task counters and duration histograms through the OpenTelemetry metrics API.

Off unless asked for, like tracing: with none of the options below, no event
hook is registered and a run pays nothing.

- ``meter_provider`` option (``run(dag, meter_provider=provider)``): record
  into that provider, which the caller owns;
- ``metrics_port`` option (``--metrics-port PORT``): serve Prometheus text on
  ``http://127.0.0.1:PORT/metrics`` while the run lasts (extra ``prometheus``;
  port 0 picks a free port, kept in ``config.stash["dagexec.metrics.port"]``);
- ``OTEL_METRICS_EXPORTER`` = ``otlp`` | ``console`` | ``prometheus``
  (the last one on ``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT``, default
  127.0.0.1:9464).

Instruments (Prometheus names in brackets): ``dagexec.tasks.started``
[``dagexec_tasks_started_total``, one per attempt], ``dagexec.tasks.completed``,
``dagexec.tasks.failed``, ``dagexec.tasks.retried``, ``dagexec.tasks.skipped``,
``dagexec.tasks.dead_lettered``, ``dagexec.tasks.cancelled``,
``dagexec.task.duration`` [``dagexec_task_duration_seconds``, a histogram with
buckets from 5 ms to an hour], ``dagexec.run.duration`` and
``dagexec.runs.active``. Every one carries ``cicd.pipeline.name``; task
figures also ``cicd.pipeline.task.name`` (a mapped task ``fetch[3]`` counts
as ``fetch``, so the label stays low-cardinality).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagexec_core import TaskState, UsageError, __version__, hookimpl

if TYPE_CHECKING:
    import argparse

    # OpenTelemetry is imported only when metrics are on (`MetricEvents`): a run without them never loads it.
    from opentelemetry import metrics

    from dagexec_core import Config, RunReport, RunView, Task, TaskRecord

log = logging.getLogger("dagexec.metrics")

STASH_KEY = "dagexec.metrics"
_PROVIDER_ATTR = "_dagexec_metric_events"
PORT_KEY = "dagexec.metrics.port"
EXPORTERS = ("otlp", "console", "prometheus", "none")

#: Seconds: task bodies range from milliseconds to long batch jobs.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)

_BASE_NAME = re.compile(r"\[\d+\]$")
_FINAL_COUNTER = {
    TaskState.COMPLETED: "completed",
    TaskState.FAILED: "failed",
    TaskState.DEAD_LETTERED: "failed",
    TaskState.SKIPPED: "skipped",
    TaskState.CANCELLED: "cancelled",
}
_RESULTS = {
    TaskState.COMPLETED: "success",
    TaskState.FAILED: "failure",
    TaskState.DEAD_LETTERED: "failure",
    TaskState.SKIPPED: "skip",
    TaskState.CANCELLED: "cancellation",
}


class MetricsConfigError(UsageError):
    """Metrics were asked for but cannot be set up (missing package, port taken)."""


_COUNTERS = (
    ("started", "{attempt}", "Task attempts started"),
    ("completed", "{task}", "Tasks completed"),
    ("failed", "{task}", "Tasks failed for good (dead-lettered ones included)"),
    ("retried", "{attempt}", "Failed attempts that will be retried"),
    ("skipped", "{task}", "Tasks skipped"),
    ("dead_lettered", "{task}", "Tasks pushed to the dead-letter queue"),
    ("cancelled", "{task}", "Tasks cancelled with their run"),
)


class MetricEvents:
    """The event hooks that record metrics; registered only when metrics are on.

    Counters are plain integers bumped on the event loop and reported through
    observable (callback) instruments when a reader collects: an SDK
    ``Counter.add`` costs tens of microseconds, a dict increment a fraction
    of one. Only the duration histogram records through the SDK per task.
    """

    def __init__(self, meter: metrics.Meter) -> None:
        from opentelemetry.metrics import Observation

        self.Observation = Observation
        self.lock = threading.Lock()
        self.counts: dict[str, dict[tuple[str, str], int]] = {name: {} for name, _, _ in _COUNTERS}
        self.active: dict[str, int] = {}
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}
        self._attrs: dict[tuple[str, str], dict[str, str]] = {}
        for name, unit, description in _COUNTERS:
            meter.create_observable_counter(f"dagexec.tasks.{name}", [self._observer(name)], unit, description)
        meter.create_observable_up_down_counter(
            "dagexec.runs.active", [self._observe_active], "{run}", "Runs under way"
        )
        self.duration = meter.create_histogram(
            "dagexec.task.duration",
            "s",
            "Task duration, first attempt start to final state",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.run_duration = meter.create_histogram(
            "dagexec.run.duration", "s", "Run duration", explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS)
        )

    # -- collection (a reader's thread) ----------------------------------------

    def _observer(self, name: str) -> Any:
        counts = self.counts[name]

        observation = self.Observation

        def observe(options: metrics.CallbackOptions) -> list[metrics.Observation]:
            return [
                observation(n, {"cicd.pipeline.name": dag, "cicd.pipeline.task.name": task})
                for (dag, task), n in list(counts.items())
            ]

        return observe

    def _observe_active(self, options: metrics.CallbackOptions) -> list[metrics.Observation]:
        return [self.Observation(n, {"cicd.pipeline.name": dag}) for dag, n in list(self.active.items())]

    # -- events (the event loop) -------------------------------------------------

    def _key(self, run: RunView, task: Task) -> tuple[str, str]:
        key = (run.dag.name, task.name)
        base = self._keys.get(key)
        if base is None:
            base = self._keys[key] = (run.dag.name, _BASE_NAME.sub("", task.name))
        return base

    def _bump(self, name: str, key: tuple[str, str]) -> None:
        counts = self.counts[name]
        with self.lock:  # runs sharing a provider may run on different threads
            counts[key] = counts.get(key, 0) + 1

    @classmethod
    def for_provider(cls, provider: Any) -> MetricEvents:
        """The recorder of ``provider``, made once per provider.

        Observable instruments register their callbacks once per name: a
        second recorder on the same provider would count into the void. So
        runs given the same ``meter_provider`` share one recorder, kept on
        the provider itself.
        """
        events: MetricEvents | None = getattr(provider, _PROVIDER_ATTR, None)
        if events is None:
            events = cls(provider.get_meter("dagexec", __version__))
            try:
                setattr(provider, _PROVIDER_ATTR, events)
            except AttributeError:  # a provider that takes no attributes: one recorder per run
                pass
        return events

    @hookimpl
    def dagexec_run_started(self, run: RunView) -> None:
        with self.lock:
            self.active[run.dag.name] = self.active.get(run.dag.name, 0) + 1

    @hookimpl
    def dagexec_run_finished(self, run: RunView, report: RunReport) -> None:
        with self.lock:
            self.active[run.dag.name] -= 1
        result = {"completed": "success", "cancelled": "cancellation"}.get(report.status, "failure")
        self.run_duration.record(report.duration, {"cicd.pipeline.name": run.dag.name, "cicd.pipeline.result": result})

    @hookimpl
    def dagexec_task_started(self, run: RunView, task: Task) -> None:
        self._bump("started", self._key(run, task))

    @hookimpl
    def dagexec_task_retrying(self, run: RunView, task: Task) -> None:
        self._bump("retried", self._key(run, task))

    @hookimpl
    def dagexec_task_dead_lettered(self, run: RunView, task: Task) -> None:
        self._bump("dead_lettered", self._key(run, task))

    @hookimpl
    def dagexec_task_finished(self, run: RunView, task: Task, record: TaskRecord) -> None:
        key = self._key(run, task)
        state = record.state
        name = _FINAL_COUNTER.get(state)
        if name is not None:
            self._bump(name, key)
        if record.started_at is not None and record.finished_at is not None and state is not TaskState.SKIPPED:
            labels = self._attrs.get((key[0], key[1] + "\0" + state.value))
            if labels is None:
                labels = {
                    "cicd.pipeline.name": key[0],
                    "cicd.pipeline.task.name": key[1],
                    "cicd.pipeline.task.run.result": _RESULTS.get(state, "error"),
                }
                self._attrs[(key[0], key[1] + "\0" + state.value)] = labels
            self.duration.record(record.finished_at - record.started_at, labels)


# ---------------------------------------------------------------------------
# the SDK side: readers and the Prometheus endpoint
# ---------------------------------------------------------------------------


def wanted_exporter(environ: Mapping[str, str] | None = None) -> list[str]:
    """Exporters named by ``OTEL_METRICS_EXPORTER`` (empty: none)."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_METRICS_EXPORTER", "").split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise MetricsConfigError(
            f"unknown metrics exporter {unknown[0]!r} in OTEL_METRICS_EXPORTER; choose from {', '.join(EXPORTERS)}"
        )
    return [n for n in names if n != "none"]


class PrometheusEndpoint:
    """``/metrics`` on 127.0.0.1 from a private registry (no process-global collectors)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError as exc:
            raise MetricsConfigError(
                "--metrics-port needs the Prometheus exporter: pip install 'dagexec[prometheus]'"
            ) from exc
        self.registry = CollectorRegistry(auto_describe=True)
        self.reader = PrometheusMetricReader(registry=self.registry)
        try:
            self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise MetricsConfigError(
                f"cannot serve Prometheus metrics on {host}:{port}: {exc.strerror or exc}; "
                "choose another --metrics-port (0 picks a free one)"
            ) from exc
        self.host = host
        self.port: int = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _sdk_readers(names: Sequence[str], environ: Mapping[str, str]) -> tuple[list[Any], PrometheusEndpoint | None]:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    readers: list[Any] = []
    endpoint = None
    for name in names:
        if name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            except ImportError as exc:
                raise MetricsConfigError("OTLP metrics need the OTLP exporter: pip install 'dagexec[otlp]'") from exc
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        elif name == "prometheus":
            host = environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
            endpoint = PrometheusEndpoint(int(environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")), host)
            readers.append(endpoint.reader)
    return readers, endpoint


class Metrics:
    """What the plugin keeps per configuration (``config.stash[STASH_KEY]``)."""

    def __init__(self, provider: Any, owned: bool, events: MetricEvents, endpoint: PrometheusEndpoint | None) -> None:
        self.provider = provider
        self.owned = owned
        self.events = events
        self.endpoint = endpoint


class Plugin:
    """Decides at configure time whether to record metrics; registers `MetricEvents` only if so."""

    @hookimpl
    def dagexec_addoption(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            dest="metrics_port",
            metavar="PORT",
            help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics during the run (needs dagexec[prometheus])",
        )

    @hookimpl
    def dagexec_configure(self, config: Config) -> None:
        provider = config.getoption("meter_provider")
        owned = False
        endpoint: PrometheusEndpoint | None = None
        if provider is None:
            names = wanted_exporter()
            port = config.getoption("metrics_port")
            if port is not None:
                names = [n for n in names if n != "prometheus"]
            if not names and port is None:
                return
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource

            readers, endpoint = _sdk_readers(names, os.environ)
            if port is not None:
                endpoint = PrometheusEndpoint(int(port))
                readers.append(endpoint.reader)
            resource = Resource.create()
            if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
                resource = resource.merge(Resource({SERVICE_NAME: "dagexec"}))
            provider = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
            owned = True
            if endpoint is not None:
                config.stash[PORT_KEY] = endpoint.port
                log.info("serving Prometheus metrics on http://%s:%d/metrics", endpoint.host, endpoint.port)
        events = MetricEvents.for_provider(provider)
        config.stash[STASH_KEY] = Metrics(provider, owned, events, endpoint)
        config.pluginmanager.register(events, name="metrics.events")

    @hookimpl
    def dagexec_unconfigure(self, config: Config) -> None:
        state: Metrics | None = config.stash.pop(STASH_KEY, None)
        if state is None:
            return
        if config.pluginmanager.is_registered(state.events):
            config.pluginmanager.unregister(state.events)
        if state.owned:
            state.provider.shutdown()  # exports the last figures of periodic readers
        if state.endpoint is not None:
            state.endpoint.close()
