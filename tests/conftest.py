"""Shared fixtures: every test gets its own working directory and no leaked plugin settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("DAGEXEC_PLUGINS", "DAGEXEC_DISABLED_PLUGINS", "DAGEXEC_DISABLE_PLUGIN_AUTOLOAD"):
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("OTEL_"):
            monkeypatch.delenv(var, raising=False)
