"""End to end: ``dagexec run`` in a subprocess, configured only by OTEL_* variables, delivers its spans."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otlp_receiver import otlp_receiver, reset_global_tracer_provider

STATUS_ERROR = Status.STATUS_CODE_ERROR
KIND_SERVER = Span.SPAN_KIND_SERVER

DAG_FILE = textwrap.dedent(
    """
    from opentelemetry import trace
    from dagexec_core import Dag, RetryPolicy

    dag = Dag("nightly")
    calls = []

    @dag.task
    def extract():
        # the tracer the application would use: the CLI made dagexec's provider global
        with trace.get_tracer("nightly.etl").start_as_current_span("query warehouse"):
            return [1, 2, 3]

    @dag.task(deps=["extract"], retry=RetryPolicy(max_attempts=2, base=0.0))
    async def load(extract):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("warehouse hung up")
        return len(extract)

    @dag.task(deps=["load"])
    def notify():
        raise PermissionError("webhook refused")
    """
)


def run_cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    dag_file = tmp_path / "nightly.py"
    dag_file.write_text(DAG_FILE)
    src = str(Path(__file__).resolve().parents[1] / "src")
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base["PYTHONPATH"] = os.pathsep.join([src, base.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "dagexec_core.cli", "run", str(dag_file), "--no-persist", *args],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_run_with_only_otel_variables_delivers_the_span_tree_over_otlp_http_gzip(tmp_path: Path) -> None:
    with otlp_receiver() as (endpoint, received):
        proc = run_cli(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                "OTEL_SERVICE_NAME": "nightly-etl",
            },
        )
        assert proc.returncode == 1, proc.stderr  # notify fails on purpose
        spans = received.by_name()
    assert received.encodings and set(received.encodings) == {"gzip"}
    assert set(spans) == {
        "RUN nightly",
        "extract",
        "extract attempt 1",
        "query warehouse",
        "load",
        "load attempt 1",
        "load attempt 2",
        "notify",
        "notify attempt 1",
    }
    root = spans["RUN nightly"]
    assert root["parent_span_id"] == "" and root["kind"] == KIND_SERVER
    assert root["resource"]["service.name"] == "nightly-etl"
    assert root["attributes"]["cicd.pipeline.name"] == "nightly"
    assert root["attributes"]["cicd.pipeline.result"] == "failure"
    assert root["status"] == STATUS_ERROR
    assert {s["trace_id"] for s in spans.values()} == {root["trace_id"]}
    assert spans["query warehouse"]["parent_span_id"] == spans["extract attempt 1"]["span_id"]
    assert spans["load attempt 1"]["status"] == STATUS_ERROR
    assert spans["load attempt 1"]["attributes"]["error.type"] == "ConnectionResetError"
    assert spans["load attempt 2"]["status"] != STATUS_ERROR
    assert spans["load"]["status"] != STATUS_ERROR
    assert spans["load"]["attributes"]["cicd.pipeline.task.run.result"] == "success"
    assert spans["notify"]["status"] == STATUS_ERROR
    assert spans["notify"]["status_message"] == "PermissionError: webhook refused"
    assert spans["notify"]["attributes"]["cicd.pipeline.task.run.result"] == "failure"


def test_cli_trace_console_prints_spans_to_stderr_and_trace_none_wins_over_variables(tmp_path: Path) -> None:
    shown = run_cli(tmp_path, {}, "--trace", "console")
    assert '"name": "RUN nightly"' in shown.stderr
    assert '"name": "RUN nightly"' not in shown.stdout
    with otlp_receiver() as (endpoint, received):
        quiet = run_cli(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, "--trace", "none")
        assert quiet.returncode == 1, quiet.stderr
        assert received.spans == []


def test_a_worker_process_given_the_carrier_exports_spans_under_the_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextvars
    import multiprocessing

    from dagexec_core import Dag, run
    from dagexec_plugins.tracing import inject_context
    from trace_worker import work_in_child

    dag = Dag("crossing")

    @dag.task
    def spawn_worker() -> dict[str, str]:
        carrier = inject_context(contextvars.copy_context())
        child = multiprocessing.get_context("spawn").Process(target=work_in_child, args=(carrier,))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        return carrier

    with otlp_receiver() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)  # inherited by the worker
        try:
            report = run(dag, persist=False)
        finally:
            reset_global_tracer_provider()
        spans = received.by_name()
    assert report.ok, report.records["spawn_worker"].error
    carrier = report.outputs["spawn_worker"]
    assert carrier["dagexec-trace-exporters"] == "otlp" and carrier["traceparent"].startswith("00-")
    attempt = spans["spawn_worker attempt 1"]
    assert spans["in worker"]["parent_span_id"] == attempt["span_id"]
    assert spans["in worker"]["trace_id"] == attempt["trace_id"]
    assert spans["in worker"]["scope"] == "worker"


def test_without_tracing_the_carrier_is_empty_and_the_worker_side_does_nothing() -> None:
    import contextvars

    from dagexec_plugins.tracing import inject_context, remote_context

    assert inject_context(contextvars.copy_context()) == {}
    assert inject_context(None) == {}
    with remote_context({}):
        pass


PROCESS_DAG_FILE = textwrap.dedent(
    """
    import multiprocessing
    from opentelemetry import trace
    from dagexec_core import Dag

    dag = Dag("crunch")

    def crunch():
        with trace.get_tracer("crunch.worker").start_as_current_span("crunch numbers") as span:
            span.set_attribute("process.name", multiprocessing.current_process().name)
        return 42

    dag.add("crunch", crunch)
    """
)


def test_cli_process_executor_worker_spans_reach_the_receiver_under_their_attempt(tmp_path: Path) -> None:
    dag_file = tmp_path / "crunch.py"
    dag_file.write_text(PROCESS_DAG_FILE)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    with otlp_receiver() as (endpoint, received):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "dagexec_core.cli",
                "run",
                str(dag_file),
                "--no-persist",
                "--json",
                "--executor",
                "process",
                "--progress",
                "off",
            ],
            env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        spans = received.by_name()
    inner, attempt = spans["crunch numbers"], spans["crunch attempt 1"]
    assert inner["attributes"]["process.name"] == "dagexec-process-worker"  # made in the worker process
    assert inner["parent_span_id"] == attempt["span_id"] and inner["trace_id"] == attempt["trace_id"]
    assert inner["resource"]["service.name"] == "dagexec"


def test_dask_worker_process_spans_reach_the_receiver_under_their_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    from dagexec_core import Dag, run
    from trace_worker import span_in_worker

    dag = Dag("on_dask")
    dag.add("remote", span_in_worker)
    with otlp_receiver() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)  # inherited by the worker processes
        try:
            report = run(dag, persist=False, signals=False, executor="dask", dask_workers=1)
        finally:
            reset_global_tracer_provider()
        spans = received.by_name()
    assert report.ok, report.records["remote"].error
    inner, attempt = spans["in dask worker"], spans["remote attempt 1"]
    assert inner["attributes"]["process.name"] != "MainProcess"
    assert inner["parent_span_id"] == attempt["span_id"] and inner["trace_id"] == attempt["trace_id"]


RESUMABLE_DAG_FILE = textwrap.dedent(
    """
    import asyncio, pathlib
    from dagexec_core import Dag

    dag = Dag("resumable")
    MARK = pathlib.Path(__file__).with_name("cancelled-once")

    @dag.task
    def first():
        return 1

    @dag.task(deps=["first"])
    async def second(first, ctx):
        if not MARK.exists():  # the first run cancels itself here, leaving the run resumable
            MARK.write_text("x")
            ctx.run.cancel(0)
            await asyncio.Event().wait()
        return first + 1
    """
)


def test_cli_resumed_run_starts_a_new_trace_linked_to_the_first_one(tmp_path: Path) -> None:
    import json

    dag_file = tmp_path / "resumable.py"
    dag_file.write_text(RESUMABLE_DAG_FILE)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])

    def cli(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagexec_core.cli", "run", str(dag_file), "--json", "--progress", "off", *args],
            env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    with otlp_receiver() as (endpoint, received):
        first = cli(endpoint)
        assert first.returncode == 130, first.stderr
        first_spans = received.by_name()
    run_id = json.loads(first.stdout)["run_id"]
    with otlp_receiver() as (endpoint, received):
        second = cli(endpoint, "--resume", run_id)
        assert second.returncode == 0, second.stderr
        second_spans = received.by_name()

    original, resumed = first_spans["RUN resumable"], second_spans["RUN resumable"]
    assert original["attributes"]["cicd.pipeline.result"] == "cancellation"
    assert resumed["attributes"]["cicd.pipeline.run.id"] == original["attributes"]["cicd.pipeline.run.id"] == run_id
    assert resumed["attributes"]["dagexec.resumed"] is True
    assert resumed["trace_id"] != original["trace_id"]
    assert resumed["links"] == [(original["trace_id"], original["span_id"])]
    assert "first" not in second_spans  # completed in the first run: not run again, no span
    assert second_spans["second attempt 2"]["parent_span_id"] == second_spans["second"]["span_id"]
