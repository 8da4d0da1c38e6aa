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
        case = t.get("case") or " ".join(str(t[k]) for k in ("shape", "n", "kind", "mode") if t.get(k) is not None)
        met = {True: "yes", False: "**no**", None: t.get("skipped", "not measured")}[t["ok"]]
        lines.append(f"| {t['target']} | {case} | {fmt(t['value'], 2)} | {t['limit']} | {met} |")
    resume = doc.get("resume")
    if resume:
        lines += ["", "Resume: " + json.dumps(resume)]
    if doc.get("cold"):
        lines += ["", render_cold(doc["cold"])]
    return "\n".join(lines)


def render_cold(cold: dict[str, Any]) -> str:
    """The fresh-process figures of `cold.py`, each beside its floor."""
    lines = [
        "| case | N | dagexec | floor | ratio | peak RSS MB (dagexec / floor) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in cold.get("runs", []):
        floor = "bare loop + SQLite" if r["mode"] == "normal" else "bare loop"
        lines.append(
            f"| `{r['command']}` against the {floor} script | {r['n']:,} | {r['best_s'] * 1000:.0f} ms "
            f"| {r['floor']['best_s'] * 1000:.0f} ms | {fmt(r['ratio'], 2)} | {fmt(r['rss_mb'])} / {fmt(r['floor']['rss_mb'])} |"
        )
    big = cold.get("big")
    if big and "best_s" in big:
        lines.append(
            f"| `{big['command']}` against the bare loop script | {big['n']:,} | {big['best_s']:.1f} s "
            f"| {big['floor']['best_s']:.1f} s | {fmt(big['ratio'], 2)} | {fmt(big['rss_mb'])} / {fmt(big['floor']['rss_mb'])} |"
        )
    cli = cold.get("cli") or {}
    base = cli.get("python -c pass", {})
    for key in ("dagexec --version", "dagexec --help", "python -c 'import dagexec_core'"):
        if key in cli:
            lines.append(
                f"| `{key}` against `python -c pass` | | {fmt(cli[key]['best_ms'])} ms (median {fmt(cli[key]['median_ms'])}) "
                f"| {fmt(base.get('best_ms'))} ms | | |"
            )
    define = cold.get("define") or {}
    if "add_us_per_task" in define:
        lines.append(
            f"| `dag.add` per task (`dag.validate()`: {define['validate_s']:.3f} s) | {define['n']:,} "
            f"| {define['add_us_per_task']} µs | | | |"
        )
    resume = cold.get("resume") or {}
    if "start_s" in resume:
        lines.append(
            f"| `{resume['command']}`: spawn to its first task (to its end: {resume['total_s']:.2f} s) "
            f"| {resume['n']:,} | {resume['start_s']:.2f} s (of {', '.join(f'{x:.2f}' for x in resume['samples_start_s'])}) "
            f"| | | {fmt(resume['rss_mb'])} |"
        )
    elif resume:
        lines.append(f"| `dagexec resume` | | *{resume.get('error') or resume.get('skipped')}* | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        print(render(json.load(f)))
