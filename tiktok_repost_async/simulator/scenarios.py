"""Ready-made scenarios for the simulator: the users and faults that ``tiktok-reposts demo`` shows.

``DEMO_INPUT`` is the demo's users file, as a researcher's might be: names that show the cases
worth seeing, and a few lines a harvest must skip (a blank one, an impossible name, a duplicate
written with ``@`` and spaces). ``DEMO_NOTES`` says why each user is there, and `demo_faults`
scripts the faults that the demo's retries ride out (`script_demo_faults` applies them)::

    simulator = Simulator()
    script_demo_faults(simulator)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._server import Simulator

__all__ = ["DEMO_INPUT", "DEMO_NOTES", "demo_faults", "script_demo_faults"]

#: The demo's input lines, in order.
DEMO_INPUT: Final = (
    "big_creator",
    "big_newsroom",
    "alice_n250",
    "bob_n120",
    "carol",
    "dave_n40",
    "",
    "empty_lurker",
    "empty_newcomer",
    "missing_user",
    "private_account",
    "not a username!",
    "stall_loop",
    "short_moderated",
    "hugeid_collector",
    "flaky_n300",
    "erin_n180",
    "  @alice_n250  ",
    "frank_n60",
)

#: Why each demo user is there, for the demo's summary table.
DEMO_NOTES: Final = {
    "big_creator": "a big user: about ten pages",
    "big_newsroom": "another big one, walked at the same time",
    "alice_n250": "a short-term 429 with Retry-After, waited out",
    "bob_n120": "a 500 then a 502 HTML page, both retried",
    "carol": "an ordinary user",
    "dave_n40": "one page",
    "empty_lurker": "exists, reposted nothing",
    "empty_newcomer": "exists, reposted nothing",
    "missing_user": "no such user: one request, no retry",
    "private_account": "private: one request, no retry",
    "stall_loop": "the cursor stops moving: the walk ends itself",
    "short_moderated": "pages with fewer videos, some empty, has_more true",
    "hugeid_collector": "ids above uint64, kept exact",
    "flaky_n300": "a dropped connection and a cut-off answer, retried",
    "erin_n180": "the API's transient 'Invalid count or cursor', retried",
    "frank_n60": "an expired token, refreshed once",
}


def demo_faults() -> dict[str, list[str]]:
    """Return the faults the demo scripts, per user, in the order they strike (a fresh copy)."""
    return {
        "alice_n250": ["rate_limit"],
        "bob_n120": ["server_error", "bad_gateway"],
        "flaky_n300": ["drop", "truncated"],
        "erin_n180": ["invalid_cursor"],
        "frank_n60": ["token_invalid"],
    }


def script_demo_faults(simulator: Simulator) -> None:
    """Script the demo's faults into ``simulator``, each user's before any random one.

    :param simulator: the simulator to script (started or not).
    """
    for username, faults in demo_faults().items():
        simulator.script(username, faults)
