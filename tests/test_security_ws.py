"""Websocket sign-in (core/ws_auth.py): the connection cap per token, the origin check
against the configured public URL rather than the request's Host header, and the sign-in
timeout, on all three sockets (docs/security.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callcenter.app import create_app
from core.settings import Settings
from tests.conftest import make_settings

CAP = 3
SOCKETS = ["/ws/agent", "/ws/wallboard", "/ws/telephony"]


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         ws_connections_per_token=CAP)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def token_for(center: Any, path: str) -> str:
    if path == "/ws/telephony":
        return str(await center.telephony_token())
    return str(await center.login_token("sue", "supervisor"))


async def until(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("path", SOCKETS)
async def test_one_token_holds_at_most_the_configured_number_of_sockets(center, http, path):
    auth = {"Authorization": f"Bearer {await token_for(center, path)}"}
    held = [await http.ws_connect(f"{center.url}{path}", headers=auth) for _ in range(CAP)]

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{center.url}{path}", headers=auth)
    assert refused.value.status == 429

    await held.pop().close()

    async def a_slot_is_free() -> bool:
        try:
            held.append(await http.ws_connect(f"{center.url}{path}", headers=auth))
        except aiohttp.WSServerHandshakeError as e:
            assert e.status == 429
            return False
        return True

    await until(a_slot_is_free)
    for ws in held:
        await ws.close()


@pytest.mark.parametrize("path", ["/ws/agent", "/ws/wallboard"])
async def test_a_forged_host_header_does_not_make_a_foreign_origin_our_own(center, http, path):
    token = await token_for(center, path)
    forged = {"Authorization": f"Bearer {token}", "Host": "evil.example",
              "Origin": "http://evil.example"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{center.url}{path}", headers=forged)
    assert refused.value.status == 403

    own = {"Authorization": f"Bearer {token}", "Origin": center.url}
    async with http.ws_connect(f"{center.url}{path}", headers=own) as ws:
        assert await ws.receive_json(timeout=10)


async def serve(aiohttp_server: Any, settings: Settings, **overrides: Any) -> str:
    server = await aiohttp_server(create_app(settings.model_copy(update=overrides)))
    return str(server.make_url("")).rstrip("/")


async def test_with_a_public_url_only_it_and_the_allowed_origins_are_let_in(
        center, http, aiohttp_server, settings):
    token = await token_for(center, "/ws/wallboard")
    url = await serve(aiohttp_server, settings, public_url="https://cc.example.com/",
                      allowed_origins=("https://other.example.com",))

    async def status(origin: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "Origin": origin}
        try:
            async with http.ws_connect(f"{url}/ws/wallboard", headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status

    assert await status("https://cc.example.com") == 101
    assert await status("https://CC.example.com:443") == 101
    assert await status("https://other.example.com") == 101
    assert await status(url) == 403  # the node's own address is not the public one
    assert await status("http://cc.example.com") == 403
    assert await status("null") == 403


async def test_a_websocket_sign_in_that_overruns_its_timeout_is_refused_and_holds_no_slot(
        center, http, aiohttp_server, settings):
    token = await token_for(center, "/ws/agent")
    url = await serve(aiohttp_server, settings, ws_auth_timeout_s=1e-9)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{url}/ws/agent",
                              headers={"Authorization": f"Bearer {token}"})
    assert refused.value.status == 503
