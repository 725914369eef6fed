"""Screen-pop latency: `call.offered` sent by the PBX → `screen_pop` read by the agent.

One `callcenter serve` process on the embedded defaults (SQLite + embedded Redis),
1,000 connected agents, calls offered at a steady rate; the simulated PBX answers each
routed call and hangs up after an exponential talk time, agents finish wrap-up at once.
The same run measures a bare aiohttp relay (bench/baseline_server.py) doing the least a
screen-pop can be — one frame in, one frame out to an agent socket — as the floor.

    .venv/bin/python bench/screenpop_bench.py                  # 50 calls/s, 1,000 agents
    .venv/bin/python bench/screenpop_bench.py --ramp 50,100,150,200,300   # find the knee
    .venv/bin/python bench/screenpop_bench.py --setting CALLCENTER_GC_FREEZE_S=0  # no gctune
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Deployment,
    LoadRun,
    cpu_s,
    embedded_redis,
    free_port,
    percentile,
    rss_mb,
    split_held,
    wait_healthy,
    workdir,
)


async def baseline(agents: int, rate: float, duration: float) -> list[float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("baseline_server.py")),
                             str(port)])
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    sent: dict[str, float] = {}
    try:
        await wait_healthy(url)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            sockets = [await http.ws_connect(f"{url}/agent") for _ in range(agents)]

            async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
                async for msg in ws:
                    call_id = json.loads(msg.data)["call_id"]
                    latencies.append(time.perf_counter() - sent[call_id])

            readers = [asyncio.create_task(read(ws)) for ws in sockets]
            pbx = await http.ws_connect(f"{url}/pbx")
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < duration:
                call_id = f"b-{n}"
                sent[call_id] = time.perf_counter()
                await pbx.send_str(json.dumps({"type": "call.offered", "call_id": call_id}))
                n += 1
                await asyncio.sleep(max(0.0, n / rate - (time.perf_counter() - start)))
            await asyncio.sleep(0.5)
            for ws in [*sockets, pbx]:
                await ws.close()
            for task in readers:
                task.cancel()
    finally:
        proc.terminate()
        proc.wait()
    return latencies


async def service(args: argparse.Namespace, rates: list[float]) -> list[dict[str, float]]:
    results = []
    with workdir(args.workdir) as tmp:
        deployment = Deployment(tmp, f"sqlite+aiosqlite:///{tmp / 'bench.db'}", None)
        tokens = await deployment.prepare(args.agents, args.customers)
        settings = dict(item.split("=", 1) for item in args.setting)
        url = deployment.start_node(free_port(), CALLCENTER_RING_TIMEOUT_S="30",
                                    CALLCENTER_WRAP_UP_S="5", **settings)
        try:
            await wait_healthy(url)
            pid = deployment.procs[0].pid
            redis_pids = embedded_redis(tmp)
            async with LoadRun([url], tokens, deployment.pbx_token, talk_s=args.talk) as run:
                await asyncio.sleep(2)  # every agent available
                idle = cpu_s(pid)
                await asyncio.sleep(args.idle)
                idle = (cpu_s(pid) - idle) / args.idle
                print(f"  idle with {args.agents} agents connected: server CPU "
                      f"{idle * 100:.1f}% of a core", flush=True)
                await run.offer_at_rate(min(rates), args.warmup, args.customers, tag="warm")
                for rate in rates:
                    mark = len(run.stats.pop_latency)
                    cpu = [cpu_s(pid), sum(map(cpu_s, redis_pids)), time.process_time()]
                    offered = await run.offer_at_rate(rate, args.duration, args.customers,
                                                      tag=f"r{rate:g}")
                    await asyncio.sleep(1)
                    used = [cpu_s(pid) - cpu[0], sum(map(cpu_s, redis_pids)) - cpu[1],
                            time.process_time() - cpu[2]]
                    window, held = split_held(
                        [s for _, s in run.stats.pop_latency[mark:]], run.stats.held[mark:])
                    results.append({"rate": rate, "offered": offered,
                                    "popped": len(window) + len(held), "held": len(held),
                                    "p50_ms": percentile(window, 50) * 1000,
                                    "p99_ms": percentile(window, 99) * 1000,
                                    "rss_mb": rss_mb(pid),
                                    "server_cpu_ms": used[0] * 1000 / max(offered, 1)})
                    print(f"  {rate:6.0f} calls/s: offered {offered}, popped "
                          f"{len(window) + len(held)} ({len(held)} held by routing), "
                          f"p50 {results[-1]['p50_ms']:.1f} ms, p99 {results[-1]['p99_ms']:.1f} ms"
                          f"; CPU per offered call: server {used[0] * 1000 / offered:.1f} ms, "
                          f"redis {used[1] * 1000 / offered:.1f} ms, load generator "
                          f"{used[2] * 1000 / offered:.1f} ms", flush=True)
                if run.stats.errors:
                    print(f"  server errors: {len(run.stats.errors)}, e.g. {run.stats.errors[0]}")
        finally:
            deployment.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=50.0, help="calls offered per second")
    parser.add_argument("--ramp", type=str, default="", help="comma-separated rates to step")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds to measure the server's CPU with no calls")
    parser.add_argument("--talk", type=float, default=8.0, help="mean talk time, seconds")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment setting for the node, e.g. "
                             "CALLCENTER_GC_FREEZE_S=0 (CPython's own garbage collection)")
    args = parser.parse_args()
    rates = [float(r) for r in args.ramp.split(",")] if args.ramp else [args.rate]

    print(f"baseline: bare aiohttp relay, {args.agents} agents, {rates[0]:g} frames/s")
    floor = asyncio.run(baseline(args.agents, rates[0], min(args.duration, 20)))
    print(f"  p50 {percentile(floor, 50) * 1000:.2f} ms, p99 {percentile(floor, 99) * 1000:.2f} ms"
          f" over {len(floor)} frames")
    print(f"callcenter serve (SQLite + embedded Redis), {args.agents} agents")
    results = asyncio.run(service(args, rates))
    first = results[0]
    print(f"\nat {first['rate']:g} calls/s: screen-pop p50 {first['p50_ms']:.1f} ms, "
          f"p99 {first['p99_ms']:.1f} ms; bare relay p99 {percentile(floor, 99) * 1000:.2f} ms "
          f"(ratio {first['p99_ms'] / (percentile(floor, 99) * 1000):.1f}x)")
    knee = next((r["rate"] for r in results if r["p99_ms"] > 100), None)
    if len(results) > 1:
        print("knee (first rate with p99 > 100 ms):", f"{knee:g} calls/s" if knee else
              f"not reached up to {results[-1]['rate']:g} calls/s")


if __name__ == "__main__":
    main()
