"""The notebook way, in a real Jupyter kernel.

The notebook the docs ship (docs/notebooks/first-harvest.ipynb, the async tutorial's notebook
cells) runs cell by cell, top-level ``await`` and all, in an ipykernel against the simulator, as
a reader's Jupyter runs it; and ``asyncio.run`` fails there as the tutorial says.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel
from test_docs import blocks

from tiktok_repost_async.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "tutorials" / "async-and-notebooks.md"
SECTION = "## In a Jupyter notebook"
NOTEBOOK = ROOT / "docs" / "notebooks" / "first-harvest.ipynb"


def page_cells() -> list[str]:
    """Return the python blocks of the tutorial's notebook section, in order."""
    text = PAGE.read_text(encoding="utf-8")
    assert SECTION in text, f"{PAGE.name} lost its section {SECTION!r}"
    section = re.split(r"^## ", text.split(SECTION, 1)[1], flags=re.M)[0]
    cells = [b.code for b in blocks(section) if b.language == "python" and b.no_test is None]
    assert cells, "the notebook section has no python cell"
    return cells


def notebook_cells() -> list[str]:
    """Return the code cells of the shipped notebook."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


def test_the_notebook_holds_the_tutorials_cells() -> None:
    assert [cell + "\n" for cell in notebook_cells()] == page_cells()


@pytest.fixture
def kernel(sim_in_thread: Simulator, tmp_path: Path) -> Iterator[BlockingKernelClient]:
    """Start a Jupyter kernel of this interpreter, its environment pointing at the simulator."""
    env = dict(os.environ)
    env.update(
        TIKTOK_API_BASE_URL=sim_in_thread.base_url,
        TIKTOK_CLIENT_KEY=sim_in_thread.client_key,
        TIKTOK_CLIENT_SECRET=sim_in_thread.client_secret,
        # The kernel imports this checkout's package, as the tests do.
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
    )
    manager, client = start_new_kernel(
        kernel_name="python3", env=env, cwd=str(tmp_path), startup_timeout=120
    )
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run_cell(client: BlockingKernelClient, code: str) -> str:
    """Run one cell; return its printed and displayed output, or fail with its traceback."""
    out: list[str] = []

    def keep(message: dict[str, Any]) -> None:
        content = message["content"]
        if message["msg_type"] == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif message["msg_type"] == "execute_result":
            out.append(content["data"]["text/plain"] + "\n")
        elif message["msg_type"] == "error":
            out.append("\n".join(content["traceback"]))

    reply = client.execute_interactive(code, timeout=120, output_hook=keep)
    assert reply["content"]["status"] == "ok", f"cell failed:\n{code}\n{''.join(out)}"
    return "".join(out)


@pytest.mark.slow
def test_the_notebook_cells_run_in_a_real_kernel(
    kernel: BlockingKernelClient, sim_in_thread: Simulator
) -> None:
    python = run_cell(kernel, "import sys; print(sys.executable)")
    assert python.strip() == sys.executable, "the kernel runs another interpreter"
    outputs = [run_cell(kernel, cell) for cell in notebook_cells()]
    # The first cell ends with len(videos): the simulator's whole list, through top-level await.
    assert outputs[0].strip() == str(len(sim_in_thread.ground_truth("alice_n250")))
    # The walk's cell ends with each user's state.
    assert outputs[2].strip() == repr(
        {"alice_n120": "done", "bob_n30": "done", "missing_q": "not_found"}
    )


@pytest.mark.slow
def test_asyncio_run_fails_in_the_kernel_as_the_tutorial_says(
    kernel: BlockingKernelClient,
) -> None:
    printed = run_cell(
        kernel,
        "import asyncio\n"
        "async def nothing():\n"
        "    return None\n"
        "coro = nothing()\n"
        "try:\n"
        "    asyncio.run(coro)\n"
        "except RuntimeError as error:\n"
        "    coro.close()\n"
        "    print(f'RuntimeError: {error}')\n",
    )
    quoted = [b.code for b in blocks(PAGE.read_text(encoding="utf-8")) if b.language == "text"]
    assert printed in quoted
