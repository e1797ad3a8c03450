"""The simulator's knobs, counters, faults and the live API's messages."""

from __future__ import annotations

import enum
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from ._data import FAVOURITES_ALIAS, VIDEO_FIELDS

__all__ = [
    "COMPLIANCE_FAULTS",
    "INVALID_CURSOR_MESSAGE",
    "QUOTA_MESSAGE",
    "RATE_LIMIT_MESSAGE",
    "RESEARCH_PATH",
    "TEST_CLIENT_KEY",
    "TEST_CLIENT_SECRET",
    "TOKEN_FAULTS",
    "TOKEN_PATH",
    "AuthFailure",
    "BothListKeys",
    "DownloadFormat",
    "Fault",
    "FavoritesSpelling",
    "GoneHow",
    "ListKey",
    "OutageKind",
    "SimulatorConfig",
    "SimulatorStats",
]

_DAY: Final = 86_400

TEST_CLIENT_KEY: Final = "sim-test-client-key"
TEST_CLIENT_SECRET: Final = "sim-test-client-secret"
TOKEN_PATH: Final = "/v2/oauth/token/"
RESEARCH_PATH: Final = "/v2/research/user/reposted_videos/"

ListKey = Literal["reposted_videos", "user_reposted_videos"]
BothListKeys = Literal["split", "duplicated"]
FavoritesSpelling = Literal["favorites_count", "favourites_count"]
OutageKind = Literal["server_error", "gateway", "drop"]
AuthFailure = Literal["scope_permission_missed", "scope_not_authorized"]
DownloadFormat = Literal["text", "html", "json"]
#: What became of an account that went away after it was served (`gone_users`).
GoneHow = Literal["missing", "private"]

QUOTA_MESSAGE: Final = (
    "Rate limit exceeded: the daily quota of research API requests is used up; "
    "it resets at 00:00 UTC"
)
RATE_LIMIT_MESSAGE: Final = "Too many requests: the short-term rate limit was exceeded, slow down"
INVALID_CURSOR_MESSAGE: Final = "Invalid count or cursor"
SERVER_ERROR_MESSAGE: Final = "Something went wrong. Please try again later."
TOKEN_MISSING_MESSAGE: Final = "The access token is invalid or not found in the request."
TOKEN_EXPIRED_MESSAGE: Final = "The access token has expired; request a new one."
SCOPE_MISSING_MESSAGE: Final = "The client does not have the required scope: research.data.basic"
NOT_APPROVED_MESSAGE: Final = "The research application is not approved"


class Fault(enum.StrEnum):
    """A failure the simulator can inject into a research request."""

    #: 500 internal_error; every second one has an empty message.
    SERVER_ERROR = "server_error"
    #: 502 with a text/html body.
    BAD_GATEWAY = "bad_gateway"
    #: 504 with a text/html body.
    GATEWAY_TIMEOUT = "gateway_timeout"
    #: The connection closes without any answer.
    DROP = "drop"
    #: No answer for `hang_seconds`, then the normal one; dropped when the simulator closes.
    HANG = "hang"
    #: 429 rate_limit_exceeded, short-term (`rate_limit_message`), with
    #: `Retry-After: <retry_after or 1>`.
    RATE_LIMIT = "rate_limit"
    #: 429 rate_limit_exceeded, short-term, without Retry-After.
    RATE_LIMIT_NO_RETRY_AFTER = "rate_limit_no_retry_after"
    #: 429 rate_limit_exceeded with the daily-quota message (`quota_message`), without
    #: Retry-After, as the daily-quota refusal sends it.
    QUOTA = "quota"
    #: 400 invalid_params "Invalid count or cursor", the live API's transient bug.
    INVALID_CURSOR = "invalid_cursor"
    #: 401 access_token_invalid, whatever the token.
    TOKEN_INVALID = "token_invalid"
    #: The normal answer's status and headers, then half its body, then the connection closes.
    TRUNCATED = "truncated"
    #: The API's silent empty (seen for days in 2026): a 200 answer like any other, with an
    #: empty list, has_more false and no error, whatever the user holds.
    SILENT_EMPTY = "silent_empty"


#: The faults the token endpoint can be given, by `token_faults` or `Simulator.script_token`.
TOKEN_FAULTS: Final = (
    Fault.SERVER_ERROR,
    Fault.BAD_GATEWAY,
    Fault.GATEWAY_TIMEOUT,
    Fault.DROP,
    Fault.HANG,
    Fault.RATE_LIMIT,
    Fault.RATE_LIMIT_NO_RETRY_AFTER,
    Fault.TRUNCATED,
)

#: The faults the compliance endpoints can be given, by `compliance_faults` or
#: `Simulator.script_compliance`.
COMPLIANCE_FAULTS: Final = (
    Fault.SERVER_ERROR,
    Fault.BAD_GATEWAY,
    Fault.GATEWAY_TIMEOUT,
    Fault.DROP,
    Fault.HANG,
    Fault.RATE_LIMIT,
    Fault.RATE_LIMIT_NO_RETRY_AFTER,
    Fault.QUOTA,
    Fault.TOKEN_INVALID,
    Fault.TRUNCATED,
)


def _number(name: str, value: Any, most: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= most:
        bounds = ">= 0" if most == float("inf") else f"from 0 to {most:g}"
        raise ValueError(f"{name} must be a number {bounds}, not {value!r}")
    return float(value)


def _count(name: str, value: Any, least: int, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, not {value!r}")
    return value


def _fault_rates(
    value: Any, name: str = "faults", kinds: Iterable[Fault] = Fault
) -> dict[Fault, float]:
    allowed = tuple(kinds)
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map a Fault to a probability, not {value!r}")
    try:
        rates = {
            _kind(kind, allowed): _number("a fault rate", rate, 1) for kind, rate in value.items()
        }
    except ValueError as exc:
        listed = ", ".join(fault.value for fault in allowed)
        raise ValueError(f"{name}: {exc} (fault kinds: {listed}; rates between 0 and 1)") from None
    if sum(rates.values()) > 1:
        raise ValueError(f"{name}: fault rates add up to more than 1: {sum(rates.values())}")
    return rates


def _kind(value: Any, allowed: tuple[Fault, ...]) -> Fault:
    fault = Fault(value)
    if fault not in allowed:
        raise ValueError(f"{fault.value!r} is not a fault of this endpoint")
    return fault


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _fault(name: str, value: Any) -> Fault | None:
    if value is None:
        return None
    try:
        return Fault(value)
    except ValueError:
        kinds = ", ".join(fault.value for fault in Fault)
        message = f"{name} must be a Fault or None, not {value!r} (kinds: {kinds})"
        raise ValueError(message) from None


def _user_faults(value: Any) -> dict[str, Fault]:
    if not isinstance(value, Mapping):
        raise ValueError(f"user_faults must map a username to a Fault, not {value!r}")
    faults: dict[str, Fault] = {}
    for username, fault in value.items():
        if not isinstance(username, str) or not username:
            raise ValueError(
                f"user_faults: a username must be a non-empty string, not {username!r}"
            )
        kind = _fault(f"user_faults[{username!r}]", fault)
        if kind is None:
            raise ValueError(f"user_faults[{username!r}] must be a Fault, not None")
        faults[username] = kind
    return faults


def _gone_users(value: Any) -> dict[str, GoneHow]:
    allowed = get_args(GoneHow)
    if not isinstance(value, Mapping):
        raise ValueError(f"gone_users must map a username to 'missing' or 'private', not {value!r}")
    gone: dict[str, GoneHow] = {}
    for username, how in value.items():
        if not isinstance(username, str) or not username:
            raise ValueError(f"gone_users: a username must be a non-empty string, not {username!r}")
        checked = _choice(f"gone_users[{username!r}]", how, allowed)
        gone[username] = "missing" if checked == "missing" else "private"
    return gone


def _same_reposts(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError(f"same_reposts must map a username to another username, not {value!r}")
    same: dict[str, str] = {}
    for username, other in value.items():
        for name in (username, other):
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"same_reposts: a username must be a non-empty string, not {name!r}"
                )
        if other == username or other in value:
            # One step only: a chain (or a loop) would make ground truth depend on the order.
            raise ValueError(
                f"same_reposts[{username!r}] must name a user whose list is its own, not {other!r}"
            )
        same[username] = other
    return same


def _field_names(name: str, value: Any) -> frozenset[str]:
    known = (*VIDEO_FIELDS, FAVOURITES_ALIAS)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a set of video field names, not {value!r}")
    names = frozenset(value)
    unknown = sorted(map(repr, names.difference(known)))
    if unknown:
        fields = ", ".join(known)
        raise ValueError(f"{name} names no video field: {', '.join(unknown)} (fields: {fields})")
    return names


# What an answer's data object holds besides its list: a renamed list must not shadow them.
_DATA_KEYS: Final = frozenset({"cursor", "has_more", "search_id", *get_args(ListKey)})
_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


_FLAGS: Final = frozenset(
    {
        "huge_ids",
        "omit_empty_list",
        "extra_keys",
        "string_ids",
        "pretty_videos",
        "no_error_object",
        "null_cursor",
    }
)


def _list_key_name(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _KEY.fullmatch(value) or value in _DATA_KEYS:
        taken = ", ".join(sorted(_DATA_KEYS))
        raise ValueError(
            f"{name} must be None or a key of letters, digits and '_' other than {taken},"
            f" not {value!r}"
        )
    return value


def _checked(name: str, value: Any) -> Any:
    """Validate one knob's new value; return it normalised."""
    if name in ("latency", "jitter", "hang_seconds", "outage_seconds"):
        return _number(name, value)
    if name == "outage_start":
        return None if value is None else _number(name, value)
    if name == "outage_kind":
        return _choice(name, value, get_args(OutageKind))
    if name == "persistent_fault":
        return _fault(name, value)
    if name == "user_faults":
        return _user_faults(value)
    if name == "gone_users":
        return _gone_users(value)
    if name == "same_reposts":
        return _same_reposts(value)
    if name == "rejected_fields":
        return _field_names(name, value)
    if name == "auth_failure":
        return None if value is None else _choice(name, value, get_args(AuthFailure))
    if name in ("type_drift", "odd_values", "task_failure_rate"):
        return _number(name, value, 1)
    if name == "unknown_list_key":
        return _list_key_name(name, value)
    if name == "both_list_keys":
        return None if value is None else _choice(name, value, get_args(BothListKeys))
    if name == "task_processing_seconds":
        return _number(name, value)
    if name == "task_processing_polls":
        return _count(name, value, 0, optional=False)
    if name == "download_format":
        return _choice(name, value, get_args(DownloadFormat))
    if name == "compliance_faults":
        return _fault_rates(value, name, COMPLIANCE_FAULTS)
    if name == "quota_reset_lag":
        return _number(name, value, _DAY)
    if name in ("quota_message", "rate_limit_message") and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {value!r}")
    if name == "epoch":
        return _count(name, value, 0, optional=False)
    if name in ("rate_limit", "token_lifetime"):
        return _count(name, value, 1, optional=name == "rate_limit")
    if name in ("retry_after", "daily_quota"):
        return _count(name, value, 0, optional=True)
    if name in ("client_key", "client_secret"):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    elif name in _FLAGS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, not {value!r}")
    elif name == "faults":
        return _fault_rates(value)
    elif name == "token_faults":
        return _fault_rates(value, name, TOKEN_FAULTS)
    elif name == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"seed must be an integer or None, not {value!r}")
    elif name == "list_key":
        return _choice(name, value, get_args(ListKey))
    elif name == "favorites_spelling":
        return _choice(name, value, get_args(FavoritesSpelling))
    elif name == "clock" and not callable(value):
        raise ValueError("clock must be a callable returning epoch seconds")
    return value


@dataclass(eq=False)
class SimulatorConfig:
    """The simulator's knobs; each change applies from the next request on."""

    #: The credentials the token endpoint accepts.
    client_key: str = TEST_CLIENT_KEY
    client_secret: str = TEST_CLIENT_SECRET
    #: Seconds every answer waits, plus up to `jitter` more at random.
    latency: float = 0.0
    jitter: float = 0.0
    #: Research requests allowed in any sliding second, refused ones included; None: no limit.
    rate_limit: int | None = None
    #: The Retry-After seconds of the short-term 429; None sends no header.
    retry_after: int | None = None
    #: Research requests allowed per UTC day of `clock`, every one counted; None: no quota.
    daily_quota: int | None = None
    #: Seconds an access token stays valid.
    token_lifetime: int = 7200
    #: Ids above int64 (some above uint64) for every user, not only `hugeid…` ones.
    huge_ids: bool = False
    #: Probability of each fault per research request; assign a new dict to change them.
    faults: dict[Fault, float] = field(default_factory=dict)
    #: Seed of the random faults and jitter; None seeds from the system.
    seed: int | None = None
    #: How long a HANG fault keeps its request waiting.
    hang_seconds: float = 3600.0
    #: The key of the video list in answers.
    list_key: ListKey = "reposted_videos"
    #: The key of the favourites count in videos, whichever spelling the request used.
    favorites_spelling: FavoritesSpelling = "favorites_count"
    #: Leave the list key out of successful answers without videos.
    omit_empty_list: bool = False
    #: Keys no documentation names, at every level of videos and answers, whatever was asked.
    extra_keys: bool = False
    #: Every id (video, music, hashtag, sticker, effect) as a JSON string of its digits.
    string_ids: bool = False
    #: Probability that a video has one requested field of another JSON type than documented;
    #: drawn from the username and the video's position, so the same videos drift every time.
    type_drift: float = 0.0
    #: Probability that a video carries JSON that is valid but that few decoders take whole: its
    #: video_description holds a lone UTF-16 surrogate escape (``\ud83d``, an emoji cut in
    #: half) and its like_count is spelled ``1e400`` (beyond any float), where the request asked
    #: for them; its video_tag lacks video_tag_number or holds it as null. Drawn per video from
    #: the username and the video (not from the fault seed), so the same videos carry them in
    #: every run and at every epoch.
    odd_values: float = 0.0
    #: Video objects pretty-printed, as ``json.dumps(indent=2)`` sends them: a newline and
    #: indents between their tokens (never inside a string), keys, values and spellings as ever.
    pretty_videos: bool = False
    #: Answers holding videos carry both list keys: `list_key` the first half of the page's
    #: videos and the other key the rest (``"split"``), or both all of them (``"duplicated"``);
    #: None sends one list.
    both_list_keys: BothListKeys | None = None
    #: Serve the video list under this key, which no documentation names (``"videos"``, say),
    #: instead of `list_key`: the API renaming its list; None: `list_key`.
    unknown_list_key: str | None = None
    #: Successful answers carry no error object, so no log_id anywhere (the live API's
    #: gateways and sibling endpoints have answered so).
    no_error_object: bool = False
    #: Pages with has_more true send ``"cursor": null`` instead of the next cursor (seen on the
    #: video query endpoint).
    null_cursor: bool = False
    #: Epoch seconds of `clock` at which an outage begins; None: no outage.
    outage_start: float | None = None
    #: How long the outage lasts: requests while outage_start <= clock() < outage_start +
    #: outage_seconds fail, on both endpoints, whatever their token, body or the quota left.
    outage_seconds: float = 0.0
    #: How they fail: 500 internal_error with an empty message, 504 with a text/html page, or a
    #: connection closed without an answer.
    outage_kind: OutageKind = "server_error"
    #: A fault every research request that would otherwise be served gets while it is set;
    #: scripted faults wait, and no random one is drawn.
    persistent_fault: Fault | None = None
    #: A fault that every research request for one of these users gets, while the API serves
    #: everyone else (a user the API cannot serve); before `persistent_fault` and scripts.
    #: Assign a new dict to change them.
    user_faults: dict[str, Fault] = field(default_factory=dict)
    #: Video fields the API no longer accepts: a request naming any of them, spelled as here,
    #: gets 400 invalid_params "Invalid fields: <names>", comma-joined in the request's order.
    rejected_fields: frozenset[str] = frozenset()
    #: Refuse every research request with a valid token: 400 scope_permission_missed (the client
    #: lacks a scope) or 401 scope_not_authorized (the application is not approved).
    auth_failure: AuthFailure | None = None
    #: The message of the daily-quota 429 (refusal and QUOTA fault); the live API's text is not
    #: documented, and both 429s share the code rate_limit_exceeded.
    quota_message: str = QUOTA_MESSAGE
    #: The message of the short-term 429 (refusal and RATE_LIMIT faults).
    rate_limit_message: str = RATE_LIMIT_MESSAGE
    #: Seconds after 00:00 UTC of `clock` during which a project that used up the day before's
    #: quota still gets the daily-quota 429, its new quota untouched: those requests count
    #: against nothing.
    quota_reset_lag: float = 0.0
    #: Probability of each fault (one of TOKEN_FAULTS) per token request, drawn from its own
    #: stream of `seed`, so that research faults come as without it; assign a new dict.
    token_faults: dict[Fault, float] = field(default_factory=dict)
    #: Epoch seconds, for token expiry, the quota day and the rate window; tests pass a fake.
    clock: Callable[[], float] = time.time
    #: How many rounds of time have passed (not epoch seconds): at 0 every list is as its name
    #: makes it; each step on adds new reposts at the head, removes a few for good and grows
    #: counts, the same way in every run. A panel's round N is harvested at epoch N - 1.
    epoch: int = 0
    #: Seconds of `clock` a compliance task stays Processing after it is created.
    task_processing_seconds: float = 0.0
    #: Status answers of Processing each compliance task gives before its final state.
    task_processing_polls: int = 0
    #: Probability that a compliance task ends Failed (drawn from the compliance stream).
    task_failure_rate: float = 0.0
    #: Probability of each fault (one of COMPLIANCE_FAULTS) per compliance request, drawn from a
    #: stream of its own; assign a new dict.
    compliance_faults: dict[Fault, float] = field(default_factory=dict)
    #: What the download endpoint answers for a completed task: the documented text file of
    #: valid ids (``"text"``), a 200 text/html page (``"html"``), or a 200 JSON answer in the
    #: research envelope with no file at all (``"json"``): drift a client must not read as
    #: "no id is valid".
    download_format: DownloadFormat = "text"
    #: Users whose account went away after they were served, each `missing` (deleted) or
    #: `private` (made private, or its owner opted out): their research requests are refused
    #: from now on as for a `missing…` or `private…` name, while compliance tasks still find
    #: their videos, as `Simulator.remove_user` makes them. Assign a new dict.
    gone_users: dict[str, GoneHow] = field(default_factory=dict)
    #: Users who reposted exactly what another did: each name here is served the other's list
    #: (its kind, epochs and drift), so that every video of it is in both users' lists, as real
    #: users share reposts. Ground truth follows. Assign a new dict.
    same_reposts: dict[str, str] = field(default_factory=dict)

    def __setattr__(self, name: str, value: Any) -> None:
        # Checked on every assignment, so that a bad value set at run time fails where it is set,
        # not inside a request handler.
        super().__setattr__(name, _checked(name, value))


@dataclass(eq=False)
class SimulatorStats:
    """Counters of the requests served; `Simulator.reset_stats` starts them afresh.

    They count research requests unless their name says ``token``.
    """

    #: Research requests received, whatever became of them.
    requests: int = 0
    #: Statuses answered; dropped requests have none.
    by_status: Counter[int] = field(default_factory=Counter)
    #: Requests per username, when the body named one.
    by_user: Counter[str] = field(default_factory=Counter)
    #: Valid requests per (username, cursor): a page asked twice shows here.
    by_cursor: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: Faults injected, scripted or random.
    faults: Counter[Fault] = field(default_factory=Counter)
    #: Connections closed without an answer (DROP, and HANG at close).
    dropped: int = 0
    #: Token requests received, whatever became of them, and access tokens issued.
    token_requests: int = 0
    tokens_issued: int = 0
    #: Token requests failed by the outage window (in `token_requests` too).
    token_outage_failures: int = 0
    #: Faults injected into token requests, scripted or random.
    token_faults: Counter[Fault] = field(default_factory=Counter)
    #: Research requests being served now, and the most at any one time.
    in_flight: int = 0
    peak_in_flight: int = 0
    #: Research requests counted against the current UTC day's quota (as of the latest one).
    quota_used: int = 0
    #: Research requests failed by the outage window (in `requests` too, and in the quota).
    outage_failures: int = 0
    #: Daily-quota 429s sent during a lagging reset (in `requests`, not in the quota).
    quota_lag_refusals: int = 0
    #: Compliance requests (create, status, download) received, whatever became of them; they
    #: count against the daily quota (`quota_used`) but not in `requests`.
    compliance_requests: int = 0
    #: Compliance requests per path.
    compliance_by_path: Counter[str] = field(default_factory=Counter)
    #: Statuses of compliance answers; dropped requests have none.
    compliance_by_status: Counter[int] = field(default_factory=Counter)
    #: Faults injected into compliance requests, scripted or random.
    compliance_faults: Counter[Fault] = field(default_factory=Counter)
    #: Compliance tasks created.
    tasks_created: int = 0
