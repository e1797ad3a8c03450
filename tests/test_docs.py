"""Every code block of the documentation runs against the simulator, and the reference pages
that mirror the code (states, exit codes, the store's schema, the API pages, the generated
command and knob pages) say exactly what the code has.

The convention every page is written to (docs/explanation/architecture.md restates it):

- ```python blocks of a page run in order in one namespace, top-level ``await`` allowed, in a
  fresh temporary working directory, with a fresh simulator running and TIKTOK_API_BASE_URL,
  TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET set to it;
- ```console blocks: each line that starts with ``$ `` is a command that bash runs in that same
  directory and environment, in order with the page's other blocks (each line on its own: an
  ``export`` does not carry to the next one); other lines are sample output, not compared. A
  command expected to exit non-zero ends with the comment ``# exits N``; any other must exit 0;
- a block directly after the line ``<!-- no-test: reason -->`` is not run, nor are blocks in
  other languages (bash, text, toml, ini, r, sql...);
- a line ``<!-- simulator: knob=value ... -->`` sets knobs of `SimulatorConfig` on the page's
  running simulator before the next block runs (or is skipped), e.g. ``epoch=1`` for a week
  later in a panel; each value is a Python literal (a bare word is a string), checked as the
  config checks it, and an unknown knob fails the page;
- a line ``<!-- postgres: NAME ... -->`` sets each named environment variable (``LAB_DB``,
  ``TIKTOK_LEDGER``) to the URL of one fresh database on the suite's throwaway PostgreSQL server,
  from the next block to the page's end, as a lab's administrator would hand it out: the URL
  without its password, which is in the page's own ``~/.pgpass`` (HOME is a temporary
  directory on such a page). Where PostgreSQL is missing the page skips (fails in CI);
- a python block with a top-level ``if __name__ == "__main__":`` is a script: besides running
  in the page's namespace (where the guard is false), it runs as ``python FILE`` in the same
  directory and environment and must exit 0. A coroutine function that a page defines and
  nothing at the top of its blocks, or inside such a guard, ever runs is a finding.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import sim_env

import tiktok_repost_async
from tiktok_repost_async.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
# Pages whose blocks take more than a few seconds (real processes waiting on real time).
SLOW_PAGES: frozenset[str] = frozenset(
    {
        "docs/tutorials/first-harvest.md",
        "docs/tutorials/panel.md",
        "docs/tutorials/terms.md",
        "docs/how-to/dataframes.md",
        # These three also start the suite's PostgreSQL server, if it is not up yet, and
        # harvest, copy and refresh stores on it.
        "docs/how-to/lab.md",
        "docs/how-to/move-a-store.md",
        "README.md",
        "docs/how-to/sharing.md",
        "docs/reference/commands.md",
        "docs/reference/rounds.md",
    }
)
COMMAND_TIMEOUT = 120

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_NO_TEST = re.compile(r"^\s*<!--\s*no-test:(?P<reason>.*?)-->\s*$")
_SIMULATOR = re.compile(r"^\s*<!--\s*simulator:(?P<knobs>.*?)-->\s*$")
_EXITS = re.compile(r"#\s*exits\s+(?P<status>\d+)\s*$")
_POSTGRES = re.compile(r"^\s*<!--\s*postgres:(?P<names>.*?)-->\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    language: str
    #: The page's line number of the block's first line of code (1-based).
    line: int
    code: str
    #: Why the block is not run, when a no-test marker precedes it.
    no_test: str | None
    #: Simulator knobs to set before the block, from ``<!-- simulator: ... -->`` lines since
    #: the block before it, in order: (name, value as written).
    knobs: tuple[tuple[str, str], ...] = ()
    #: Environment variables to point at one fresh PostgreSQL database before the block, from a
    #: ``<!-- postgres: ... -->`` line since the block before it.
    databases: tuple[str, ...] = ()


def _knobs(line: str, number: int) -> list[tuple[str, str]]:
    """Return the ``name=value`` pairs of a simulator directive line, or [] for other lines."""
    match = _SIMULATOR.match(line)
    if match is None:
        return []
    pairs = match["knobs"].split()
    if not pairs or not all(re.fullmatch(r"\w+=\S+", pair) for pair in pairs):
        raise ValueError(f"line {number}: a simulator directive takes knob=value pairs: {line!r}")
    return [(name, value) for name, _, value in (pair.partition("=") for pair in pairs)]


def _databases(line: str, number: int) -> list[str]:
    """Return the variable names of a postgres directive line, or [] for other lines."""
    match = _POSTGRES.match(line)
    if match is None:
        return []
    names = match["names"].split()
    if not names or not all(re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) for name in names):
        raise ValueError(f"line {number}: a postgres directive names variables: {line!r}")
    return names


def blocks(text: str) -> list[Block]:
    """Return the fenced code blocks of a Markdown text, indented ones (in lists) included."""
    lines = text.splitlines()
    found: list[Block] = []
    knobs: list[tuple[str, str]] = []
    databases: list[str] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            knobs += _knobs(lines[i], i + 1)
            databases += _databases(lines[i], i + 1)
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        language = (match["info"].split() or [""])[0].lower()
        marker = _NO_TEST.match(lines[i - 1]) if i > 0 else None
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""
        ):
            # A block inside a list item is indented: its code is not.
            line = lines[j]
            body.append(line[indent:] if not indent or line[:indent].isspace() else line.lstrip())
            j += 1
        found.append(
            Block(
                language,
                i + 2,
                "\n".join(body) + "\n",
                marker["reason"] if marker else None,
                tuple(knobs),
                tuple(databases),
            )
        )
        knobs, databases = [], []
        i = j + 1
    if knobs:
        raise ValueError(f"a simulator directive with no block after it: {knobs}")
    if databases:
        raise ValueError(f"a postgres directive with no block after it: {databases}")
    return found


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _params() -> list[Any]:
    return [
        pytest.param(
            path,
            id=_page_id(path),
            marks=[pytest.mark.slow] if _page_id(path) in SLOW_PAGES else [],
        )
        for path in PAGES
    ]


def _tree(block: Block, where: str) -> ast.Module:
    source = "\n" * (block.line - 1) + block.code
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree: ast.Module = compile(source, where, "exec", flags=flags)
    return tree


def _is_main_guard(node: ast.stmt) -> bool:
    """Tell whether a statement is ``if __name__ == "__main__":``."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    sides = [test.left, *test.comparators]
    return (
        len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and any(isinstance(side, ast.Name) and side.id == "__name__" for side in sides)
        and any(isinstance(side, ast.Constant) and side.value == "__main__" for side in sides)
    )


def _is_script(block: Block, where: str) -> bool:
    """Tell whether a python block is a script: it has a top-level ``__main__`` guard."""
    return any(_is_main_guard(node) for node in _tree(block, where).body)


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def never_run(found: list[Block], where: str) -> list[str]:
    """Return the coroutine functions that a page's python blocks define and never run.

    A function runs when a top-level statement names it (a call, an ``await``, or
    ``asyncio.run`` in a ``__main__`` guard, which the harness runs as a script), or when a
    function that runs names it.
    """
    coroutines: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    reached: set[str] = set()
    for block in found:
        if block.language != "python" or not _runs(block):
            continue
        for node in _tree(block, where).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                calls[node.name] = _names(node) - {node.name}
                if isinstance(node, ast.AsyncFunctionDef):
                    coroutines[node.name] = node.lineno
            else:
                reached |= _names(node)
    todo = list(reached)
    while todo:
        for name in calls.get(todo.pop(), set()) - reached:
            reached.add(name)
            todo.append(name)
    return [
        f"{where}:{line}: {name}() is defined and never awaited: no block awaits it (nor runs "
        'it in an `if __name__ == "__main__":` guard), so the page\'s tests never ran it'
        for name, line in coroutines.items()
        if name not in reached
    ]


def _run(*argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a page's command or script as a reader's shell would, without input; capture it."""
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def _run_script(block: Block, where: str, env: dict[str, str], cwd: Path, folder: Path) -> str:
    """Run a python block as ``python FILE`` (its ``__main__`` guard true), as a reader would;
    return what it printed."""
    # Padded so that a traceback's line numbers are the page's own.
    script = folder / f"{re.sub(r'[^A-Za-z0-9]+', '-', where)}-{block.line}.py"
    script.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")
    done = _run(sys.executable, str(script), env=env, cwd=cwd)
    assert done.returncode == 0, (
        f"{where}:{block.line}: the block run as a script (python {script.name}) exited "
        f"{done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    return done.stdout


async def _run_python(block: Block, where: str, namespace: dict[str, Any]) -> None:
    # Padded so that a traceback's line numbers are the page's own.
    source = "\n" * (block.line - 1) + block.code
    code = compile(source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result


def _run_console(block: Block, where: str, env: dict[str, str], cwd: Path) -> None:
    for offset, line in enumerate(block.code.splitlines()):
        if not line.startswith("$ "):
            continue
        command = line[2:]
        exits = _EXITS.search(command)
        expected = int(exits["status"]) if exits else 0
        done = _run("bash", "-c", command, env=env, cwd=cwd)
        assert done.returncode == expected, (
            f"{where}:{block.line + offset}: `{command}` exited {done.returncode}, "
            f"not {expected}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )


def _runs(block: Block) -> bool:
    return block.no_test is None and block.language in ("python", "console")


def _runnable(path: Path) -> list[Block]:
    """Return the page's blocks to run or to set knobs before, after checking that each no-test
    marker says why."""
    found = blocks(path.read_text(encoding="utf-8"))
    for block in found:
        if block.no_test is not None:
            assert block.no_test.strip(), f"{_page_id(path)}:{block.line}: no-test says no reason"
    return _runnable_blocks(found)


def _runnable_blocks(found: list[Block]) -> list[Block]:
    """Return the blocks to run, or to set knobs or databases before."""
    return [b for b in found if _runs(b) or b.knobs or b.databases]


def _set_knobs(simulator: Simulator, block: Block, where: str) -> None:
    """Set the knobs a block's directives name on the running simulator, each checked."""
    from tiktok_repost_async.simulator import SimulatorConfig

    known = {item.name for item in dataclasses.fields(SimulatorConfig)}
    for name, written in block.knobs:
        assert name in known, f"{where}:{block.line}: the simulator has no knob {name!r}"
        try:
            value = ast.literal_eval(written)
        except (ValueError, SyntaxError):
            value = written  # a bare word: a string knob's value
        try:
            setattr(simulator.config, name, value)
        except ValueError as exc:
            raise AssertionError(
                f"{where}:{block.line}: simulator {name}={written}: {exc}"
            ) from None


def _commands_env() -> dict[str, str]:
    env = dict(os.environ)
    # The commands are this interpreter's: its tiktok-reposts and python come first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env["PYTHONPATH"]) if p)
    return env


def _lab_home(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Give a page that names databases the suite's PostgreSQL server, and a HOME of its own
    whose ``~/.pgpass`` holds the server's password (the page may add lines to it)."""
    server = request.getfixturevalue("postgres_server")
    home = request.getfixturevalue("tmp_path_factory").mktemp("home")
    pgpass = home / ".pgpass"
    pgpass.write_text(f"{server.host}:{server.port}:*:{server.user}:{server.password}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(name, raising=False)
    return server


@pytest.mark.parametrize("path", _params())
async def test_every_block_of_the_page_runs(
    path: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    runnable = _runnable(path)
    if not runnable:
        return
    where = _page_id(path)
    unrun = never_run(runnable, where)
    assert unrun == [], "\n".join(unrun)
    server = _lab_home(request, monkeypatch) if any(b.databases for b in runnable) else None
    scripts = tmp_path_factory.mktemp("scripts")
    simulator = Simulator()
    with simulator.run_in_thread():
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("TIKTOK_API_BASE_URL", simulator.base_url)
        monkeypatch.setenv("TIKTOK_CLIENT_KEY", simulator.client_key)
        monkeypatch.setenv("TIKTOK_CLIENT_SECRET", simulator.client_secret)
        namespace: dict[str, Any] = {"__name__": "docs_page"}
        for block in runnable:
            # No request is in flight between blocks: the knobs apply from the next one on.
            _set_knobs(simulator, block, where)
            if block.databases:
                assert server is not None
                url = server.url(server.create_database(), password=False)
                for name in block.databases:
                    monkeypatch.setenv(name, url)
            if not _runs(block):
                continue
            if block.language == "python":
                await _run_python(block, where, namespace)
                if _is_script(block, where):
                    _run_script(block, where, _commands_env(), tmp_path, scripts)
            else:
                _run_console(block, where, _commands_env(), tmp_path)


# -- the harness itself ---------------------------------------------------------------------


def test_blocks_are_found_with_their_markers_and_lines() -> None:
    text = (
        "# Page\n"
        "```python\n"
        "x = 1\n"
        "```\n"
        "<!-- no-test: a crontab line -->\n"
        "```console\n"
        "$ crontab -l\n"
        "```\n"
        "- in a list:\n"
        "\n"
        "    ```console\n"
        "    $ echo hi  # exits 0\n"
        "    ```\n"
        "```text\n"
        "plain\n"
        "```\n"
    )
    found = blocks(text)
    assert [(b.language, b.line, b.no_test) for b in found] == [
        ("python", 3, None),
        ("console", 7, " a crontab line "),
        ("console", 12, None),
        ("text", 15, None),
    ]
    assert found[2].code == "$ echo hi  # exits 0\n"


def test_simulator_directives_go_with_the_next_block() -> None:
    text = (
        "<!-- simulator: epoch=1 -->\n"
        "<!-- no-test: a restart the harness does by itself -->\n"
        "```console\n"
        "$ tiktok-reposts serve --epoch 1\n"
        "```\n"
        "<!-- simulator: daily_quota=None list_key=videos -->\n"
        "text between\n"
        "<!-- simulator: epoch=2 -->\n"
        "```python\n"
        "x = 1\n"
        "```\n"
        "```python\n"
        "y = 2\n"
        "```\n"
    )
    found = blocks(text)
    assert [b.knobs for b in found] == [
        (("epoch", "1"),),
        (("daily_quota", "None"), ("list_key", "videos"), ("epoch", "2")),
        (),
    ]
    with pytest.raises(ValueError, match="knob=value"):
        blocks("<!-- simulator: epoch -->\n```python\n```\n")
    with pytest.raises(ValueError, match="no block after it"):
        blocks("```python\n```\n<!-- simulator: epoch=1 -->\n")


def test_simulator_directives_set_checked_knobs() -> None:
    simulator = Simulator()
    _set_knobs(simulator, Block("console", 3, "", None, (("epoch", "2"),)), "p.md")
    assert simulator.config.epoch == 2
    _set_knobs(
        simulator, Block("console", 3, "", None, (("list_key", "user_reposted_videos"),)), "p.md"
    )
    assert simulator.config.list_key == "user_reposted_videos"
    with pytest.raises(AssertionError, match=r"p.md:3: the simulator has no knob 'epoc'"):
        _set_knobs(simulator, Block("console", 3, "", None, (("epoc", "1"),)), "p.md")
    with pytest.raises(AssertionError, match=r"p.md:3: simulator epoch=-1: "):
        _set_knobs(simulator, Block("console", 3, "", None, (("epoch", "-1"),)), "p.md")
    assert simulator.config.epoch == 2


def test_postgres_directives_go_with_the_next_block() -> None:
    text = (
        "<!-- postgres: LAB_DB TIKTOK_LEDGER -->\n"
        "<!-- no-test: the docs harness sets these (the line above) -->\n"
        "```console\n"
        "$ export LAB_DB=postgresql://ben@db.lab.example/tiktok\n"
        "```\n"
        "```console\n"
        '$ tiktok-reposts status --db "$LAB_DB"\n'
        "```\n"
    )
    found = blocks(text)
    assert [b.databases for b in found] == [("LAB_DB", "TIKTOK_LEDGER"), ()]
    assert found[0].no_test is not None
    # A page whose only postgres directive sits on a skipped block still gets its database.
    assert _runnable_blocks(found) == found
    with pytest.raises(ValueError, match="names variables"):
        blocks("<!-- postgres: lab-db -->\n```console\n```\n")
    with pytest.raises(ValueError, match="no block after it"):
        blocks("```console\n```\n<!-- postgres: LAB_DB -->\n")


README_EXAMPLE = (
    "import asyncio\n"
    "\n"
    "async def main() -> None:\n"
    "    await asyncio.sleep(0)\n"
    "\n"
    "if __name__ == '__main__':\n"
    "    asyncio.run(main())\n"
)


def test_a_block_with_a_main_guard_is_a_script() -> None:
    assert _is_script(Block("python", 1, README_EXAMPLE, None), "p.md")
    assert not _is_script(Block("python", 1, "x = 1\nif x == 1:\n    y = 2\n", None), "p.md")
    # Top-level await is no script, and still parses.
    assert not _is_script(Block("python", 1, "await main()\n", None), "p.md")


def test_a_coroutine_function_that_no_block_runs_is_a_finding() -> None:
    # The README's example once defined main() and ran it only under the guard, which the
    # namespace never enters: the guard counts now only because such a block runs as a script.
    never = Block("python", 10, "async def main() -> None:\n    pass\n", None)
    assert never_run([never], "p.md") == [
        "p.md:10: main() is defined and never awaited: no block awaits it (nor runs it in an "
        '`if __name__ == "__main__":` guard), so the page\'s tests never ran it'
    ]
    awaited = Block("python", 20, "await main()\n", None)
    assert never_run([never, awaited], "p.md") == []
    assert never_run([Block("python", 1, README_EXAMPLE, None)], "p.md") == []
    # A helper that only a run coroutine calls runs too; one that only an unrun one calls not.
    helpers = Block(
        "python",
        1,
        "async def fetch():\n    pass\n"
        "async def walk():\n    await fetch()\n"
        "async def unused():\n    await fetch()\n",
        None,
    )
    found = never_run([helpers, Block("python", 9, "await walk()\n", None)], "p.md")
    assert [line.split(": ")[1] for line in found] == ["unused() is defined and never awaited"]
    # A block that is not run (no-test) neither defines nor runs anything.
    skipped = Block("python", 30, "await main()\n", " live API ")
    assert len(never_run([never, skipped], "p.md")) == 1


def test_a_script_block_runs_as_a_real_process(tmp_path: Path) -> None:
    env = dict(os.environ)
    ok = Block("python", 1, README_EXAMPLE + "    open('ran', 'w').close()\n", None)
    _run_script(ok, "p.md", env, tmp_path, tmp_path)
    assert (tmp_path / "ran").exists()
    failing = Block("python", 3, "if __name__ == '__main__':\n    raise SystemExit(4)\n", None)
    with pytest.raises(AssertionError, match=r"p.md:3: the block run as a script .* exited 4"):
        _run_script(failing, "p.md", env, tmp_path, tmp_path)


async def test_python_blocks_share_one_namespace_and_may_await() -> None:
    namespace: dict[str, Any] = {}
    await _run_python(Block("python", 1, "import asyncio\nx = 41\n", None), "p.md", namespace)
    second = Block("python", 5, "await asyncio.sleep(0)\ny = x + 1\n", None)
    await _run_python(second, "p.md", namespace)
    assert namespace["y"] == 42


async def test_a_failing_block_names_the_page_line() -> None:
    with pytest.raises(ZeroDivisionError) as caught:
        await _run_python(Block("python", 7, "a = 1\nb = 1 / 0\n", None), "p.md", {})
    assert caught.traceback[-1].lineno + 1 == 8  # pytest counts from 0


def test_a_command_must_exit_as_its_comment_says(tmp_path: Path) -> None:
    env = dict(os.environ)
    exits = Block("console", 1, "$ exit 3  # exits 3\nsample output\n", None)
    _run_console(exits, "p", env, tmp_path)
    with pytest.raises(AssertionError, match=r"p:2: `false` exited 1, not 0"):
        _run_console(Block("console", 1, "$ true\n$ false\n", None), "p", env, tmp_path)


# -- reference pages that mirror the code ---------------------------------------------------


def _table_codes(page: Path, marker: str) -> list[str]:
    """Return the first column's code spans of the table that follows ``marker`` on a page."""
    text = page.read_text(encoding="utf-8")
    assert marker in text, f"{_page_id(page)} lost its {marker}"
    rows = []
    for line in text.split(marker, 1)[1].lstrip("\n").splitlines():
        if not line.startswith("|"):
            break
        rows.append(line)
    codes = [re.match(r"\|\s*`([^`]+)`", row) for row in rows[2:]]
    assert all(codes), f"{_page_id(page)}: every row of the table after {marker} starts with `code`"
    return [code[1] for code in codes if code]


@pytest.mark.parametrize("page", [DOCS / "reference/states.md", ROOT / "README.md"], ids=_page_id)
def test_the_states_table_lists_exactly_the_states(page: Path) -> None:
    from tiktok_repost_async import UserState, WalkState

    states = _table_codes(page, "<!-- states-table -->")
    assert states == [state.value for state in UserState]
    assert {state.value for state in WalkState} <= set(states)


def test_the_exit_codes_table_lists_exactly_the_exit_statuses() -> None:
    from tiktok_repost_async.cli import _common

    statuses = {value for name, value in vars(_common).items() if name.startswith("EXIT_")}
    codes = _table_codes(DOCS / "reference/exit-codes.md", "<!-- exit-codes-table -->")
    assert sorted(int(code) for code in codes) == sorted(statuses)


def test_the_schema_page_lists_every_table_and_column(tmp_path: Path) -> None:
    from tiktok_repost_async import Store

    with Store(tmp_path / "s.db", fields=("id",), max_count=100):
        pass
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        tables = {
            name: [row[1] for row in conn.execute(f"PRAGMA table_info({name})")]
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid"
            )
        }
    finally:
        conn.close()
    text = (DOCS / "reference/store.md").read_text(encoding="utf-8")
    documented: dict[str, list[str]] = {}
    for section in re.split(r"^### ", text, flags=re.M)[1:]:
        name = re.match(r"`(\w+)`", section)
        assert name, f"a table heading of reference/store.md is not `name`: {section[:40]!r}"
        columns = re.findall(r"^\|\s*`(\w+)`", section, flags=re.M)
        documented[name[1]] = columns
    assert documented == tables


def test_every_public_name_has_an_api_reference_entry() -> None:
    text = "".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference/api").glob("*.md"))
    entries = set(re.findall(r"^::: tiktok_repost_async\.(\w+)\s*$", text, flags=re.M))
    public = set(tiktok_repost_async.__all__) - {"__version__"}
    assert sorted(public - entries) == [], "public names with no ::: entry in docs/reference/api"
    assert sorted(entries - public - {"export", "simulator"}) == []


def _generator() -> ModuleType:
    script = ROOT / "scripts/docs_reference.py"
    spec = importlib.util.spec_from_file_location("docs_reference", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is made.
    sys.modules.setdefault("docs_reference", module)
    spec.loader.exec_module(module)
    return module


def test_the_generated_reference_pages_match_the_code() -> None:
    stale = _generator().stale_pages(ROOT)
    assert stale == [], f"{stale} out of date: run `python scripts/docs_reference.py`"


def test_the_knobs_page_names_every_simulator_knob() -> None:
    from tiktok_repost_async.simulator import SimulatorConfig

    text = (DOCS / "reference/simulator-knobs.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    named = [name for heading in headings for name in re.findall(r"`(\w+)`", heading)]
    assert named == [item.name for item in dataclasses.fields(SimulatorConfig)]


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, flags=re.M))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert sorted(pages - listed) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(listed - pages) == [], "mkdocs.yml's nav names pages that do not exist"


def error_tree() -> str:
    """Return the public exception classes as a tree under TikTokError, children by name."""
    errors = {
        name: value
        for name in tiktok_repost_async.__all__
        if isinstance(value := getattr(tiktok_repost_async, name), type)
        and issubclass(value, tiktok_repost_async.TikTokError)
    }

    def parent(cls: type) -> type | None:
        return next((base for base in cls.__mro__[1:] if base in errors.values()), None)

    def lines(cls: type, prefix: str) -> list[str]:
        children = sorted(
            (c for c in errors.values() if parent(c) is cls), key=lambda c: c.__name__
        )
        out = []
        for i, child in enumerate(children):
            last = i == len(children) - 1
            out.append(f"{prefix}{'└── ' if last else '├── '}{child.__name__}")
            out += lines(child, prefix + ("    " if last else "│   "))
        return out

    return "\n".join(["TikTokError", *lines(tiktok_repost_async.TikTokError, "")]) + "\n"


def test_the_errors_page_shows_the_exception_tree_of_the_code() -> None:
    text = (DOCS / "reference/api/errors.md").read_text(encoding="utf-8")
    found = [b for b in blocks(text) if b.language == "text"]
    assert found, "docs/reference/api/errors.md lost its tree"
    assert found[0].code == error_tree(), "the tree should read:\n" + error_tree()


def test_the_readme_python_example_runs_as_a_script_and_prints_the_simulators_videos(
    sim_in_thread: Simulator, tmp_path: Path
) -> None:
    # The docs page's namespace never enters the example's `__main__` guard: this runs the
    # example as the README tells a reader to, saved as a file and run with python.
    readme = ROOT / "README.md"
    scripts = [
        b
        for b in blocks(readme.read_text(encoding="utf-8"))
        if b.language == "python" and _is_script(b, "README.md")
    ]
    assert len(scripts) == 1, "the README's Python example lost its `__main__` guard"
    env = sim_env(sim_in_thread, PYTHONPATH=str(ROOT))
    printed = _run_script(scripts[0], "README.md", env, tmp_path, tmp_path)
    truth = sim_in_thread.ground_truth("alice_n250")
    assert len(truth) == 250
    assert printed.splitlines() == [
        f"{video['id']} {video.get('like_count')} {video.get('hashtag_names')}" for video in truth
    ]
    # One user's walk: a request per page of 100, and no more.
    assert sim_in_thread.stats.by_user["alice_n250"] == 3


def test_the_readme_links_only_to_files_that_exist() -> None:
    # mkdocs --strict checks the site's own links; the README is not part of the site.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", text)}
    local = sorted(t for t in targets if t and "://" not in t)
    assert local, "the README links into the docs site"
    assert [t for t in local if not (ROOT / t).exists()] == []
