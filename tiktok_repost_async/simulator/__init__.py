"""A local simulator of the TikTok Research API's reposted-videos endpoint.

It serves ``POST /v2/oauth/token/`` and ``POST /v2/research/user/reposted_videos/`` over real HTTP
(aiohttp.web) with the live API's shapes and quirks, latency, limits and faults, so that clients can
be tested and benchmarked without credentials or network. It shares no code with the client, so that
it catches the client's mistakes rather than repeating them::

    async with Simulator(rate_limit=10) as sim:
        ...  # talk to sim.base_url with sim.client_key / sim.client_secret
        assert videos == sim.ground_truth("someone")

    with Simulator().run_in_thread() as base_url:  # for synchronous code
        ...

The pytest plugin's ``tiktok_simulator`` fixture yields a running one. From a shell:
``python -m tiktok_repost_async.simulator --port 8080 --fault server_error=0.05``.

Every username exists unless its name says otherwise, and its reposts are derived from the sha256
of the name, so that they are the same in every process and on every machine. The name decides the
user's kind (prefixes are matched case-insensitively, first match wins):

``missing…``, ``notfound…``
    No such user: 400 ``invalid_params``, "The username <name> is invalid: cannot find the user".
``private…``
    Refused: 400 ``invalid_params``, "API cannot return this user's information: <name> is not
    public".
``empty…``
    Exists, reposted nothing.
``big…``
    About 1,000 reposts (950 to 1,050).
``stall…``
    The cursor stops advancing: the first page moves it to max_count; every later page returns
    the cursor it was sent, the videos there, and ``has_more`` true forever. A perfect client
    stops after the second page.
``short…``
    Some videos are moderated away: pages hold fewer than max_count videos (videos 100 to 249 are
    all gone, so some pages are empty) while ``has_more`` stays true; the cursor advances as usual.
``hugeid…``
    Ids above int64, some of 20 digits above uint64 (like the ``huge_ids`` knob for everyone).
anything else
    ``normal``: about 15% have no reposts, the rest up to 600.

A ``_``- or ``.``-separated segment ``n<digits>`` fixes the number of reposts whatever the kind
(except the three without any): ``bench_n250_7`` has exactly 250, ``short_n40`` 40 (100,000 at
most).

Videos carry every field with realistic values: 19-digit snowflake ids, epochs from 2019 on,
unicode and emoji in descriptions, hashtags and names, now and then ``\\u0000`` inside a string,
empty hashtag lists, optional fields missing from some videos, and varying key order.
"""

from __future__ import annotations

from ._cli import add_simulator_arguments, config_from_args, main
from ._data import MAX_REPOSTS, VIDEO_FIELDS
from ._server import (
    INVALID_CURSOR_MESSAGE,
    QUOTA_MESSAGE,
    RATE_LIMIT_MESSAGE,
    RESEARCH_PATH,
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    TOKEN_PATH,
    Fault,
    Simulator,
    SimulatorConfig,
    SimulatorStats,
)
from ._thread import SimulatorThread

__all__ = [
    "INVALID_CURSOR_MESSAGE",
    "MAX_REPOSTS",
    "QUOTA_MESSAGE",
    "RATE_LIMIT_MESSAGE",
    "RESEARCH_PATH",
    "TEST_CLIENT_KEY",
    "TEST_CLIENT_SECRET",
    "TOKEN_PATH",
    "VIDEO_FIELDS",
    "Fault",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "SimulatorThread",
    "add_simulator_arguments",
    "config_from_args",
    "main",
]
