"""docs/report.md stays true: its example DAG runs as described and its report holds what the page claims."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from dagexec_core.report import FULL_GRAPH_EDGES_MAX, FULL_GRAPH_MAX, GROUP_EDGES_MAX, GROUPS_MAX

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "report.md").read_text()
DAGEXEC = str(Path(sys.executable).with_name("dagexec"))


def dagexec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DAGEXEC, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_example_runs_as_described_and_its_report_is_written_where_the_doc_says(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC, re.S)
    assert len(blocks) == 1
    folder = tmp_path / "orders"
    folder.mkdir()
    (folder / "flow.py").write_text(blocks[0])
    proc = dagexec("run", "flow.py", "--json", cwd=folder)
    assert proc.returncode == 1, proc.stderr  # "exit code 1: load_legacy failed"
    report = json.loads(proc.stdout)
    states = {name: t["state"] for name, t in report["tasks"].items()}
    assert states["load_legacy"] == "dead_lettered" and states["archive"] == "skipped"
    assert states["slow_path"] == "skipped" and states["fast_path"] == "completed"
    assert report["tasks"]["fetch_prices"]["attempts"] == 2
    run_id = report["run_id"]
    written = dagexec("report", run_id, cwd=folder)  # "write RUN_ID.html here and print its path"
    assert written.returncode == 0 and written.stdout.strip() == f"{run_id}.html"
    page = (folder / f"{run_id}.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert dagexec("graph", "flow.py", "--format", "html", "-o", "dag.html", cwd=folder).returncode == 0
    assert (folder / "dag.html").read_text().startswith("<!DOCTYPE html>")


def test_the_documented_limits_and_the_screenshot_match_the_code() -> None:
    assert (
        f"up to {FULL_GRAPH_MAX} tasks (and {FULL_GRAPH_EDGES_MAX} dependencies, crossing at most {4 * FULL_GRAPH_EDGES_MAX:,} ranks"
        in " ".join(DOC.split())
    )
    assert f"more than {GROUPS_MAX} nodes (or {GROUP_EDGES_MAX} edges)" in " ".join(DOC.split())
    assert "(report-screenshot.png)" in DOC and (ROOT / "docs" / "report-screenshot.png").stat().st_size > 20_000
    licence = (ROOT / "src" / "dagexec_core" / "report_assets" / "LICENSE-dagre").read_text()
    assert "@dagrejs/dagre 3.1.3" in licence and "`@dagrejs/dagre` 3.1.3" in DOC
    assert licence.count("Permission is hereby granted") == 2  # dagre and the graphlib it bundles
