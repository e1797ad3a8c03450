"""After a DEBUG-logged run, no secret or token is in logs, errors, reprs, the store or exports."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from tiktok_repost_async import RepostClient, RetryPolicy, Store, TikTokError
from tiktok_repost_async.export import export
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import Fault, Simulator

SECRET = "s3cret-VALUE-that-must-never-leak"


def store_files(folder: Path) -> list[str]:
    # The database, its WAL and its lock file, read as raw bytes: a secret in any column shows.
    texts = [path.read_bytes().decode("latin-1") for path in folder.glob("h.db*")]
    # And every export of it.
    with Store(folder / "h.db", create=False) as store:
        for format in ("jsonl", "csv", "parquet"):
            out = io.BytesIO()
            assert export(store, out, format) > 0
            texts.append(out.getvalue().decode("latin-1"))
    return texts


async def test_no_secret_or_token_in_logs_errors_reprs_or_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "h.db"
    names = ["leak1_n250", "leak2_n120", "missing_leak", "private_leak", "broken_n10"]
    texts: list[str] = []
    async with Simulator(client_key="key-1", client_secret=SECRET) as sim:
        sim.script("leak1_n250", [Fault.SERVER_ERROR, Fault.TOKEN_INVALID, Fault.BAD_GATEWAY])
        sim.script("broken_n10", [Fault.SERVER_ERROR] * 5)
        client = RepostClient(
            "key-1",
            SECRET,
            base_url=sim.base_url,
            requests_per_second=1000,
            retry=RetryPolicy(max_attempts=2, base_delay=0),
        )
        async with client:
            async for outcome in harvest(client, names, store=db):
                texts.append(repr(outcome))
            tokens = {client._auth._token}
            texts += [repr(client), repr(client._auth), repr(client._credentials)]
            try:
                async for _ in client.pages("missing_leak"):
                    pass
            except TikTokError as error:
                texts += [str(error), repr(error), repr(error.__dict__)]
        # Every token the simulator issued and still knows, not only the client's last one.
        tokens |= set(sim._tokens)
    assert sim.stats.tokens_issued >= 2
    tokens.discard(None)
    assert tokens
    texts.append(caplog.text)
    texts += store_files(tmp_path)
    haystack = "\n".join(texts)
    assert SECRET not in haystack
    for token in tokens:
        assert token not in haystack
