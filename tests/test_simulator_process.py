"""The simulator outside an event loop: the thread runner, the command line, the pytest fixture."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tiktok_repost_async.simulator import (
    RESEARCH_PATH,
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    TOKEN_PATH,
    Fault,
    Simulator,
    add_simulator_arguments,
    config_from_args,
    main,
)


def post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    """POST with the standard library only, as synchronous code would."""
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def token(base_url: str, key: str = TEST_CLIENT_KEY, secret: str = TEST_CLIENT_SECRET) -> str:
    form = {"client_key": key, "client_secret": secret, "grant_type": "client_credentials"}
    data = urllib.parse.urlencode(form).encode()
    status, body = post(base_url + TOKEN_PATH, data, {})
    assert status == 200, body
    access_token: str = body["access_token"]
    return access_token


def page(base_url: str, access_token: str, username: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"}
    url = f"{base_url}{RESEARCH_PATH}?fields=id,username"
    return post(url, json.dumps({"username": username, "max_count": 100}).encode(), headers)


def test_thread_runner_serves_sync_code_and_takes_knob_changes() -> None:
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        assert base_url == sim.base_url
        access_token = token(base_url)
        status, body = page(base_url, access_token, "bench_n7")
        assert status == 200
        assert [video["id"] for video in body["data"]["reposted_videos"]] == [
            video["id"] for video in sim.ground_truth("bench_n7")
        ]
        sim.config.list_key = "user_reposted_videos"
        sim.script("bench_n7", [Fault.INVALID_CURSOR])
        assert page(base_url, access_token, "bench_n7")[0] == 400
        assert "user_reposted_videos" in page(base_url, access_token, "bench_n7")[1]["data"]
        assert sim.stats.by_status == {200: 2, 400: 1}
    with pytest.raises(RuntimeError):
        sim.base_url  # noqa: B018


def test_thread_runner_reports_a_failure_to_start() -> None:
    with Simulator().run_in_thread() as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        with (
            pytest.raises(OSError, match="address already in use"),
            Simulator().run_in_thread(port=port),
        ):
            pass


def test_fixture_yields_a_running_simulator(tiktok_simulator: Simulator) -> None:
    access_token = token(tiktok_simulator.base_url)
    tiktok_simulator.script("alice", [Fault.QUOTA])
    status, body = page(tiktok_simulator.base_url, access_token, "alice")
    assert (status, body["error"]["code"]) == (429, "rate_limit_exceeded")
    assert tiktok_simulator.stats.tokens_issued == 1
    assert tiktok_simulator.client_key == TEST_CLIENT_KEY


async def test_fixture_works_inside_an_event_loop(tiktok_simulator: Simulator) -> None:
    import aiohttp

    async with aiohttp.ClientSession(tiktok_simulator.base_url) as session:
        form = {
            "client_key": tiktok_simulator.client_key,
            "client_secret": tiktok_simulator.client_secret,
            "grant_type": "client_credentials",
        }
        async with session.post(TOKEN_PATH, data=form) as response:
            assert (await response.json())["token_type"] == "Bearer"


def test_plugin_module_imports_no_simulator_at_load() -> None:
    script = (
        "import sys, tiktok_repost_async.pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith(('aiohttp', 'msgspec', 'tiktok'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "aiohttp" not in out
    assert "simulator" not in out


# -- the command line ----------------------------------------------------------------------------


def test_command_line_prints_the_url_serves_and_stops_on_sigint() -> None:
    command = [sys.executable, "-m", "tiktok_repost_async.simulator", "--port", "0"]
    command += [
        "--fault",
        "server_error=0",
        "--rate-limit",
        "50",
        "--list-key",
        "user_reposted_videos",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            assert process.stdout.readline().strip() == f"client_key={TEST_CLIENT_KEY}"
            assert process.stdout.readline().strip() == f"client_secret={TEST_CLIENT_SECRET}"
            status, body = page(base_url, token(base_url), "bench_n3")
            assert (status, len(body["data"]["user_reposted_videos"])) == (200, 3)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()


def test_command_line_takes_credentials() -> None:
    command = [sys.executable, "-m", "tiktok_repost_async.simulator", "--port", "0"]
    command += ["--client-key", "k", "--client-secret", "s"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert page(base_url, token(base_url, "k", "s"), "alice")[0] == 200
            process.terminate()
            assert process.wait(timeout=10) == 0
            assert process.stdout.read() == ""
        finally:
            process.kill()


def test_command_line_bad_option_exits_2() -> None:
    command = [sys.executable, "-m", "tiktok_repost_async.simulator", "--latency", "soon"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--latency" in result.stderr
    assert "'soon' is not a number of seconds" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--latency", "-1"], "--latency"),
        (["--port", "70000"], "port number"),
        (["--rate-limit", "0"], "an integer >= 1"),
        (["--daily-quota", "many"], "--daily-quota"),
        (["--fault", "explode=0.1"], "unknown fault 'explode'"),
        (["--fault", "drop=2"], "rate from 0 to 1"),
        (["--fault", "drop"], "KIND=RATE"),
        (["--fault", "drop=0.6", "--fault", "hang=0.6"], "more than 1"),
        (["--list-key", "videos"], "--list-key"),
        (["--favorites-spelling", "favs"], "--favorites-spelling"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_options_map_onto_the_configuration() -> None:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    options = (
        "--latency 0.5 --jitter 0.25 --rate-limit 10 --retry-after 3 --daily-quota 1000 "
        "--token-lifetime 60 --fault drop=0.1 --fault SERVER_ERROR=0.2 --seed 9 --hang-seconds 5 "
        "--list-key user_reposted_videos --favorites-spelling favourites_count --huge-ids "
        "--omit-empty-list --client-key k --client-secret s"
    )
    args = parser.parse_args(options.split())
    config = config_from_args(args)
    assert (config.latency, config.jitter, config.rate_limit, config.retry_after) == (
        0.5,
        0.25,
        10,
        3,
    )
    assert (config.daily_quota, config.token_lifetime, config.seed) == (1000, 60, 9)
    assert config.faults == {Fault.DROP: 0.1, Fault.SERVER_ERROR: 0.2}
    assert (config.hang_seconds, config.list_key) == (5, "user_reposted_videos")
    assert config.favorites_spelling == "favourites_count"
    assert config.huge_ids
    assert config.omit_empty_list
    assert (config.client_key, config.client_secret) == ("k", "s")
    defaults = config_from_args(parser.parse_args([]))
    assert (defaults.client_key, defaults.client_secret) == (TEST_CLIENT_KEY, TEST_CLIENT_SECRET)
    assert (defaults.rate_limit, defaults.daily_quota, defaults.faults) == (None, None, {})
    assert (args.host, args.port) == ("127.0.0.1", 8080)
