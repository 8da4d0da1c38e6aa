"""The public entry points `run` / `arun`, the `RunHandle` that controls a run from outside, and config assembly.

Cold code: it runs once per run, around the engine's loop (`engine.Run`).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

from . import params as run_params
from .config import Config
from .dag import Dag
from .engine import Run
from .errors import UsageError
from .plugins import configured
from .results import RunReport


class RunHandle:
    """Control a run from outside: cancel it, send it events. Thread-safe.

    Pass one to `run`/`arun` as ``handle=``; it may be used before the run
    starts (a cancel then stops the run as soon as it starts).
    """

    def __init__(self) -> None:
        self._run: Run | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self.run_id: str | None = None

    def _bind(self, run: Run, loop: asyncio.AbstractEventLoop) -> None:
        self._run, self._loop, self.run_id = run, loop, run.run_id
        for name, args in self._pending:
            getattr(run, name)(*args)
        self._pending.clear()

    def _call(self, name: str, *args: Any) -> None:
        if self._run is None or self._loop is None:
            self._pending.append((name, args))
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            getattr(self._run, name)(*args)
        else:
            self._loop.call_soon_threadsafe(getattr(self._run, name), *args)

    def cancel(self, grace_period: float | None = None) -> None:
        """Stop launching tasks; running ones get ``grace_period`` seconds, then are cancelled."""
        self._call("cancel", grace_period)

    def emit(self, event: str, payload: Any = None) -> None:
        """Deliver ``event`` to tasks of the run waiting for it."""
        self._call("emit", event, payload)


def _make_config(
    dag: Dag,
    *,
    state: str | None,
    concurrency: int | None,
    plugins: Sequence[object],
    config: Config | None,
    persist: bool | None,
    options: Mapping[str, Any],
) -> tuple[Config, bool]:
    from pathlib import Path

    from .plugins import build_plugin_manager

    opts = dict(options)
    if state is not None:
        opts["state"] = str(state)
    if concurrency is not None:
        opts["concurrency"] = concurrency
    if persist is not None:
        opts["persist"] = persist
    if opts.get("state") == ":memory:":
        opts["persist"] = False
    if config is not None:
        for k, v in opts.items():
            config.options[k] = v
        return config, False
    dag_path = Path(dag.source_file) if dag.source_file else None
    pm = build_plugin_manager(plugins=plugins, plugin_args=opts.pop("plugin_args", ()), dag_path=dag_path)
    cfg = Config(pm, opts, dag_path=dag_path)
    if cfg.getoption("persist") is False:
        cfg.options["state"] = ":memory:"
    return cfg, True


async def arun(
    dag: Dag,
    *,
    state: str | None = None,
    concurrency: int | None = None,
    resume: str | None = None,
    plugins: Sequence[object] = (),
    config: Config | None = None,
    persist: bool | None = None,
    handle: RunHandle | None = None,
    replay: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    change_params: bool | None = None,
    **options: Any,
) -> RunReport:
    """Run ``dag`` on the running event loop; see `run`."""
    options.update(run_params.as_options(params, change_params))
    gc_was_enabled = gc.isenabled()
    gc.disable()  # until the task table is built: Run.execute turns it back on
    try:
        dag.validate()
        cfg, owned = _make_config(
            dag, state=state, concurrency=concurrency, plugins=plugins, config=config, persist=persist, options=options
        )
        # A config the caller made is the caller's to configure (the CLI does it); one made here is ours.
        with configured(cfg) if owned else nullcontext(cfg):
            r = Run(dag, cfg, resume=resume, replay=replay, handle=handle)
            r.gc_was_enabled = gc_was_enabled
            return await r.execute()
    finally:
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()


def run(
    dag: Dag,
    *,
    state: str | None = None,
    concurrency: int | None = None,
    resume: str | None = None,
    plugins: Sequence[object] = (),
    config: Config | None = None,
    persist: bool | None = None,
    handle: RunHandle | None = None,
    replay: Sequence[str] = (),
    signals: bool = True,
    params: Mapping[str, Any] | None = None,
    change_params: bool | None = None,
    **options: Any,
) -> RunReport:
    """Run ``dag`` to the end and return its `RunReport`.

    ``state`` is the SQLite file (default ``.dagexec/state.db``); ``":memory:"``
    or ``persist=False`` keeps nothing. ``resume=RUN_ID`` continues a stored
    run. ``params`` are the run's parameters (``ctx.params``, docs/parameters.md);
    a resume keeps the stored ones and refuses others unless ``change_params=True``.
    SIGINT/SIGTERM cancel the run gracefully (a second one stops it at once) when
    called from the main thread.
    """
    import signal
    import threading

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise UsageError("run() was called inside a running event loop; use `await arun(dag, ...)` there")
    handle = handle or RunHandle()

    async def main() -> RunReport:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, handle.cancel)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - non-unix
                    pass
        try:
            return await arun(
                dag,
                state=state,
                concurrency=concurrency,
                resume=resume,
                plugins=plugins,
                config=config,
                persist=persist,
                handle=handle,
                replay=replay,
                params=params,
                change_params=change_params,
                **options,
            )
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    return asyncio.run(main())


__all__ = ["RunHandle", "arun", "run"]
