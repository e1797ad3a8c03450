"""Packaging: extras, install hints, the sdist and wheel hold the package only, the demo's output.

The sdist and wheel are built from a copy of this checkout with artefacts planted in it (a store,
an export, the demo's output, caches), and `.ci/check_dist.py`, which CI runs on its own build,
must find only the package's files.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tiktok_repost_async._extras import EXTRAS

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
OPTIONAL = PROJECT["optional-dependencies"]


def test_the_extras_of_the_install_hints_match_pyproject() -> None:
    for extra, requirements in EXTRAS.items():
        assert sorted(OPTIONAL[extra]) == sorted(requirements), extra


def test_all_is_what_a_user_wants_and_no_developer_tool() -> None:
    (spec,) = OPTIONAL["all"]
    name, extras = re.fullmatch(r"([\w-]+)\[([\w,]+)\]", spec).groups()  # type: ignore[union-attr]
    assert name == PROJECT["name"]
    assert set(extras.split(",")) == {"cli", "parquet", "pandas", "polars", "postgres"}
    # ruff and mypy are in dev (and test, which CI installs alone); never in what users get.
    assert {"ruff>=0.6", "mypy>=1.10"} <= set(OPTIONAL["dev"]) & set(OPTIONAL["test"])


def test_the_metadata_names_its_license_and_where_things_are() -> None:
    assert PROJECT["license"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "the tiktok_repost_async authors" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    urls = PROJECT["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    assert all(url.startswith("https://") for url in urls.values())
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert f"## [{PROJECT['version']}]" in changelog


def install_lines() -> list[tuple[Path, str]]:
    """Return every ``pip install ...`` the package's code and docs tell a reader to run."""
    files = [*ROOT.glob("tiktok_repost_async/**/*.py"), ROOT / "README.md"]
    files += ROOT.glob("docs/**/*.md")
    found = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            found += [(path, m) for m in re.findall(r"pip install [^`\n]*", line)]
    return found


def test_every_install_hint_names_a_real_distribution_and_extra() -> None:
    lines = install_lines()
    assert lines
    for path, line in lines:
        requirements = {r for extra in OPTIONAL.values() for r in extra}
        for name, extras in re.findall(r"([\w.-]+)\[([\w,]+)\]", line):
            if name == ".":
                assert set(extras.split(",")) <= set(OPTIONAL), (path, line)
                continue
            # Else one of an extra's own requirements, as pyproject spells it; never the
            # distribution's own name, which no index serves yet ("No matching distribution").
            assert name != PROJECT["name"], (path, line)
            assert any(r.startswith(f"{name}[{extras}]") for r in requirements), (path, line)


def test_the_checker_names_every_stray_file(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    with tarfile.open(dist / "p-1.tar.gz", "w:gz") as tar:
        for name in (
            "p-1/tiktok_repost_async/__init__.py",
            "p-1/tiktok-demo/reposts.jsonl",
            "p-1/tests/harvest.db",
            "p-1/b.out",
        ):
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
    with zipfile.ZipFile(dist / "p-1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("tiktok_repost_async/__init__.py", "")
        wheel.writestr("tiktok_repost_async/__pycache__/x.cpython-311.pyc", "")
        wheel.writestr("p-1.dist-info/METADATA", "")
    out = subprocess.run(
        [sys.executable, ROOT / ".ci" / "check_dist.py", dist],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    stray = re.findall(r": (\S+): ", out.stderr)
    assert stray == [
        "tiktok-demo/reposts.jsonl",
        "tests/harvest.db",
        "b.out",
        "tiktok_repost_async/__pycache__/x.cpython-311.pyc",
    ]


@pytest.mark.slow
def test_the_sdist_and_wheel_hold_the_package_only(tmp_path: Path) -> None:
    source = tmp_path / "checkout"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "dist", "build", "site")
    )
    # What a session leaves in a checkout: the demo's output, a store, exports, caches.
    planted = [
        "tiktok-demo/reposts.jsonl",
        "tiktok-demo/demo.db",
        "harvest.db",
        "harvest.db-wal",
        "videos.parquet",
        "tiktok_repost_async/stray.jsonl",
        "tiktok_repost_async/__pycache__/client.cpython-311.pyc",
        "tests/__pycache__/test_x.cpython-311.pyc",
        "docs/changes.csv",
    ]
    for name in planted:
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    dist = tmp_path / "dist"
    # No isolated environment: hatchling comes from the test extra, so no index is needed.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source],
        capture_output=True,
        check=True,
        timeout=240,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    out = subprocess.run(
        [sys.executable, ROOT / ".ci" / "check_dist.py", dist],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "tiktok_repost_async/py.typed" in names
    text = metadata.decode()
    assert "License-Expression: MIT" in text
    assert "Project-URL: Documentation, https://" in text
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        shipped = {Path(*Path(m.name).parts[1:]).as_posix() for m in archive.getmembers()}
    assert {"LICENSE", "CHANGELOG.md", "pyproject.toml", "tiktok_repost_async/py.typed"} <= shipped
    assert not set(planted) & shipped


@pytest.mark.slow
def test_the_demo_writes_outside_the_working_directory(tmp_path: Path) -> None:
    checkout, temp = tmp_path / "checkout", tmp_path / "temp"
    checkout.mkdir()
    temp.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "tiktok_repost_async", "demo", "--rate", "200", "--no-progress"],
        cwd=checkout,
        env={**os.environ, "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert list(checkout.iterdir()) == []
    folder = temp / "tiktok-demo"
    assert (folder / "reposts.jsonl").stat().st_size > 0
    assert f"store:  {folder / 'demo.db'}" in result.stdout
    assert f"export: {folder / 'reposts.jsonl'}" in result.stdout
