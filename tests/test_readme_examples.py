"""The README's fixture example, run as written, so the documentation cannot drift."""

from __future__ import annotations

from tiktok_repost_async import RepostClient
from tiktok_repost_async.simulator import Fault, Simulator


async def test_my_pipeline_survives_a_bad_gateway(tiktok_simulator: Simulator) -> None:
    tiktok_simulator.script("alice_n250", [Fault.BAD_GATEWAY])
    tiktok_simulator.config.latency = 0.01
    async with RepostClient(
        tiktok_simulator.client_key,
        tiktok_simulator.client_secret,
        base_url=tiktok_simulator.base_url,
        sleep=_no_wait,  # the README waits out the one retry's backoff; a test need not
    ) as client:
        ids = [v.id async for v in client.reposted_videos("alice_n250")]
    assert ids == [v["id"] for v in tiktok_simulator.ground_truth("alice_n250")]
    assert tiktok_simulator.stats.requests == 4


async def _no_wait(seconds: float) -> None:
    return None
