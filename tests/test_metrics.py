"""Metrics: counters and histograms through the OpenTelemetry API, and a real Prometheus endpoint."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from dagexec_core import Dag, PluginError, RetryPolicy, TaskState, run
from dagexec_plugins.metrics import PORT_KEY, MetricsConfigError


def mixed_dag(final: Any = None) -> Dag:
    """a completes; b fails twice (one retry) and is dead-lettered; c is skipped; d runs last."""
    dag = Dag("mixed")

    @dag.task
    def a() -> int:
        return 1

    @dag.task(retry=RetryPolicy(max_attempts=2, base=0.0))
    def b() -> None:
        raise OSError("disk full")

    @dag.task(deps=["b"])
    def c() -> None:
        raise AssertionError("skipped, never run")

    @dag.task(deps=["a", "c"], trigger="all_done")
    def d(ctx: Any) -> Any:
        return final(ctx) if final is not None else None

    return dag


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = list(metric.data.data_points)
    return out


def total(pts: list[Any]) -> float:
    return sum(p.value for p in pts)


def test_counters_and_duration_histogram_match_the_run_report() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    report = run(mixed_dag(), persist=False, meter_provider=provider)
    assert report.records["b"].state is TaskState.DEAD_LETTERED
    m = points(reader)
    assert total(m["dagexec.tasks.started"]) == report.metrics["started"] == 4
    assert total(m["dagexec.tasks.completed"]) == report.metrics["completed"] == 2
    assert total(m["dagexec.tasks.failed"]) == report.metrics["failed"] == 1
    assert total(m["dagexec.tasks.retried"]) == report.metrics["retries"] == 1
    assert total(m["dagexec.tasks.skipped"]) == report.metrics["skipped"] == 1
    assert total(m["dagexec.tasks.dead_lettered"]) == report.metrics["dead_lettered"] == 1
    assert total(m["dagexec.runs.active"]) == 0
    by_task = {p.attributes["cicd.pipeline.task.name"]: p for p in m["dagexec.task.duration"]}
    assert set(by_task) == {"a", "b", "d"}  # the skipped task never ran: no duration
    assert by_task["b"].attributes["cicd.pipeline.task.run.result"] == "failure"
    assert by_task["a"].count == 1
    assert list(by_task["a"].explicit_bounds)[:3] == [0.005, 0.01, 0.025]
    assert by_task["a"].explicit_bounds[-1] == 3600.0
    assert all(p.attributes["cicd.pipeline.name"] == "mixed" for p in m["dagexec.tasks.started"])


def _scrape(ctx: Any) -> str:
    port = ctx.run.config.stash[PORT_KEY]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def test_prometheus_endpoint_serves_the_figures_while_the_run_is_under_way() -> None:
    # The last task scrapes the endpoint over HTTP while the run is still open.
    report = run(mixed_dag(final=_scrape), persist=False, metrics_port=0)
    text = report.outputs["d"]
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(family: str, sample: str) -> float:
        return sum(s.value for s in families[family].samples if s.name == sample)

    assert value("dagexec_tasks_started", "dagexec_tasks_started_total") == 4  # a, b twice, d
    assert value("dagexec_tasks_completed", "dagexec_tasks_completed_total") == 1  # d is still running
    assert value("dagexec_tasks_retried", "dagexec_tasks_retried_total") == 1
    assert value("dagexec_tasks_dead_lettered", "dagexec_tasks_dead_lettered_total") == 1
    assert value("dagexec_tasks_skipped", "dagexec_tasks_skipped_total") == 1
    assert value("dagexec_runs_active", "dagexec_runs_active") == 1
    assert value("dagexec_task_duration_seconds", "dagexec_task_duration_seconds_count") == 2
    buckets = [s.labels["le"] for s in families["dagexec_task_duration_seconds"].samples if s.name.endswith("_bucket")]
    assert "0.005" in buckets and "3600.0" in buckets
    sample = next(
        s for s in families["dagexec_tasks_started"].samples if s.labels.get("cicd_pipeline_task_name") == "b"
    )
    assert sample.value == 2 and sample.labels["cicd_pipeline_name"] == "mixed"


def test_the_endpoint_is_closed_when_the_run_ends() -> None:
    seen: dict[str, int] = {}

    def remember(ctx: Any) -> None:
        seen["port"] = ctx.run.config.stash[PORT_KEY]

    run(mixed_dag(final=remember), persist=False, metrics_port=0)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", seen["port"]), timeout=5):
        pass


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PluginError, match=f"cannot serve Prometheus metrics on 127.0.0.1:{port}") as info:
            run(mixed_dag(), persist=False, metrics_port=port)
    assert isinstance(info.value.__cause__, MetricsConfigError)


def test_metrics_are_off_by_default_and_register_no_event_hook() -> None:
    dag = Dag("probe")

    @dag.task
    def look(ctx: Any) -> list[str]:
        return [impl.plugin_name for impl in ctx.run.hook.dagexec_task_finished.get_hookimpls()]

    assert "metrics.events" not in run(dag, persist=False).outputs["look"]


def test_the_runnable_examples_in_docs_metrics_md_run() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "assert" in b]
    assert blocks, "docs/metrics.md lost its runnable example"
    for code in blocks:
        exec(compile(code, "docs/metrics.md", "exec"), {})


def test_otel_metrics_exporter_prometheus_serves_on_the_port_the_variables_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "0")
    text = run(mixed_dag(final=_scrape), persist=False).outputs["d"]
    assert "dagexec_tasks_started_total" in text


def test_an_unknown_metrics_exporter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "statsd")
    with pytest.raises(PluginError, match="unknown metrics exporter 'statsd'.*otlp, console, prometheus, none"):
        run(mixed_dag(), persist=False)


def test_runs_sharing_a_meter_provider_add_up() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    for _ in range(3):
        run(mixed_dag(), persist=False, meter_provider=provider)
    m = points(reader)
    assert total(m["dagexec.tasks.completed"]) == 6
    assert total(m["dagexec.tasks.started"]) == 12
    assert total(m["dagexec.runs.active"]) == 0
    assert sum(p.count for p in m["dagexec.run.duration"]) == 3
