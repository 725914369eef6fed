"""The console's pages and static files over HTTP, and its customer endpoint."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select
from yarl import URL

from core.models import Customer, Interaction

STATIC = Path(__file__).resolve().parent.parent / "agent_console" / "static"


async def fetch(center, path: str, **kwargs) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{center.url}{path}", allow_redirects=False, **kwargs) as r:
        return r.status, dict(r.headers), await r.text()


async def test_pages_link_static_files_by_content_hash_with_a_long_cache(center):
    status, headers, html = await fetch(center, "/console")
    assert status == 200 and headers["Cache-Control"] == "no-cache"
    css = re.search(r'href="(/static/css/app\.[0-9a-f]{10}\.css)"', html).group(1)
    script = re.search(r'src="(/static/js/console\.[0-9a-f]{10}\.js)"', html).group(1)
    imported = re.search(r'"/static/js/i18n/zh.js": "(/static/js/i18n/zh\.[0-9a-f]{10}\.js)"',
                         html).group(1)
    for url in (css, script, imported):
        status, headers, _ = await fetch(center, url)
        assert status == 200, url
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    status, headers, body = await fetch(center, script)
    assert headers["Content-Type"].startswith(("text/javascript", "application/javascript"))
    assert body == (STATIC / "js" / "console.js").read_text()


async def test_a_stale_hash_is_not_served_as_the_current_file(center):
    assert (await fetch(center, "/static/js/console.0123456789.js"))[0] == 404
    async with aiohttp.ClientSession() as http, http.get(
            URL(f"{center.url}/static/..%2F..%2Fpages.py", encoded=True)) as r:
        assert r.status == 404
    status, headers, _ = await fetch(center, "/static/js/console.js")
    assert status == 200 and headers["Cache-Control"] == "no-cache"


async def test_pages_allow_only_their_own_scripts(center):
    _, headers, html = await fetch(center, "/wallboard")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    # The one inline script, the import map, is allowed by its hash, nothing else.
    assert re.findall(r"'sha256-[^']+'", policy) and html.count("<script") == 2


async def test_home_goes_to_the_console_and_forbidden_is_a_403(center):
    status, headers, _ = await fetch(center, "/")
    assert status == 302 and headers["Location"] == "/console"
    status, _, html = await fetch(center, "/forbidden")
    assert status == 403 and "403" in html


@pytest.mark.parametrize("name", ["en.js", "zh.js"])
def test_every_language_has_every_string(name):
    def keys(path: Path) -> set[str]:
        return set(re.findall(r'^\s*"([a-z_.]+)":', path.read_text(), flags=re.M))

    english = keys(STATIC / "js" / "i18n" / "en.js")
    assert len(english) > 200
    assert keys(STATIC / "js" / "i18n" / name) == english


async def post_customer(center, token: str | None, body: dict) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.post(
            f"{center.url}/api/v1/customers", json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_an_agent_creates_a_customer_for_a_new_caller_and_keeps_the_call(center):
    agent, ivr = await center.ringing_call("amy", "first-call", "13911112222")
    await agent.inbox.expect("screen_pop", call_id="first-call")

    status, customer = await post_customer(center, agent.token, {
        "name": "陈静", "phone": "139 1111 2222", "email": "chen@example.com",
        "call_id": "first-call"})

    assert status == 201
    assert customer["name"] == "陈静" and customer["phones"] == ["+8613911112222"]
    async with center.sessions() as session:
        record = await session.scalar(select(Interaction).where(
            Interaction.call_id == "first-call"))
        assert record.customer_id == customer["id"]
        assert await session.get(Customer, customer["id"]) is not None


@pytest.mark.parametrize(("body", "status"), [
    ({"name": "Dup", "phone": "+8613800000001"}, 409),
    ({"name": "Bad", "phone": "not a number"}, 400),
    ({"name": "", "phone": "+8613800000002"}, 400),
    ({"name": "Extra", "phone": "+8613800000003", "tier": "vip"}, 400),
])
async def test_creating_a_customer_refuses_bad_input(center, body, status):
    await center.add_customer("C1", "Existing", "+8613800000001")
    token = await center.login_token("bob", role="agent")
    assert (await post_customer(center, token, body))[0] == status


async def test_creating_a_customer_needs_a_signed_in_user(center):
    assert (await post_customer(center, None, {"name": "X", "phone": "+8613800000004"}))[0] == 401
