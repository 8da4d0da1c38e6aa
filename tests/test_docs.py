"""Docs stay true: every hook is documented with every argument, and the README's commands exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from dagexec_core import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS_MD = (ROOT / "docs" / "hooks.md").read_text()

SPECS = {
    name: inspect.signature(fn) for name, fn in vars(hookspecs).items() if name.startswith("dagexec_") and callable(fn)
}


def section(name: str) -> str:
    match = re.search(rf"^### `{name}\((.*?)\)`\n(.*?)(?=^### |\Z)", HOOKS_MD, re.S | re.M)
    assert match, f"docs/hooks.md has no '### `{name}(...)`' section: document the hook there"
    return match.group(0)


def test_there_are_hookspecs() -> None:
    assert len(SPECS) >= 16


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hookspec_is_documented_with_every_argument_and_an_example(name: str) -> None:
    text = section(name)
    params = list(SPECS[name].parameters)
    heading = text.splitlines()[0]
    assert heading == f"### `{name}({', '.join(params)})`", f"heading of {name} does not match its spec {params}"
    for param in params:
        assert f"- `{param}`" in text, f"docs/hooks.md: argument {param!r} of {name} is not described"
    assert "```python" in text and "hookimpl" in text.split("```python", 1)[1] or "@hookimpl" in text


def test_every_hookspec_has_a_docstring() -> None:
    for name in SPECS:
        doc = getattr(hookspecs, name).__doc__ or ""
        for param in SPECS[name].parameters:
            assert f":param {param}:" in doc, f"hookspecs.{name} docstring lacks :param {param}:"


def test_readme_has_exactly_two_setup_commands_and_they_name_real_paths() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", readme.split("## Tour")[0], re.S)
    assert len(blocks) == 2, "README: exactly two set-up commands before the tour"
    assert "dagexec run examples/quickstart.py" in blocks[0]
    assert "pytest" in blocks[1]
    assert (ROOT / "examples" / "quickstart.py").is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci, ".ci/run runs the README's test command, whole"
