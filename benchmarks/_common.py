"""What the benchmarks share: the simulator served from a child process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, TOKEN_PATH


@contextmanager
def simulator(*options: str) -> Iterator[str]:
    """Serve the simulator in a child process and yield its base URL."""
    # A process of its own: the simulator's work must not count against the code measured.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiktok_repost_async.simulator", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """Add the --json option that run_all.py reads the results through."""
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the results as JSON to FILE too; without FILE, print them instead of tables",
    )


def write_json(payload: object, target: str | None) -> bool:
    """Write the results where --json says; return True when they replace the tables."""
    if target == "-":
        print(json.dumps(payload))
        return True
    if target:
        Path(target).write_text(json.dumps(payload) + "\n")
    return False


async def test_token(session: aiohttp.ClientSession) -> str:
    """Fetch an access token for the simulator's test credentials over ``session``."""
    form = {
        "client_key": TEST_CLIENT_KEY,
        "client_secret": TEST_CLIENT_SECRET,
        "grant_type": "client_credentials",
    }
    async with session.post(TOKEN_PATH, data=form) as response:
        token: str = (await response.json())["access_token"]
    return token
