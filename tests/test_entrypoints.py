"""The plugin loader's entry-point scan equals `importlib.metadata`'s, and hands over to it where it must."""

from __future__ import annotations

import importlib.metadata
import sys
import zipfile
from pathlib import Path

import pytest

from dagexec_core import entrypoints


def _groups() -> set[str]:
    return {ep.group for dist in importlib.metadata.distributions() for ep in dist.entry_points}


def _as_metadata(group: str) -> list[tuple[str, str, str | None, str | None]]:
    return sorted(
        (ep.name, ep.value, ep.dist.name, ep.dist.version) for ep in importlib.metadata.entry_points(group=group)
    )


def _as_scan(group: str) -> list[tuple[str, str, str | None, str | None]]:
    return sorted((ep.name, ep.value, *entrypoints.dist_info(ep)) for ep in entrypoints.entry_points(group))


def test_the_scan_finds_what_importlib_metadata_finds_in_every_group() -> None:
    assert entrypoints._fast_path_applies()  # a virtualenv with pip and editable installs
    groups = _groups()
    assert {"dagexec", "console_scripts", "pytest11"} <= groups
    for group in sorted(groups):
        assert _as_scan(group) == _as_metadata(group), group
    # the third-party plugin distribution the test environment installs, with its own name and version
    assert ("counting", "dagexec_counting", "dagexec-counting", "1.2.3") in [
        (n, v.split(":")[0], d, ver) for n, v, d, ver in _as_scan("dagexec")
    ]


def _dist(folder: Path, name: str, version: str, value: str) -> None:
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n")
    (info / "entry_points.txt").write_text(f"[dagexec]\n# a comment\n{name} = {value}\n\n[other]\nx = y:z\n")


def test_the_first_distribution_of_a_name_on_sys_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _dist(first, "shadowed-plugin", "2.0", "mod_two:plugin")
    _dist(second, "shadowed_plugin", "1.0", "mod_one:plugin")
    monkeypatch.setattr(sys, "path", [str(first), str(second), str(tmp_path / "missing"), *sys.path])
    got = [e for e in _as_scan("dagexec") if e[0].startswith("shadowed")]
    assert got == [("shadowed-plugin", "mod_two:plugin", "shadowed-plugin", "2.0")]
    assert got == [e for e in _as_metadata("dagexec") if e[0].startswith("shadowed")]


def test_a_zip_on_sys_path_hands_the_scan_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped_plugin-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped-plugin\nVersion: 0.1\n")
        z.writestr("zipped_plugin-0.1.dist-info/entry_points.txt", "[dagexec]\nzipped = zipped_mod\n")
    monkeypatch.setattr(sys, "path", [str(archive), *sys.path])
    assert not entrypoints._fast_path_applies()
    assert ("zipped", "zipped_mod", "zipped-plugin", "0.1") in _as_scan("dagexec")
    assert _as_scan("dagexec") == _as_metadata("dagexec")


def test_load_follows_the_attribute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ep_target_mod.py").write_text("class Outer:\n    class Inner:\n        flag = 'found'\n")
    _dist(tmp_path / "site", "ep-target", "0.2", "ep_target_mod:Outer.Inner [extra]")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), str(tmp_path), *sys.path])
    (ep,) = [e for e in entrypoints.entry_points("dagexec") if e.name == "ep-target"]
    assert ep.load().flag == "found"


def test_the_backports_finder_still_allows_the_scan_and_it_agrees() -> None:
    import importlib_metadata  # installed with Dask; registers its finder on sys.meta_path

    assert any(type(f) is importlib_metadata.MetadataPathFinder for f in sys.meta_path)
    assert entrypoints._fast_path_applies()
    assert _as_scan("dagexec") == _as_metadata("dagexec")


def test_a_finder_of_its_own_hands_the_scan_over(monkeypatch: pytest.MonkeyPatch) -> None:
    class Finder:
        def find_spec(self, *args: object) -> None:
            return None

        def find_distributions(self, *args: object) -> list[object]:
            return []

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder()])
    assert not entrypoints._fast_path_applies()
    assert _as_scan("dagexec") == _as_metadata("dagexec")
