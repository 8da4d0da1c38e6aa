"""What a report reads from storage (`Storage.run_history`) and the page document built from it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dagexec_core import Dag, RetryPolicy, hookimpl, run
from dagexec_core.report import (
    FULL_GRAPH_EDGES_MAX,
    FULL_GRAPH_MAX,
    GROUPS_MAX,
    SPAN_KINDS,
    _graph,
    _groups,
    render_html,
    run_data,
)
from dagexec_core.stages import RunHistory
from dagexec_plugins.memory import MemoryStorage
from dagexec_plugins.sqlite import SqliteStorage

DAGEXEC = str(Path(sys.executable).with_name("dagexec"))

FLOW = """
from pathlib import Path
from dagexec_core import Dag, RetryPolicy
from dagexec_core.patterns import branch

dag = Dag("small")
SEEN = Path(__file__).parent / "seen"

@dag.task(retry=RetryPolicy(max_attempts=3, backoff="fixed", base=0.01))
def flaky():
    if not SEEN.exists():
        SEEN.write_text("1")
        raise ConnectionError("first call fails")
    return 5

branch(dag, "pick", lambda flaky: "big" if flaky > 3 else "small", branches=["big", "small"], deps=["flaky"])

@dag.task(deps=["pick"])
def big(pick):
    return 1

@dag.task(deps=["pick"])
def small(pick):
    return 2
"""


def kinds(spans: list[float]) -> list[str]:
    return [SPAN_KINDS[int(k)] for k in spans[2::3]]


def test_sqlite_run_history_holds_every_attempt_the_dependencies_and_the_meta(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    proc = subprocess.run(
        [DAGEXEC, "run", "flow.py", "--state", "state.db", "--json"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    storage = SqliteStorage(tmp_path / "state.db")
    try:
        history = storage.run_history(run_id)
        data = run_data(storage, run_id)
    finally:
        storage.close()
    assert {k: list(v) for k, v in history.deps.items()} == {
        "flaky": [],
        "pick": ["flaky"],
        "big": ["pick"],
        "small": ["pick"],
    }
    flaky = [(e[1], e[2]) for e in history.entries if e[0] == "flaky"]
    assert flaky == [("running", 1), ("retrying", 1), ("running", 2), ("completed", 2)]
    assert all(e[4] is not None for e in history.entries if e[1] == "running")  # each attempt's start
    assert history.meta["branches"] == {"pick": "big"}
    tasks = data["tasks"]
    i = tasks["name"].index("flaky")
    spans = tasks["spans"][i]
    assert kinds(spans)[-3:] == ["retried", "retry_wait", "ok"]  # after start-up, maybe "queued"
    assert spans[-8] <= spans[-6] <= spans[-5] <= spans[-3]  # each ends where the next begins, or before
    small = tasks["name"].index("small")
    assert tasks["spans"][small] == [] and tasks["skipped"][small] is not None
    assert data["meta"]["branches"] == {"pick": "big"} and data["params"] is None
    assert tasks["deps"][tasks["name"].index("big")] == [tasks["name"].index("pick")]


class KeptMemory(MemoryStorage):
    """Memory storage that is handed every record (the engine writes rows only to persistent storage)."""

    persistent = True


class RecordsOnly:
    """A storage without the optional ``run_history``: everything else is delegated."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "run_history":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_memory_storage_and_storage_without_history_still_give_a_report() -> None:
    memory = KeptMemory()

    class Provide:
        @hookimpl
        def dagexec_storage(self) -> KeptMemory:
            return memory

    dag = Dag("mem")
    calls = []

    @dag.task(retry=RetryPolicy(max_attempts=2, backoff="fixed", base=0.01))
    def once() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first")
        return 1

    @dag.task(deps=["once"])
    def after(once: int) -> int:
        return once + 1

    report = run(dag, plugins=[Provide()])
    assert report.ok
    history = memory.run_history(report.run_id)
    assert isinstance(history, RunHistory) and list(history.deps["after"]) == ["once"]
    with_history = run_data(memory, report.run_id)
    without = run_data(RecordsOnly(memory), report.run_id)  # type: ignore[arg-type]
    for data in (with_history, without):
        assert data["tasks"]["name"] == ["once", "after"]
        assert [kinds(s)[-1] for s in data["tasks"]["spans"]] == ["ok", "ok"]
        assert data["tasks"]["attempts"] == [2, 1]
    assert with_history["tasks"]["deps"] == [[], [0]]
    assert without["tasks"]["deps"] == [[], []]  # no dependencies known: a graph without edges


def test_large_graphs_are_grouped_into_an_acyclic_graph_of_few_nodes() -> None:
    # a chain of 10,000: one name pattern, 10,000 depths -> bands of depth
    names = [f"t{i}" for i in range(10_000)]
    deps = [[]] + [[i - 1] for i in range(1, 10_000)]
    g = _groups(names, deps)
    assert len(g["labels"]) <= GROUPS_MAX and len(g["of"]) == 10_000
    assert all(a < b for a, b in g["edges"])  # bands in depth order: no cycle
    # every task also depends on the first: the groups' graph is reduced to the chain of bands
    deps = [[]] + [[i - 1, 0] for i in range(1, 10_000)]
    g = _groups(names, deps)
    assert len(g["labels"]) <= GROUPS_MAX and g["edges"] == [(k, k + 1) for k in range(len(g["labels"]) - 1)]
    # a small DAG with too many long edges to lay out one by one is grouped too
    small = [f"s{i}" for i in range(FULL_GRAPH_MAX)]
    assert _graph(small, {n: small[:i][-2:] for i, n in enumerate(small)})[1] is None
    dense = {n: small[: min(i, FULL_GRAPH_EDGES_MAX // 100)] for i, n in enumerate(small)}
    assert _graph(small, dense)[1] is not None
    # layers of fan-out with a few name patterns: one group per pattern and depth
    names = [f"{['fetch', 'parse'][i % 2]}[{i}]" for i in range(2 * FULL_GRAPH_MAX)]
    g = _groups(names, [[] for _ in names])
    assert sorted(g["labels"]) == ["fetch[#] · depth 0", "parse[#] · depth 0"] and g["edges"] == []


def test_task_names_and_errors_cannot_escape_the_page_script() -> None:
    evil = "</script><script>alert(1)</script><!--"
    memory = KeptMemory()

    class Provide:
        @hookimpl
        def dagexec_storage(self) -> KeptMemory:
            return memory

    dag = Dag("escape")

    def boom() -> None:
        raise ValueError(evil)

    dag.add(evil, boom)
    report = run(dag, plugins=[Provide()])
    page = render_html(run_data(memory, report.run_id))
    assert evil not in page and "<script>alert" not in page
    # the document is still the JSON the viewer parses, with the name intact
    doc = re.search(r'<script type="application/json" id="dagexec-data">(.*?)</script>', page, re.S)
    assert doc is not None and json.loads(doc.group(1))["tasks"]["name"] == [evil]
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page


CRASHING = """
import time
from pathlib import Path
from dagexec_core import Dag

dag = Dag("crashing")

@dag.task
def first():
    return 1

@dag.task(deps=["first"])
def hangs(first):
    marker = Path(__file__).with_name("hangs.started")
    if not marker.exists():  # the first attempt hangs until the driver is killed; the resumed one returns
        marker.write_text("1")
        time.sleep(120)
    return 2
"""


def page_document(path: Path) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="dagexec-data">(.*?)</script>', path.read_text(), re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_an_attempt_cut_by_a_killed_driver_shows_as_interrupted_before_and_after_the_resume(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(CRASHING)
    driver = subprocess.Popen([DAGEXEC, "run", "flow.py", "-q"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "hangs.started").exists():
            assert driver.poll() is None and time.monotonic() < deadline, "the task never started"
            time.sleep(0.02)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    runs = json.loads(subprocess.run([DAGEXEC, "runs", "--json"], cwd=tmp_path, capture_output=True, text=True).stdout)
    run_id = runs[0]["run_id"]
    assert subprocess.run([DAGEXEC, "report", run_id, "-o", "crashed.html"], cwd=tmp_path).returncode == 0
    doc = page_document(tmp_path / "crashed.html")
    assert doc["run"]["status"] == "crashed"
    hangs = doc["tasks"]["name"].index("hangs")
    assert kinds(doc["tasks"]["spans"][hangs])[-1] == "interrupted"
    # the resume runs the task again (a crash uses up no attempt): the cut attempt stays drawn as cut short
    resumed = subprocess.run([DAGEXEC, "resume", run_id, "-q"], cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert subprocess.run([DAGEXEC, "report", run_id, "-o", "resumed.html"], cwd=tmp_path).returncode == 0
    doc = page_document(tmp_path / "resumed.html")
    assert doc["tasks"]["state"][hangs] == doc["states"].index("completed")
    drawn = kinds(doc["tasks"]["spans"][hangs])
    assert "interrupted" in drawn and drawn[-1] != "interrupted", drawn
