"""Render a `run.py` JSON document as the Markdown tables of docs/benchmarks.md.

python benchmarks/table.py results.json
"""

from __future__ import annotations

import json
import sys
from typing import Any


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    lines = [
        f"`{meta['command']}` — {meta['date']}, dagexec {meta.get('dagexec_commit')}, Python {meta['python']}, "
        f"{meta['cpus']} CPUs, concurrency {meta['concurrency']}, best of {meta['repeat']}, "
        f"load average {meta['loadavg_start'][0]} → {meta.get('loadavg_end', ['?'])[0]}",
        "",
        "| shape | N | kind | mode | µs/task | floor µs/task | ratio | CPU ratio | tasks/s | peak RSS MB | SQLite floor µs/task | vs SQLite floor |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["results"]:
        floor = r.get("floor", {})
        sq = r.get("floor_sqlite", {})
        mode = r["mode"] if r["mode"] != "dask" else "Dask threaded"
        if "us_per_task" not in r:
            why = r.get("skipped") or r.get("error") or "?"
            lines.append(
                f"| {r['shape']} | {r['n']:,} | {r['kind']} | {mode} | *{why}* | {fmt(floor.get('us_per_task'))} "
                f"| | | | | {fmt(sq.get('us_per_task'))} | |"
            )
            continue
        lines.append(
            f"| {r['shape']} | {r['n']:,} | {r['kind']} | {mode} | {fmt(r['us_per_task'])} | {fmt(floor.get('us_per_task'))} "
            f"| {fmt(r.get('ratio'), 2)} | {fmt(r.get('cpu_ratio'), 2)} | {r['tasks_per_s']:,} | {fmt(r['rss_mb'])} "
            f"| {fmt(sq.get('us_per_task'))} | {fmt(r.get('ratio_vs_sqlite_floor'), 2)} |"
        )
    lines += ["", "| target | case | value | limit | met |", "| --- | --- | ---: | ---: | --- |"]
    for t in doc.get("targets", []):
        case = " ".join(str(t[k]) for k in ("shape", "n", "kind", "mode") if t.get(k) is not None)
        met = {True: "yes", False: "**no**", None: t.get("skipped", "not measured")}[t["ok"]]
        lines.append(f"| {t['target']} | {case} | {fmt(t['value'], 2)} | {t['limit']} | {met} |")
    resume = doc.get("resume")
    if resume:
        lines += ["", "Resume: " + json.dumps(resume)]
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        print(render(json.load(f)))
