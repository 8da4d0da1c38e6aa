"""Every hookspec tells a dagplugins.py author how to use it, and event hooks say where they run."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from dagexec_core import hookspecs

SPECS = {n: f for n, f in vars(hookspecs).items() if n.startswith("dagexec_") and callable(f)}
#: DESIGN §3's event hooks, in the order of hookspecs.py.
EVENT_HOOKS = [
    "dagexec_run_started",
    "dagexec_task_started",
    "dagexec_task_retrying",
    "dagexec_task_finished",
    "dagexec_task_dead_lettered",
    "dagexec_breaker_state_changed",
    "dagexec_run_finished",
]
HOOKS_MD = (Path(__file__).resolve().parent.parent / "docs" / "hooks.md").read_text()


def _section(name: str) -> str:
    match = re.search(rf"### `{name}\(.*?(?=\n### |\n## |\Z)", HOOKS_MD, re.S)
    assert match, name
    return match.group(0)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hookspec_says_how_to_use_it_in_dagplugins(name: str) -> None:
    assert "Use in dagplugins.py" in (SPECS[name].__doc__ or ""), f"hookspecs.{name}: say how to use it"


def test_event_hooks_follow_their_banner_in_hookspecs() -> None:
    source = inspect.getsource(hookspecs)
    banner = source.index("# Event hooks")
    assert all(source.index(f"def {name}(") > banner for name in EVENT_HOOKS)
    assert all(source.index(f"def {name}(") < banner for name in SPECS if name not in EVENT_HOOKS)


@pytest.mark.parametrize("name", sorted(EVENT_HOOKS))
def test_event_hooks_say_they_run_on_the_event_loop_thread_and_what_is_durable(name: str) -> None:
    for text in (SPECS[name].__doc__ or "", _section(name)):
        flat = " ".join(text.split())
        assert "event-loop thread" in flat, name
        assert "durable" in flat or "No record" in flat, name
        if name not in ("dagexec_run_started", "dagexec_run_finished"):
            assert "stalls every task" in flat, name
