"""Tracing: the span tree, its attributes, body spans as children, failures, resume links, on/off."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from dagexec_core import Dag, PluginError, RetryPolicy, TaskState, hookimpl, run
from dagexec_plugins.memory import MemoryStorage
from dagexec_plugins.tracing import TracingConfigError, wanted_exporters

pytestmark = pytest.mark.usefixtures("restore_global_tracer_provider")


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    out = {s.name: s for s in finished}
    assert len(out) == len(finished), f"span names are not unique: {[s.name for s in finished]}"
    return out


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_run_task_and_attempt_spans_form_one_tree_with_cicd_attributes(spans: Any) -> None:
    provider, exporter = spans
    dag = Dag("etl")

    @dag.task(priority=5)
    def extract() -> list[int]:
        return [1, 2, 3]

    @dag.task(deps=["extract"])
    async def load(extract: list[int]) -> int:
        return len(extract)

    report = run(dag, persist=False, tracer_provider=provider)
    assert report.ok
    s = by_name(exporter.get_finished_spans())
    assert set(s) == {"RUN etl", "extract", "extract attempt 1", "load", "load attempt 1"}
    root = s["RUN etl"]
    assert root.parent is None and root.kind is SpanKind.SERVER
    assert root.attributes is not None
    assert root.attributes["cicd.pipeline.name"] == "etl"
    assert root.attributes["cicd.pipeline.run.id"] == report.run_id
    assert root.attributes["cicd.pipeline.result"] == "success"
    assert root.status.status_code is StatusCode.UNSET
    trace_ids = {sp.context.trace_id for sp in s.values()}
    assert trace_ids == {root.context.trace_id}
    for task in ("extract", "load"):
        tspan, aspan = s[task], s[f"{task} attempt 1"]
        assert parent_of(tspan) == root.context.span_id
        assert parent_of(aspan) == tspan.context.span_id
        assert tspan.attributes is not None and aspan.attributes is not None
        assert tspan.attributes["cicd.pipeline.task.name"] == task
        assert tspan.attributes["cicd.pipeline.task.run.id"] == f"{report.run_id}/{task}"
        assert tspan.attributes["cicd.pipeline.task.run.result"] == "success"
        assert aspan.attributes["dagexec.attempt"] == 1
        assert tspan.status.status_code is StatusCode.UNSET
        assert aspan.status.status_code is StatusCode.UNSET
    assert s["extract"].attributes is not None and s["extract"].attributes["dagexec.priority"] == 5
    # load starts after extract finished: the spans say so too.
    assert s["load"].start_time >= s["extract"].end_time  # type: ignore[operator]


def test_spans_made_in_thread_and_async_bodies_are_children_of_their_attempt(spans: Any) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("user-code")
    dag = Dag("bodies")

    @dag.task
    def in_thread() -> None:
        with tracer.start_as_current_span("thread work"):
            pass

    @dag.task
    async def on_loop() -> None:
        with tracer.start_as_current_span("async work"):
            await asyncio.sleep(0)

    assert run(dag, persist=False, tracer_provider=provider).ok
    s = by_name(exporter.get_finished_spans())
    assert parent_of(s["thread work"]) == s["in_thread attempt 1"].context.span_id
    assert parent_of(s["async work"]) == s["on_loop attempt 1"].context.span_id


def test_a_retried_attempt_is_an_error_only_on_its_own_span(spans: Any) -> None:
    provider, exporter = spans
    dag = Dag("flaky")
    calls: list[int] = []

    @dag.task(retry=RetryPolicy(max_attempts=2, base=0.0))
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return "ok"

    report = run(dag, persist=False, tracer_provider=provider)
    assert report.ok and len(calls) == 2
    s = by_name(exporter.get_finished_spans())
    first, second, task = s["flaky attempt 1"], s["flaky attempt 2"], s["flaky"]
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ConnectionError: database went away"
    assert first.attributes is not None and first.attributes["error.type"] == "ConnectionError"
    assert first.attributes["dagexec.retry.delay"] == 0.0
    assert [e.name for e in first.events] == ["exception"]
    assert second.status.status_code is StatusCode.UNSET
    assert task.status.status_code is StatusCode.UNSET
    assert task.attributes is not None and task.attributes["dagexec.attempts"] == 2
    assert [e.name for e in task.events] == ["dagexec.retry"]
    assert s["RUN flaky"].status.status_code is StatusCode.UNSET


def test_a_failed_task_marks_attempt_task_and_run_as_errors_and_names_its_dead_letter(spans: Any) -> None:
    provider, exporter = spans
    dag = Dag("broken")

    class QuotaExceeded(Exception):
        pass

    @dag.task
    def fetch() -> None:
        raise QuotaExceeded("daily quota used up")

    @dag.task(deps=["fetch"])
    def publish() -> None:
        raise AssertionError("must not run")

    report = run(dag, persist=False, tracer_provider=provider)
    assert report.records["fetch"].state is TaskState.DEAD_LETTERED
    assert report.records["publish"].state is TaskState.SKIPPED
    s = by_name(exporter.get_finished_spans())
    qualname = f"{QuotaExceeded.__module__}.{QuotaExceeded.__qualname__}"
    for name in ("fetch", "fetch attempt 1"):
        span = s[name]
        assert span.status.status_code is StatusCode.ERROR, name
        assert span.attributes is not None
        assert span.attributes["error.type"] == qualname
        assert span.attributes["cicd.pipeline.task.run.result"] == "failure"
    assert s["fetch"].status.description is not None and "daily quota used up" in s["fetch"].status.description
    dead_letter_id = s["fetch"].attributes["dagexec.dead_letter.id"]  # type: ignore[index]
    assert isinstance(dead_letter_id, str) and dead_letter_id
    skipped = s["publish"]
    assert skipped.attributes is not None and skipped.attributes["cicd.pipeline.task.run.result"] == "skip"
    assert skipped.status.status_code is StatusCode.UNSET
    assert "publish attempt 1" not in s
    root = s["RUN broken"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None and root.attributes["cicd.pipeline.result"] == "failure"
    assert root.attributes["error.type"] == "QuotaExceeded"


def test_a_timed_out_attempt_has_result_timeout(spans: Any) -> None:
    provider, exporter = spans
    dag = Dag("slow")

    @dag.task(timeout=0.01)
    async def slow() -> None:
        await asyncio.Event().wait()  # never set: only the timeout ends it

    run(dag, persist=False, tracer_provider=provider)
    s = by_name(exporter.get_finished_spans())
    assert s["slow attempt 1"].attributes is not None
    assert s["slow attempt 1"].attributes["cicd.pipeline.task.run.result"] == "timeout"
    assert s["slow attempt 1"].attributes["error.type"] == "dagexec_core.errors.TaskTimeoutError"


class SharedStorage:
    """Hands every run the same in-process storage, so a second run can resume the first."""

    def __init__(self) -> None:
        self.storage = MemoryStorage()

    @hookimpl(tryfirst=True)
    def dagexec_storage(self) -> MemoryStorage:
        return self.storage


def test_a_resumed_run_links_to_the_trace_of_the_run_it_resumes(spans: Any) -> None:
    provider, exporter = spans
    shared = SharedStorage()
    dag = Dag("resumable")
    broken = {"flag": True}

    @dag.task
    def step() -> int:
        if broken["flag"]:
            raise RuntimeError("not yet")
        return 1

    first = run(dag, plugins=[shared], tracer_provider=provider)
    assert not first.ok
    first_root = by_name(exporter.get_finished_spans())["RUN resumable"]
    exporter.clear()
    broken["flag"] = False

    second = run(dag, plugins=[shared], resume=first.run_id, replay=["step"], tracer_provider=provider)
    assert second.ok and second.run_id == first.run_id
    root = by_name(exporter.get_finished_spans())["RUN resumable"]
    assert root.context.trace_id != first_root.context.trace_id
    assert [(link.context.trace_id, link.context.span_id) for link in root.links] == [
        (first_root.context.trace_id, first_root.context.span_id)
    ]
    assert root.attributes is not None and root.attributes["dagexec.resumed"] is True
    stored = shared.storage.get_meta(first.run_id, "dagexec.trace")
    assert stored["trace_id"] == format(first_root.context.trace_id, "032x")


def test_a_dead_letter_carries_the_trace_id_of_its_failing_attempt(spans: Any) -> None:
    provider, exporter = spans
    dag = Dag("dl")
    seen: dict[str, Any] = {}

    class Probe:
        @hookimpl
        def dagexec_task_dead_lettered(self, entry: Any) -> None:
            seen["entry"] = entry

    @dag.task
    def boom() -> None:
        raise ValueError("x")

    run(dag, persist=False, tracer_provider=provider, plugins=[Probe()])
    root = by_name(exporter.get_finished_spans())["RUN dl"]
    assert seen["entry"].trace_id == format(root.context.trace_id, "032x")


def _event_hooks_seen_by_a_task(**options: Any) -> list[str]:
    dag = Dag("probe")

    @dag.task
    def look(ctx: Any) -> list[str]:
        return [impl.plugin_name for impl in ctx.run.hook.dagexec_task_started.get_hookimpls()]

    report = run(dag, persist=False, **options)
    assert report.ok
    return report.outputs["look"]  # type: ignore[no-any-return]


def test_tracing_is_off_by_default_and_then_no_event_hook_is_registered() -> None:
    assert "tracing.events" not in _event_hooks_seen_by_a_task()


def test_otel_variables_turn_tracing_on_and_trace_none_turns_it_off(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert _event_hooks_seen_by_a_task() == ["tracing.events"]
    assert '"name": "RUN probe"' in capfd.readouterr().err
    assert _event_hooks_seen_by_a_task(trace="none") == []


def test_trace_option_and_variables_are_parsed_strictly() -> None:
    assert wanted_exporters(None, {}) == []
    assert wanted_exporters(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == ["otlp"]
    assert wanted_exporters(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h/v1/traces"}) == ["otlp"]
    assert wanted_exporters(None, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == []
    assert wanted_exporters(None, {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}) == []
    assert wanted_exporters("none", {"OTEL_TRACES_EXPORTER": "otlp"}) == []
    assert wanted_exporters("console", {}) == ["console"]
    with pytest.raises(TracingConfigError, match="unknown trace exporter 'zipkin'.*otlp, console, none"):
        wanted_exporters(None, {"OTEL_TRACES_EXPORTER": "zipkin"})


def test_an_unsupported_otlp_protocol_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    dag = Dag("p")
    dag.add("a", lambda: None)
    with pytest.raises(PluginError, match="plugin 'tracing'.*'http/json' is not supported.*http/protobuf") as info:
        run(dag, persist=False, trace="otlp")
    assert isinstance(info.value.__cause__, TracingConfigError)


def test_the_runnable_examples_in_docs_tracing_md_run() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "tracing.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "assert" in b]
    assert blocks, "docs/tracing.md lost its runnable example"
    for code in blocks:
        exec(compile(code, "docs/tracing.md", "exec"), {})


def test_breaker_changes_are_events_on_the_run_span_and_attempts_carry_the_breaker_state(spans: Any) -> None:
    provider, exporter = spans
    dag = Dag("guarded")

    @dag.task(breaker="payments")
    def charge() -> None:
        raise ConnectionRefusedError("payments API down")

    run(dag, persist=False, tracer_provider=provider, breakers={"payments": {"failure_threshold": 1}})
    s = by_name(exporter.get_finished_spans())
    attempt = s["charge attempt 1"]
    assert attempt.attributes is not None
    assert attempt.attributes["dagexec.breaker.name"] == "payments"
    assert attempt.attributes["dagexec.breaker.state"] == "closed"
    events = [e for e in s["RUN guarded"].events if e.name == "dagexec.breaker.state_changed"]
    assert [(e.attributes["dagexec.breaker.old_state"], e.attributes["dagexec.breaker.state"]) for e in events] == [
        ("closed", "open")
    ]
    assert events[0].attributes["dagexec.breaker.name"] == "payments"


def test_a_provider_built_from_the_variables_becomes_global_for_task_bodies(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from opentelemetry import trace

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    dag = Dag("global")

    @dag.task
    def body() -> None:
        with trace.get_tracer("app").start_as_current_span("app work"):
            pass

    assert run(dag, persist=False).ok
    err = capfd.readouterr().err
    assert '"name": "app work"' in err and '"name": "body attempt 1"' in err


def test_a_cancelled_run_ends_its_spans_with_result_cancellation(spans: Any) -> None:
    from dagexec_core import RunHandle

    provider, exporter = spans
    handle = RunHandle()
    dag = Dag("stopped")

    @dag.task
    async def long_job() -> None:
        handle.cancel(grace_period=0)
        await asyncio.Event().wait()  # only the cancellation ends it

    report = run(dag, persist=False, tracer_provider=provider, handle=handle)
    assert report.status == "cancelled"
    s = by_name(exporter.get_finished_spans())
    assert s["RUN stopped"].attributes["cicd.pipeline.result"] == "cancellation"  # type: ignore[index]
    assert s["long_job"].attributes["cicd.pipeline.task.run.result"] == "cancellation"  # type: ignore[index]
    assert s["long_job attempt 1"].attributes["cicd.pipeline.task.run.result"] == "cancellation"  # type: ignore[index]
    assert all(span.end_time is not None for span in s.values())


def test_the_run_span_is_a_child_of_the_callers_span_or_of_traceparent(
    spans: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, exporter = spans
    dag = Dag("nested")
    dag.add("a", lambda: 1)
    with provider.get_tracer("app").start_as_current_span("nightly job") as outer:
        run(dag, persist=False, tracer_provider=provider)
    root = by_name(exporter.get_finished_spans())["RUN nested"]
    assert parent_of(root) == outer.get_span_context().span_id
    exporter.clear()

    monkeypatch.setenv("TRACEPARENT", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    run(dag, persist=False, tracer_provider=provider)
    root = by_name(exporter.get_finished_spans())["RUN nested"]
    assert format(root.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert parent_of(root) == int("b7ad6b7169203331", 16)


def test_a_run_the_sampler_drops_makes_no_spans_and_its_bodies_spans_are_dropped_too() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult

    class DropRuns(Sampler):
        """Root sampler: drop dagexec runs, keep any other root."""

        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any
        ) -> SamplingResult:
            if name.startswith("RUN "):
                return SamplingResult(Decision.DROP)
            return ALWAYS_ON.should_sample(parent_context, trace_id, name, *args, **kwargs)

        def get_description(self) -> str:
            return "DropRuns"

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(root=DropRuns()))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    dag = Dag("unsampled")

    @dag.task
    def body() -> None:
        with tracer.start_as_current_span("work"):
            pass

    @dag.task(deps=["body"])
    async def after() -> None:
        with tracer.start_as_current_span("more work"):
            pass

    assert run(dag, persist=False, tracer_provider=provider).ok
    assert exporter.get_finished_spans() == ()
    with tracer.start_as_current_span("outside a run"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["outside a run"]  # the sampler does keep roots
