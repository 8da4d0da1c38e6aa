"""A real Dask cluster for tests and benchmarks: ``dask scheduler`` and ``dask worker`` subprocesses on 127.0.0.1.

Workers start with their working directory elsewhere and a PYTHONPATH that
holds none of the test's folders, so they can import dagexec (installed) but
never a DAG file's folder: what the DAG file needs must travel with the task.

Run as a script, this module starts a worker whose dagexec says it is another
version (``foreign-worker VERSION ARGS...``), to prove that such a worker is
named, or a scheduler that cannot import dagexec (``scheduler-without-dagexec
ARGS...``), to prove that a scheduler needs Dask alone.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
DASK = str(BIN / "dask")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "DAGEXEC_", "OTEL_"))}
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for(predicate: Any, what: str, timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(interval)


class Cluster:
    """A scheduler and its workers, each a separate process, all stopped by `stop`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = workdir / "scheduler.json"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""
        self.serial = itertools.count(1)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(argv, cwd=self.workdir, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)

    def start_scheduler(self, *extra: str, without_dagexec: bool = False) -> str:
        """``without_dagexec``: a scheduler that cannot import dagexec, as on a cluster with Dask alone."""
        launcher = [sys.executable, str(Path(__file__).resolve()), "scheduler-without-dagexec"]
        self.scheduler = self._spawn(
            "scheduler",
            [
                *(launcher if without_dagexec else [DASK, "scheduler"]),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(self.scheduler_file),
                *extra,
            ],
        )
        wait_for(lambda: self.scheduler_file.is_file() and self.scheduler_file.stat().st_size > 0, "scheduler file")
        self.address = wait_for(lambda: _read_address(self.scheduler_file), "scheduler address")
        return self.address

    def start_worker(self, name: str, *extra: str, foreign_version: str | None = None) -> subprocess.Popen[bytes]:
        """A single-threaded worker without a nanny: its pid is the process that runs the tasks."""
        args = [
            "--scheduler-file",
            str(self.scheduler_file),
            "--nthreads",
            "1",
            "--no-nanny",
            "--no-dashboard",
            "--name",
            name,
            *extra,
        ]
        if foreign_version is None:
            argv = [DASK, "worker", *args]
        else:
            argv = [sys.executable, str(Path(__file__).resolve()), "foreign-worker", foreign_version, *args]
        proc = self._spawn(name, argv)
        self.workers[name] = proc
        return proc

    def fresh_name(self, prefix: str) -> str:
        """A worker name never used on this scheduler (a dead worker's name may still be taken)."""
        return f"{prefix}{next(self.serial)}"

    def worker_pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.workers.items() if p.poll() is None}

    def wait_for_workers(self, n: int, timeout: float = 30.0) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=timeout)
            wait_for(lambda: len(client.scheduler_info(n_workers=-1)["workers"]) == n, f"exactly {n} workers")

    def kill_worker(self, name: str) -> None:
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        procs = [*self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.workers.clear()

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""


def _read_address(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text())["address"])
    except (ValueError, KeyError):
        return None


def _foreign_worker(version: str, args: list[str]) -> None:
    import dagexec_core

    dagexec_core.__version__ = version  # what a worker with another dagexec release reports
    from distributed.cli.dask_worker import main

    sys.argv = ["dask worker", *args]
    main()


def _scheduler_without_dagexec(args: list[str]) -> None:
    for name in ("dagexec_core", "dagexec_plugins"):
        sys.modules[name] = None  # type: ignore[assignment]  # importing it now raises ImportError
    from distributed.cli.dask_scheduler import main

    sys.argv = ["dask scheduler", *args]
    main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["foreign-worker"]:
        _foreign_worker(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["scheduler-without-dagexec"]:
        _scheduler_without_dagexec(sys.argv[2:])
