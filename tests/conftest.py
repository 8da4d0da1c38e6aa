"""Shared fixtures: every test gets its own working directory and no leaked plugin settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("DAGEXEC_PLUGINS", "DAGEXEC_DISABLED_PLUGINS", "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD"):
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("OTEL_"):
            monkeypatch.delenv(var, raising=False)


@pytest.fixture
def restore_global_tracer_provider() -> Iterator[None]:
    """A run that builds its own SDK provider makes it the global one; give the next test a clean process."""
    yield
    from otlp_receiver import reset_global_tracer_provider

    reset_global_tracer_provider()


@pytest.fixture
def spans() -> tuple[object, object]:
    """An SDK tracer provider exporting synchronously into memory: ``(provider, exporter)``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter
