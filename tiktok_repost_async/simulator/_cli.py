"""`python -m tiktok_repost_async.simulator`: serve the simulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import get_args

from ._config import (
    COMPLIANCE_FAULTS,
    QUOTA_MESSAGE,
    RATE_LIMIT_MESSAGE,
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    TOKEN_FAULTS,
    AuthFailure,
    BothListKeys,
    DownloadFormat,
    Fault,
    FavoritesSpelling,
    GoneHow,
    ListKey,
    OutageKind,
    SimulatorConfig,
)
from ._data import FAVOURITES_ALIAS, VIDEO_FIELDS
from ._server import Simulator

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


def _fault_kind(text: str, allowed: Sequence[Fault] = tuple(Fault)) -> Fault:
    kinds = ", ".join(fault.value for fault in allowed)
    try:
        fault = Fault(text.strip().lower())
    except ValueError:
        fault = None
    if fault not in allowed:
        raise argparse.ArgumentTypeError(f"unknown fault {text!r}; choose from {kinds}")
    assert fault is not None
    return fault


def _fault(text: str, allowed: Sequence[Fault] = tuple(Fault)) -> tuple[Fault, float]:
    kind, sep, rate = text.partition("=")
    fault = _fault_kind(kind, allowed)
    try:
        probability = float(rate)
    except ValueError:
        probability = -1.0
    if not sep or not 0 <= probability <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not KIND=RATE with a rate from 0 to 1")
    return fault, probability


def _user_fault(text: str) -> tuple[str, Fault]:
    name, sep, kind = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=KIND, got {text!r}")
    return name.strip(), _fault_kind(kind)


def _gone_user(text: str) -> tuple[str, str]:
    name, sep, how = text.partition("=")
    if not sep or not name.strip() or how not in get_args(GoneHow):
        raise argparse.ArgumentTypeError(f"expected NAME=missing or NAME=private, got {text!r}")
    return name.strip(), how


def _same_user(text: str) -> tuple[str, str]:
    name, sep, other = text.partition("=")
    if not sep or not name.strip() or not other.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=OTHER, got {text!r}")
    return name.strip(), other.strip()


def _token_fault(text: str) -> tuple[Fault, float]:
    return _fault(text, TOKEN_FAULTS)


def _compliance_fault(text: str) -> tuple[Fault, float]:
    return _fault(text, COMPLIANCE_FAULTS)


def _outage_start(text: str) -> tuple[bool, float]:
    """Parse SECONDS (from now) or @EPOCH; return (absolute, seconds)."""
    absolute = text.startswith("@")
    what = "an epoch in seconds" if absolute else "a number of seconds >= 0"
    seconds = _typed(float, 0, what)(text[1:] if absolute else text)
    if seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return absolute, seconds


def _field_name(text: str) -> str:
    name = text.strip()
    if name not in (*VIDEO_FIELDS, FAVOURITES_ALIAS):
        fields = ", ".join(VIDEO_FIELDS)
        raise argparse.ArgumentTypeError(f"{text!r} is not a video field; fields: {fields}")
    return name


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's address, credential and knob options to a parser.

    :param parser: the parser to add them to (``serve``'s, or the simulator module's own).
    """
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
    knobs.add_argument(
        "--odd-values",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share of videos with a lone surrogate escape in video_description and like_count"
        " 1e400 (0)",
    )
    knobs.add_argument(
        "--pretty-videos",
        action="store_true",
        help="video objects pretty-printed: newlines and indents between their tokens",
    )
    knobs.add_argument(
        "--both-list-keys",
        choices=get_args(BothListKeys),
        help="answers carry both list keys, the videos split between them or under both",
    )
    knobs.add_argument(
        "--epoch",
        type=_natural,
        default=0,
        metavar="K",
        help="rounds of time passed: every repost list moved K steps on (new reposts at the "
        "head, some removed, counts grown); 0 serves them as named (0)",
    )
    knobs.add_argument(
        "--remove-user",
        type=_gone_user,
        action="append",
        metavar="NAME=missing|private",
        help="this user's account went away: refuse its research requests as deleted (missing)"
        " or private, while compliance tasks still find its videos; for refresh --users"
        " (repeatable)",
    )
    knobs.add_argument(
        "--same-reposts",
        type=_same_user,
        action="append",
        metavar="NAME=OTHER",
        help="NAME reposted exactly what OTHER did: serve OTHER's list under NAME, so every video"
        " of it is in both lists (repeatable)",
    )
    bad = parser.add_argument_group("bad days")
    bad.add_argument(
        "--outage-start",
        type=_outage_start,
        metavar="SECONDS|@EPOCH",
        help="begin an outage this many seconds after start-up, or at this epoch second",
    )
    bad.add_argument(
        "--outage-seconds",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="how long the outage lasts (needs --outage-start)",
    )
    bad.add_argument(
        "--outage-kind",
        choices=get_args(OutageKind),
        default="server_error",
        help="how requests fail during the outage: 500 with no message, 504 HTML, or no answer",
    )
    bad.add_argument(
        "--persistent-fault",
        type=_fault_kind,
        metavar="KIND",
        help="give every research request this fault",
    )
    bad.add_argument(
        "--user-fault",
        type=_user_fault,
        action="append",
        metavar="NAME=KIND",
        help="give every research request for this user this fault (repeatable)",
    )
    bad.add_argument(
        "--reject-field",
        type=_field_name,
        action="append",
        metavar="NAME",
        help="answer 400 'Invalid fields: NAME' to requests naming this field (repeatable)",
    )
    bad.add_argument(
        "--auth-failure",
        choices=get_args(AuthFailure),
        help="refuse every research request for a missing scope or an unapproved application",
    )
    bad.add_argument(
        "--unknown-list-key",
        metavar="KEY",
        help="serve the video list under this undocumented key (videos, say): a renamed list",
    )
    bad.add_argument(
        "--no-error-object",
        action="store_true",
        help="successful answers without an error object, so without a log_id",
    )
    bad.add_argument(
        "--null-cursor",
        action="store_true",
        help='pages with has_more true send "cursor": null',
    )
    bad.add_argument(
        "--quota-message",
        default=QUOTA_MESSAGE,
        metavar="TEXT",
        help="message of the daily-quota 429",
    )
    bad.add_argument(
        "--rate-limit-message",
        default=RATE_LIMIT_MESSAGE,
        metavar="TEXT",
        help="message of the short-term 429",
    )
    bad.add_argument(
        "--quota-reset-lag",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="keep refusing a quota used up the day before this long past 00:00 UTC (0)",
    )
    bad.add_argument(
        "--token-fault",
        type=_token_fault,
        action="append",
        metavar="KIND=RATE",
        help=f"inject a fault into token requests; kinds: {', '.join(TOKEN_FAULTS)}",
    )
    tasks = parser.add_argument_group("compliance tasks")
    tasks.add_argument(
        "--task-processing-seconds",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="how long a compliance task stays Processing (0)",
    )
    tasks.add_argument(
        "--task-processing-polls",
        type=_natural,
        default=0,
        metavar="N",
        help="status answers of Processing each compliance task gives first (0)",
    )
    tasks.add_argument(
        "--task-failure-rate",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="probability that a compliance task ends Failed (0)",
    )
    tasks.add_argument(
        "--compliance-fault",
        type=_compliance_fault,
        action="append",
        metavar="KIND=RATE",
        help=f"inject a fault into compliance requests; kinds: {', '.join(COMPLIANCE_FAULTS)}",
    )
    tasks.add_argument(
        "--download-format",
        choices=get_args(DownloadFormat),
        default="text",
        help="what a download answers: the text file of ids, or drift (an HTML page, JSON)",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Build a configuration from parsed options; raise ValueError if they do not fit together.

    A relative ``--outage-start`` counts from now, the moment this is called.

    :param args: the options as `add_simulator_arguments` parsed them.
    """
    outage_start = None
    if args.outage_start is not None:
        absolute, seconds = args.outage_start
        outage_start = seconds if absolute else time.time() + seconds
        if not args.outage_seconds:
            raise ValueError("--outage-start needs --outage-seconds above 0")
    elif args.outage_seconds:
        raise ValueError("--outage-seconds needs --outage-start")
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
        odd_values=args.odd_values,
        pretty_videos=args.pretty_videos,
        both_list_keys=args.both_list_keys,
        unknown_list_key=args.unknown_list_key,
        no_error_object=args.no_error_object,
        null_cursor=args.null_cursor,
        epoch=int(args.epoch),
        outage_start=outage_start,
        outage_seconds=args.outage_seconds,
        outage_kind=args.outage_kind,
        persistent_fault=args.persistent_fault,
        user_faults=dict(args.user_fault or ()),
        rejected_fields=frozenset(args.reject_field or ()),
        auth_failure=args.auth_failure,
        quota_message=args.quota_message,
        rate_limit_message=args.rate_limit_message,
        quota_reset_lag=args.quota_reset_lag,
        token_faults=dict(args.token_fault or ()),
        task_processing_seconds=args.task_processing_seconds,
        task_processing_polls=args.task_processing_polls,
        task_failure_rate=args.task_failure_rate,
        compliance_faults=dict(args.compliance_fault or ()),
        download_format=args.download_format,
        gone_users=dict(args.remove_user or ()),
        same_reposts=dict(args.same_reposts or ()),
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
    """Serve the simulator as the command line asks; return the exit code.

    :param argv: the command line's arguments, without the program's name (None: ``sys.argv[1:]``).
    """
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
