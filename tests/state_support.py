"""Helpers shared by the state-file tests (test_sqlite_storage.py, test_engine_resume.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dagexec_core import Dag

SRC = str(Path(__file__).resolve().parents[1] / "src")


def sha(path: Path) -> str:
    """The file and its write-ahead log: a write in WAL mode lands in the log first."""
    digest = hashlib.sha256(path.read_bytes())
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        digest.update(wal.read_bytes())
    return digest.hexdigest()


def child_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
        "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD": "1",
        **extra,
    }


def simple_dag(calls: list[str] | None = None) -> Dag:
    dag = Dag("etl")
    seen = calls if calls is not None else []

    @dag.task
    def extract() -> list[int]:
        seen.append("extract")
        return [1, 2, 3]

    @dag.task(deps=["extract"])
    def transform(extract: list[int]) -> list[int]:
        seen.append("transform")
        return [x * 2 for x in extract]

    @dag.task(deps=["transform"])
    async def load(transform: list[int]) -> int:
        seen.append("load")
        return sum(transform)

    return dag
