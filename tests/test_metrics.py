"""`GET /metrics`: Prometheus text from a running app, driven by real calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from callcenter.app import create_app
from core import appkeys, db
from core.models import Interaction
from core.settings import Settings
from tests.conftest import make_settings


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    # Jobs must stay where the test put them: no worker in this process.
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         transcribe_in_process=False)


async def scrape(center) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the node's /metrics, by name and sorted labels."""
    # Like every route but sign-in, health and static files, /metrics needs a token.
    auth = {"Authorization": f"Bearer {await center.telephony_token('prometheus')}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{center.url}/metrics", headers=auth) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_calls_are_counted_by_queue_and_tier_as_they_are_offered_answered_abandoned(
        center):
    await center.add_customer("V1", "Vera", "+8613800000101", tier="vip")
    agent = await center.agent("amy")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("m-1", "+8613800000101")
    await ivr.inbox.expect("route.connect", call_id="m-1")
    await ivr.event("call.answered", "m-1", agent_id=agent.agent_id)
    await ivr.offer("m-2", "+8613900000000")  # unknown caller: standard tier, waits
    await ivr.inbox.expect("route.queued", call_id="m-2")
    await ivr.event("call.ended", "m-2", cause="caller_hangup")

    samples = await scrape(center)

    vip, standard = {"queue": "default", "tier": "vip"}, {"queue": "default", "tier": "standard"}
    assert sample(samples, "callcenter_calls_offered_total", **vip) == 1
    assert sample(samples, "callcenter_calls_offered_total", **standard) == 1
    assert sample(samples, "callcenter_calls_answered_total", **vip) == 1
    assert sample(samples, "callcenter_calls_answered_total", **standard) is None
    assert sample(samples, "callcenter_calls_abandoned_total", **standard) == 1
    assert sample(samples, "callcenter_routing_latency_seconds_count", **vip) == 1
    # Routed the moment it was offered: the reservation shares the offer's timestamp.
    assert sample(samples, "callcenter_routing_latency_seconds_bucket", **vip, le="0.005") == 1


async def test_routing_latency_includes_the_time_a_call_waited_in_queue(center):
    agent = await center.agent("bob")
    ivr = await center.ivr()
    await ivr.offer("m-3", "+8613900000003")
    await ivr.inbox.expect("route.queued", call_id="m-3")
    await asyncio.sleep(0.3)  # time passing on purpose: the wait the histogram must include
    await agent.available()
    await ivr.inbox.expect("route.connect", call_id="m-3")

    samples = await scrape(center)

    labels = {"queue": "default", "tier": "standard"}
    assert sample(samples, "callcenter_routing_latency_seconds_bucket", **labels, le="0.25") == 0
    assert sample(samples, "callcenter_routing_latency_seconds_bucket", **labels, le="10.0") == 1
    assert sample(samples, "callcenter_routing_latency_seconds_sum", **labels) >= 0.3


async def test_open_websockets_are_counted_by_kind_and_released_on_close(center):
    ivr = await center.ivr()
    agent = await center.agent("cat")
    token = await center.login_token("sue")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{center.url}/ws/wallboard",
                                   headers={"Authorization": f"Bearer {token}"}) as board:
            await board.receive_json()
            samples = await scrape(center)
            for kind in ("telephony", "agent", "wallboard"):
                assert sample(samples, "callcenter_websocket_connections", kind=kind) == 1
    await ivr.close()
    await agent.close()

    async with asyncio.timeout(15):
        while any(await open_websockets(center)):
            await asyncio.sleep(0.05)


async def open_websockets(center) -> list[float | None]:
    samples = await scrape(center)
    return [sample(samples, "callcenter_websocket_connections", kind=kind)
            for kind in ("telephony", "agent", "wallboard")]


async def test_transcription_jobs_pending_and_failed_are_read_at_scrape_time(center):
    app = center.server.app
    queue = app[appkeys.TRANSCRIPTION]
    for n in range(3):
        await queue.enqueue(f"rec-{n}", f"/recordings/{n}.wav")
    taken = await queue.read("worker-1", block_ms=10)  # taken, not acknowledged
    await app[appkeys.REDIS].zadd(queue.delayed, {'{"call_id":"rec-9"}': 1e12})
    ivr = await center.ivr()
    await ivr.offer("m-4", "+8613900000004")
    async with db.session_scope(center.sessions) as session:
        await session.execute(update(Interaction).where(Interaction.call_id == "m-4")
                              .values(transcript_status="failed"))

    samples = await scrape(center)

    assert len(taken) == 1
    pending = "callcenter_transcription_jobs_pending"
    assert sample(samples, pending, state="waiting") == 2
    assert sample(samples, pending, state="in_progress") == 1
    assert sample(samples, pending, state="retry") == 1
    assert sample(samples, "callcenter_transcription_jobs_failed") == 1


async def test_each_app_has_its_own_registry(settings):
    first, second = create_app(settings), create_app(settings)

    assert first[appkeys.METRICS].registry is not second[appkeys.METRICS].registry
