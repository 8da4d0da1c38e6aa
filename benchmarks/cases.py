"""One measurement in this process: build the DAG (untimed), drive it once (timed), report.

`run.py` starts a fresh interpreter per measurement so that peak RSS
(``ru_maxrss``) belongs to one case. Each function returns a dict with
``seconds`` (the timed part), ``rss_mb`` (peak RSS of the process),
``rss_before_mb`` (peak RSS after imports and the DAG build, before the timed
part) and ``startup_s`` (from the start of the timed part to the first task
body), or ``skipped`` with the reason.

The timed part of every driver includes event-loop start-up (`asyncio.run`
for the floors, `dagexec.run` for dagexec, which calls it) and building its
own scheduling structures from the DAG description; it excludes building
the description (``dag.add`` calls / the graph dict) and imports, dagexec's
built-in plugin modules included (see `_import_plugins`).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import tempfile
import time
from typing import Any

import shapes
from floors import SqliteTransitions, drive


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _result(
    start: tuple[float, float], end: tuple[float, float], n: int, before: float, **extra: Any
) -> dict[str, Any]:
    """``start``/``end`` are `_clock` readings around the timed part; CPU time counts every thread."""
    startup = shapes.first_start[0] - start[0] if shapes.first_start else None
    return {
        "seconds": end[0] - start[0],
        "cpu_s": end[1] - start[1],
        "tasks": n,
        "rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(before, 1),
        "startup_s": startup,
        **extra,
    }


# -- floors ----------------------------------------------------------------


def floor(
    shape: str, n: int, kind: str, concurrency: int, durability: str | None = None, tmpdir: str | None = None
) -> dict[str, Any]:
    graph = shapes.build(shape, n)
    before = peak_rss_mb()
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        start = _clock()
        writer = SqliteTransitions(os.path.join(d, "floor.db"), durability) if durability else None
        count = asyncio.run(drive(graph, kind, concurrency, writer))
        end = _clock()
    assert count == n, (count, n)
    return _result(start, end, n, before)


# -- dagexec ---------------------------------------------------------------


def _import_plugins() -> float:
    """Import dagexec's built-in plugin modules; returns the milliseconds it took.

    Done before the timed part, as the floors' imports (asyncio, graphlib,
    sqlite3, concurrent.futures) are: an import is paid once per process, not
    per run. The figure is reported as ``plugin_import_ms``.
    """
    import importlib
    import importlib.util

    from dagexec_core.plugins import DEFAULT_PLUGINS

    t0 = time.perf_counter()
    for _name, module in DEFAULT_PLUGINS:
        importlib.import_module(module)
    # Every sample creates a new state file, whose schema the sqlite plugin makes with sqlite-utils, which
    # it imports only then (a run on an existing file never does): an import, so paid here too.
    if importlib.util.find_spec("dagexec_plugins.sqlite") is not None:
        importlib.import_module("dagexec_plugins.sqlite.migrations")
    return (time.perf_counter() - t0) * 1000


def _dag(shape: str, n: int, kind: str, name: str = "bench") -> Any:
    from dagexec_core import Dag

    root, body = shapes.bodies(kind)
    dag = Dag(f"{name}-{shape}")
    for task, deps in shapes.build(shape, n).items():
        dag.add(task, body if deps else root, deps=deps)
    return dag


class _DropSpans:
    """A span exporter that counts what it is given and keeps nothing."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def dagexec(shape: str, n: int, kind: str, concurrency: int, mode: str, tmpdir: str | None = None) -> dict[str, Any]:
    from dagexec_core import run
    from dagexec_core.errors import PluginError

    import_ms = _import_plugins()
    t_build = time.perf_counter()
    dag = _dag(shape, n, kind)
    build_s = time.perf_counter() - t_build
    options: dict[str, Any] = {"concurrency": concurrency, "signals": False}
    provider = exporter = None
    if mode == "off":
        options["persist"] = False
    elif mode in ("normal", "durable"):
        options["durability"] = mode
    elif mode == "trace":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = _DropSpans()
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter))  # type: ignore[arg-type]
        options["persist"] = False
        options["tracer_provider"] = provider
    else:
        raise ValueError(f"unknown mode {mode!r}")
    before = peak_rss_mb()
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        if mode in ("normal", "durable"):
            options["state"] = os.path.join(d, "state.db")
        start = _clock()
        try:
            report = run(dag, **options)
        except PluginError as exc:
            if "storage" not in str(exc):
                raise
            return {"skipped": "no sqlite storage plugin", "detail": str(exc)}
        end = _clock()
    if not report.ok:
        raise RuntimeError(f"dagexec run not ok: {report!r}")
    extra: dict[str, Any] = {"build_s": round(build_s, 4), "plugin_import_ms": round(import_ms, 1)}
    if provider is not None and exporter is not None:
        provider.force_flush()
        provider.shutdown()
        extra["spans_exported"] = exporter.count
        if exporter.count == 0:
            return {"skipped": "no tracing plugin (the tracer_provider option received no spans)"}
    return _result(start, end, n, before, **extra)


# -- dask ------------------------------------------------------------------


def _dask_noop(*_deps: object) -> None:
    return None


def _dask_root() -> None:
    shapes.sroot()


def dask(shape: str, n: int, kind: str, concurrency: int, tmpdir: str | None = None) -> dict[str, Any]:
    try:
        import dask.threaded
    except ImportError:
        return {"skipped": "dask is not installed"}
    graph = shapes.build(shape, n)
    dsk = {name: (_dask_noop, *deps) if deps else (_dask_root,) for name, deps in graph.items()}
    before = peak_rss_mb()
    start = _clock()
    dask.threaded.get(dsk, list(dsk), num_workers=concurrency)
    end = _clock()
    return _result(start, end, n, before)


# -- resume ----------------------------------------------------------------


def _resume_dag(n: int, body: Any) -> Any:
    """The layered DAG; two attempts each, so a task interrupted by the kill runs again on resume."""
    from dagexec_core import Dag

    dag = Dag("bench-resume")
    for task, deps in shapes.build("layered", n).items():
        dag.add(task, body, deps=deps, retry=2)
    return dag


def resume_prepare(n: int, concurrency: int, state: str) -> dict[str, Any]:
    """Run the layered DAG and SIGKILL this process once half its tasks ran: a crashed, half-done run.

    A crash is the case resume exists for. The result line is printed just
    before the kill, so `run.py` reads it from a process that exits by SIGKILL.
    """
    import signal

    from dagexec_core import RunHandle, run
    from dagexec_core.errors import PluginError

    handle = RunHandle()
    count = [0]
    half = n // 2
    t0 = time.perf_counter()

    async def body() -> None:
        count[0] += 1
        if count[0] == half:
            print(
                json.dumps(
                    {
                        "run_id": handle.run_id,
                        "started": count[0],
                        "killed": True,
                        "seconds": time.perf_counter() - t0,
                        "rss_mb": round(peak_rss_mb(), 1),
                    }
                ),
                flush=True,
            )
            os.kill(os.getpid(), signal.SIGKILL)

    dag = _resume_dag(n, body)
    try:
        run(dag, state=state, concurrency=concurrency, handle=handle, signals=False)
    except PluginError as exc:
        if "storage" not in str(exc):
            raise
        return {"skipped": "no sqlite storage plugin", "detail": str(exc)}
    return {"error": "the run finished before it was killed"}


def resume(n: int, concurrency: int, state: str, run_id: str) -> dict[str, Any]:
    """Time from ``run(dag, resume=RUN_ID)`` to the first task body, and to the end."""
    from dagexec_core import run

    executed = [0]

    async def body() -> None:
        if not shapes.first_start:
            shapes.first_start.append(time.perf_counter())
        executed[0] += 1

    import_ms = _import_plugins()
    dag = _resume_dag(n, body)
    before = peak_rss_mb()
    start = _clock()
    report = run(dag, state=state, concurrency=concurrency, resume=run_id, signals=False)
    end = _clock()
    return _result(
        start,
        end,
        n,
        before,
        executed=executed[0],
        plugin_import_ms=round(import_ms, 1),
        ok=report.ok,
        counts=report.counts(),
    )


DRIVERS = {"floor": floor, "dagexec": dagexec, "dask": dask, "resume_prepare": resume_prepare, "resume": resume}


# -- definition ------------------------------------------------------------


def define(n: int, shape: str = "layered") -> dict[str, Any]:
    """``import dagexec_core``, ``dag.add`` per task and ``dag.validate()`` in this fresh process."""
    t0 = time.perf_counter()
    from dagexec_core import Dag

    import_s = time.perf_counter() - t0
    graph = shapes.build(shape, n)
    root, body = shapes.bodies("async")
    dag = Dag(f"bench-{shape}")
    t1 = time.perf_counter()
    for task, deps in graph.items():
        dag.add(task, body if deps else root, deps=deps)
    t2 = time.perf_counter()
    dag.validate()
    t3 = time.perf_counter()
    return {
        "n": n,
        "shape": shape,
        "import_ms": round(import_s * 1000, 1),
        "add_s": t2 - t1,
        "validate_s": t3 - t2,
        "rss_mb": round(peak_rss_mb(), 1),
    }


DRIVERS["define"] = define
