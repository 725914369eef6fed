"""Soak: the full call flow at a steady rate for ten minutes, checked for losses.

One `callcenter serve` (SQLite + embedded Redis), hundreds of simulated agents; every
call is offered, routed, screen-popped, answered, ended and wrapped up. Afterwards the
interaction records are checked: every offered call ended, no agent had two calls at
once. Reported: calls completed, lost, double-assigned, screen-pop p99 per minute, and
the server's memory at start and end.

    .venv/bin/python bench/soak_bench.py                       # 10 min, 300 agents, 10 calls/s
    .venv/bin/python bench/soak_bench.py --minutes 1 --agents 100 --rate 5   # a short look
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Deployment,
    LoadRun,
    free_port,
    percentile,
    rss_mb,
    split_held,
    wait_healthy,
    workdir,
)

from core import db  # noqa: E402
from core.models import Interaction  # noqa: E402


async def soak(args: argparse.Namespace) -> int:
    with workdir(args.workdir) as tmp:
        deployment = Deployment(tmp, f"sqlite+aiosqlite:///{tmp / 'soak.db'}", None)
        tokens = await deployment.prepare(args.agents, args.customers)
        url = deployment.start_node(free_port(), CALLCENTER_RING_TIMEOUT_S="30",
                                    CALLCENTER_WRAP_UP_S="5")
        try:
            await wait_healthy(url)
            pid = deployment.procs[0].pid
            async with LoadRun([url], tokens, deployment.pbx_token, talk_s=args.talk) as run:
                await asyncio.sleep(3)
                start_rss = rss_mb(pid)
                print(f"start: {start_rss:.1f} MB resident", flush=True)
                offered = 0
                for minute in range(args.minutes):
                    mark = len(run.stats.pop_latency)
                    offered += await run.offer_at_rate(args.rate, 60, args.customers,
                                                       tag=f"m{minute}")
                    window, held = split_held(
                        [s for _, s in run.stats.pop_latency[mark:]], run.stats.held[mark:])
                    print(f"minute {minute + 1:2d}: popped {len(window) + len(held)}; routed on "
                          f"arrival: p50 {percentile(window, 50) * 1000:.1f} ms, "
                          f"p99 {percentile(window, 99) * 1000:.1f} ms; held by routing "
                          f"(sticky agent or all agents busy): {len(held)}; "
                          f"{rss_mb(pid):.1f} MB", flush=True)
                # Let the last calls finish: talk time plus wrap-up.
                await asyncio.sleep(args.talk * 6 + 10)
                end_rss = rss_mb(pid)
                errors = run.stats.errors
        finally:
            deployment.stop()
        engine = db.create_engine(deployment.database_url)
        async with db.sessionmaker(engine)() as session:
            records = (await session.scalars(select(Interaction))).all()
        await engine.dispose()
    return report(records, offered, errors, start_rss, end_rss)


def report(records: list[Interaction], offered: int, errors: list[dict], start_rss: float,
           end_rss: float) -> int:
    ended = [r for r in records if r.ended_at is not None]
    completed = [r for r in ended if r.outcome == "answered" and r.disposition]
    lost = offered - len(ended)
    talks: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        if r.answered_at and r.ended_at and r.agent_id is not None:
            talks[r.agent_id].append((r.answered_at.timestamp(), r.ended_at.timestamp()))
    overlaps = 0
    for spans in talks.values():
        spans.sort()
        overlaps += sum(1 for (_, end), (start, _) in pairwise(spans) if start < end)
    growth = (end_rss - start_rss) / start_rss * 100
    print(f"\noffered {offered}, recorded {len(records)}, ended {len(ended)}, "
          f"completed with wrap-up {len(completed)}")
    print(f"lost {lost}, double-assigned (overlapping talks of one agent) {overlaps}, "
          f"error frames {len(errors)}")
    print(f"memory {start_rss:.1f} MB -> {end_rss:.1f} MB ({growth:+.1f}%)")
    ok = lost == 0 and overlaps == 0 and not errors and growth < 10
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=10.0, help="calls offered per second")
    parser.add_argument("--talk", type=float, default=10.0, help="mean talk time, seconds")
    parser.add_argument("--workdir", type=Path, default=None)
    raise SystemExit(asyncio.run(soak(parser.parse_args())))


if __name__ == "__main__":
    main()
