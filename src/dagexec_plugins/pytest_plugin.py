"""The ``dagexec`` pytest plugin (entry point ``pytest11``): fixtures for testing DAGs.

- ``dagexec_run(dag, **options) -> RunReport``: runs ``dag`` as production does,
  with a fresh state file under the test's ``tmp_path``; outputs are stored
  (and so checked) as in any run, signal handlers are left alone, and a test
  that also asks for ``dagexec_clock`` runs on that clock.
- ``dagexec_clock``: a `dagexec_core.testing.VirtualClock` for retry delays
  and breaker cooldowns that pass without waiting.

``-p no:dagexec`` turns the plugin off. The contract suites for stage
authors live in `dagexec_core.testing`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dagexec_core import Dag, RunReport
    from dagexec_core.testing import VirtualClock


@pytest.fixture
def dagexec_clock() -> VirtualClock:
    """A virtual clock: retry delays and breaker cooldowns of runs given it pass at once (docs/testing.md)."""
    from dagexec_core.testing import VirtualClock

    return VirtualClock()


@pytest.fixture
def dagexec_run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., RunReport]:
    """``dagexec_run(dag, **options)``: run ``dag`` as production does, in a fresh state file under ``tmp_path``.

    Options are `run()`'s. Each call gets its own state file unless ``state=`` is given
    (pass the same ``state=`` and ``resume=report.run_id`` to resume). A test that asks
    for ``dagexec_clock`` runs on it unless ``clock=`` is given.
    """
    from dagexec_core import run

    counter = itertools.count(1)
    clock = request.getfixturevalue("dagexec_clock") if "dagexec_clock" in request.fixturenames else None

    def run_dag(dag: Dag, **options: Any) -> RunReport:
        if "state" not in options and options.get("persist") is not False:
            options["state"] = str(tmp_path / "dagexec" / f"state-{next(counter)}.db")
        if clock is not None:
            options.setdefault("clock", clock)
        options.setdefault("signals", False)  # pytest owns SIGINT
        return run(dag, **options)

    return run_dag
