"""Code a worker process runs in the cross-process tracing test (importable under the spawn start method)."""

from __future__ import annotations

from opentelemetry import trace

from dagexec_plugins.tracing import remote_context


def work_in_child(carrier: dict[str, str]) -> None:
    with remote_context(carrier), trace.get_tracer("worker").start_as_current_span("in worker"):
        pass


def span_in_worker() -> None:
    import multiprocessing

    with trace.get_tracer("worker").start_as_current_span("in dask worker") as span:
        span.set_attribute("process.name", multiprocessing.current_process().name)
