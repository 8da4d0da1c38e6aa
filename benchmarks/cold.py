"""What a user meets outside the loop: a cold `dagexec run`, `dag.add`, the CLI's start, `dagexec resume`, a million tasks.

Every figure here is a fresh process timed from outside, beside a floor
process doing the same work, the two interleaved (floor, dagexec, floor,
dagexec, ...) so a burst of load on the shared machine hits both:

- **cold run**: `dagexec run flow.py` on the layered DAG (import, definition,
  run; `--no-persist`, and `--state FILE` at durability `normal`) against a
  Python script that imports asyncio and graphlib, builds the same graph dict
  and drives it with the bare loop of `floors.py` (with its SQLite writer for
  `normal`). Both import `shapes` and build the same dict.
- **define**: `dag.add` per task and `dag.validate()`, in a fresh process
  (a driver of `cases.py`).
- **CLI start**: `dagexec --version` and `dagexec --help` against `python -c pass`.
- **resume by the CLI**: `dagexec run` of the layered DAG with state in a
  file, SIGKILLed from inside once half its task bodies started; then
  `dagexec resume RUN_ID` in a fresh process, from its spawn to its first task
  body (a wall-clock stamp the body writes), each sample from its own copy of
  the killed file.
- **big run**: `dagexec run` of a layered DAG of a million tasks with
  persistence off: wall time and peak RSS beside the floor script's.

Wall time is from spawn to exit; peak RSS is the child's own (``wait4``).
Before the first sample, dagexec's packages and these benchmarks get their bytecode
written (`compile_sources`), as an installed copy has it: the floor's standard library
is compiled too.
Run it through `run.py` (``--cold``, the default; ``--no-matrix`` for these alone).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

#: Issue 13's targets.
COLD_LIMIT = 2.0  # a cold `dagexec run` / the floor process
ADD_LIMIT_US = 5.0
CLI_LIMIT_MS = 150.0
CLI_RESUME_LIMIT_S = 1.0
BIG_RSS_LIMIT_MB = 1500.0

FLOW = '''\
"""The layered benchmark DAG as a user writes it: one file, run by `dagexec run`."""
import os
import signal
import sys
import time

sys.path.insert(0, {bench!r})
import shapes  # noqa: E402

from dagexec_core import Dag  # noqa: E402

N = int(os.environ.get("BENCH_N", "10000"))
KILL_AT = int(os.environ.get("BENCH_KILL_AT", "0"))
STAMP = os.environ.get("BENCH_STAMP")
count = [0]


async def body():
    if KILL_AT or STAMP:
        count[0] += 1
        if count[0] == 1 and STAMP:
            with open(STAMP, "w") as f:
                f.write(repr(time.time()))
        if count[0] == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


dag = Dag("bench-cold")
for name, deps in shapes.build("layered", N).items():
    dag.add(name, body, deps=deps{retry})
'''

FLOOR = '''\
"""The floor of a cold run: the same graph dict driven by the bare asyncio + graphlib loop."""
import asyncio
import os
import sys
import tempfile

sys.path.insert(0, {bench!r})
import shapes  # noqa: E402
from floors import SqliteTransitions, drive  # noqa: E402

N = int(os.environ.get("BENCH_N", "10000"))
DURABILITY = os.environ.get("BENCH_DURABILITY")
graph = shapes.build("layered", N)
with tempfile.TemporaryDirectory() as d:
    writer = SqliteTransitions(os.path.join(d, "floor.db"), DURABILITY) if DURABILITY else None
    assert asyncio.run(drive(graph, "async", 32, writer)) == N
'''


COMPILE = """\
import compileall, sys
from pathlib import Path
import dagexec_core, dagexec_plugins
dirs = [Path(dagexec_core.__file__).parent, Path(dagexec_plugins.__file__).parent, Path(sys.argv[1])]
ok = all(compileall.compile_dir(str(d), quiet=1, force=False) for d in dirs)
print(" ".join(str(d) for d in dirs))
sys.exit(0 if ok else 1)
"""


def compile_sources(env: dict[str, str]) -> list[str]:
    """Write the bytecode of dagexec's packages and of these benchmarks, as an installed copy has it.

    ``pip install`` compiles a package's modules when it installs them, and Python keeps the
    bytecode of what it imports; a machine with ``PYTHONDONTWRITEBYTECODE`` set (as some CI images
    are) with an editable install would otherwise compile dagexec's sources in every sample (~60 ms)
    while the floor reads the standard library's compiled bytecode. Writes only missing or stale
    ``__pycache__`` files; returns the folders.
    """
    done = subprocess.run(
        [sys.executable, "-c", COMPILE, str(HERE)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:  # a read-only install: measured as it is, and said so in the JSON
        return [f"not written ({done.stderr.strip()[-300:] or 'compileall failed'})"]
    return done.stdout.split()


def write_files(d: str, retry: int | None = None) -> tuple[str, str]:
    flow = os.path.join(d, "flow.py" if retry is None else "flow_retry.py")
    Path(flow).write_text(
        FLOW.format(bench=str(HERE), retry="" if retry is None else f", retry={retry}"), encoding="utf-8"
    )
    floor = os.path.join(d, "floor_flow.py")
    Path(floor).write_text(FLOOR.format(bench=str(HERE)), encoding="utf-8")
    return flow, floor


def spawn(cmd: list[str], env: dict[str, str], cwd: str, timeout: float = 900.0) -> dict[str, Any]:
    """Run ``cmd`` to its end: wall seconds from spawn to exit, its exit code and its own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.time()
        p0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        deadline = p0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        seconds = time.perf_counter() - p0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    return {
        "seconds": seconds,
        "spawned_at": t0,
        "rc": proc.returncode,
        "rss_mb": round(usage.ru_maxrss / 1024.0, 1),
        "stderr": " | ".join(tail),
        "stdout": stdout,
    }


def _best(samples: list[dict[str, Any]], key: str = "seconds") -> dict[str, Any]:
    values = sorted(s[key] for s in samples)
    return {
        "best_s": round(values[0], 4),
        "median_s": round(statistics.median(values), 4),
        "samples_s": [round(v, 4) for v in values],
        "rss_mb": max(s["rss_mb"] for s in samples),
    }


def _interleave(
    repeat: int, cases: dict[str, Callable[[], dict[str, Any]]], log: Callable[[str], None]
) -> dict[str, list[dict[str, Any]]]:
    got: dict[str, list[dict[str, Any]]] = {k: [] for k in cases}
    for _ in range(repeat):
        for key, case in cases.items():
            s = case()
            if s.get("rc", 0) != 0:
                raise RuntimeError(f"{key}: exit {s['rc']}: {s.get('stderr')}")
            log(f"  {key:40s} {s['seconds'] * 1000:9.1f} ms  {s['rss_mb']:7.1f} MB")
            got[key].append(s)
    return got


def cold_runs(env: dict[str, str], n: int, repeat: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """A cold `dagexec run` of the layered DAG against the floor script, persistence off and `normal`."""
    log(f"cold run: layered N={n}")
    out = []
    with tempfile.TemporaryDirectory() as d:
        flow, floor = write_files(d)
        e = {**env, "BENCH_N": str(n)}
        state = os.path.join(d, "state.db")

        def dagexec_normal() -> dict[str, Any]:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(state + suffix):
                    os.remove(state + suffix)
            return spawn([str(BIN / "dagexec"), "run", flow, "--state", state, "-q"], e, d)

        got = _interleave(
            repeat,
            {
                "floor": lambda: spawn([sys.executable, floor], e, d),
                "dagexec run --no-persist": lambda: spawn(
                    [str(BIN / "dagexec"), "run", flow, "--no-persist", "-q"], e, d
                ),
                # what a run costs without importing sqlite_utils (and pandas): the sqlite plugin blocked
                "dagexec run --no-persist -p no:sqlite": lambda: spawn(
                    [str(BIN / "dagexec"), "run", flow, "--no-persist", "-p", "no:sqlite", "-q"], e, d
                ),
                "floor + sqlite normal": lambda: spawn([sys.executable, floor], {**e, "BENCH_DURABILITY": "normal"}, d),
                "dagexec run --state (normal)": dagexec_normal,
            },
            log,
        )
    for mode, floor_key, key in (
        ("off", "floor", "dagexec run --no-persist"),
        ("off, -p no:sqlite", "floor", "dagexec run --no-persist -p no:sqlite"),
        ("normal", "floor + sqlite normal", "dagexec run --state (normal)"),
    ):
        subject, base = _best(got[key]), _best(got[floor_key])
        out.append(
            {
                "case": "cold run",
                "shape": "layered",
                "n": n,
                "mode": mode,
                "command": "dagexec run flow.py "
                + {"off": "--no-persist", "normal": "--state FILE"}.get(mode, "--no-persist -p no:sqlite")
                + " -q",
                **subject,
                "floor": base,
                "ratio": round(subject["best_s"] / base["best_s"], 2),
            }
        )
    return out


def cli_start(env: dict[str, str], repeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    """`dagexec --version` and `--help` against an interpreter that does nothing."""
    log("CLI start")
    with tempfile.TemporaryDirectory() as d:
        got = _interleave(
            repeat,
            {
                "python -c pass": lambda: spawn([sys.executable, "-c", "pass"], env, d),
                "dagexec --version": lambda: spawn([str(BIN / "dagexec"), "--version"], env, d),
                "dagexec --help": lambda: spawn([str(BIN / "dagexec"), "--help"], env, d),
                "python -c 'import dagexec_core'": lambda: spawn([sys.executable, "-c", "import dagexec_core"], env, d),
            },
            log,
        )
    out = {}
    for key, samples in got.items():
        best = _best(samples)
        out[key] = {
            "best_ms": round(best["best_s"] * 1000, 1),
            "median_ms": round(best["median_s"] * 1000, 1),
            "samples_ms": [round(v * 1000, 1) for v in best["samples_s"]],
            "rss_mb": best["rss_mb"],
        }
    return out


def cli_resume(env: dict[str, str], n: int, repeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    """`dagexec resume RUN_ID` of a `dagexec run` killed half-way: spawn to its first task body."""
    log(f"dagexec resume: layered N={n}")
    with tempfile.TemporaryDirectory() as d:
        flow, _ = write_files(d, retry=2)  # two attempts: a task interrupted by the kill runs again
        state = os.path.join(d, "state.db")
        e = {**env, "BENCH_N": str(n)}
        prep = spawn(
            [str(BIN / "dagexec"), "run", flow, "--state", state, "-q"], {**e, "BENCH_KILL_AT": str(n // 2)}, d
        )
        if prep["rc"] != -9:
            return {"error": f"the run to resume was not killed (exit {prep['rc']}): {prep['stderr']}"}
        log(f"  killed half-way after {prep['seconds']:.2f} s")
        listed = spawn([str(BIN / "dagexec"), "runs", "--state", state, "--json"], e, d)
        run_id = json.loads(listed["stdout"])[0]["run_id"]
        samples = []
        for k in range(repeat):
            copy = os.path.join(d, f"resume{k}")
            os.mkdir(copy)
            for suffix in ("", "-wal"):
                if os.path.exists(state + suffix):
                    shutil.copyfile(state + suffix, os.path.join(copy, "state.db" + suffix))
            stamp = os.path.join(copy, "first-task")
            s = spawn(
                [str(BIN / "dagexec"), "resume", run_id, "--state", os.path.join(copy, "state.db"), "-q"],
                {**e, "BENCH_STAMP": stamp},
                d,
            )
            if s["rc"] != 0 or not os.path.exists(stamp):
                return {"error": f"resume exit {s['rc']}: {s['stderr']}"}
            s["start_s"] = float(Path(stamp).read_text()) - s["spawned_at"]
            log(f"  dagexec resume: first task after {s['start_s']:.3f} s, done after {s['seconds']:.2f} s")
            samples.append(s)
    best = min(samples, key=lambda s: s["start_s"])
    return {
        "case": "dagexec resume",
        "n": n,
        "command": "dagexec resume RUN_ID --state FILE -q",
        "start_s": round(best["start_s"], 3),
        "total_s": round(best["seconds"], 3),
        "rss_mb": max(s["rss_mb"] for s in samples),
        "samples_start_s": sorted(round(s["start_s"], 3) for s in samples),
        "killed_after_s": round(prep["seconds"], 3),
    }


def big_run(env: dict[str, str], n: int, repeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    """`dagexec run --no-persist` of a layered DAG of ``n`` tasks: time and peak RSS, beside the floor script."""
    log(f"big run: layered N={n}")
    with tempfile.TemporaryDirectory() as d:
        flow, floor = write_files(d)
        e = {**env, "BENCH_N": str(n)}
        got = _interleave(
            repeat,
            {
                "floor": lambda: spawn([sys.executable, floor], e, d),
                "dagexec run --no-persist": lambda: spawn(
                    [str(BIN / "dagexec"), "run", flow, "--no-persist", "-q"], e, d
                ),
            },
            log,
        )
    subject, base = _best(got["dagexec run --no-persist"]), _best(got["floor"])
    return {
        "case": "big run",
        "shape": "layered",
        "n": n,
        "command": "dagexec run flow.py --no-persist -q",
        **subject,
        "floor": base,
        "ratio": round(subject["best_s"] / base["best_s"], 2),
    }


def targets(cold: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, case: str, value: float | None, limit: float, strict: bool = False) -> None:
        ok = None if value is None else (value < limit if strict else value <= limit)
        out.append({"target": name, "case": case, "value": value, "limit": limit, "ok": ok})

    for r in cold.get("runs", []):
        if r["mode"] == "off":
            add(f"cold dagexec run <= {COLD_LIMIT}x the floor process", f"layered {r['n']} off", r["ratio"], COLD_LIMIT)
    define = cold.get("define") or {}
    if "add_us_per_task" in define:
        add(f"dag.add <= {ADD_LIMIT_US} us/task", f"layered {define['n']}", define["add_us_per_task"], ADD_LIMIT_US)
    for key in ("dagexec --version", "dagexec --help"):
        got = (cold.get("cli") or {}).get(key)
        if got:
            add(f"{key} <= {CLI_LIMIT_MS:.0f} ms", "fresh process", got["best_ms"], CLI_LIMIT_MS)
    resume = cold.get("resume") or {}
    if "start_s" in resume:
        add(
            f"dagexec resume starts < {CLI_RESUME_LIMIT_S} s",
            f"layered {resume['n']}",
            resume["start_s"],
            CLI_RESUME_LIMIT_S,
            True,
        )
    big = cold.get("big") or {}
    if "rss_mb" in big:
        add(f"peak RSS < {BIG_RSS_LIMIT_MB:.0f} MB", f"layered {big['n']} off", big["rss_mb"], BIG_RSS_LIMIT_MB, True)
    return out
