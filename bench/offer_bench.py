"""Router.offer (what a call.offered costs routing, the screen-pop's routing share) with
200 agents, 20% of calls returning to a sticky agent, 10% with an open complaint.

    python bench/offer_bench.py 1500      # offers timed; each call ends and frees its agent
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.keys import Keys  # noqa: E402
from core.redisconn import open_redis  # noqa: E402
from routing.engine import AgentProfile, CallProfile  # noqa: E402
from routing.service import Router  # noqa: E402
from routing.states import AgentState  # noqa: E402
from routing.store import RoutingStore  # noqa: E402


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with open_redis(None, Path(tmp) / "b.rdb") as redis:
            router = Router(RoutingStore(redis, Keys("ob")))
            router.set_queues({"default": ()})
            for i in range(1, 201):
                await router.register_agent(AgentProfile(i, frozenset({"sales"}), 1 + i % 3))
                await router.set_state(i, AgentState.available, "", float(i))
            rng = random.Random(1)
            times = []
            for k in range(n):
                sticky = rng.randint(1, 200) if rng.random() < 0.2 else None
                call = CallProfile(f"c{k}", "default", rng.choice(("vip", "gold", "standard")),
                                   sticky_agent_id=sticky, sticky_agent_working=sticky is not None,
                                   open_complaint=rng.random() < 0.1)
                now = 1000.0 + k
                t = time.perf_counter()
                a = (await router.offer(call, now, now)).assignment
                times.append((time.perf_counter() - t) * 1000)
                assert a is not None
                await router.store.drop_call(call.call_id, "default")
                await router.store.make_unavailable(a.agent_id, AgentState.wrap_up, "", now,
                                                    force=True)
                await router.store.make_available(a.agent_id, now)
            times.sort()
            print(f"offer: p50 {times[n // 2]:.2f} ms, p90 {times[int(n * 0.9)]:.2f} ms, "
                  f"mean {statistics.mean(times):.2f} ms over {n}")

if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1500))
