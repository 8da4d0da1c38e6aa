"""Timeouts with the local executor: async tasks cancelled, overrunning threads abandoned; ctx.deadline."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from dagexec_core import Dag, TaskTimeoutError, run


def test_an_async_task_is_cancelled_at_its_deadline() -> None:
    seen: list[str] = []

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    dag = Dag("async")
    dag.add("hangs", hangs, timeout=0.1, retry=2)
    report = run(dag, persist=False)
    rec = report.records["hangs"]
    assert rec.attempts == 2 and seen == ["cancelled", "cancelled"]  # a timeout is a failure like any other
    assert rec.error == f"{TaskTimeoutError.__name__}: task 'hangs' attempt 2 timed out after 0.1s"


def test_an_overrunning_sync_task_is_abandoned_with_a_warning_and_frees_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    after: list[str] = []

    def stuck() -> None:
        release.wait()

    dag = Dag("sync")
    dag.add("stuck", stuck, timeout=0.1, priority=1)
    dag.add("next", lambda: after.append("ran"))
    caplog.set_level(logging.WARNING, logger="dagexec")
    try:
        report = run(dag, persist=False, concurrency=1)
    finally:
        release.set()
    assert "TaskTimeoutError: task 'stuck' attempt 1 timed out after 0.1s" == report.records["stuck"].error
    assert after == ["ran"]  # the one slot went to 'next' while 'stuck' was still blocked
    assert any(
        "task 'stuck' overran its timeout of 0.1s; its worker thread is abandoned" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_ctx_deadline_is_the_time_left_in_the_attempt(kind: str) -> None:
    def sync_body(ctx: Any) -> Any:
        return ctx.deadline

    async def async_body(ctx: Any) -> Any:
        return ctx.deadline

    body = sync_body if kind == "sync" else async_body
    dag = Dag("deadline")
    dag.add("timed", body, timeout=30)
    dag.add("untimed", body)
    report = run(dag, persist=False)
    assert 0 < report.outputs["timed"] <= 30
    assert report.outputs["untimed"] is None
