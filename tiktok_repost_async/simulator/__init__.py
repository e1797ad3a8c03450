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
``endless…``
    ``has_more`` never turns false: its reposts come as usual, then every later page is empty
    with ``has_more`` true and the cursor advanced by max_count, forever. ``pages_needed``
    counts the pages holding real videos; a client spends its guard's requests on top.
``short…``
    Some videos are moderated away: pages hold fewer than max_count videos (videos 100 to 249 are
    all gone, so some pages are empty) while ``has_more`` stays true; the cursor advances as usual.
``hugeid…``
    Ids above int64, some of 20 digits above uint64 (like the ``huge_ids`` knob for everyone).
anything else
    ``normal``: about 15% have no reposts, the rest up to 600.

A ``_``- or ``.``-separated segment ``n<digits>`` fixes the number of reposts whatever the kind
(except the three without any): ``bench_n250_7`` has exactly 250, ``short_n40`` 40 (100,000 at
most), at epoch 0 (below).

Videos carry every field with realistic values: 19-digit snowflake ids, epochs from 2019 on,
unicode and emoji in descriptions, hashtags and names, now and then ``\\u0000`` inside a string,
empty hashtag lists, optional fields missing from some videos, and varying key order.

Three knobs, all off by default, change what goes over the wire, so that tests can show a client
keeps exactly what the API sent (``ground_truth`` follows each of them):

``extra_keys``
    Keys no documentation names, sent whatever ``fields`` asked for: most videos get
    ``effect_ids`` (id strings) and/or ``x_playlist_info`` (a nested object with a big integer),
    every nested object (hashtag, sticker and effect items, ``video_label``, ``video_tag``) one
    of its own, and the answer ``extra`` at its top level, ``search_id`` in ``data`` and
    ``http_status_code`` in ``error`` (the research endpoint's error answers too).
``string_ids``
    Every id (``id``, ``music_id``, ``hashtag_id``, ``sticker_id``, ``effect_id``) as a JSON
    string of its digits; by default the first three are numbers and the last two strings.
``type_drift``
    The probability that a video carries one field of another JSON type than documented, drawn
    from the username and the video's position (not from the fault seed), so the same videos
    drift in every run. ``Simulator.drift(username, positions, kind)`` scripts it instead.

The drift kinds (``DRIFT_KINDS``) are named after the field they touch: ``video_duration``
``15.5``, ``hashtag_names`` holding a ``null``, ``region_code`` a number, ``is_stem_verified``
``0``/``1``, ``like_count`` ``"12.3K"``, ``create_time`` an ISO date string, ``video_label`` a
plain string, ``hashtag_info_list`` holding a string, ``sticker_info_list`` an object,
``music_id`` a float; and, scripted only, ``no_id`` (the id left out) and ``bad_id`` (``"n/a"``).
A drifted field is always one the request asked for: a kind whose field it did not ask for gives
way to the next kind that it did. ``Simulator.drifted(username)`` tells which videos drift, how.

More knobs send what is valid JSON but awkward, or answers laid out oddly (``ground_truth``
follows ``odd_values``; the others change no video):

``odd_values``
    The probability that a video's video_description holds a lone UTF-16 surrogate escape
    (``\\ud83d``, valid JSON that msgspec refuses), its like_count is spelled ``1e400`` (beyond
    any float) and its video_tag lacks video_tag_number or holds it as null.
``pretty_videos``
    Video objects pretty-printed, newlines and indents between their tokens.
``both_list_keys``
    ``"split"``: the page's videos split between ``reposted_videos`` and
    ``user_reposted_videos``; ``"duplicated"``: all of them under both.
``unknown_list_key``
    The list under an undocumented key (``"videos"``): the API renaming it.
``no_error_object``, ``null_cursor``
    Successful answers without an error object (so without a log_id); ``"cursor": null`` with
    ``has_more`` true.

Time passes between the rounds of a panel study with the ``epoch`` knob (``--epoch K``; an
integer >= 0, settable at run time, 0 by default; a count of rounds, not epoch seconds). At
epoch 0 every list is as described above, byte for byte. Each step from epoch k - 1 to k moves
every user's list on, from the name and k alone (never from ``seed``), so that epoch 2 is
epoch 1 moved once more, the same in every process:

- **removed**: each listed video, old or added at an earlier epoch, anywhere in the list,
  disappears with the user's removal rate for the step (drawn from 0 to 2%), for good: ids
  are never reused;
- **counts grown**: about 30% of the others get more views (at least one), and with them
  some more likes, comments, shares and favourites; no count ever shrinks, no other field
  changes;
- **new reposts at the head**, newest first: none for about 20% of the users in a step, 1 to
  30 (mostly few) for about 73%, 101 to 300 for about 7% (the head then spans pages). They
  were created in the k-th week after every epoch-0 video, so their snowflake ids are larger
  than any earlier one (with ``huge_ids`` the ids stay unique, but their transformation does
  not keep that order), and their content comes from the same templates. A list never grows
  past 100,000.

``missing``, ``private`` and ``empty`` users stay as they are at every epoch. ``stall`` and
``short`` keep their ways on the moved list: a ``stall`` user's first page moves the cursor to
max_count and the second repeats it, over the list of that epoch; a ``short`` user's moderated
videos stay moderated whatever their position (so that no old video seems to appear or vanish
as the list moves), and of its new videos about 30% are moderated too: its pages stay short with
``has_more`` true, but the wholly empty page of epoch 0 need not last. ``endless`` users serve
the moved list, then empty pages as before. An ``n<digits>`` segment fixes the count at epoch 0
only. ``repost_count``, ``Simulator.pages_needed`` (at the simulator's epoch; at 0 when asked of
the class), ``Simulator.ground_truth(username, epoch=None)`` (default: the knob's) and the pages
served agree at every epoch; a new epoch encodes each user once.

The wire knobs keep working at every epoch, and a video keeps its looks as the list moves:
unknown keys and ``type_drift`` belong to the video, not to its position, and the positions
``Simulator.drift`` takes are those of the list at epoch 0 (a video added later cannot be
scripted; it draws its own ``type_drift``). ``Simulator.drifted(username, epoch=None)`` answers in
positions of the list at that epoch.

``Simulator.changes(username, from_epoch, to_epoch)`` is the ground truth of what a client's diff
of two full walks finds: ``{"added": [ids in the later list's order], "removed": [ids], "counts":
{id: {"like_count": delta, ...}}}``, the set differences of ``ground_truth`` at the two epochs
with the current knobs and, for videos in both, the deltas of the count fields that changed
(``like_count``, ``comment_count``, ``share_count``, ``view_count``, ``favorites_count``). Ids
are ints; videos drifted to ``no_id``/``bad_id`` and counts drifted to strings are left out, as
the client's diff leaves them. A panel's round N is harvested at epoch N - 1::

    sim.config.epoch = 1  # a week later
    ...  # harvest round 2, then diff rounds 1 and 2
    assert sim.changes("someone", 0, 1)["added"] == [...]

Bad days, all off by default, each settable at run time like every knob and each with an option
of the command line (``--outage-start`` takes seconds after start-up, or ``@EPOCH`` for an
absolute epoch second; ``--reject-field`` and ``--token-fault KIND=RATE`` repeat; ``--help``
lists them):

``outage_start``, ``outage_seconds``, ``outage_kind``
    While ``outage_start <= clock() < outage_start + outage_seconds`` every request fails, whatever
    its token, body or the quota left: research requests with 500
    ``internal_error`` and an empty message (``"server_error"``), a 504 text/html page
    (``"gateway"``) or a connection closed without an answer (``"drop"``); the token endpoint
    likewise, its 500 in its own flat shape. Research requests failed so are counted in
    ``stats.requests``, ``stats.quota_used`` (the live API bills failures) and
    ``stats.outage_failures``; token requests in ``stats.token_outage_failures``.
``persistent_fault``
    A ``Fault`` that every research request gets while set, where a random fault would come
    (after the token, quota and rate checks and the request's validation); scripted faults
    wait for it to be cleared, and no random fault is drawn.
``rejected_fields``
    Video field names (a set) the API no longer accepts, as when TikTok drops a field: a request
    whose ``fields`` names any of them, spelled as given (``favorites_count`` and
    ``favourites_count`` are told apart), gets 400 ``invalid_params`` "Invalid fields: <names>",
    the names comma-joined without spaces in the request's order (after the token, scope, quota
    and rate checks, like any invalid request).
``auth_failure``
    ``"scope_permission_missed"``: every research request with a valid token gets 400
    ``scope_permission_missed`` ("The client does not have the required scope: ...");
    ``"scope_not_authorized"``: 401 ``scope_not_authorized`` ("The research application is not
    approved"). The token endpoint still issues tokens; a bad token still gets
    ``access_token_invalid``.
``quota_message``, ``rate_limit_message``
    The texts of the daily-quota 429 (``QUOTA_MESSAGE`` by default: the refusal beyond
    ``daily_quota`` and the ``quota`` fault) and of the short-term one (``RATE_LIMIT_MESSAGE``:
    the refusal beyond ``rate_limit`` and the ``rate_limit`` faults). Both 429s share the code
    ``rate_limit_exceeded``, and the live API's texts are not documented, so that a client must
    not tell them apart by their words. The daily-quota 429 never carries ``Retry-After``.
``quota_reset_lag``
    Seconds (under a day) after 00:00 UTC of ``clock`` during which a project whose quota was
    used up on the day just ended still gets the daily-quota 429, although the new day's quota
    is fresh. Requests during the lag count against nothing (``stats.quota_used`` stays 0); the
    refusals are counted in ``stats.quota_lag_refusals``. It needs ``daily_quota``;
    ``reset_quota()`` ends it.
``token_faults``
    The probability of each fault per token request, like ``faults`` for research requests,
    drawn from a stream of its own (so that a ``seed`` gives the same research faults with or
    without it). ``Simulator.script_token(faults)`` scripts them instead, before any random one.
    The kinds are ``TOKEN_FAULTS``: ``server_error`` (500 in the token endpoint's flat shape,
    ``{"error": "internal_error", "error_description", "log_id"}``, every second one without a
    description), ``rate_limit`` and ``rate_limit_no_retry_after`` (429 ``rate_limit_exceeded``,
    flat, with or without ``Retry-After``), ``bad_gateway`` and ``gateway_timeout`` (HTML),
    ``drop``, ``hang`` and ``truncated`` (a token issued but cut off). ``stats.token_requests``
    counts every token request, ``stats.token_faults`` the faults given.

The Batch Compliance endpoints (``POST /v2/research/validation_task/create/``,
``/v2/research/validation_task_status/get/``, ``/v2/research/validation_task/download/``) are
served as documented: create takes a ``multipart/form-data`` form with ``file_data`` (one id per
line) and ``category`` (``video`` or ``comment``) and answers ``{"data": {"task_id": N}}`` with a
task id above int64 (a string with ``string_ids``); status and download take JSON
``{"task_id": N}`` (an integer, or a string of its digits) and answer ``Processing``,
``Completed`` or ``Failed``, and a ``text/plain`` file of the valid ids, one a line, in the order
sent. A task finds valid the ids of videos that exist at the epoch it was created in: the videos
of every user whose list was served (at any epoch), moderated ones left out. A video an epoch
removed, and an id never served, are invalid; ``comment`` ids are all invalid. Each call is billed
against ``daily_quota`` and the ``rate_limit`` window and refused like a research request (token,
``auth_failure``, quota, outage), but counted in ``stats.compliance_requests``, not
``stats.requests``. Refusals: a body that is not multipart, a part that is not a file, a line that
is not an id, no id, more than 10,000 ids or a file that is not UTF-8 get 400
``invalid_file_upload``; a bad category, a bad or unknown ``task_id``, a download of a task still
processing or failed get 400 ``invalid_params``. Knobs: ``task_processing_seconds`` (of ``clock``)
and ``task_processing_polls`` (Processing answers first) keep a task Processing;
``task_failure_rate`` and ``Simulator.fail_tasks(n)`` make tasks fail; ``compliance_faults`` and
``Simulator.script_compliance(faults)`` inject ``COMPLIANCE_FAULTS`` (5xx, gateway pages, 429s,
the daily quota, 401, drops, hangs, cut answers; a cut create answer still made its task);
``download_format`` ``"html"`` or ``"json"`` answers a download with a 200 page or envelope and no
file. ``Simulator.tasks`` and ``Simulator.task(task_id)`` show what each task was sent and found.
"""

from __future__ import annotations

from ._cli import add_simulator_arguments, config_from_args, main
from ._compliance import Task
from ._config import (
    COMPLIANCE_FAULTS,
    INVALID_CURSOR_MESSAGE,
    QUOTA_MESSAGE,
    RATE_LIMIT_MESSAGE,
    RESEARCH_PATH,
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    TOKEN_FAULTS,
    TOKEN_PATH,
    Fault,
    SimulatorConfig,
    SimulatorStats,
)
from ._data import COUNT_FIELDS, DRIFT_KINDS, MAX_REPOSTS, VIDEO_FIELDS
from ._server import Simulator
from ._thread import SimulatorThread
from ._wire import EpochChanges
from .scenarios import DEMO_INPUT, DEMO_NOTES, demo_faults, script_demo_faults

__all__ = [
    "COMPLIANCE_FAULTS",
    "COUNT_FIELDS",
    "DEMO_INPUT",
    "DEMO_NOTES",
    "DRIFT_KINDS",
    "INVALID_CURSOR_MESSAGE",
    "MAX_REPOSTS",
    "QUOTA_MESSAGE",
    "RATE_LIMIT_MESSAGE",
    "RESEARCH_PATH",
    "TEST_CLIENT_KEY",
    "TEST_CLIENT_SECRET",
    "TOKEN_FAULTS",
    "TOKEN_PATH",
    "VIDEO_FIELDS",
    "EpochChanges",
    "Fault",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "SimulatorThread",
    "Task",
    "add_simulator_arguments",
    "config_from_args",
    "demo_faults",
    "main",
    "script_demo_faults",
]
