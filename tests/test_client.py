"""The client against the simulator over loopback: pagination, quirks, faults, auth and input."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tiktok_repost_async import (
    VIDEO_FIELDS,
    AuthError,
    QuotaExhaustedError,
    RepostClient,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UserNotFoundError,
    UserUnavailableError,
)
from tiktok_repost_async.retry import RetryPolicy
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Fault, Simulator


class FakeSleep:
    """Record the waits a client asks for instead of sleeping through them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


def make_client(sim: Simulator, **kwargs: object) -> RepostClient:
    options: dict[str, object] = {
        "base_url": sim.base_url,
        "requests_per_second": 1000.0,
        "timeout": 5.0,
    }
    options.update(kwargs)
    return RepostClient(TEST_CLIENT_KEY, TEST_CLIENT_SECRET, **options)  # type: ignore[arg-type]


async def collect(client: RepostClient, username: str) -> list[int]:
    return [video.id async for video in client.reposted_videos(username)]


def truth_ids(sim: Simulator, username: str) -> list[int]:
    return [video["id"] for video in sim.ground_truth(username)]


async def test_walks_every_page_once_and_matches_ground_truth(sim: Simulator) -> None:
    async with make_client(sim) as client:
        ids = await collect(client, "alice_n250")
    assert ids == truth_ids(sim, "alice_n250")
    assert len(ids) == 250
    # 100 + 100 + 50: three requests, the minimum, and no cursor twice.
    assert sim.stats.requests == sim.pages_needed("alice_n250", 100) == 3
    assert max(sim.stats.by_cursor.values()) == 1


async def test_decoded_videos_carry_every_requested_field(sim: Simulator) -> None:
    async with make_client(sim) as client:
        videos = [v async for v in client.reposted_videos("fields_n30")]
    truth = sim.ground_truth("fields_n30")
    for video, expected in zip(videos, truth, strict=True):
        assert video.id == expected["id"]
        assert video.like_count == expected.get("like_count")
        assert video.hashtag_names == expected.get("hashtag_names")
        assert video.favorites_count == expected.get("favorites_count")


async def test_few_fields_only_those_come_back(sim: Simulator) -> None:
    async with make_client(sim, fields="id,like_count") as client:
        videos = [v async for v in client.reposted_videos("few_n5")]
    assert [v.id for v in videos] == truth_ids(sim, "few_n5")
    assert all(v.like_count is not None and v.view_count is None for v in videos)


@pytest.mark.parametrize("list_key", ["reposted_videos", "user_reposted_videos"])
async def test_either_list_key_is_read(sim: Simulator, list_key: str) -> None:
    sim.config.list_key = list_key
    async with make_client(sim) as client:
        assert await collect(client, "keys_n120") == truth_ids(sim, "keys_n120")


@pytest.mark.parametrize("spelling", ["favorites_count", "favourites_count"])
async def test_either_favorites_spelling_fills_one_attribute(sim: Simulator, spelling: str) -> None:
    sim.config.favorites_spelling = spelling
    async with make_client(sim, fields=["id", "favourites_count"]) as client:
        videos = [v async for v in client.reposted_videos("fav_n10")]
    expected = [v.get("favorites_count") for v in sim.ground_truth("fav_n10")]
    assert [v.favorites_count for v in videos] == expected
    assert any(count is not None for count in expected)


@pytest.mark.parametrize("omit", [False, True])
async def test_user_without_reposts_costs_one_request(sim: Simulator, omit: bool) -> None:
    sim.config.omit_empty_list = omit
    async with make_client(sim) as client:
        pages = [page async for page in client.pages("empty_one")]
    assert len(pages) == 1
    assert pages[0].videos == []
    assert not pages[0].has_more
    assert sim.stats.requests == 1


async def test_missing_user_raises_not_found_without_retry(sim: Simulator) -> None:
    async with make_client(sim) as client:
        with pytest.raises(UserNotFoundError) as caught:
            await collect(client, "missing_person")
    assert caught.value.username == "missing_person"
    assert caught.value.log_id
    assert "missing_person" in str(caught.value)
    assert caught.value.log_id in str(caught.value)
    assert sim.stats.requests == 1


async def test_private_user_raises_unavailable_without_retry(sim: Simulator) -> None:
    async with make_client(sim) as client:
        with pytest.raises(UserUnavailableError):
            await collect(client, "private_person")
    assert sim.stats.requests == 1


async def test_stalled_cursor_ends_the_walk_with_a_warning(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tiktok_repost_async")
    async with make_client(sim) as client:
        ids = await collect(client, "stall_n500")
    assert ids
    assert len(ids) == len(set(ids))
    assert max(sim.stats.by_cursor.values()) == 1
    assert sim.stats.requests <= 3
    assert "cursor" in caplog.text
    assert "stall_n500" in caplog.text


async def test_short_and_empty_pages_with_has_more_continue(sim: Simulator) -> None:
    async with make_client(sim) as client:
        pages = [page async for page in client.pages("short_n600")]
        ids = [video.id for page in pages for video in page.videos]
    assert ids == truth_ids(sim, "short_n600")
    assert any(len(page.videos) < 100 and page.has_more for page in pages)
    assert len(pages) == sim.pages_needed("short_n600", 100)


async def test_ids_beyond_int64_and_uint64_come_back_exact(sim: Simulator) -> None:
    async with make_client(sim) as client:
        ids = await collect(client, "hugeid_n300")
    assert ids == truth_ids(sim, "hugeid_n300")
    assert any(i > 2**64 for i in ids)
    assert all(isinstance(i, int) for i in ids)


async def test_max_pages_and_start_cursor(sim: Simulator) -> None:
    async with make_client(sim, max_count=50) as client:
        first = [p async for p in client.pages("resume_n300", max_pages=2)]
        assert [len(p.videos) for p in first] == [50, 50]
        rest = [p async for p in client.pages("resume_n300", cursor=first[-1].cursor)]
    ids = [v.id for p in first + rest for v in p.videos]
    assert ids == truth_ids(sim, "resume_n300")


@pytest.mark.parametrize(
    "fault",
    [
        Fault.SERVER_ERROR,
        Fault.BAD_GATEWAY,
        Fault.GATEWAY_TIMEOUT,
        Fault.DROP,
        Fault.RATE_LIMIT_NO_RETRY_AFTER,
        Fault.INVALID_CURSOR,
        Fault.TRUNCATED,
        Fault.TOKEN_INVALID,
    ],
)
async def test_transient_faults_are_retried_and_nothing_is_lost(
    sim: Simulator, fake_sleep: FakeSleep, fault: Fault
) -> None:
    sim.script("faulty_n250", [fault, fault])
    async with make_client(sim, sleep=fake_sleep) as client:
        ids = await collect(client, "faulty_n250")
    assert ids == truth_ids(sim, "faulty_n250")
    assert sim.stats.requests == 3 + 2


async def test_hang_beyond_the_timeout_is_retried(sim: Simulator, fake_sleep: FakeSleep) -> None:
    sim.script("hangs_n50", [Fault.HANG])
    async with make_client(sim, sleep=fake_sleep, timeout=0.3) as client:
        ids = await collect(client, "hangs_n50")
    assert ids == truth_ids(sim, "hangs_n50")
    assert client.stats.retries == 1


async def test_a_timeout_is_a_transport_error_of_its_own(
    sim: Simulator, fake_sleep: FakeSleep
) -> None:
    sim.script("hangs_n5", [Fault.HANG])
    policy = RetryPolicy(max_attempts=1)
    async with make_client(sim, sleep=fake_sleep, timeout=0.2, retry=policy) as client:
        with pytest.raises(RequestTimeoutError, match=r"no answer within 0\.2 s") as raised:
            await client.fetch_page("hangs_n5")
    assert isinstance(raised.value, TransportError)


async def test_retry_after_is_honoured(sim: Simulator, fake_sleep: FakeSleep) -> None:
    sim.config.retry_after = 7
    sim.script("polite_n10", [Fault.RATE_LIMIT])
    async with make_client(sim, sleep=fake_sleep) as client:
        await collect(client, "polite_n10")
    assert fake_sleep.waits == [7.0]


async def test_backoff_grows_with_full_jitter_and_is_bounded(
    sim: Simulator, fake_sleep: FakeSleep
) -> None:
    sim.script("down_n10", [Fault.SERVER_ERROR] * 10)
    policy = RetryPolicy(max_attempts=4, base_delay=2.0, max_delay=5.0)
    async with make_client(sim, sleep=fake_sleep, retry=policy) as client:
        with pytest.raises(ServerError):
            await collect(client, "down_n10")
    # Four attempts, each one a request that cost quota, and not one more.
    assert sim.stats.requests == 4
    assert len(fake_sleep.waits) == 3
    for attempt, wait in enumerate(fake_sleep.waits, start=1):
        assert 0 <= wait <= min(5.0, 2.0 * 2 ** (attempt - 1))


async def test_daily_quota_answer_is_not_retried(sim: Simulator, fake_sleep: FakeSleep) -> None:
    sim.script("quota_n10", [Fault.QUOTA])
    async with make_client(sim, sleep=fake_sleep) as client:
        with pytest.raises(QuotaExhaustedError):
            await collect(client, "quota_n10")
    assert sim.stats.requests == 1
    assert fake_sleep.waits == []


async def test_token_expiring_mid_walk_is_refreshed_once(sim: Simulator) -> None:
    async with make_client(sim, max_count=20) as client:
        seen = 0
        async for _ in client.pages("tokens_n100"):
            seen += 1
            if seen == 2:
                sim.expire_tokens()
    assert seen == 5
    assert sim.stats.tokens_issued == 2
    assert client.token_refreshes == 2


async def test_token_expiry_under_fifty_concurrent_walks_refreshes_exactly_once(
    sim: Simulator,
) -> None:
    names = [f"crowd{i}_n300" for i in range(50)]
    async with make_client(sim, concurrency=50, max_count=100) as client:
        gate = asyncio.Event()
        all_parked = asyncio.Event()
        parked = 0

        async def walk(name: str) -> list[int]:
            nonlocal parked
            ids: list[int] = []
            async for page in client.pages(name):
                ids.extend(v.id for v in page.videos)
                if len(ids) == 100:
                    # Every walk holds the old token's first page before the token dies.
                    parked += 1
                    if parked == len(names):
                        all_parked.set()
                    await gate.wait()
            return ids

        tasks = [asyncio.create_task(walk(name)) for name in names]
        await all_parked.wait()
        sim.expire_tokens()
        gate.set()
        results = await asyncio.gather(*tasks)
    assert [len(r) for r in results] == [300] * 50
    assert sim.stats.tokens_issued == 2
    assert client.token_refreshes == 2


async def test_wrong_credentials_fail_before_any_research_request(sim: Simulator) -> None:
    client = RepostClient("wrong", "credentials", base_url=sim.base_url)
    async with client:
        with pytest.raises(AuthError) as caught:
            await collect(client, "alice")
    assert sim.stats.requests == 0
    assert "credentials" in caught.value.__class__.__name__.lower() or caught.value.code


async def test_leading_at_is_stripped(sim: Simulator) -> None:
    async with make_client(sim) as client:
        assert await collect(client, "  @at_n5 ") == truth_ids(sim, "at_n5")


@pytest.mark.parametrize(
    ("username", "problem"),
    [("", "empty"), ("   ", "empty"), ("bad\x00name", r"U\+0000"), ("no spaces", "only letters")],
)
async def test_bad_username_is_refused_before_any_request(
    sim: Simulator, username: str, problem: str
) -> None:
    async with make_client(sim) as client:
        with pytest.raises(ValueError, match=problem):
            await collect(client, username)
    assert sim.stats.requests == 0
    assert sim.stats.tokens_issued == 0


@pytest.mark.parametrize("max_count", [0, 101, -5, True])
def test_bad_max_count_is_refused(max_count: int) -> None:
    with pytest.raises(ValueError, match="max_count"):
        RepostClient("k", "s", max_count=max_count)


def test_unknown_field_is_refused_naming_valid_fields() -> None:
    with pytest.raises(ValueError, match="like_cnt") as caught:
        RepostClient("k", "s", fields="id,like_cnt")
    assert "like_count" in str(caught.value)
    assert set(VIDEO_FIELDS) >= {"id", "favorites_count"}


def test_missing_credentials_name_the_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TIKTOK_CLIENT_KEY", raising=False)
    monkeypatch.delenv("TIKTOK_CLIENT_SECRET", raising=False)
    with pytest.raises(ValueError, match="TIKTOK_CLIENT_KEY"):
        RepostClient()


def test_credentials_and_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOK_CLIENT_KEY", "envkey")
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", "envsecret-value")
    monkeypatch.setenv("TIKTOK_API_BASE_URL", "http://127.0.0.1:9/")
    client = RepostClient()
    assert client.base_url == "http://127.0.0.1:9"
    assert "envsecret-value" not in repr(client)


def test_plain_http_to_a_remote_host_warns() -> None:
    with pytest.warns(UserWarning, match="unencrypted"):
        RepostClient("k", "s", base_url="http://api.example.org")


async def test_secret_and_token_never_in_reprs_or_errors(
    sim: Simulator, fake_sleep: FakeSleep
) -> None:
    async with make_client(sim, sleep=fake_sleep) as client:
        await collect(client, "secret_n5")
        token = client._auth._token
        assert token
        sim.script("secret_n5", [Fault.SERVER_ERROR] * 10)
        try:
            await collect(client, "secret_n5")
        except ServerError as error:
            text = str(error) + repr(error)
        texts = [repr(client), repr(client._auth), repr(client._credentials), text]
    for piece in texts:
        assert TEST_CLIENT_SECRET not in piece
        assert token not in piece


async def test_callers_session_is_used_and_left_open(sim: Simulator) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with make_client(sim, session=session) as client:
            assert await collect(client, "shared_n5") == truth_ids(sim, "shared_n5")
        assert not session.closed


@pytest.mark.parametrize("concurrency", [0, -1, True, 2.5, None])
def test_bad_concurrency_is_refused(concurrency: object) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        RepostClient("k", "s", concurrency=concurrency)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value"), [("cursor", -1), ("cursor", 2**63), ("max_pages", 0), ("max_pages", True)]
)
async def test_bad_walk_options_are_refused_before_any_request(
    sim: Simulator, option: str, value: int
) -> None:
    async with make_client(sim) as client:
        with pytest.raises(ValueError, match=option):
            async for _ in client.pages("alice_n5", **{option: value}):  # type: ignore[arg-type]
                pass
    assert sim.stats.requests == 0
