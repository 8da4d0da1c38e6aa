"""`dagexec report` and `dagexec graph --format html`: real runs through the CLI, pages checked in headless Chromium.

One run (a retry, a dead letter, a skipped branch, a loop, an event) is made
once per module with `dagexec run` on a DAG file in its own folder, next to
the helper module it imports; its report is written with `dagexec report`
and loaded from disk in Debian's chromium, driven by Playwright (never a
downloaded browser). Every request the page makes is intercepted: only the
page's own file may load.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

DAGEXEC = str(Path(sys.executable).with_name("dagexec"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRACE_URL = "http://localhost:16686/trace/{trace_id}"

HELPERS = '''
from pathlib import Path


def flaky(folder):
    """Fails the first time it is called for ``folder``, then returns 42."""
    seen = Path(folder) / "flaky.seen"
    if not seen.exists():
        seen.write_text("1")
        raise ConnectionError("upstream answered 503, try again")
    return 42
'''

FLOW = """
from pathlib import Path

from dagexec_core import Dag, RetryPolicy
from dagexec_core.patterns import Stop, branch, event_task, loop

from helpers import flaky

dag = Dag("orders")
HERE = Path(__file__).parent


@dag.task
def extract():
    return [1, 2, 3]


@dag.task(deps=["extract"], retry=RetryPolicy(max_attempts=3, backoff="fixed", base=0.05))
def fetch_prices(extract):
    return flaky(HERE)


@dag.task(deps=["extract"], retry=RetryPolicy(max_attempts=2, backoff="fixed", base=0.01))
def load_legacy(extract, ctx):
    ctx.log.info("posting %d rows to the legacy endpoint", len(extract))
    raise ValueError("legacy endpoint rejected the batch: 400 Bad Request")


@dag.task(deps=["load_legacy"])
def archive(load_legacy):
    return "archived"


branch(dag, "route", lambda fetch_prices: "fast_path" if fetch_prices > 10 else "slow_path",
       branches=["fast_path", "slow_path"], deps=["fetch_prices"])


@dag.task(deps=["route"])
def fast_path(route):
    return "fast"


@dag.task(deps=["route"])
def slow_path(route):
    return "slow"


loop(dag, "refine", lambda iteration, previous: Stop(previous) if iteration >= 3 else (previous or 0) + iteration,
     max_iterations=10, deps=["extract"])


@dag.task(deps=["fast_path", "slow_path", "refine"], trigger="none_failed")
def publish(ctx):
    ctx.emit("published", {"rows": 3})
    return True


event_task(dag, "notify", "published", timeout=10, deps=["extract"])
"""

TASKS = [
    "extract",
    "fetch_prices",
    "load_legacy",
    "archive",
    "route",
    "fast_path",
    "slow_path",
    "refine",
    "publish",
    "notify",
]


def dagexec(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DAGEXEC, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The DAG file's folder, its state file and the id of its one (failed) run, traced."""
    folder = tmp_path_factory.mktemp("orders")
    (folder / "helpers.py").write_text(HELPERS)
    (folder / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DAGEXEC_"))}
    proc = dagexec(
        "run",
        "flow.py",
        "--state",
        "state.db",
        "--trace",
        "console",
        "--param",
        "region=eu-west-3",
        "--json",
        cwd=folder,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr  # load_legacy failed: the run failed
    report = json.loads(proc.stdout)
    assert report["tasks"]["fetch_prices"]["attempts"] == 2
    assert report["tasks"]["load_legacy"]["state"] == "dead_lettered"
    assert report["tasks"]["slow_path"]["state"] == "skipped"
    return {"folder": folder, "state": str(folder / "state.db"), "run_id": report["run_id"], "report": report}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Loaded:
    """A page opened from a file, with every request it made and every console problem."""

    def __init__(self, browser: Browser, path: Path) -> None:
        self.url = path.resolve().as_uri()
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1100})

        def only_the_page(route: Any) -> None:
            self.requests.append(route.request.url)
            if route.request.url == self.url:
                route.continue_()
            else:
                route.abort()

        self.context.route("**/*", only_the_page)
        self.page: Page = self.context.new_page()
        self.page.on("console", lambda m: self.problems.append(f"{m.type}: {m.text}") if m.type != "log" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=60_000)

    def close(self) -> None:
        self.context.close()


def test_report_of_a_run_shows_graph_timeline_tasks_and_dead_letters_and_fetches_nothing(
    stored_run: dict[str, Any], browser: Browser, tmp_path: Path
) -> None:
    run_id = stored_run["run_id"]
    out = tmp_path / "run.html"
    proc = dagexec(
        "report", run_id, "--state", stored_run["state"], "-o", str(out), "--trace-url", TRACE_URL, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    loaded = Loaded(browser, out)
    page = loaded.page
    try:
        assert loaded.requests == [loaded.url]
        assert loaded.problems == []
        # the graph: every task a node, with its final state in its tooltip
        for name in TASKS:
            state = stored_run["report"]["tasks"][name]["state"]
            title = page.text_content(f"#graph .node[data-task='{name}'] title")
            assert title is not None and title.startswith(f"{name}: {state}"), title
        assert page.locator("#graph .edge").count() == 11
        assert page.locator("#graph .edge.skip").count() == 2  # route -> slow_path, load_legacy -> archive
        # the timeline: the retry, its wait and the retried attempt; the dead letter's two failures
        kinds = {
            name: page.eval_on_selector_all(
                f"#timeline .tl-row[data-task='{name}'] .bar", "bs => bs.map(b => b.dataset.kind)"
            )
            for name in TASKS
        }
        assert kinds["fetch_prices"][-3:] == ["retried", "retry_wait", "ok"]
        assert kinds["load_legacy"][-3:] == ["retried", "retry_wait", "failed"]
        assert kinds["slow_path"] == [] and kinds["archive"] == []
        assert page.text_content("#timeline .tl-row[data-task='slow_path'] .skipmark") == "skipped"
        assert kinds["notify"][-1:] == ["ok"] and kinds["extract"][-1:] == ["ok"]
        assert page.locator("#timeline .marker").filter(has_text="event:published").count() == 1
        # the table and the dead letters
        assert page.locator("#table .tr").count() == len(TASKS)
        row = page.locator("#table .tr[data-task='load_legacy']")
        assert "dead lettered" in row.inner_text() and "400 Bad Request" in row.inner_text()
        assert page.locator("#dead-letters .dl").count() == 1
        assert "ValueError" in page.inner_text("#dead-letters .dl[data-task='load_legacy']")
        # with the last lines its failing attempt logged
        page.click("#dead-letters .dl[data-task='load_legacy'] summary")
        letter = page.inner_text("#dead-letters .dl[data-task='load_legacy'] pre")
        assert "last 1 log line(s) of attempt 2:\nINFO posting 3 rows to the legacy endpoint" in letter
        # meta: the branch taken and the loop's checkpoint
        meta = page.inner_text("#meta")
        assert "fast_path" in meta and "iteration 3, done" in meta and "published" in meta
        # the run's parameters, in their own section
        params = page.locator("#meta h3", has_text="Parameters").locator("xpath=following-sibling::table[1]")
        assert params.inner_text().split() == ["region", "eu-west-3"]
        # each task links to its trace
        trace_id = stored_run["report"]["tasks"]["fetch_prices"]["trace_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id or "")
        href = page.get_attribute("#table .tr[data-task='fetch_prices'] a", "href")
        assert href == TRACE_URL.replace("{trace_id}", trace_id)

        # clicking a task in the graph highlights it in every view
        page.click("#graph .node[data-task='load_legacy']")
        for view in ("#graph .node", "#timeline .tl-row", "#table .tr", "#dead-letters .dl"):
            assert page.locator(f"{view}.sel").count() == 1, view
            assert page.get_attribute(f"{view}.sel", "data-task") == "load_legacy", view
        assert page.text_content("#detail-body h3") == "load_legacy"
        # and clicking one in the table moves the highlight
        page.click("#table .tr[data-task='fetch_prices']")
        for view in ("#graph .node", "#timeline .tl-row", "#table .tr"):
            assert page.get_attribute(f"{view}.sel", "data-task") == "fetch_prices", view
        assert page.locator("#dead-letters .dl.sel").count() == 0
        assert page.locator("#graph .edge.sel").count() == 2  # extract -> fetch_prices -> route
        assert page.url.endswith("#task=fetch_prices")  # a link to the selection
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert (tmp_path / "report.png").stat().st_size > 10_000
        assert loaded.requests == [loaded.url] and loaded.problems == []
        # opened with a #task= fragment, the page starts with that task selected
        page.goto(loaded.url + "#task=archive")
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert page.get_attribute("#table .tr.sel", "data-task") == "archive"
        assert page.get_attribute("#graph .node.sel", "data-task") == "archive"
        assert set(loaded.requests) == {loaded.url} and loaded.problems == []
    finally:
        loaded.close()


def test_graph_format_html_shows_the_dag_before_any_run(browser: Browser, tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "helpers.py").write_text(HELPERS)
    (folder / "flow.py").write_text(FLOW)
    proc = dagexec("graph", "flow.py", "--format", "html", "-o", str(tmp_path / "dag.html"), cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert not (folder / ".dagexec").exists()  # nothing was run
    loaded = Loaded(browser, tmp_path / "dag.html")
    try:
        page = loaded.page
        assert loaded.requests == [loaded.url] and loaded.problems == []
        assert sorted(page.eval_on_selector_all("#graph .node", "ns => ns.map(n => n.dataset.task)")) == sorted(TASKS)
        assert page.locator("#graph .edge").count() == 11
        assert page.text_content("#graph .node[data-task='publish'] title") == "publish: pending"
        page.click("#table .tr[data-task='route']")
        assert page.get_attribute("#graph .node.sel", "data-task") == "route"
        page.screenshot(path=str(tmp_path / "dag.png"))
    finally:
        loaded.close()
    # the same page on standard output
    printed = dagexec("graph", "flow.py", "--format", "html", cwd=folder)
    assert printed.returncode == 0 and printed.stdout.lstrip().startswith("<!DOCTYPE html>")


BIG_FLOW = """
from dagexec_core import Dag

dag = Dag("big")
WIDTH = 40
names = []
for i in range(1200):
    layer, k = divmod(i, WIDTH)
    name = f"step{layer}_{k}"
    deps = [names[(layer - 1) * WIDTH + (k + j) % WIDTH] for j in range(2)] if layer else []
    if i == 605:
        def body():
            raise RuntimeError("boom")
    else:
        def body():
            return None
    dag.add(name, body, deps=deps)
    names.append(name)
"""


def test_a_large_run_is_drawn_as_groups_and_only_visible_rows_are_in_the_page(browser: Browser, tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text(BIG_FLOW)
    proc = dagexec("run", "big.py", "--state", "state.db", "--json", "-q", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    shown = dagexec("report", run_id, "--state", "state.db", cwd=tmp_path)  # no -o: RUN_ID.html here
    assert shown.returncode == 0, shown.stderr
    out = tmp_path / f"{run_id}.html"
    assert shown.stdout.strip() == str(out.name) and out.is_file()
    loaded = Loaded(browser, out)
    try:
        page = loaded.page
        assert loaded.requests == [loaded.url] and loaded.problems == []
        groups = page.locator("#graph .node").count()
        assert 10 <= groups <= 150  # 30 layers of 40: one group per layer
        assert page.locator("#graph .node[data-task]").count() == 0
        assert page.locator("#timeline .tl-row").count() < 100  # not 1200: rows are drawn as they scroll in
        assert page.locator("#table .tr").count() < 100
        # a task far down the table, chosen by filtering, lights up its group and its timeline row
        page.fill("#task-filter", "step29_2")
        page.click("#table .tr[data-task='step29_2']")
        assert page.locator("#graph .node.sel").count() == 1
        assert page.get_attribute("#timeline .tl-row.sel", "data-task") == "step29_2"
        assert "skipped" in page.inner_text("#detail-body")
        # clicking a group lists its tasks in the table
        page.click("#graph .node.sel")
        assert page.text_content("#task-count").startswith("40 of 1200 in group step#_# · depth 29")
        assert loaded.problems == []
    finally:
        loaded.close()


def test_report_open_hands_the_file_to_the_browser(stored_run: dict[str, Any], tmp_path: Path) -> None:
    opener = tmp_path / "opener.py"
    opened = tmp_path / "opened.txt"
    opener.write_text(f"import sys, pathlib\npathlib.Path({str(opened)!r}).write_text(sys.argv[1])\n")
    env = dict(os.environ, BROWSER=f"{sys.executable} {opener} %s")
    proc = dagexec("report", stored_run["run_id"], "--state", stored_run["state"], "--open", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    page = tmp_path / f"{stored_run['run_id']}.html"
    assert opened.read_text() == page.resolve().as_uri()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trace-url", "http://jaeger/trace/"], "{trace_id} placeholder"),
        (["--trace-url", "javascript:alert({trace_id})"], "must be an http(s) address"),
        (["-o", "/nonexistent-dir/x.html"], "cannot write the report to '/nonexistent-dir/x.html'"),
    ],
)
def test_report_refuses_bad_options_in_one_line(
    stored_run: dict[str, Any], tmp_path: Path, args: list[str], message: str
) -> None:
    proc = dagexec("report", stored_run["run_id"], "--state", stored_run["state"], *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1
    assert not list(tmp_path.glob("*.html"))


def test_report_of_an_unknown_run_names_it_and_writes_nothing(stored_run: dict[str, Any], tmp_path: Path) -> None:
    proc = dagexec("report", "no-such-run", "--state", stored_run["state"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "no run 'no-such-run'" in proc.stderr and "dagexec runs" in proc.stderr
    assert not list(tmp_path.glob("*.html"))
