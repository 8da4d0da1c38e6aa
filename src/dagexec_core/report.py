"""A run (or a DAG before any run) as one self-contained HTML page: graph, timeline, tasks, dead letters, meta.

The page is data plus a viewer: `run_data` / `dag_data` turn what storage
holds (through the `Storage` protocol and its optional ``run_history``) into
one compact JSON document, and `render_html` inlines it with the viewer's
script, its style and the vendored graph-layout library (``report_assets/``).
The page fetches nothing: no network, no fonts, no images.

Columns rather than objects keep the document small (about 75 bytes a task
at 10,000 tasks); times are milliseconds from the start of the run. Above
`FULL_GRAPH_MAX` tasks the graph is drawn as groups of tasks (`_groups`),
because laying out thousands of nodes freezes a browser tab for minutes.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from .stages import DeadLetter, HistoryEntry, RunHistory, RunInfo, Storage
from .state import TaskRecord, TaskState

#: Tasks up to which the graph shows every task; above it, groups (`_groups`).
FULL_GRAPH_MAX = 300
#: Edges (and, four times this, ranks crossed by edges) up to which the graph shows every task.
FULL_GRAPH_EDGES_MAX = 600
#: Nodes and edges the graph of groups stays under.
GROUPS_MAX = 150
GROUP_EDGES_MAX = 400

STATES = [s.value for s in TaskState]
#: Span kinds of the timeline, by their index in the document (the viewer has the same list).
SPAN_KINDS = ["ok", "retried", "failed", "cancelled", "interrupted", "running", "retry_wait", "queued"]
_KIND = {k: i for i, k in enumerate(SPAN_KINDS)}
_END_KIND = {"completed": _KIND["ok"], "failed": _KIND["failed"], "cancelled": _KIND["cancelled"]}
#: A first attempt that started this long (ms) after its dependencies finished shows the wait as "queued".
QUEUED_MIN_MS = 1.0
#: Longest error text and traceback kept per task / dead letter (the page stays small with many failures).
ERROR_MAX = 2000
TRACEBACK_MAX = 8000


def _ms(t: float | None, t0: float) -> float | None:
    return None if t is None else round((t - t0) * 1000.0, 2)


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 20] + f"... [{len(text) - limit + 20} more]"


def _spans(
    entries: Sequence[HistoryEntry], t0: float, end: float, open_kind: int = _KIND["running"]
) -> tuple[list[float], float | None]:
    """One task's attempts and waits as a flat ``[start, end, kind, ...]`` list, and when it was skipped.

    An attempt without an end is ``open_kind`` up to ``end``: still running, or cut by a crash.
    """
    out: list[float] = []
    start: float | None = None
    wait_from: float | None = None
    skipped: float | None = None

    def add(a: float, b: float, kind: int) -> None:
        out.extend((round((a - t0) * 1000.0, 2), round((max(a, b) - t0) * 1000.0, 2), kind))

    for _task, state, _attempts, at, started, finished, error, _trace in entries:
        if state == "running":
            s = started if started is not None else at
            if wait_from is not None:
                add(wait_from, s, _KIND["retry_wait"])
                wait_from = None
            if start is not None:  # a running entry without an end: the driver stopped
                add(start, s, _KIND["interrupted"])
            start = s
        elif state == "retrying":
            if start is not None:
                add(start, at, _KIND["retried"])
                start = None
            wait_from = at
        elif state in _END_KIND:
            stop = finished if finished is not None else at
            if start is not None:
                # an attempt its driver's crash cut short, failed by the resume: it ended unseen, before ``stop``
                cut = state == "failed" and (error or "").startswith("TaskInterruptedError")
                add(start, stop, _KIND["interrupted"] if cut else _END_KIND[state])
                start = None
            elif wait_from is not None:  # gave up waiting (an open circuit breaker past its budget)
                add(wait_from, stop, _KIND["retry_wait"])
            wait_from = None
        elif state == "pending" and start is not None:  # reset by a resume after a crash
            add(start, at, _KIND["interrupted"])
            start = None
        elif state == "skipped":
            skipped = _ms(at, t0)
    if start is not None:
        add(start, end, open_kind)
    return out, skipped


def _depths(deps: Sequence[Sequence[int]]) -> list[int]:
    """Longest-path depth of every task (roots 0), in topological order (Kahn); tasks arrive in any order."""
    n = len(deps)
    children: list[list[int]] = [[] for _ in range(n)]
    waiting = [len(ds) for ds in deps]
    for i, ds in enumerate(deps):
        for d in ds:
            children[d].append(i)
    depth = [0] * n
    ready = [i for i in range(n) if waiting[i] == 0]
    while ready:
        i = ready.pop()
        for c in children[i]:
            depth[c] = max(depth[c], depth[i] + 1)
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
    return depth


def _reduce(edges: set[tuple[int, int]], rank: Sequence[int]) -> list[tuple[int, int]]:
    """The transitive reduction of an acyclic graph whose edges go up in ``rank``: an edge is left out
    when a longer path joins its ends."""
    children: dict[int, list[int]] = {}
    for a, b in edges:
        children.setdefault(a, []).append(b)
    reach: dict[int, int] = {}  # node -> bit set of every node reachable from it
    for u in sorted({a for a, _ in edges} | {b for _, b in edges}, key=lambda u: -rank[u]):
        below = 0
        for c in children.get(u, ()):
            below |= reach.get(c, 0) | (1 << c)
        reach[u] = below
    kept = []
    for a, b in edges:
        through = 0
        for c in children[a]:
            through |= reach.get(c, 0)
        if not through >> b & 1:
            kept.append((a, b))
    return sorted(kept)


def _groups(names: Sequence[str], deps: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Tasks gathered into at most `GROUPS_MAX` graph nodes, joined by at most `GROUP_EDGES_MAX` edges.

    A group is the tasks with the same name pattern (digits replaced by
    ``#``, so ``fetch[12]`` and ``fetch[3]`` go together) at the same depth;
    when that gives too many nodes or edges, the tasks of a band of depths.
    Grouping by depth keeps the graph of groups acyclic; it is drawn as its
    transitive reduction (the layout's time grows with every edge, and more
    with every long one).
    """
    depth = _depths(deps)

    def gather(key: Sequence[Any]) -> tuple[list[int], dict[Any, int], list[tuple[int, int]], list[int]]:
        keys: dict[Any, int] = {}
        of = [keys.setdefault(key[i], len(keys)) for i in range(len(names))]
        if len(keys) > GROUPS_MAX:
            return of, keys, [], []  # too many: not worth reducing
        rank = [0] * len(keys)
        for i, g in enumerate(of):
            rank[g] = depth[i]
        edges = {(of[d], of[i]) for i, ds in enumerate(deps) for d in ds if of[d] != of[i]}
        return of, keys, _reduce(edges, rank), rank

    patterns = [(re.sub(r"\d+", "#", n), depth[i]) for i, n in enumerate(names)]
    of, keys, edges, rank = gather(patterns)
    labels = [f"{p} · depth {d}" for p, d in keys]
    span = sum(rank[b] - rank[a] for a, b in edges)  # the layout adds a node per rank an edge crosses
    if len(keys) > GROUPS_MAX or len(edges) > GROUP_EDGES_MAX or span > 4 * GROUP_EDGES_MAX:
        top = max(depth, default=0) + 1
        band = max(1, -(-top // GROUPS_MAX))
        of, keys, edges, rank = gather([d // band for d in depth])
        labels = [
            f"depth {k * band}" if band == 1 else f"depth {k * band}-{min(top - 1, k * band + band - 1)}" for k in keys
        ]
    return {"of": of, "labels": labels, "edges": edges}


def _graph(names: Sequence[str], deps: Mapping[str, Sequence[str]]) -> tuple[list[list[int]], dict[str, Any] | None]:
    index = {n: i for i, n in enumerate(names)}
    dep_idx = [[index[d] for d in deps.get(n, ()) if d in index] for n in names]
    if len(names) > FULL_GRAPH_MAX:
        return dep_idx, _groups(names, dep_idx)
    depth = _depths(dep_idx)
    edges = sum(map(len, dep_idx))
    span = sum(depth[i] - depth[d] for i, ds in enumerate(dep_idx) for d in ds)
    if edges > FULL_GRAPH_EDGES_MAX or span > 4 * FULL_GRAPH_EDGES_MAX:  # too slow to lay out edge by edge
        return dep_idx, _groups(names, dep_idx)
    return dep_idx, None


def dag_data(dag: Any) -> dict[str, Any]:
    """The page document of a DAG before any run: its graph and its tasks, all pending."""
    dag.validate()
    names = list(dag.topological_order())
    dep_idx, groups = _graph(names, {n: list(dag[n].deps) for n in names})
    n = len(names)
    return {
        "kind": "dag",
        "title": f"DAG {dag.name}",
        "run": {"dag": dag.name, "task_count": n},
        "states": STATES,
        "kinds": SPAN_KINDS,
        "tasks": {
            "name": names,
            "deps": dep_idx,
            "state": [0] * n,
            "attempts": [0] * n,
            "duration": [None] * n,
            "error": [None] * n,
            "trace": [None] * n,
            "spans": [[] for _ in range(n)],
            "skipped": [None] * n,
        },
        "groups": groups,
        "dead_letters": [],
        "params": None,
        "meta": {},
        "trace_url": None,
    }


def run_data(
    storage: Storage,
    run_id: str,
    *,
    dead_letters: Iterable[DeadLetter] = (),
    trace_url: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The page document of stored run ``run_id``, read through `Storage` (and its ``run_history``)."""
    info: RunInfo = storage.get_run(run_id)
    records: dict[str, TaskRecord] = storage.load_records(run_id)
    history_of = getattr(storage, "run_history", None)
    history: RunHistory | None = history_of(run_id) if history_of is not None else None
    t0 = info.started_at
    end = info.finished_at if info.finished_at is not None else (now if now is not None else time.time())
    open_kind = _KIND["running"]
    if info.status == "crashed" and history is not None:
        # when the driver died is not recorded: its attempts end at the run's last recorded change
        end = max((e[3] for e in history.entries), default=t0)
        open_kind = _KIND["interrupted"]
    names = list(records)
    if history is not None:
        names += [n for n in history.deps if n not in records]
    dep_idx, groups = _graph(names, history.deps if history is not None else {})
    by_task: dict[str, list[HistoryEntry]] = {n: [] for n in names}
    if history is not None:
        for e in history.entries:
            by_task.setdefault(e[0], []).append(e)
    else:  # no log: each record's last attempt
        for r in records.values():
            if r.started_at is not None:
                by_task[r.name].append((r.name, "running", r.attempts, r.started_at, r.started_at, None, None, None))
            if r.state.terminal or r.state is TaskState.RETRYING:
                at = r.finished_at if r.finished_at is not None else r.started_at or t0
                by_task[r.name].append((r.name, r.state.value, r.attempts, at, r.started_at, r.finished_at, None, None))
    state_index = {s: i for i, s in enumerate(STATES)}
    blank = TaskRecord("")
    cols: dict[str, list[Any]] = {
        k: [] for k in ("state", "attempts", "duration", "error", "trace", "spans", "skipped")
    }
    finish_ms: list[float | None] = []
    for n in names:
        r = records.get(n, blank)
        spans, skipped = _spans(by_task.get(n, ()), t0, end, open_kind)
        cols["state"].append(state_index[r.state.value])
        cols["attempts"].append(r.attempts)
        cols["duration"].append(None if r.duration is None else round(r.duration * 1000.0, 2))
        cols["error"].append(_clip(r.error, ERROR_MAX))
        cols["trace"].append(r.trace_id)
        cols["spans"].append(spans)
        cols["skipped"].append(skipped)
        finish_ms.append(_ms(r.finished_at, t0) if r.state is TaskState.COMPLETED else None)
    # a first attempt that waited after its dependencies were done: for a slot, or for an open breaker
    for i, spans in enumerate(cols["spans"]):
        if not spans or spans[2] == _KIND["retry_wait"]:
            continue
        ready = max((finish_ms[d] or 0.0 for d in dep_idx[i]), default=0.0)
        if spans[0] - ready >= QUEUED_MIN_MS:
            cols["spans"][i] = [ready, spans[0], _KIND["queued"], *spans]
    meta = dict(history.meta) if history is not None else _known_meta(storage, run_id, names)
    return {
        "kind": "run",
        "title": f"{info.dag_name} run {info.run_id}",
        "run": {
            **info.to_dict(),
            "duration_ms": _ms(end, t0),
            "meta": {k: v for k, v in info.meta.items()},
            "generated_at": now if now is not None else time.time(),
        },
        "states": STATES,
        "kinds": SPAN_KINDS,
        "tasks": {"name": names, "deps": dep_idx, **cols},
        "groups": groups,
        "dead_letters": [
            {
                "id": e.id,
                "task": e.task,
                "attempts": e.attempts,
                "error_type": e.error_type,
                "message": _clip(e.message, ERROR_MAX),
                "traceback": _clip(e.traceback, TRACEBACK_MAX),
                "at": _ms(e.created_at, t0),
                "trace": e.trace_id,
            }
            for e in dead_letters
        ],
        # the run's parameters (ctx.params), kept under this meta key (params.META_KEY)
        "params": meta.pop("params", None),
        "meta": meta,
        "trace_url": trace_url,
    }


def _known_meta(storage: Storage, run_id: str, names: Sequence[str]) -> dict[str, Any]:
    """The meta values a storage without ``run_history`` can still be asked for by key."""
    found: dict[str, Any] = {}
    for key in ["params", "branches", *(f"loop:{n}" for n in names)]:
        value = storage.get_meta(run_id, key)
        if value is not None:
            found[key] = value
    return found


# ---------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files("dagexec_core").joinpath("report_assets", name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text that cannot end the ``<script>`` element it is inlined in."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def render_html(data: Mapping[str, Any]) -> str:
    """One self-contained HTML page (every script and style inline) for a document of `run_data` / `dag_data`."""
    # "<" escaped inside JSON strings: the document can never close its element or open a comment
    doc = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str).replace("<", "\\u003c")
    layout = re.sub(r"//# sourceMappingURL=\S+", "", _asset("dagre.min.js"))
    page = _asset("report.html")
    parts = {
        "{{title}}": html.escape(str(data.get("title", "dagexec"))),
        "{{style}}": _asset("report.css"),
        "{{data}}": doc,
        "{{layout}}": _script_safe(layout),
        "{{viewer}}": _script_safe(_asset("report.js")),
    }
    return re.sub(r"\{\{\w+\}\}", lambda m: parts[m.group(0)], page)
