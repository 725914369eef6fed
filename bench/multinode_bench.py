"""One node against two nodes on the same Redis: offered-call throughput and screen-pop latency.

Each configuration gets a fresh database (PostgreSQL when one answers, else a SQLite
file) and its own key prefix on one redis-server started here; the same simulated PBX
and agents (bench/harness.py) drive it. With two nodes the agents and PBX connections
are spread over both, so half the screen-pops cross nodes over Redis pub/sub.

- latency: calls offered at a steady rate (default 50/s), `call.offered` sent to
  `screen_pop` read, p50 and p99;
- throughput: a burst of calls offered as fast as the PBX may (each connection keeps
  `--window` offers unacknowledged), offers acknowledged per second.

    .venv/bin/python bench/multinode_bench.py
    .venv/bin/python bench/multinode_bench.py --database sqlite --agents 500 --burst 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Deployment,
    LoadRun,
    free_port,
    percentile,
    phone,
    rss_mb,
    wait_healthy,
    workdir,
)

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def redis_server(tmp: Path) -> Any:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()


@contextlib.asynccontextmanager
async def fresh_database(kind: str, tmp: Path, name: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / name}.db"
        return
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    database = f"bench_{name}_{secrets.token_hex(3)}"
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield make_url(POSTGRES).set(database=database).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
        await admin.dispose()


async def burst(urls: list[str], token: str, calls: int, window: int,
                customers: int) -> float:
    """Offer `calls` calls as fast as the PBX connections allow; offers acked per second."""
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(f"{url}/ws/telephony", heartbeat=30,
                                         headers={"Authorization": f"Bearer {token}"})
                   for url in urls]
        slots = [asyncio.Semaphore(window) for _ in sockets]
        done = asyncio.Event()
        acked = 0

        async def read(ws: aiohttp.ClientWebSocketResponse, slot: asyncio.Semaphore) -> None:
            nonlocal acked
            async for msg in ws:
                data = json.loads(msg.data)
                if data["type"] in ("ack", "error") and data.get("event_id", "").startswith("x"):
                    acked += 1
                    slot.release()
                    if acked == calls:
                        done.set()

        readers = [asyncio.create_task(read(ws, s)) for ws, s in zip(sockets, slots,
                                                                      strict=True)]
        start = time.perf_counter()
        for n in range(calls):
            ws, slot = sockets[n % len(sockets)], slots[n % len(sockets)]
            await slot.acquire()
            await ws.send_str(json.dumps({
                "type": "call.offered", "event_id": f"x{n}", "call_id": f"burst-{n}",
                "ani": phone(n % customers), "queue": "default"}))
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - start
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
    return calls / elapsed


async def configuration(args: argparse.Namespace, nodes: int, redis_url: str,
                        tmp: Path) -> dict[str, float]:
    async with fresh_database(args.database, tmp, f"n{nodes}") as database_url:
        deployment = Deployment(tmp, database_url, redis_url)
        tokens = await deployment.prepare(args.agents, args.customers)
        urls = [deployment.start_node(free_port(), CALLCENTER_RING_TIMEOUT_S="60",
                                      CALLCENTER_WRAP_UP_S="5") for _ in range(nodes)]
        try:
            await asyncio.gather(*(wait_healthy(url) for url in urls))
            async with LoadRun(urls, tokens, deployment.pbx_token, talk_s=args.talk) as run:
                await asyncio.sleep(2)  # every agent available
                await run.offer_at_rate(args.rate, args.warmup, args.customers, tag="warm")
                mark = len(run.stats.pop_latency)
                offered = await run.offer_at_rate(args.rate, args.duration, args.customers,
                                                  tag="steady")
                await asyncio.sleep(1)
                window = [s for _, s in run.stats.pop_latency[mark:]]
                errors = len(run.stats.errors)
            # A burst of its own, once the steady calls have drained.
            await asyncio.sleep(args.talk + 6)
            throughput = await burst(urls, deployment.pbx_token, args.burst, args.window,
                                     args.customers)
            rss = sum(rss_mb(p.pid) for p in deployment.procs)
        finally:
            deployment.stop()
    return {"nodes": nodes, "offered": offered, "popped": len(window),
            "p50_ms": percentile(window, 50) * 1000, "p99_ms": percentile(window, 99) * 1000,
            "throughput": throughput, "errors": errors, "rss_mb": rss}


def report(results: list[dict[str, float]], args: argparse.Namespace) -> None:
    print(f"\n{args.agents} agents, {args.database}, one redis-server; latency at "
          f"{args.rate:g} calls/s for {args.duration:g} s; burst of {args.burst} offers")
    print("nodes | screen-pop p50 | p99      | popped/offered | burst offers/s | RSS")
    for r in results:
        print(f"{r['nodes']:5d} | {r['p50_ms']:11.1f} ms | {r['p99_ms']:5.1f} ms | "
              f"{r['popped']:6d}/{r['offered']:<6d}  | {r['throughput']:14.0f} | "
              f"{r['rss_mb']:.0f} MB")
    one, two = results
    print(f"two nodes / one node: throughput x{two['throughput'] / one['throughput']:.2f}, "
          f"p99 x{two['p99_ms'] / one['p99_ms']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default=None,
                        help="default: postgres when 127.0.0.1:5432 answers")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=50.0, help="steady calls per second")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--talk", type=float, default=8.0, help="mean talk time, seconds")
    parser.add_argument("--burst", type=int, default=2000, help="calls in the burst")
    parser.add_argument("--window", type=int, default=64,
                        help="unacknowledged offers per PBX connection in the burst")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.database is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), 1):
            args.database = "postgres"
        args.database = args.database or "sqlite"

    async def run_all(redis_url: str, tmp: Path) -> list[dict[str, float]]:
        results = []
        for nodes in (1, 2):
            print(f"{nodes} node(s)...", flush=True)
            results.append(await configuration(args, nodes, redis_url, tmp))
        return results

    with workdir(args.workdir) as tmp, redis_server(tmp) as redis_url:
        results = asyncio.run(run_all(redis_url, tmp))
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
