"""``--executor dask`` the way users run it: the CLI, a DAG file beside its helper modules, real clusters.

A session-wide cluster (a ``dask scheduler`` and two single-threaded ``dask
worker`` processes, the second offering the resource ``GPU=1``) serves most
tests; a spare scheduler takes the tests that kill its every worker. Workers
cannot import the DAG folder: what a task needs travels with it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagexec_core import Dag, TaskState, run
from dask_support import Cluster, clean_env, wait_for

ROOT = Path(__file__).resolve().parent.parent
DAGEXEC = str(Path(sys.executable).parent / "dagexec")

HELPERS = '''
"""Beside the DAG file: tasks note where they ran, count their executions, wait for the test."""
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTES = HERE / "notes"


def note(name, **data):
    NOTES.mkdir(exist_ok=True)
    tmp = NOTES / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), **data}))
    tmp.rename(NOTES / f"{name}.json")


def execution(name):
    """How many times a body named ``name`` has started, this one included."""
    NOTES.mkdir(exist_ok=True)
    n = 1
    while True:
        try:
            (NOTES / f"{name}.run{n}").open("x").close()
            return n
        except FileExistsError:
            n += 1


def wait_for_release(name, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not (HERE / f"release-{name}").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody released {name}")
        time.sleep(0.02)
'''

MATHS = """
def scale(x):
    return x * 2
"""


def make_flow(folder: Path, flow: str) -> Path:
    """A DAG folder: flow.py, helpers.py and a package lib/ beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "helpers.py").write_text(HELPERS)
    (folder / "lib").mkdir(exist_ok=True)
    (folder / "lib" / "__init__.py").write_text("")
    (folder / "lib" / "maths.py").write_text(MATHS)
    (folder / "flow.py").write_text(textwrap.dedent(flow))
    return folder


def dagexec(folder: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90) -> Any:
    return subprocess.run(
        [DAGEXEC, *args], cwd=folder, env=env or clean_env(), capture_output=True, text=True, timeout=timeout
    )


def start_dagexec(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [DAGEXEC, *args], cwd=folder, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def note(folder: Path, name: str) -> dict[str, Any]:
    return json.loads((folder / "notes" / f"{name}.json").read_text())


def noted(folder: Path, name: str) -> bool:
    return (folder / "notes" / f"{name}.json").is_file()


def executions(folder: Path, name: str) -> int:
    return len(list((folder / "notes").glob(f"{name}.run*")))


def show(folder: Path, run_id: str) -> dict[str, Any]:
    out = dagexec(folder, "show", run_id, "--timeline", "--json")
    assert out.returncode == 0, out.stderr
    shown: dict[str, Any] = json.loads(out.stdout)
    shown["records"] = {t["name"]: t for t in shown["tasks"]}
    return shown


# -- clusters -------------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask-cluster"))
    try:
        c.start_scheduler()
        c.start_worker(c.fresh_name("w"))
        c.start_worker(c.fresh_name("gpu"), "--resources", "GPU=1")
        c.wait_for_workers(2)
        yield c
    finally:
        c.stop()


@pytest.fixture
def shared(cluster: Cluster) -> Cluster:
    """The session cluster with its two workers (one killed by an earlier test is replaced)."""
    names = cluster.worker_pids()
    if not any(n.startswith("w") for n in names):
        cluster.start_worker(cluster.fresh_name("w"))
    if not any(n.startswith("gpu") for n in names):
        cluster.start_worker(cluster.fresh_name("gpu"), "--resources", "GPU=1")
    cluster.wait_for_workers(2)
    return cluster


@pytest.fixture(scope="session")
def spare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A scheduler of its own, for tests that kill every worker; each test brings and takes away its workers.

    It cannot import dagexec: every test run on it also proves that a scheduler needs Dask alone.
    """
    c = Cluster(tmp_path_factory.mktemp("dask-spare"))
    try:
        c.start_scheduler(without_dagexec=True)
        yield c
    finally:
        c.stop()


# -- code travels, bodies run on workers -------------------------------------------


MAIN_FLOW = """
    import asyncio
    import os

    import helpers
    from lib.maths import scale

    from dagexec_core import Dag, RetryPolicy

    dag = Dag("flow")


    @dag.task
    def extract():
        helpers.note("extract")
        return [1, 2, 3]


    @dag.task(deps=["extract"])
    async def transform(extract):
        await asyncio.sleep(0)
        helpers.note("transform")
        return [scale(x) for x in extract]


    @dag.task(deps=["transform"], retry=RetryPolicy(max_attempts=3, base=0.05))
    def flaky(transform):
        n = helpers.execution("flaky")
        helpers.note(f"flaky-{n}")
        if n == 1:
            raise ValueError("the first attempt fails")
        return sum(transform)


    @dag.task(deps=["flaky"], tags=["dask:GPU=1"])
    def on_gpu(flaky):
        helpers.note("on_gpu", total=flaky)
        return flaky


    @dag.task(deps=["on_gpu"])
    def report(on_gpu, ctx):
        helpers.note("report", total=on_gpu)
        return on_gpu
"""


def test_sync_and_async_bodies_run_on_workers_that_cannot_import_the_dag_folder(
    tmp_path: Path, shared: Cluster
) -> None:
    folder = make_flow(tmp_path / "flow", MAIN_FLOW)
    env = clean_env()
    env["DAGEXEC_DASK_ADDRESS"] = shared.address  # read, and it wins over Dask's own variable
    env["DASK_SCHEDULER_ADDRESS"] = "tcp://127.0.0.1:1"
    proc = subprocess.Popen(
        [DAGEXEC, "run", "flow.py", "--executor", "dask", "--json"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    workers = set(shared.worker_pids().values())
    gpu_pid = next(pid for name, pid in shared.worker_pids().items() if name.startswith("gpu"))
    for name in ("extract", "transform", "flaky-1", "flaky-2"):
        assert note(folder, name)["pid"] in workers, f"{name} did not run on a worker"
    assert note(folder, "on_gpu") == {"pid": gpu_pid, "total": 12}  # dask:GPU=1 went to the GPU worker
    assert note(folder, "report") == {"pid": proc.pid, "total": 12}  # ctx keeps a body on this machine
    assert report["tasks"]["flaky"]["attempts"] == 2 and executions(folder, "flaky") == 2
    # distributed's own logs stay quiet without -v; the dashboard link is shown once
    assert "distributed." not in stderr and "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if "dashboard" in line.lower()] == [
        line for line in stderr.splitlines() if line.startswith("dagexec: Dask dashboard: http://")
    ]
    assert stderr.count("Dask dashboard") == 1


def test_what_cannot_run_on_the_cluster_fails_in_bounded_time_with_an_error_naming_the_task(
    tmp_path: Path, shared: Cluster
) -> None:
    # extpkg is importable here (PYTHONPATH) but lives outside the DAG folder: it goes by reference,
    # like an installed package the workers lack.
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "extpkg.py").write_text("def value():\n    return 1\n")
    folder = make_flow(
        tmp_path / "flow",
        """
        import extpkg

        from dagexec_core import Dag, RetryPolicy

        dag = Dag("unrunnable")


        @dag.task(retry=RetryPolicy(max_attempts=3, base=0.01))
        def needs_extpkg():
            return extpkg.value()


        @dag.task(tags=["dask:TPU=1"])
        def needs_tpu():
            return 1


        @dag.task
        def fine():
            return 2
        """,
    )
    env = clean_env()
    env["PYTHONPATH"] = str(tmp_path / "ext")
    out = dagexec(
        folder,
        "run", "flow.py", "--executor", "dask", "--dask-address", shared.address,
        "--dask-no-workers-timeout", "0.5", "--json",
        env=env,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    tasks = json.loads(out.stdout)["tasks"]
    assert tasks["fine"]["state"] == "completed"
    ext = tasks["needs_extpkg"]
    assert ext["state"] == "dead_lettered" and ext["attempts"] == 1  # never retried
    assert ext["error"].startswith("TaskPicklingError: task 'needs_extpkg' could not be loaded on Dask worker")
    assert "No module named 'extpkg'" in ext["error"]
    tpu = tasks["needs_tpu"]
    assert tpu["state"] == "dead_lettered"
    assert "DaskNoWorkersError: task 'needs_tpu': no Dask worker offering TPU=1" in tpu["error"]


def test_a_worker_killed_mid_task_costs_one_attempt_and_the_retry_completes_the_run(
    tmp_path: Path, shared: Cluster
) -> None:
    folder = make_flow(
        tmp_path / "flow",
        """
        import helpers

        from dagexec_core import Dag, RetryPolicy

        dag = Dag("victim")


        @dag.task(retry=RetryPolicy(max_attempts=3, base=0.05))
        def victim():
            n = helpers.execution("victim")
            helpers.note(f"victim-{n}")
            if n == 1:
                helpers.wait_for_release("never")
            return n


        @dag.task(deps=["victim"])
        def after(victim):
            return victim
        """,
    )
    proc = start_dagexec(folder, "run", "flow.py", "--executor", "dask", "--dask-address", shared.address, "--json")
    try:
        wait_for(lambda: noted(folder, "victim-1"), "the first attempt to start")
        pid = note(folder, "victim-1")["pid"]
        (name,) = [n for n, p in shared.worker_pids().items() if p == pid]
        shared.kill_worker(name)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["tasks"]["victim"]["attempts"] == 2  # one dagexec attempt per worker death
    assert report["tasks"]["after"]["state"] == "completed"
    retrying = [t for t in show(folder, report["run_id"])["transitions"] if t["state"] == "retrying"]
    assert (
        len(retrying) == 1 and "DaskWorkerLostError: task 'victim': the Dask worker running it" in retrying[0]["error"]
    )


def test_a_cluster_whose_workers_are_all_gone_fails_the_attempt_within_the_no_workers_timeout(
    tmp_path: Path, spare: Cluster
) -> None:
    name = spare.fresh_name("lone")
    spare.start_worker(name)
    spare.wait_for_workers(1)
    folder = make_flow(
        tmp_path / "flow",
        """
        import helpers

        from dagexec_core import Dag, RetryPolicy

        dag = Dag("alone")


        @dag.task(retry=RetryPolicy(max_attempts=2, base=0.01))
        def stuck():
            helpers.note(f"stuck-{helpers.execution('stuck')}")
            helpers.wait_for_release("never")
        """,
    )
    proc = start_dagexec(
        folder, "run", "flow.py", "--executor", "dask", "--dask-address", spare.address,
        "--dask-no-workers-timeout", "1", "--json",
    )  # fmt: skip
    try:
        wait_for(lambda: noted(folder, "stuck-1"), "the attempt to start")
        spare.kill_worker(name)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr
    stuck = json.loads(stdout)["tasks"]["stuck"]
    assert stuck["attempts"] == 2 and executions(folder, "stuck") == 1
    assert stuck["error"].startswith(
        f"DaskNoWorkersError: task 'stuck': the Dask cluster at {spare.address} has had no workers for 1s"
    )


def test_a_worker_with_another_dagexec_version_is_named_and_not_retried(tmp_path: Path, spare: Cluster) -> None:
    name = spare.fresh_name("foreign")
    spare.start_worker(name, foreign_version="0.0.1")
    try:
        spare.wait_for_workers(1)
        folder = make_flow(
            tmp_path / "flow",
            """
            from dagexec_core import Dag

            dag = Dag("versions")


            @dag.task(retry=3)
            def anything():
                return 1
            """,
        )
        out = dagexec(folder, "run", "flow.py", "--executor", "dask", "--dask-address", spare.address, "--json")
    finally:
        spare.kill_worker(name)
    assert out.returncode == 1, out.stderr
    task = json.loads(out.stdout)["tasks"]["anything"]
    assert task["attempts"] == 1
    assert task["error"].startswith("DaskWorkerVersionError: task 'anything': Dask worker tcp://127.0.0.1:")
    assert "has dagexec 0.0.1 installed, but this run uses dagexec" in task["error"]


def test_priority_reaches_the_dask_scheduler(tmp_path: Path, spare: Cluster) -> None:
    name = spare.fresh_name("single")
    spare.start_worker(name)
    try:
        spare.wait_for_workers(1)
        folder = make_flow(
            tmp_path / "flow",
            """
            import helpers

            from dagexec_core import Dag

            dag = Dag("priorities")


            def ran(name):
                with open(helpers.HERE / "order", "a") as f:
                    f.write(name + "\\n")


            @dag.task(priority=5)
            def blocker():
                helpers.note("blocker")
                helpers.wait_for_release("blocker")


            for i in range(3):
                dag.add(f"low{i}", lambda i=i: ran(f"low{i}"))


            @dag.task
            def gate(ctx):  # runs here at once: 'urgent' is sent after the low ones
                return 1


            @dag.task(deps=["gate"], priority=10)
            def urgent(gate):
                ran("urgent")
            """,
        )
        proc = start_dagexec(folder, "run", "flow.py", "--executor", "dask", "--dask-address", spare.address)
        try:
            wait_for(lambda: noted(folder, "blocker"), "the blocker to hold the only worker")
            from distributed import Client

            keys = lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks]  # noqa: E731
            with Client(spare.address, set_as_default=False) as client:
                wait_for(lambda: any(k.startswith("urgent-") for k in client.run_on_scheduler(keys)), "urgent sent")
            (folder / "release-blocker").touch()
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    finally:
        spare.kill_worker(name)
    assert proc.returncode == 0, stderr
    order = (folder / "order").read_text().split()
    assert order[0] == "urgent" and sorted(order[1:]) == ["low0", "low1", "low2"]


def test_an_unreachable_scheduler_is_one_line_naming_the_address_and_exit_code_2(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    folder = make_flow(tmp_path / "flow", MAIN_FLOW)
    out = dagexec(
        folder, "run", "flow.py", "--executor", "dask", "--dask-address", address, "--dask-connect-timeout", "1"
    )
    assert out.returncode == 2
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"dagexec: error: cannot reach the Dask scheduler at {address} within 1s")
    assert not (folder / "notes").exists()
    runs = dagexec(folder, "runs", "--json")
    assert runs.returncode != 0 or json.loads(runs.stdout) == []  # no run was recorded


def test_a_coordinator_killed_mid_run_resumes_on_dask(tmp_path: Path, shared: Cluster) -> None:
    folder = make_flow(
        tmp_path / "flow",
        """
        import helpers

        from dagexec_core import Dag

        dag = Dag("resumable")


        @dag.task
        def first():
            helpers.note(f"first-{helpers.execution('first')}")
            return 20


        @dag.task(deps=["first"], retry=2)  # the attempt the crash cut short may count as one
        def second(first):
            n = helpers.execution("second")
            helpers.note(f"second-{n}")
            helpers.wait_for_release("second")
            return first + 1


        @dag.task(deps=["second"])
        async def third(second):
            helpers.note("third", value=second * 2)
            return second * 2
        """,
    )
    proc = start_dagexec(folder, "run", "flow.py", "--executor", "dask", "--dask-address", shared.address)
    try:
        wait_for(lambda: noted(folder, "second-1"), "second to start")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    (folder / "release-second").touch()  # lets the orphaned attempt on its worker end too
    runs = json.loads(dagexec(folder, "runs", "--json").stdout)
    (run_id,) = [r["run_id"] for r in runs]
    out = dagexec(folder, "resume", run_id, "--executor", "dask", "--dask-address", shared.address, "--json")
    assert out.returncode == 0, out.stderr
    tasks = json.loads(out.stdout)["tasks"]
    assert {t["state"] for t in tasks.values()} == {"completed"}
    assert executions(folder, "first") == 1  # completed before the crash: not run again
    assert note(folder, "third") == {"pid": note(folder, "third")["pid"], "value": 42}
    assert note(folder, "third")["pid"] in set(shared.worker_pids().values())


def test_cancelling_a_run_cancels_its_remote_tasks(tmp_path: Path, shared: Cluster) -> None:
    folder = make_flow(
        tmp_path / "flow",
        """
        import helpers

        from dagexec_core import Dag

        dag = Dag("cancel")

        for i in range(4):
            def body(i=i):
                helpers.note(f"t{i}")
                helpers.wait_for_release("all")
            dag.add(f"t{i}", body)
        """,
    )
    (folder / "pyproject.toml").write_text("[tool.dagexec]\ngrace_period = 0.1\n")
    proc = start_dagexec(folder, "run", "flow.py", "--executor", "dask", "--dask-address", shared.address)
    try:
        # two workers of one thread each: two tasks run, two wait on the scheduler
        wait_for(lambda: len(list((folder / "notes").glob("t*.json"))) == 2, "two tasks to start")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        (folder / "release-all").touch()
    assert proc.returncode == 130, stderr
    assert "resume with: dagexec resume" in stdout
    started = {p.stem for p in (folder / "notes").glob("t*.json")}
    assert len(started) == 2

    from distributed import Client

    with Client(shared.address, set_as_default=False) as client:  # the cluster forgets the cancelled tasks

        def keys(dask_scheduler: Any) -> list[str]:  # a local function: pickled by value for the scheduler
            return [k for k in map(str, dask_scheduler.tasks) if k[:3] in ("t0-", "t1-", "t2-", "t3-")]

        wait_for(lambda: not client.run_on_scheduler(keys), "the scheduler to forget the run's tasks")
    assert {p.stem for p in (folder / "notes").glob("t*.json")} == started  # the waiting two never ran


def test_settings_come_from_tool_dagexec_and_tracing_off_imports_no_tracing_code(
    tmp_path: Path, shared: Cluster
) -> None:
    folder = make_flow(
        tmp_path / "flow",
        """
        from dagexec_core import Dag

        dag = Dag("settings")


        @dag.task(tags=["dask:TPU=2"])
        def needs_tpus():
            return 1
        """,
    )
    (folder / "pyproject.toml").write_text(
        f'[tool.dagexec]\ndask_address = "{shared.address}"\ndask_no_workers_timeout = 0.3\n'
    )
    (folder / "dagplugins.py").write_text(
        "import sys\nfrom pathlib import Path\nfrom dagexec_core import hookimpl\n\n\n"
        "@hookimpl\ndef dagexec_run_finished(run, report):\n"
        "    loaded = 'dagexec_plugins.tracing' in sys.modules\n"
        "    Path(__file__).with_name('tracing-loaded').write_text(str(loaded))\n"
    )
    out = dagexec(folder, "run", "flow.py", "--executor", "dask", "-p", "no:tracing", "--json")
    assert out.returncode == 1, out.stderr
    error = json.loads(out.stdout)["tasks"]["needs_tpus"]["error"]
    assert error.startswith(
        f"DaskNoWorkersError: task 'needs_tpus': no Dask worker offering TPU=2 joined {shared.address}"
    )
    assert "in 0.3s" in error
    assert (folder / "tracing-loaded").read_text() == "False"


def test_the_example_of_docs_distributed_md_runs_on_the_cluster(tmp_path: Path, shared: Cluster) -> None:
    import re

    text = (ROOT / "docs" / "distributed.md").read_text()
    files = dict(re.findall(r"```python\n# (\w+\.py)\n(.*?)```", text, re.S))
    assert set(files) == {"helpers.py", "flow.py"}
    folder = tmp_path / "example"
    folder.mkdir()
    for name, code in files.items():
        (folder / name).write_text(code)
    env = clean_env()
    env["DASK_SCHEDULER_ADDRESS"] = shared.address  # Dask's own variable is read too
    out = dagexec(folder, "run", "flow.py", "--executor", "dask", "--json", env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["status"] == "completed" and report["counts"] == {"completed": 3}
    port = json.loads(shared.scheduler_file.read_text())["services"]["dashboard"]
    assert f"Dask dashboard: http://127.0.0.1:{port}/status" in out.stderr  # the shared scheduler's


# -- the Python API and the local cluster ---------------------------------------------


def test_an_unpicklable_function_fails_once_with_an_error_naming_the_task(shared: Cluster) -> None:
    import threading

    lock = threading.Lock()
    dag = Dag("dask-pickle")
    dag.add("fine", lambda: "ok")
    dag.add("locked", lambda: lock.locked(), retry=3)
    report = run(dag, persist=False, signals=False, executor="dask", dask_address=shared.address)
    assert report.outputs["fine"] == "ok"
    error = report.records["locked"].error or ""
    assert error.startswith("TaskPicklingError: task 'locked' could not be sent to the Dask cluster")
    assert report.records["locked"].attempts == 1 and report.records["locked"].state is TaskState.DEAD_LETTERED


def test_the_api_takes_the_no_workers_timeout_and_tags_ask_for_resources(shared: Cluster) -> None:
    dag = Dag("api")
    dag.add("gpu", os.getpid, tags=["dask:GPU=1"])
    dag.add("tpu", os.getpid, tags=["dask:TPU=1"])
    dag.add("bad", os.getpid, tags=["dask:GPU"], retry=3)
    report = run(
        dag, persist=False, signals=False, executor="dask", dask_address=shared.address, dask_no_workers_timeout=0.2
    )
    gpu_worker = next(pid for name, pid in shared.worker_pids().items() if name.startswith("gpu"))
    assert report.outputs["gpu"] == gpu_worker
    assert (report.records["tpu"].error or "").startswith(
        "DaskNoWorkersError: task 'tpu': no Dask worker offering TPU=1"
    )
    bad = report.records["bad"]
    assert bad.attempts == 1 and (bad.error or "").startswith(
        "DaskResourceTagError: task 'bad': tag 'dask:GPU' is not a Dask resource request; write it dask:NAME=AMOUNT"
    )


def test_quickstart_finishes_on_a_local_cluster_and_distributed_logs_only_with_v(tmp_path: Path) -> None:
    quickstart = str(ROOT / "examples" / "quickstart.py")
    out = dagexec(tmp_path, "run", quickstart, "--executor", "dask", "--dask-workers", "1")
    assert out.returncode == 0, out.stderr
    assert "completed" in out.stdout
    assert "distributed." not in out.stderr and out.stderr.count("Dask dashboard") == 1
    verbose = dagexec(tmp_path, "run", quickstart, "--executor", "dask", "--dask-workers", "1", "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "distributed." in verbose.stderr


def test_a_local_cluster_worker_killed_mid_task_costs_one_attempt(tmp_path: Path) -> None:
    folder = make_flow(
        tmp_path / "flow",
        """
        import helpers

        from dagexec_core import Dag, RetryPolicy

        dag = Dag("local-victim")


        @dag.task(retry=RetryPolicy(max_attempts=2, base=0.05))
        def victim():
            n = helpers.execution("victim")
            helpers.note(f"victim-{n}")
            if n == 1:
                helpers.wait_for_release("never")
            return n
        """,
    )
    proc = start_dagexec(folder, "run", "flow.py", "--executor", "dask", "--dask-workers", "2", "--json")
    try:
        wait_for(lambda: noted(folder, "victim-1"), "the first attempt to start")
        os.kill(note(folder, "victim-1")["pid"], signal.SIGKILL)  # the worker process running it
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    victim = report["tasks"]["victim"]
    assert victim["attempts"] == 2 and victim["state"] == "completed"
    assert note(folder, "victim-1")["pid"] != note(folder, "victim-2")["pid"]
    retrying = [t for t in show(folder, report["run_id"])["transitions"] if t["state"] == "retrying"]
    assert len(retrying) == 1 and retrying[0]["error"].startswith("DaskWorkerLostError: task 'victim': the Dask worker")
