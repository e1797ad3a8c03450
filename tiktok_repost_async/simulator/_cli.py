"""`python -m tiktok_repost_async.simulator`: serve the simulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import get_args

from ._server import (
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    Fault,
    FavoritesSpelling,
    ListKey,
    Simulator,
    SimulatorConfig,
)

__all__ = ["add_simulator_arguments", "config_from_args", "main"]


def _typed(parse: Callable[[str], float], least: float, what: str) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not value >= least:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return convert


_seconds = _typed(float, 0, "a number of seconds >= 0")
_positive = _typed(int, 1, "an integer >= 1")
_natural = _typed(int, 0, "an integer >= 0")


def _rate(text: str) -> float:
    rate = _typed(float, 0, "a rate from 0 to 1")(text)
    if rate > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate from 0 to 1")
    return rate


def _port(text: str) -> int:
    port = int(_natural(text))
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return port


def _fault(text: str) -> tuple[Fault, float]:
    kind, sep, rate = text.partition("=")
    kinds = ", ".join(fault.value for fault in Fault)
    try:
        fault = Fault(kind.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown fault {kind!r}; choose from {kinds}") from None
    try:
        probability = float(rate)
    except ValueError:
        probability = -1.0
    if not sep or not 0 <= probability <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not KIND=RATE with a rate from 0 to 1")
    return fault, probability


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's address, credential and knob options to a parser."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8080, help="port; 0 picks a free one (8080)")
    parser.add_argument("--client-key", help="accepted client key (the test key if omitted)")
    parser.add_argument(
        "--client-secret", help="accepted client secret (the test secret if omitted)"
    )
    knobs = parser.add_argument_group("behaviour knobs")
    knobs.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="fixed delay before every answer",
    )
    knobs.add_argument(
        "--jitter",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="uniformly random extra delay, up to this much",
    )
    knobs.add_argument(
        "--rate-limit",
        type=_positive,
        metavar="N",
        help="answer 429 beyond N research requests in any one second",
    )
    knobs.add_argument(
        "--retry-after",
        type=_natural,
        metavar="SECONDS",
        help="send Retry-After with the short-term 429",
    )
    knobs.add_argument(
        "--daily-quota",
        type=_natural,
        metavar="N",
        help="answer 429 beyond N research requests per UTC day",
    )
    knobs.add_argument(
        "--token-lifetime",
        type=_positive,
        default=7200,
        metavar="SECONDS",
        help="seconds an access token stays valid (7200)",
    )
    knobs.add_argument(
        "--fault",
        type=_fault,
        action="append",
        metavar="KIND=RATE",
        help=f"inject a fault at random; kinds: {', '.join(Fault)}",
    )
    knobs.add_argument("--seed", type=int, help="seed of the random faults and jitter")
    knobs.add_argument(
        "--hang-seconds",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="how long the hang fault keeps a request waiting (3600)",
    )
    knobs.add_argument(
        "--list-key",
        choices=get_args(ListKey),
        default="reposted_videos",
        help="key of the video list in answers",
    )
    knobs.add_argument(
        "--favorites-spelling",
        choices=get_args(FavoritesSpelling),
        default="favorites_count",
        help="key of the favourites count in videos",
    )
    knobs.add_argument("--huge-ids", action="store_true", help="ids above int64 for every user")
    knobs.add_argument(
        "--omit-empty-list",
        action="store_true",
        help="leave the list key out of answers without videos",
    )
    knobs.add_argument(
        "--extra-keys",
        action="store_true",
        help="undocumented keys at every level of videos and answers",
    )
    knobs.add_argument(
        "--string-ids", action="store_true", help="every id as a JSON string of its digits"
    )
    knobs.add_argument(
        "--type-drift",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share of videos with one field of another JSON type than documented (0)",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Build a configuration from parsed options; raise ValueError if they do not fit together."""
    return SimulatorConfig(
        client_key=args.client_key or TEST_CLIENT_KEY,
        client_secret=args.client_secret or TEST_CLIENT_SECRET,
        latency=args.latency,
        jitter=args.jitter,
        rate_limit=args.rate_limit,
        retry_after=args.retry_after,
        daily_quota=args.daily_quota,
        token_lifetime=args.token_lifetime,
        huge_ids=args.huge_ids,
        faults=dict(args.fault or ()),
        seed=args.seed,
        hang_seconds=args.hang_seconds,
        list_key=args.list_key,
        favorites_spelling=args.favorites_spelling,
        omit_empty_list=args.omit_empty_list,
        extra_keys=args.extra_keys,
        string_ids=args.string_ids,
        type_drift=args.type_drift,
    )


async def _serve(simulator: Simulator, host: str, port: int, defaults: Sequence[str]) -> int:
    try:
        base_url = await simulator.start(host, port)
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    print(base_url, *defaults, sep="\n", flush=True)
    print("Serving the TikTok Research API simulator; Ctrl-C stops it.", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has none: there Ctrl-C arrives as KeyboardInterrupt, which main() catches.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the simulator as the command line asks; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m tiktok_repost_async.simulator",
        description="Serve a local simulator of the TikTok Research API's reposted videos.",
    )
    add_simulator_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    defaults = []
    if args.client_key is None:
        defaults.append(f"client_key={TEST_CLIENT_KEY}")
    if args.client_secret is None:
        defaults.append(f"client_secret={TEST_CLIENT_SECRET}")
    try:
        return asyncio.run(_serve(Simulator(config), args.host, args.port, defaults))
    except KeyboardInterrupt:
        return 0
