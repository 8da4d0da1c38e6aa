"""`ExecutorContract`: what the engine relies on from a `TaskExecutor` (``dagexec_executor``)."""

from __future__ import annotations

import asyncio
import contextvars
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..dag import Dag, Task
from ..errors import TaskTimeoutError
from ..stages import TaskExecutor
from . import _bodies
from ._support import broken, check, poll_until, run_scenario, within

SUITE = "ExecutorContract"


def _task(fn: Callable[..., Any], name: str = "body", timeout: float | None = None, **kwargs: Any) -> Task:
    dag = Dag("executor-contract")
    dag.source_file = None
    return dag.add(name, fn, timeout=timeout)


class ExecutorContract:
    """Subclass in your tests and override the ``executor`` fixture (a fresh, unstarted executor).

    Class settings:

    - ``in_process``: sync bodies run in this process (threads), so they see
      the ``context`` handed to ``submit``. False for an executor that ships
      them to other processes or machines.
    - ``patience``: seconds a scenario may wait for the executor before the
      contract calls it hung.
    - ``concurrency``: the bound the contract starts the executor with.
    """

    in_process: ClassVar[bool] = True
    patience: ClassVar[float] = 30.0
    concurrency: ClassVar[int] = 4

    @pytest.fixture
    def executor(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__}: override the `executor` fixture to return a fresh, unstarted instance "
            f"of your executor"
        )

    # -- helpers ---------------------------------------------------------------

    def scenario(self, executor: Any, body: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
        """Start ``executor`` on a fresh loop, run ``body(executor)``, shut it down; loop errors are broken promises."""

        async def main() -> Any:
            executor.start(asyncio.get_running_loop(), self.concurrency)
            try:
                return await body(executor)
            finally:
                executor.shutdown(cancel=True)

        value, errors = run_scenario(main)
        check(
            not errors,
            SUITE,
            "nothing the executor does ends up in the event loop's exception handler",
            f"it got {[e.get('message') or e.get('exception') for e in errors]}",
        )
        return value

    def result(self, executor: Any, fut: Any, what: str) -> Coroutine[Any, Any, Any]:
        check(asyncio.isfuture(fut), SUITE, "submit() returns an asyncio future", f"it returned {fut!r}")
        return within(fut, self.patience, SUITE, f"the future of {what} is resolved", what)

    # -- the promises ------------------------------------------------------------

    def test_declares_its_name_and_whether_it_enforces_timeouts(self, executor: Any) -> None:
        check(isinstance(executor, TaskExecutor), SUITE, "it has the TaskExecutor methods", f"{executor!r}")
        check(
            isinstance(executor.name, str) and executor.name, SUITE, "name is a non-empty string", repr(executor.name)
        )
        check(
            isinstance(executor.enforces_timeout, bool),
            SUITE,
            "enforces_timeout is a bool (the engine abandons overrunning bodies when it is False)",
            repr(executor.enforces_timeout),
        )

    def test_sync_body_returns_its_value(self, executor: Any) -> None:
        async def body(ex: Any) -> Any:
            return await self.result(ex, ex.submit(_task(_bodies.add), {"a": 2, "b": 3}, None), "a sync body")

        value = self.scenario(executor, body)
        check(value == 5, SUITE, "a sync body's return value is the future's result", f"add(2, 3) gave {value!r}")

    def test_async_body_is_awaited_and_returns_its_value(self, executor: Any) -> None:
        async def body(ex: Any) -> Any:
            return await self.result(ex, ex.submit(_task(_bodies.add_async), {"a": 2, "b": 3}, None), "an async body")

        value = self.scenario(executor, body)
        check(value == 5, SUITE, "an async body is awaited and its value is the result", f"add_async gave {value!r}")

    def test_keyword_arguments_reach_the_body(self, executor: Any) -> None:
        kwargs = {"x": 1, "rows": [1, 2, 3], "name": "é"}

        async def body(ex: Any) -> Any:
            return await self.result(ex, ex.submit(_task(_bodies.echo), dict(kwargs), None), "a body")

        value = self.scenario(executor, body)
        check(value == kwargs, SUITE, "the body is called with submit()'s kwargs", f"it saw {value!r}")

    def _error(self, executor: Any, fn: Callable[..., Any], kind: str) -> None:
        a = "an" if kind == "async" else "a"

        async def body(ex: Any) -> BaseException:
            fut = ex.submit(_task(fn), {"message": f"boom from a {kind} body"}, None)
            try:
                value = await self.result(ex, fut, f"a failing {kind} body")
            except Exception as exc:  # noqa: BLE001 - the subject of the check
                return exc
            broken(SUITE, f"{a} {kind} body's exception fails the future", f"it returned {value!r}")

        exc = self.scenario(executor, body)
        promise = f"{a} {kind} body's exception reaches the engine with its type and message"
        check(isinstance(exc, _bodies.ContractBodyError), SUITE, promise, f"got {type(exc).__name__}: {exc}")
        check(f"boom from a {kind} body" in str(exc), SUITE, promise, f"message {str(exc)!r}")
        text = "".join(traceback.format_exception(exc))
        check(
            fn.__name__ in text,
            SUITE,
            f"{a} {kind} body's error carries the body's traceback (the dead-letter entry shows it)",
            f"the formatted error does not mention {fn.__name__!r}:\n{text}",
        )

    def test_sync_error_keeps_type_message_and_traceback(self, executor: Any) -> None:
        self._error(executor, _bodies.raise_error, "sync")

    def test_async_error_keeps_type_message_and_traceback(self, executor: Any) -> None:
        self._error(executor, _bodies.raise_error_async, "async")

    def test_sync_bodies_run_at_the_same_time(self, executor: Any, tmp_path: Path) -> None:
        async def body(ex: Any) -> Any:
            futs = [
                ex.submit(
                    _task(_bodies.rendezvous, name=me),
                    {"folder": str(tmp_path), "me": me, "other": other, "within": self.patience},
                    None,
                )
                for me, other in (("left", "right"), ("right", "left"))
            ]
            return await self.result(ex, asyncio.gather(*futs), "two sync bodies waiting for each other")

        try:
            value = self.scenario(executor, body)
        except TimeoutError as exc:
            broken(SUITE, "sync bodies submitted together run at the same time (up to concurrency)", str(exc))
        check(value == ["left", "right"], SUITE, "two sync bodies run at the same time", f"got {value!r}")

    def test_async_body_runs_inside_the_given_context(self, executor: Any) -> None:
        self._context(executor, _bodies.read_contract_var_async, "an async body")

    def test_sync_body_runs_inside_the_given_context(self, executor: Any) -> None:
        if not self.in_process:
            # Another process cannot share the context: the engine hands such executors a context only to
            # carry a trace; the body must still run.
            value = self._context(executor, _bodies.read_contract_var, "a sync body", expect=None)
            check(isinstance(value, str), SUITE, "a sync body given a context still runs", repr(value))
            return
        self._context(executor, _bodies.read_contract_var, "a sync body")

    def _context(self, executor: Any, fn: Callable[..., Any], what: str, expect: str | None = "from-submit") -> Any:
        context = contextvars.copy_context()
        context.run(_bodies.CONTRACT_VAR.set, "from-submit")

        async def body(ex: Any) -> Any:
            return await self.result(ex, ex.submit(_task(fn), {}, None, context), what)

        value = self.scenario(executor, body)
        if expect is not None:
            check(
                value == expect,
                SUITE,
                f"{what} runs inside the context given to submit() (tracing puts the attempt's span there)",
                f"it saw {value!r}",
            )
        return value

    def test_timeout_of_an_overrunning_sync_body(self, executor: Any, tmp_path: Path) -> None:
        release = tmp_path / "release"

        async def body(ex: Any) -> Any:
            fut = ex.submit(_task(_bodies.wait_for_file, timeout=0.2), {"path": str(release), "within": 60.0}, 0.2)
            if ex.enforces_timeout:
                try:
                    value = await self.result(ex, fut, "an overrunning sync body")
                except TaskTimeoutError:
                    return "timed out"
                broken(
                    SUITE,
                    "an executor that enforces timeouts fails an overrunning body with TaskTimeoutError",
                    f"the body returned {value!r}",
                )
            # The engine abandons it: it cancels the future at the deadline. The executor must take that,
            # and the body finishing later must not disturb anything.
            await poll_until(
                Path(str(release) + ".started").exists,
                self.patience,
                "the body's start",
                SUITE,
                "a submitted sync body starts",
            )
            fut.cancel()
            release.write_text("go")
            if self.in_process:
                await poll_until(
                    Path(str(release) + ".finished").exists,
                    self.patience,
                    "the abandoned body's end",
                    SUITE,
                    "an abandoned sync body is left to finish",
                )
            after = await self.result(ex, ex.submit(_task(_bodies.add), {"a": 1, "b": 1}, None), "a body after")
            check(after == 2, SUITE, "the executor runs new bodies after one was abandoned", repr(after))
            return "abandoned"

        try:
            self.scenario(executor, body)
        finally:
            release.write_text("go")

    def test_timeout_of_an_overrunning_async_body(self, executor: Any, tmp_path: Path) -> None:
        marker = tmp_path / "marker"

        async def body(ex: Any) -> Any:
            fut = ex.submit(_task(_bodies.overrun_async, timeout=0.2), {"marker": str(marker)}, 0.2)
            if ex.enforces_timeout:
                try:
                    value = await self.result(ex, fut, "an overrunning async body")
                except TaskTimeoutError:
                    pass
                else:
                    broken(
                        SUITE,
                        "an enforced timeout fails an overrunning async body with TaskTimeoutError",
                        f"it returned {value!r}",
                    )
            else:
                await poll_until(
                    Path(str(marker) + ".started").exists,
                    self.patience,
                    "the body's start",
                    SUITE,
                    "a submitted async body starts",
                )
                fut.cancel()  # what the engine does at the deadline
            await poll_until(
                marker.exists,
                self.patience,
                "the body's cancellation",
                SUITE,
                "an async body past its timeout is cancelled (it sees CancelledError)",
            )

        self.scenario(executor, body)

    def test_cancelling_the_future_cancels_a_running_async_body(self, executor: Any, tmp_path: Path) -> None:
        marker = tmp_path / "marker"

        async def body(ex: Any) -> Any:
            fut = ex.submit(_task(_bodies.overrun_async), {"marker": str(marker)}, None)
            await poll_until(
                Path(str(marker) + ".started").exists,
                self.patience,
                "the body's start",
                SUITE,
                "a submitted async body starts",
            )
            fut.cancel()
            await poll_until(
                marker.exists,
                self.patience,
                "the body's cancellation",
                SUITE,
                "cancelling the future of an async body cancels the body (run cancellation)",
            )
            check(fut.cancelled(), SUITE, "a cancelled future stays cancelled", repr(fut))

        self.scenario(executor, body)

    def test_cancelling_a_running_sync_body_frees_the_executor(self, executor: Any, tmp_path: Path) -> None:
        release = tmp_path / "release"

        async def body(ex: Any) -> Any:
            fut = ex.submit(_task(_bodies.wait_for_file), {"path": str(release), "within": 60.0}, None)
            await poll_until(
                Path(str(release) + ".started").exists,
                self.patience,
                "the body's start",
                SUITE,
                "a submitted sync body starts",
            )
            fut.cancel()
            check(fut.cancelled(), SUITE, "the future of a running sync body can be cancelled", repr(fut))
            after = await self.result(ex, ex.submit(_task(_bodies.add), {"a": 1, "b": 2}, None), "a body after")
            check(after == 3, SUITE, "the executor runs new bodies after a cancellation", repr(after))

        try:
            self.scenario(executor, body)
        finally:
            release.write_text("go")

    def test_shutdown_with_cancel_does_not_wait_for_running_bodies(self, executor: Any, tmp_path: Path) -> None:
        release = tmp_path / "release"

        async def body(ex: Any) -> Any:
            ex.submit(_task(_bodies.wait_for_file), {"path": str(release), "within": self.patience}, None)
            await poll_until(
                Path(str(release) + ".started").exists,
                self.patience,
                "the body's start",
                SUITE,
                "a submitted sync body starts",
            )

        try:
            self.scenario(executor, body)  # shuts down with cancel=True while the body runs
            check(
                not Path(str(release) + ".finished").exists(),
                SUITE,
                "shutdown(cancel=True) returns without waiting for running bodies (a second Ctrl-C)",
                "the body was waited for until it gave up; note that the event loop waits for the threads "
                "of its default executor (run_in_executor(None, ...)) when it closes: run bodies in threads "
                "of your own, daemon threads",
            )
        finally:
            release.write_text("go")

    def test_a_run_through_the_engine(self, executor: Any, tmp_path: Path) -> None:
        from .. import hookimpl, run

        class Provides:
            @hookimpl
            def dagexec_executor(self) -> Any:
                return executor

        dag = Dag("executor-contract")
        dag.source_file = str(tmp_path / "flow.py")
        dag.add("a", _bodies.one)
        dag.add("b", _bodies.two)
        dag.add("sum", _bodies.add, deps=["a", "b"])
        dag.add("bad", _bodies.raise_error, static_kwargs={"message": "boom in a run"})
        report = run(dag, state=str(tmp_path / "state.db"), plugins=[Provides()], signals=False)
        promise = "a run with this executor completes its tasks and hands dependents their outputs"
        check(report.outputs.get("sum") == 3, SUITE, promise, f"outputs {report.outputs!r}")
        check(report.failed == ["bad"], SUITE, "a failing body fails its task in a run", f"failed {report.failed}")
        error = report.records["bad"].error or ""
        check("boom in a run" in error, SUITE, "a run records the body's error", repr(error))
