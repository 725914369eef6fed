"""A cluster of real `callcenter serve` processes, and the PBX and agents that use it.

`Cluster` starts the nodes and reads Redis and the database behind them; `Switch` is the
telephone network (it rings agents' phones, answers, hangs up, and notices a phone given
two calls); `Pbx` is one PBX integration (it keeps every event until acked, resends on
reconnect, reconciles with `state.sync`); `Agent` is a console that takes every call and
reconnects to the next node when its connection drops. The checks at the end compare
what they saw with Redis and the interaction records.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import websockets
from redis.asyncio import Redis
from sqlalchemy import select

from bench.harness import Deployment, free_port, phone, wait_healthy
from core import db
from core.auth import issue_token
from core.models import Interaction, Role
from routing.engine import RoutingPolicy, decode_rings, matching_ring

# Errors that say "not stored, send it again" (docs/protocol.md).
RETRYABLE = ("unavailable", "storage_unavailable")

# PostgreSQL connections per test node: at most 20, so three nodes stay far inside the
# server's 100 even with another suite beside them. The defaults (40 per node) took a
# three-node run past it: "too many clients", offers refused (docs/deploy.md, "Sizing").
TEST_POOLS = {"CALLCENTER_DB_POOL_SIZE": "5", "CALLCENTER_DB_POOL_OVERFLOW": "5",
              "CALLCENTER_DB_READ_POOL_SIZE": "5", "CALLCENTER_DB_READ_POOL_OVERFLOW": "5"}


@dataclass
class Cluster:
    deployment: Deployment
    redis: Redis
    agents: list[tuple[int, str]] = field(default_factory=list)  # (agent id, token)
    urls: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def start(self, nodes: int, **env: str) -> None:
        env = {**TEST_POOLS, **env}
        ports = [free_port() for _ in range(nodes)]
        for port in ports:
            with open(self.deployment.workdir / f"node-{port}.log", "wb") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "callcenter", "serve", "--port", str(port)],
                    env=self.deployment.env(**env), cwd=self.deployment.workdir,
                    stdout=subprocess.DEVNULL, stderr=log))
            self.urls.append(f"http://127.0.0.1:{port}")
        await asyncio.gather(*(wait_healthy(url) for url in self.urls))

    def kill(self, node: int) -> None:
        self.procs[node].send_signal(signal.SIGKILL)
        self.procs[node].wait()

    async def pbx_token(self, name: str) -> str:
        maker = db.sessionmaker(engine := db.create_engine(self.deployment.database_url))
        async with db.session_scope(maker) as session:
            token = await issue_token(session, self.deployment.secret_key, role=Role.telephony,
                                      name=name, ttl=dt.timedelta(hours=1))
        await engine.dispose()
        return token

    async def interactions(self) -> list[Interaction]:
        engine = db.create_engine(self.deployment.database_url)
        async with db.sessionmaker(engine)() as session:
            rows = list(await session.scalars(select(Interaction)))
        await engine.dispose()
        return rows

    async def agent_hashes(self) -> dict[int, dict[str, str]]:
        """Every agent's live record, read in one MULTI so the picture is consistent."""
        keys = self.deployment.prefix
        async with self.redis.pipeline(transaction=True) as pipe:
            for agent_id, _ in self.agents:
                pipe.hgetall(f"{keys}:agent:{agent_id}")
            rows = await pipe.execute()
        return {agent_id: row for (agent_id, _), row in zip(self.agents, rows, strict=True)}

    async def live_calls(self) -> dict[str, dict[str, str]]:
        ids = await self.redis.smembers(f"{self.deployment.prefix}:calls")
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in ids:
                pipe.hgetall(f"{self.deployment.prefix}:call:{call_id}")
            rows = await pipe.execute()
        return {row["id"]: row for row in rows if row}

    def log_tails(self) -> str:
        logs = sorted(self.deployment.workdir.glob("node-*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)



# The simulated PBX and agents --------------------------------------------


@dataclass
class PhoneCall:
    call_id: str
    pbx: Pbx
    state: str = "offered"  # offered, ringing, connected, ended
    agent_id: int | None = None
    offer_event: str = ""


class Switch:
    """The phone network behind the PBXs: rings agents' phones, answers, hangs up.

    It holds the ground truth of which phone carries which call, so it notices a call
    given to an agent whose phone is busy, or a call connected to a second agent.
    """

    def __init__(self, talk_s: tuple[float, float] = (0.05, 0.2), seed: int = 7) -> None:
        self.calls: dict[str, PhoneCall] = {}
        self.phones: dict[int, str] = {}  # agent -> the call ringing or talking on it
        self.violations: list[str] = []
        self.talk_s = talk_s
        self.random = random.Random(seed)
        self.running = asyncio.Event()
        self.running.set()
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, work: Any) -> asyncio.Future[Any]:
        """Run `work` (a coroutine or awaitable) until done or until the switch closes."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def route_connect(self, call_id: str, agent_id: int) -> None:
        call = self.calls[call_id]
        if call.state == "ended":
            return  # the caller hung up while the service was routing: normal
        if call.state == "connected":
            self.violations.append(f"{call_id} connected to {call.agent_id}, offered to "
                                   f"{agent_id}")
            return
        busy = self.phones.get(agent_id)
        if busy is not None and busy != call_id:
            self.violations.append(f"agent {agent_id} given {call_id} while carrying {busy}")
        if call.agent_id is not None and self.phones.get(call.agent_id) == call_id:
            del self.phones[call.agent_id]  # ring-no-answer moved it on
        call.state, call.agent_id = "ringing", agent_id
        self.phones[agent_id] = call_id
        self.spawn(self._answer_and_talk(call, agent_id))

    async def _answer_and_talk(self, call: PhoneCall, agent_id: int) -> None:
        await asyncio.sleep(0.01)
        await self.running.wait()
        if call.state != "ringing" or call.agent_id != agent_id:
            return
        call.state = "connected"
        await call.pbx.send("call.answered", call.call_id, agent_id=agent_id)
        await asyncio.sleep(self.random.uniform(*self.talk_s))
        await self.running.wait()
        await self.hang_up(call, "normal")

    async def hang_up(self, call: PhoneCall, cause: str) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        if call.agent_id is not None and self.phones.get(call.agent_id) == call.call_id:
            del self.phones[call.agent_id]
        await call.pbx.send("call.ended", call.call_id, cause=cause)

    async def hang_up_if_waiting(self, call: PhoneCall) -> None:
        if call.state == "offered":
            await self.hang_up(call, "caller_hangup")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Pbx:
    """One PBX integration. Every event is kept until acked, and resent on reconnect."""

    def __init__(self, name: str, token: str, switch: Switch, window: int = 64) -> None:
        self.name, self.token, self.switch = name, token, switch
        self._window = asyncio.Semaphore(window)  # offers in flight: a PBX paces itself
        self._offers: set[str] = set()
        self.unacked: dict[str, str] = {}  # event id -> frame, in the order first sent
        self.acks: dict[str, dict[str, Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.retries = 0
        self.ws: Any = None
        self._ids = itertools.count()
        self._reader: asyncio.Task[None] | None = None
        self._snapshot: asyncio.Future[dict[str, Any]] | None = None

    async def connect(self, url: str) -> None:
        self.ws = await websockets.connect(
            f"{url.replace('http', 'ws', 1)}/ws/telephony", max_size=None,
            additional_headers={"Authorization": f"Bearer {self.token}"})
        self._reader = asyncio.create_task(self._read(self.ws))

    async def offer(self, call_id: str, ani: str) -> PhoneCall:
        call = self.switch.calls[call_id] = PhoneCall(call_id, self)
        await self._window.acquire()
        call.offer_event = await self.send("call.offered", call_id, ani=ani, dnis="400800",
                                           queue="default")
        self._offers.add(call.offer_event)
        return call

    async def send(self, type_: str, call_id: str, **fields: Any) -> str:
        event_id = f"{self.name}-{next(self._ids)}"
        frame = json.dumps({"type": type_, "event_id": event_id, "call_id": call_id, **fields})
        self.unacked[event_id] = frame
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(frame)  # lost with a dead node: resent on reconnect
        return event_id

    async def _read(self, ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                self._on(json.loads(raw))

    def _on(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ack":
            self._settle(message["event_id"])
            self.acks[message["event_id"]] = message
        elif kind == "route.connect":
            self.switch.route_connect(message["call_id"], message["agent_id"])
        elif kind == "state.snapshot" and self._snapshot is not None:
            self._snapshot.set_result(message)
        elif kind == "error" and message.get("code") in RETRYABLE:
            self.switch.spawn(self._resend(message["event_id"]))
        elif kind == "error":
            self._settle(message.get("event_id"))
            self.errors.append(message)

    def _settle(self, event_id: str | None) -> None:
        self.unacked.pop(event_id, None)  # type: ignore[arg-type]
        if event_id in self._offers:
            self._offers.discard(event_id)
            self._window.release()

    async def _resend(self, event_id: str) -> None:
        await asyncio.sleep(0.2)
        if event_id in self.unacked:
            self.retries += 1
            with contextlib.suppress(websockets.ConnectionClosed):
                await self.ws.send(self.unacked[event_id])

    async def reconnect(self, url: str) -> tuple[list[str], dict[str, Any]]:
        """Connect to another node, resend what was not acked, then `state.sync`."""
        await self.close()
        await self.connect(url)
        resent = list(self.unacked)
        for frame in list(self.unacked.values()):
            await self.ws.send(frame)
        await until(lambda: not any(e in self.unacked for e in resent), timeout=15)
        self._snapshot = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"type": "state.sync"}))
        return resent, await asyncio.wait_for(self._snapshot, 10)

    async def resend_first(self) -> dict[str, Any]:
        """Send this PBX's first event again: long acked, it must be acked as a duplicate."""
        first = f"{self.name}-0"
        self.acks.pop(first)
        await self.ws.send(json.dumps({"type": "call.offered", "event_id": first,
                                       "call_id": "never-applied", "ani": phone(1)}))
        await until(lambda: first in self.acks, timeout=10)
        return self.acks[first]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


class Agent:
    """An agent console: takes every call, finishes wrap-up after `wrap_s`, and reconnects
    to the next node when its connection drops (what the browser console does)."""

    def __init__(self, agent_id: int, token: str, switch: Switch, urls: list[str],
                 node: int, wrap_s: float = 0.02) -> None:
        self.agent_id, self.token, self.switch, self.wrap_s = agent_id, token, switch, wrap_s
        self.urls, self.node = urls, node
        self.state: dict[str, Any] = {}
        self.current: str | None = None  # the call on screen, until its wrap-up is done
        self.received: list[dict[str, Any]] = []
        self.reconnects: list[list[dict[str, Any]]] = []  # what each reconnection got first
        self.stopping = False  # go not-ready after the current call
        self.wraps_up = True
        self.ws: Any = None
        self._ids = itertools.count()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    async def connect(self) -> None:
        self.received = []
        self.ws = await websockets.connect(
            f"{self.urls[self.node].replace('http', 'ws', 1)}/ws/agent",
            additional_headers={"Authorization": f"Bearer {self.token}"})
        self._reader = asyncio.create_task(self._read(self.ws))
        await until(lambda: any(m["type"] == "agent.state" for m in self.received), 10)

    async def request(self, type_: str, **fields: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(json.dumps({"type": type_, "id": f"r{next(self._ids)}",
                                           **fields}))

    async def _read(self, ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                self._on(json.loads(raw))
        if not self._closing:
            self.switch.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        for _ in range(20):
            self.node = (self.node + 1) % len(self.urls)
            try:
                await self.connect()
            except (OSError, websockets.InvalidHandshake, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            await asyncio.sleep(0.05)  # the current call follows the state at once
            self.reconnects.append(list(self.received))
            return

    def _on(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        kind = message["type"]
        if kind == "agent.state":
            self.state = message
            if message["state"] == "not_ready" and message["reason"] == "missed" \
                    and not self.stopping:
                self.switch.spawn(self.request("agent.state.set", state="available"))
        elif kind == "screen_pop":
            self.current = message["call_id"]
        elif kind == "call.ended" and "wrap_up_until" in message:
            if self.wraps_up:
                self.switch.spawn(self._wrap_up(message["call_id"]))
        elif kind == "call.ended":
            self.current = None

    async def _wrap_up(self, call_id: str) -> None:
        await asyncio.sleep(self.wrap_s)
        await self.switch.running.wait()
        if self.stopping:  # chosen during wrap-up, it applies when wrap-up ends
            await self.request("agent.state.set", state="not_ready", reason="break")
        await self.request("wrapup.done", call_id=call_id, disposition="resolved")
        self.current = None

    async def stop(self) -> None:
        self.stopping = True
        if self.state.get("state") == "available":
            await self.request("agent.state.set", state="not_ready", reason="break")

    async def close(self) -> None:
        self._closing = True
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


async def until(condition: Any, timeout: float, interval: float = 0.02) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def people(cluster: Cluster, switch: Switch, pbx_names: list[str], agents_per_node: int,
                 **agent_options: Any) -> AsyncIterator[tuple[list[Pbx], list[Agent]]]:
    """PBX `i` on node `i`; agents spread over the nodes, all signed in and available."""
    nodes = len(cluster.urls)
    pbxs = [Pbx(name, await cluster.pbx_token(name), switch) for name in pbx_names]
    agents = [Agent(agent_id, token, switch, cluster.urls, n % nodes, **agent_options)
              for n, (agent_id, token) in enumerate(cluster.agents[:agents_per_node * nodes])]
    try:
        for n, pbx in enumerate(pbxs):
            await pbx.connect(cluster.urls[n % nodes])
        for agent in agents:
            await agent.connect()
            await agent.request("agent.state.set", state="available")
        await until(lambda: all(a.state.get("state") == "available" for a in agents), 20)
        yield pbxs, agents
    finally:
        await switch.close()
        for client in [*pbxs, *agents]:
            await client.close()


# Checks -------------------------------------------------------------------


class DoubleAssignmentWatch:
    """Samples every agent's live record: no call may be on two agents at once."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.samples = 0
        self.violations: list[str] = []
        self.stopped = False  # not cancel(): redis-py may swallow a cancellation mid-read
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DoubleAssignmentWatch:
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stopped = True
        await self._task  # type: ignore[misc]

    async def run(self) -> None:
        while not self.stopped:
            hashes = await self.cluster.agent_hashes()
            holders: dict[str, int] = {}
            for agent_id, row in hashes.items():
                call_id = row.get("call_id")
                if row.get("state") in ("ringing", "on_call") and not call_id:
                    self.violations.append(f"agent {agent_id} {row['state']} without a call")
                if call_id and call_id in holders:
                    self.violations.append(f"{call_id} on agents {holders[call_id]} and "
                                           f"{agent_id}")
                if call_id:
                    holders[call_id] = agent_id
            self.samples += 1
            await asyncio.sleep(0.05)


def overlapping_talks(records: list[Interaction]) -> list[str]:
    """Connected calls of one agent that overlap in time (from the interaction records)."""
    talks: dict[int, list[tuple[dt.datetime, dt.datetime, str]]] = {}
    for r in records:
        if r.outcome == "answered":
            talks.setdefault(r.agent_id, []).append((r.answered_at, r.ended_at, r.call_id))
    found = []
    for agent_id, spans in talks.items():
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                found.append(f"agent {agent_id}: {first} and {second} overlap")
    return found


def epoch(moment: dt.datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def queue_order_violations(records: list[Interaction], live: dict[str, dict[str, str]],
                           agents: dict[int, dict[str, str]]) -> list[str]:
    """A call still waiting must not have been passed over by an agent who could take it.

    Only decisions taken when an agent freed up look at the waiting calls (a call routed as
    it arrives takes an agent nobody waiting could have). Such a decision passed over a
    call still waiting when that call had priority, was in the queue when the agent looked
    (it joined before `scanned_at`: both stamped by Redis's clock, so in the order things
    really happened), and had a ring open to one of the agent's pools at the moment of the
    decision (`offered_at + waited_s` by the deciding node's clock, as the engine judged).
    """
    found = []
    waiting = {c: call for c, call in live.items() if call.get("state") == "queued"}
    for r in records:
        reason = r.routing_reason or {}
        if r.outcome != "answered" or reason.get("on") != "agent_free":
            continue
        pools = agents[reason["agent_id"]].get("pools", "").split(";")
        # waited_s is rounded to the millisecond: judge rings as of a millisecond earlier.
        decided = epoch(r.offered_at) + reason["waited_s"] - 0.001
        for call_id, call in waiting.items():
            if float(call["score"]) < reason_score(r) \
                    and float(call["queued_at"]) < reason["scanned_at"] \
                    and matching_ring(pools, decode_rings(call["rings"]),
                                      decided - float(call["offered_at"])) is not None:
                found.append(f"{r.call_id} (score {reason_score(r):.3f}) served before "
                             f"waiting {call_id} (score {float(call['score']):.3f})")
    return found


def reason_score(r: Interaction) -> float:
    return epoch(r.offered_at) - RoutingPolicy().boost(r.tier)


async def offer_steadily(pbxs: list[Pbx], numbers: Any, rate: float) -> None:
    for n in numbers:
        await pbxs[0].switch.running.wait()
        await pbxs[n % len(pbxs)].offer(f"k-{n}", phone(n % 90))
        await asyncio.sleep(1 / rate)


def check_snapshot(switch: Switch, pbx: Pbx, snapshot: dict[str, Any]) -> None:
    """The service's view of this PBX's calls matches the PBX's own; adopt lost connects."""
    served = {c["call_id"]: c for c in snapshot["calls"]}
    for call in switch.calls.values():
        if call.pbx is not pbx or call.state == "ended":
            continue
        assert call.call_id in served, f"{call.call_id} ({call.state}) lost"
        there = served[call.call_id]
        if call.state == "offered" and there["state"] == "ringing":
            switch.route_connect(call.call_id, there["agent_id"])  # its route.connect died
        elif call.state in ("ringing", "connected"):
            assert there["agent_id"] == call.agent_id, (call, there)
            assert there["state"] == call.state, (call, there)
        else:
            assert there["state"] in ("queued", "ringing"), (call, there)
    for call_id, there in served.items():
        ours = switch.calls.get(call_id)
        assert ours is not None and (ours.state != "ended" or there["state"] == "wrap_up"), (
            f"{there} unknown to the PBX")


def check_console_snapshot(messages: list[dict[str, Any]]) -> None:
    """A console that connects gets its state and, with a call, the call itself."""
    state = next(m for m in messages if m["type"] == "agent.state")
    if state["call_id"] is None:
        return
    kinds = {m["type"] for m in messages if m.get("call_id") == state["call_id"]}
    assert "screen_pop" in kinds, messages
    if state["state"] == "on_call":
        assert "call.connected" in kinds, messages
    if state["state"] == "wrap_up":
        assert "call.ended" in kinds, messages


async def until_drained(cluster: Cluster, pbxs: list[Pbx], timeout: float) -> None:
    """Every event acked, no live call left in Redis, every agent free again."""
    deadline = time.monotonic() + timeout
    while True:
        live = await cluster.live_calls()
        busy = [h for h in (await cluster.agent_hashes()).values() if h.get("call_id")]
        if not live and not busy and not any(p.unacked for p in pbxs):
            return
        assert time.monotonic() < deadline, f"not drained: calls {list(live.values())[:3]}, " \
            f"agents {busy[:3]}, unacked {[list(p.unacked.values())[:2] for p in pbxs]}"
        await asyncio.sleep(0.1)


async def until_quiet(cluster: Cluster, agents: list[Agent], timeout: float) -> None:
    """Every agent not ready and no call ringing, talking or in wrap-up."""
    deadline = time.monotonic() + timeout
    while True:
        for agent in agents:
            await agent.stop()  # again: an agent freed since the last look
        busy = [h for h in (await cluster.agent_hashes()).values()
                if h.get("state") != "not_ready"]
        moving = [c for c in (await cluster.live_calls()).values() if c["state"] != "queued"]
        if not busy and not moving:
            return
        assert time.monotonic() < deadline, f"not quiet: agents {busy[:3]}, calls {moving[:3]}"
        await asyncio.sleep(0.1)
