"""One node against two nodes on the same Redis: offered-call throughput and screen-pop latency.

Each configuration gets a fresh database, created and dropped here (PostgreSQL when one
answers on 127.0.0.1:5432, else a SQLite file), shared by all its nodes, and its own key
prefix on one redis-server started here. The same simulated PBX and agents
(bench/harness.py) drive it; with two nodes the agents and PBX connections are spread
over both, so about half the screen-pops cross nodes over Redis pub/sub.

The steady phase has `--pbx` PBX integrations (2), each with a token of its own, as
separate PBXs (or trunks) would have: with one node all connect to it, with two one to
each. A call's events go on the connection that offered it, and a `route.connect`
published for a call that waited reaches only that integration. (Until 2026-12-03 every
connection shared one token, so with two nodes both fake PBXs heard such a
`route.connect` and both answered and hung up the call: `wrong_agent` and
`illegal_transition` error frames and extra work only the two-node runs paid for.)

- latency: calls offered at a steady rate (default 25/s), `call.offered` sent to
  `screen_pop` read, p50 and p99; CPU per call over that window, per process;
- throughput: with the agents still connected, a burst of calls offered as fast as the
  PBX may (one PBX integration per node, each keeping `--window` offers unacknowledged;
  routed calls are answered and hung up like the steady ones), offers acked per second.

CPU is read from /proc for each node, the redis-server, and the PostgreSQL backends of
the bench database (a backend that exits inside a window is not counted), over the steady
window, the burst, and a few idle seconds with the agents connected and no calls.

    nice -n 19 .venv/bin/python bench/multinode_bench.py
    nice -n -15 .venv/bin/python bench/multinode_bench.py --no-burst --rate 15 --talk 3 \
        --warmup 12 --idle 10 --repeat 3 --tree /tmp/base --tree .
    .venv/bin/python bench/multinode_bench.py --database sqlite --agents 300 --burst 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Deployment,
    LoadRun,
    cpu_s,
    free_port,
    percentile,
    phone,
    rss_mb,
    wait_healthy,
    workdir,
)

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[tuple[str, int]]:
    """One redis-server for every configuration; yields its URL and pid."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Database:
    """A fresh database for one configuration, and the pids of its PostgreSQL backends."""

    def __init__(self, kind: str, tmp: Path, name: str) -> None:
        self.kind, self.name = kind, f"bench_{name}_{secrets.token_hex(3)}"
        self.url = f"sqlite+aiosqlite:///{tmp / self.name}.db"

    async def __aenter__(self) -> Database:
        if self.kind == "postgres":
            from sqlalchemy.engine import make_url
            from sqlalchemy.ext.asyncio import create_async_engine

            self.admin = create_async_engine(POSTGRES, isolation_level="AUTOCOMMIT")
            await self._execute(f'CREATE DATABASE "{self.name}"')
            self.url = make_url(POSTGRES).set(database=self.name).render_as_string(
                hide_password=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.kind == "postgres":
            try:
                await self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await self.admin.dispose()

    async def _execute(self, sql: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        async with self.admin.connect() as conn:
            result = await conn.execute(text(sql), params)
            return list(result) if result.returns_rows else []

    async def backends(self) -> list[int]:
        if self.kind != "postgres":
            return []  # SQLite runs inside the nodes
        rows = await self._execute("SELECT pid FROM pg_stat_activity WHERE datname = :d",
                                   d=self.name)
        return [pid for (pid,) in rows]


def _cpu(pid: int) -> float:
    with contextlib.suppress(OSError):
        return cpu_s(pid)
    return 0.0


class CpuWindow:
    """CPU seconds each process used between `start` and `stop`.

    PostgreSQL backends come and go (the pool's overflow connections close when they are
    returned), so they are sampled every `every` seconds: a backend's CPU after its last
    sample, and a backend that lived between two samples, are not counted.
    """

    def __init__(self, nodes: list[int], redis: int, database: Database,
                 every: float = 0.25) -> None:
        self.nodes, self.redis, self.database, self.every = nodes, redis, database, every

    async def start(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        await self._sample(born=False)
        self.before = [_cpu(pid) for pid in [*self.nodes, self.redis]]
        self.sampler = asyncio.create_task(self._sample_until_stopped())

    async def stop(self) -> dict[str, Any]:
        after = [_cpu(pid) for pid in [*self.nodes, self.redis]]
        self.sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sampler
        await self._sample()
        used = [a - b for a, b in zip(after, self.before, strict=True)]
        database = sum(last - self.first[pid] for pid, last in self.last.items())
        return {"nodes": used[:-1], "redis": used[-1], "database": database}

    async def _sample(self, born: bool = True) -> None:
        for pid in await self.database.backends():
            cpu = _cpu(pid)
            if cpu:  # 0.0: gone since the query
                self.first.setdefault(pid, 0.0 if born else cpu)
                self.last[pid] = cpu

    async def _sample_until_stopped(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self._sample()


class Burst:
    """Offers `calls` calls as fast as the PBX connections allow; answers the routed ones."""

    def __init__(self, run: LoadRun, args: argparse.Namespace) -> None:
        self.run, self.args = run, args
        self.acked = 0
        self.done = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.random = random.Random(2)

    async def __call__(self, urls: list[str], tokens: list[str]) -> dict[str, float]:
        async with aiohttp.ClientSession() as http:
            sockets = [await http.ws_connect(f"{url}/ws/telephony", heartbeat=30,
                                             headers={"Authorization": f"Bearer {token}"})
                       for url, token in zip(urls, tokens, strict=True)]
            slots = [asyncio.Semaphore(self.args.window) for _ in sockets]
            for ws, slot in zip(sockets, slots, strict=True):
                self._spawn(self._read(ws, slot))
            start = time.perf_counter()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.args.burst_timeout):
                    await self._offer(sockets, slots)
                    await self.done.wait()
            elapsed = time.perf_counter() - start
            for task in self.tasks:
                task.cancel()
            for ws in sockets:
                await ws.close()
        popped = sum(1 for call in self.run.stats.popped if call.startswith("burst-"))
        return {"acked": self.acked, "seconds": elapsed, "popped": popped,
                "throughput": self.acked / elapsed}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _offer(self, sockets: list[Any], slots: list[asyncio.Semaphore]) -> None:
        for n in range(self.args.burst):
            ws, slot = sockets[n % len(sockets)], slots[n % len(sockets)]
            await slot.acquire()
            call_id = f"burst-{n}"
            self.run.stats.offered_at[call_id] = time.perf_counter()
            await ws.send_str(json.dumps({
                "type": "call.offered", "event_id": f"x{n}", "call_id": call_id,
                "ani": phone(self.random.randrange(self.args.customers)), "queue": "default"}))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, slot: asyncio.Semaphore) -> None:
        async for msg in ws:
            data = json.loads(msg.data)
            if data["type"] in ("ack", "error") and data.get("event_id", "").startswith("x"):
                self.acked += 1
                slot.release()
                if self.acked == self.args.burst:
                    self.done.set()
            elif data["type"] == "route.connect":
                self._spawn(self._talk(ws, data["call_id"], data["agent_id"]))

    async def _talk(self, ws: aiohttp.ClientWebSocketResponse, call_id: str,
                    agent_id: int) -> None:
        await asyncio.sleep(0.1)
        await ws.send_str(json.dumps({"type": "call.answered", "event_id": f"a-{call_id}",
                                      "call_id": call_id, "agent_id": agent_id}))
        await asyncio.sleep(self.random.expovariate(1 / self.args.talk))
        await ws.send_str(json.dumps({"type": "call.ended", "event_id": f"e-{call_id}",
                                      "call_id": call_id, "cause": "normal"}))


def profile(args: argparse.Namespace, pids: list[int]) -> list[subprocess.Popen[bytes]]:
    """py-spy on each node over the steady window (`--profile DIR`): collapsed stacks of
    the samples holding the GIL, one file per node, `n<nodes>-<i>-<time>.txt`."""
    if args.profile is None:
        return []
    args.profile.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    stamp = time.strftime("%H%M%S")
    return [subprocess.Popen([str(spy), "record", "--pid", str(pid), "--gil", "--nonblocking",
                              "--rate", "200", "--duration", str(int(args.duration)),
                              "--format", "raw", "-o",
                              str(args.profile / f"n{len(pids)}-{i}-{stamp}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, pid in enumerate(pids)]


async def steady(run: LoadRun, args: argparse.Namespace,
                 cpu: CpuWindow) -> dict[str, Any]:
    await cpu.start()
    await asyncio.sleep(args.idle)
    idle = await cpu.stop()
    await run.offer_at_rate(args.rate, args.warmup, args.customers, tag="warm")
    spies = profile(args, cpu.nodes)
    await cpu.start()
    begun = time.perf_counter()
    offered = await run.offer_at_rate(args.rate, args.duration, args.customers, tag="steady")
    used = await cpu.stop()
    for spy in spies:
        await asyncio.to_thread(spy.wait)
    await asyncio.sleep(1)  # the last pops of the window
    window = [s for sent, s in run.stats.pop_latency if sent >= begun]
    return {"offered": offered, "popped": len(window), "cpu": used, "idle": idle,
            "idle_s": args.idle,
            "p50_ms": percentile(window, 50) * 1000, "p99_ms": percentile(window, 99) * 1000}


async def configuration(args: argparse.Namespace, nodes: int, redis: tuple[str, int],
                        tmp: Path, tree: Path | None = None) -> dict[str, Any]:
    redis_url, redis_pid = redis
    async with Database(args.database, tmp, f"n{nodes}") as database:
        deployment = Deployment(tmp, database.url, redis_url)
        tokens = await deployment.prepare(args.agents, args.customers)
        pbx_tokens = await deployment.telephony_tokens(args.pbx, "bench-pbx")
        burst_tokens = await deployment.telephony_tokens(nodes, "bench-burst")
        code = {"PYTHONPATH": str(tree)} if tree else {}
        urls = [deployment.start_node(free_port(), CALLCENTER_RING_TIMEOUT_S="60",
                                      CALLCENTER_WRAP_UP_S="5", **code) for _ in range(nodes)]
        try:
            async with asyncio.timeout(args.limit):
                await asyncio.gather(*(wait_healthy(url) for url in urls))
                load = os.getloadavg()[0]  # other work on the machine skews what follows
                cpu = CpuWindow([p.pid for p in deployment.procs], redis_pid, database)
                async with LoadRun(urls, tokens, pbx_tokens, talk_s=args.talk) as run:
                    await asyncio.sleep(2)  # every agent available
                    result = await steady(run, args, cpu)
                    if args.burst:
                        await asyncio.sleep(args.talk + 6)  # the steady calls drain
                        await cpu.start()
                        result["burst"] = await Burst(run, args)(urls, burst_tokens)
                        result["burst"]["cpu"] = await cpu.stop()
                    result["errors"] = len(run.stats.errors)
                    result["error_codes"] = dict(Counter(
                        e.get("code", "?") for e in run.stats.errors))
                result["rss_mb"] = sum(rss_mb(p.pid) for p in deployment.procs)
        finally:
            deployment.stop()
    return {"nodes": nodes, "tree": str(tree or "."), "load": load,
            "load_end": os.getloadavg()[0], **result}


def per_call_ms(cpu: dict[str, Any], calls: float, database: bool = True) -> float:
    used = sum(cpu["nodes"]) + cpu["redis"] + (cpu["database"] if database else 0.0)
    return used / max(calls, 1) * 1000


def cpu_text(cpu: dict[str, Any], calls: float, unit: str) -> str:
    nodes = " + ".join(f"{s:.1f}" for s in cpu["nodes"])
    return (f"CPU nodes {nodes} s, redis {cpu['redis']:.1f} s, postgres "
            f"{cpu['database']:.1f} s = {per_call_ms(cpu, calls, False):.2f} ms per {unit} "
            f"(nodes + redis), {per_call_ms(cpu, calls):.2f} with postgres")


def figures(r: dict[str, Any]) -> dict[str, float]:
    found = {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
             "steady_cpu_ms": per_call_ms(r["cpu"], r["offered"], False),
             "steady_all_ms": per_call_ms(r["cpu"], r["offered"]),
             "idle_cpu_pct": (sum(r["idle"]["nodes"]) + r["idle"]["redis"]) / r["idle_s"] * 100}
    if b := r.get("burst"):
        found |= {"throughput": b["throughput"], "burst_cpu_ms": per_call_ms(b["cpu"], b["acked"])}
    return found


LABELS = (("steady_cpu_ms", "CPU ms per call, nodes + redis"),
          ("steady_all_ms", "CPU ms per call, with postgres"),
          ("idle_cpu_pct", "idle CPU, % of a core"),
          ("p50_ms", "screen-pop p50 ms"), ("p99_ms", "screen-pop p99 ms"),
          ("throughput", "burst offers acked/s"), ("burst_cpu_ms", "CPU ms per burst offer"))


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n{args.agents} agents, {args.database}, one redis-server, {args.pbx} PBX "
          f"integrations; latency at {args.rate:g} calls/s for {args.duration:g} s after "
          f"{args.warmup:g} s; burst of {args.burst} offers, {args.window} in flight per PBX "
          "connection")
    for r in results:
        print(f"\n{r['nodes']} node(s) {r['tree']}, load average {r['load']:.1f} at start, "
              f"{r['load_end']:.1f} at end, RSS {r['rss_mb']:.0f} MB, {r['errors']} error "
              f"frames {r['error_codes']}")
        idle = r["idle"]
        print(f"  idle:   CPU nodes {' + '.join(f'{s:.2f}' for s in idle['nodes'])} s, redis "
              f"{idle['redis']:.2f} s, postgres {idle['database']:.2f} s in {r['idle_s']:g} s")
        print(f"  steady: screen-pop p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"popped {r['popped']}/{r['offered']}")
        print(f"          {cpu_text(r['cpu'], r['offered'], 'call offered')}")
        if b := r.get("burst"):
            print(f"  burst:  {b['throughput']:.0f} offers acked/s ({b['acked']}/{args.burst} "
                  f"in {b['seconds']:.1f} s, {b['popped']} popped)")
            print(f"          {cpu_text(b['cpu'], b['acked'], 'offer acked')}")
    for tree in dict.fromkeys(r["tree"] for r in results):
        one, two = ([figures(r) for r in results if r["nodes"] == n and r["tree"] == tree]
                    for n in (1, 2))
        print(f"\n{tree}: median of {len(one)} run(s) each, one node -> two nodes")
        for key, label in LABELS:
            if key not in one[0]:
                continue
            a, b = (statistics.median(f[key] for f in rows) for rows in (one, two))
            pairs = ", ".join(f"x{y[key] / x[key]:.2f}" for x, y in zip(one, two, strict=True))
            print(f"  {label:32s} {a:8.2f} -> {b:8.2f}   x{b / a:.2f}  (rounds: {pairs})")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default=None,
                        help="default: postgres when 127.0.0.1:5432 answers")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=25.0,
                        help="steady calls per second (below one node's knee on 2 vCPUs)")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--idle", type=float, default=3.0,
                        help="seconds with agents connected and no calls, for idle CPU")
    parser.add_argument("--talk", type=float, default=8.0, help="mean talk time, seconds")
    parser.add_argument("--pbx", type=int, default=2,
                        help="PBX integrations in the steady phase, each its own token, "
                             "spread over the nodes (with one node, all on it)")
    parser.add_argument("--no-burst", dest="burst", action="store_const", const=0,
                        help="skip the burst")
    parser.add_argument("--burst", type=int, default=2000, help="calls in the burst")
    parser.add_argument("--window", type=int, default=64,
                        help="unacknowledged offers per PBX connection in the burst")
    parser.add_argument("--burst-timeout", type=float, default=90.0,
                        help="stop the burst after this long and count what was acked")
    parser.add_argument("--limit", type=float, default=300.0,
                        help="seconds one configuration may take before it is abandoned")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy each node over the steady window into this directory")
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="run the nodes from this source tree (first on PYTHONPATH); "
                             "repeat to alternate trees in one run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.database is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), 1):
            args.database = "postgres"
        args.database = args.database or "sqlite"
    return args


def main() -> None:
    args = parse()

    async def run_all(redis: tuple[str, int], tmp: Path) -> list[dict[str, Any]]:
        results = []
        trees = args.tree or [None]
        for _ in range(args.repeat):  # interleaved, so a burst of other work hits both
            for tree in trees:
                for nodes in (1, 2):
                    print(f"{nodes} node(s) {tree or ''}...", flush=True)
                    results.append(await configuration(args, nodes, redis, tmp, tree))
        return results

    with workdir(args.workdir) as tmp, redis_server(tmp) as redis:
        results = asyncio.run(run_all(redis, tmp))
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
