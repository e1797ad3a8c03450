"""Transport: certificates are verified by default, and the standard proxy variables are used."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from tiktok_repost_async import RepostClient, TransportError
from tiktok_repost_async.client import _env_proxy
from tiktok_repost_async.simulator import Simulator


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_a_self_signed_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    hits = 0

    async def anything(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.json_response({"access_token": "clt.x", "expires_in": 7200})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with RepostClient("key", "secret", base_url=f"https://127.0.0.1:{port}") as client:
            with pytest.raises(TransportError, match=r"(?i)certificate"):
                await client.fetch_page("someone")
    finally:
        await runner.cleanup()
    # The handshake failed before any request reached the server: no credentials went out.
    assert hits == 0


async def test_requests_go_through_the_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Simulator() as sim:
        # The simulator answers absolute-form requests too, so it can stand in for the proxy;
        # the API host does not resolve, so a request that bypassed the proxy would fail.
        monkeypatch.setenv("HTTP_PROXY", sim.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with pytest.warns(UserWarning, match="unencrypted"):
            client = RepostClient(
                sim.client_key, sim.client_secret, base_url="http://api.invalid.test:9"
            )
        async with client:
            ids = [video.id async for video in client.reposted_videos("proxied_n5")]
        assert ids == [video["id"] for video in sim.ground_truth("proxied_n5")]
        assert sim.stats.requests == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HTTPS_PROXY": "http://proxy.example:3128"}, "http://proxy.example:3128"),
        ({"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "tiktokapis.com"}, None),
        ({"HTTP_PROXY": "http://proxy.example:3128"}, None),  # no proxy for https given
        ({}, None),
    ],
)
def test_environment_proxy_is_chosen_by_scheme_and_no_proxy(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str | None
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _env_proxy("https://open.tiktokapis.com") == expected
