"""Check that the built sdist and wheel hold the package's own files and nothing else.

Usage: python .ci/check_dist.py DIST_DIR. Exit 1 naming every file that should not be there: a
store, an export, the demo's output, a cache, or anything outside the paths the project ships.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

# What the sdist may hold, by its first path component (pyproject's sdist include list), and
# what the wheel may hold besides its .dist-info.
SDIST_ROOTS = {
    "tiktok_repost_async",
    "tests",
    "benchmarks",
    "docs",
    "scripts",
    ".ci",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "pyproject.toml",
    "mkdocs.yml",
    "PKG-INFO",
    ".gitignore",
}
WHEEL_SUFFIXES = {".py", ".typed"}
# Never shipped wherever they sit: stores and their sidecars, exports, caches, demo output.
FORBIDDEN_SUFFIXES = {
    ".db",
    ".db-wal",
    ".db-shm",
    ".lock",
    ".jsonl",
    ".ndjson",
    ".parquet",
    ".csv",
    ".pyc",
    ".log",
    ".out",
    ".part",
}
FORBIDDEN_PARTS = {"__pycache__", "tiktok-demo", ".pytest_cache", ".mypy_cache", ".venv"}


def _forbidden(path: PurePosixPath) -> str | None:
    if FORBIDDEN_PARTS & set(path.parts):
        return "a cache or the demo's output"
    name = path.name
    if any(name.endswith(suffix) for suffix in FORBIDDEN_SUFFIXES):
        return "a store, an export or a build artefact"
    return None


def sdist_problems(archive: Path) -> list[str]:
    """Return one line per file of the sdist that should not be in it."""
    problems = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            path = PurePosixPath(*PurePosixPath(member.name).parts[1:])  # below the top folder
            why = _forbidden(path) or (
                None if path.parts[0] in SDIST_ROOTS else "outside the paths the sdist ships"
            )
            if why:
                problems.append(f"{archive.name}: {path}: {why}")
    return problems


def wheel_problems(archive: Path) -> list[str]:
    """Return one line per file of the wheel that should not be in it."""
    problems = []
    with zipfile.ZipFile(archive) as wheel:
        for name in wheel.namelist():
            path = PurePosixPath(name)
            if path.parts[0].endswith(".dist-info"):
                continue
            why = _forbidden(path)
            if why is None and path.parts[0] != "tiktok_repost_async":
                why = "not the package"
            if why is None and path.suffix not in WHEEL_SUFFIXES:
                why = "not a module of the package"
            if why:
                problems.append(f"{archive.name}: {path}: {why}")
    return problems


def main(argv: list[str]) -> int:
    """Check every sdist and wheel in the directory given; return the exit status."""
    if len(argv) != 1:
        print("usage: check_dist.py DIST_DIR", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    sdists, wheels = sorted(folder.glob("*.tar.gz")), sorted(folder.glob("*.whl"))
    if not sdists or not wheels:
        print(f"{folder}: no sdist or no wheel to check", file=sys.stderr)
        return 1
    problems = [p for a in sdists for p in sdist_problems(a)]
    problems += [p for a in wheels for p in wheel_problems(a)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{', '.join(a.name for a in sdists + wheels)}: the package's own files only")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
