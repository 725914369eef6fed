"""What a PBX hears about one call arrives in the order it happened, across nodes.

Node A serves a `call.offered` that finds nobody free: the call waits, and A owes the PBX
an `ack` and a `route.queued`, sent once the offer's records are written. If an agent on
node B frees up meanwhile, B routes the call at once and publishes `route.connect` for
the PBX's connection on A. That message must not overtake the offer's replies: a PBX
that hears "queued" after "connect" stops ringing the agent.

The write is held back for real: another connection holds the database's write lock
(SQLite) or a lock on the calls table (PostgreSQL) while B routes the call.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from callcenter.app import create_app
from core.appkeys import CALLS, DIRECTORY
from core.settings import Settings
from routing.states import AgentState
from tests.conftest import Center
from tests.waits import eventually

ANI = "+8613900000077"


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


@asynccontextmanager
async def writes_held(url: str) -> AsyncIterator[None]:
    """No call record can be written until the block ends."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(url).database or "", isolation_level=None,
                               timeout=30, check_same_thread=False)
        await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
        try:
            yield
        finally:
            await asyncio.to_thread(conn.execute, "ROLLBACK")
            conn.close()
        return
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("LOCK TABLE calls IN EXCLUSIVE MODE"))
            try:
                yield
            finally:
                await conn.rollback()
    finally:
        await engine.dispose()


def said_about(messages: list[dict[str, Any]], call_id: str, event_id: str) -> list[str]:
    return [m["type"] for m in messages
            if m.get("call_id") == call_id or m.get("event_id") == event_id]


async def test_another_nodes_route_connect_comes_after_the_offers_queued_notice(
        aiohttp_server: Any, settings: Settings, sessions: Any) -> None:
    a = await aiohttp_server(create_app(settings))
    b = await aiohttp_server(create_app(settings.model_copy(update={"node_id": "b"})))
    center = Center(a, sessions, settings)
    agent = await center.add_agent("ann")
    await a.app[DIRECTORY].ensure_registered(agent)
    ivr: Any = await center.ivr()
    store = a.app[CALLS].store
    call_id = "late-1"

    async def live(state: str) -> bool:
        return (await store.call(call_id)).get("state") == state

    async with writes_held(settings.database_url):
        event_id = await ivr.send("call.offered", call_id, ani=ANI, queue="default")
        await eventually(lambda: live("queued"), what="the offer queued the call")
        await b.app[CALLS].set_agent_state(agent, AgentState.available, "")
        await eventually(lambda: live("ringing"), what="node B routed the waiting call")
        # B has published route.connect; A must hold it behind the offer's replies.
        await ivr.inbox.nothing("route.connect", wait=1.0, call_id=call_id)
        assert said_about(ivr.inbox.messages, call_id, event_id) == []
    await eventually(lambda: "route.connect" in said_about(ivr.inbox.messages, call_id,
                                                           event_id),
                     what="route.connect after the write")
    assert said_about(ivr.inbox.messages, call_id, event_id) == [
        "ack", "route.queued", "route.connect"]
    await ivr.close()
