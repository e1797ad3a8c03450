"""``tiktok-reposts serve``: run the Research API simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from ._common import ENV_CLIENT_KEY, ENV_CLIENT_SECRET, EXIT_OK, PROG, UsageError
from ._signals import StopSignals

if TYPE_CHECKING:
    from ..simulator import SimulatorConfig

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Serve a local simulator of the TikTok Research API's reposted-videos endpoint until"
    " Ctrl-C. The first line printed is its base URL."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's knobs to ``parser``."""
    from ..simulator import add_simulator_arguments

    add_simulator_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``serve``; return the exit status."""
    from ..simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, config_from_args

    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    hints = []
    # Only the public test credentials are echoed; a secret given on the command line is not.
    if args.client_key is None:
        hints.append(f"{ENV_CLIENT_KEY}={TEST_CLIENT_KEY}")
    if args.client_secret is None:
        hints.append(f"{ENV_CLIENT_SECRET}={TEST_CLIENT_SECRET}")
    return asyncio.run(_serve(config, args.host, args.port, hints))


async def _serve(config: SimulatorConfig, host: str, port: int, hints: list[str]) -> int:
    from ..simulator import Simulator

    simulator = Simulator(config)
    try:
        base_url = await simulator.start(host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    # Before the URL is printed: whoever reads it may signal at once.
    signals = StopSignals(asyncio.get_running_loop(), lambda _: stop.set())
    signals.install()
    try:
        print(base_url, flush=True)
        print(
            f"serving the TikTok Research API simulator at {base_url}; Ctrl-C stops it\n"
            f"harvest from it with: {' '.join(hints)} {PROG} harvest USERS --base-url {base_url}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        signals.remove()
        await simulator.close()
    return EXIT_OK
