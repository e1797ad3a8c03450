"""The walk_many example of the async tutorial: it runs as written and passes mypy --strict."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from mypy import api as mypy_api

from tiktok_repost_async.simulator import Simulator

PAGE = Path(__file__).resolve().parent.parent / "docs" / "tutorials" / "async-and-notebooks.md"


def example() -> str:
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(r"<!-- walk-many-example -->\n```python\n(.*?)```", text, re.S)
    assert match is not None, f"{PAGE.name} lost its walk_many example"
    return match.group(1)


@pytest.mark.slow
def test_the_example_passes_mypy_strict(tmp_path: Path) -> None:
    source = tmp_path / "walk_example.py"
    source.write_text(example(), encoding="utf-8")
    out, err, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(source)]
    )
    assert status == 0, out + err


async def test_the_example_runs_as_written(
    tiktok_simulator: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIKTOK_CLIENT_KEY", tiktok_simulator.client_key)
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", tiktok_simulator.client_secret)
    monkeypatch.setenv("TIKTOK_API_BASE_URL", tiktok_simulator.base_url)
    namespace: dict[str, Any] = {"__name__": "walk_example"}
    exec(compile(example(), str(PAGE), "exec"), namespace)
    ids = await namespace["walk"](
        ["@alice_n120", "bob_n30", "bob_n30", "no such user!", "missing_q"]
    )
    assert ids == {
        name: [v["id"] for v in tiktok_simulator.ground_truth(name)]
        for name in ("alice_n120", "bob_n30")
    }
    out = capsys.readouterr().out
    assert "missing_q not_found" in out
    assert "skipped (duplicate)" in out
    assert "skipped (not a TikTok username)" in out
