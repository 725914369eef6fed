"""`callcenter segment` at scale on PostgreSQL: time and peak memory.

    python bench/segment_bench.py --url postgresql+asyncpg://postgres@127.0.0.1:5432/DB \
        --customers 100000 --orders 1000000

Fills the database (schema reset, COPY of customers and orders: a Pareto spend, a
rhythm per customer, some lapsed), then runs `segment_all` with its progress bars and
prints wall time, the split (load / score / store) and the process's peak RSS.
The target of issue 16 is 1,000,000 customers and 10,000,000 orders in 5 minutes and
2 GB; see bench/README.md for what was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import resource
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import db  # noqa: E402
from core.models import Base  # noqa: E402
from crm import segment  # noqa: E402

TODAY = dt.date(2026, 12, 1)


async def fill(url: str, customers: int, orders: int, seed: int) -> None:
    engine = db.create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()
    rng = np.random.default_rng(seed)
    ids = [f"C{n:07d}" for n in range(customers)]
    # Pareto activity: a few customers place most orders; each order's day follows the
    # customer's own start and rhythm, some customers stop buying a while ago.
    weight = rng.pareto(1.2, customers) + 0.05
    who = rng.choice(customers, size=orders, p=weight / weight.sum())
    start = rng.integers(30, 1500, customers)
    stop = np.where(rng.random(customers) < 0.25, rng.integers(0, 900, customers), 0)
    span = np.maximum(start - stop, 1)
    ago = stop[who] + (rng.random(orders) * span[who]).astype(np.int64)
    amount = np.round(rng.lognormal(4.5, 0.8, orders), 2)
    cost = np.round(amount * rng.uniform(0.4, 0.9, orders), 2)
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.copy_records_to_table(
            "customers", columns=["id", "name", "tags", "lifecycle_stage", "tier", "created_at"],
            records=((cid, cid, "[]", "prospect", "standard",
                      dt.datetime.now(dt.UTC)) for cid in ids))
        step = 1_000_000
        for lo in range(0, orders, step):
            hi = min(lo + step, orders)
            await conn.copy_records_to_table(
                "orders", columns=["customer_id", "ordered_on", "amount", "cost"],
                records=((ids[who[k]], TODAY - dt.timedelta(days=int(ago[k])),
                          float(amount[k]), float(cost[k])) for k in range(lo, hi)))
            print(f"filled {hi} orders", file=sys.stderr)
    finally:
        await conn.close()


async def run(url: str) -> None:
    engine = db.create_engine(url)
    maker = db.sessionmaker(engine)
    marks: dict[str, float] = {}
    real_score, real_store = segment.score, segment.store

    def timed_score(*args: Any) -> Any:
        marks.setdefault("score_start", time.perf_counter())
        return real_score(*args)

    async def timed_store(*args: Any) -> None:
        marks["store_start"] = time.perf_counter()
        await real_store(*args)

    segment.score, segment.store = timed_score, timed_store  # type: ignore[assignment]
    started = time.perf_counter()
    report = await segment.segment_all(maker, TODAY, progress=True)
    total = time.perf_counter() - started
    segment.score, segment.store = real_score, real_store  # type: ignore[assignment]
    await engine.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = marks["score_start"] - started
    scoring = marks["store_start"] - marks["score_start"]
    print(report.summary())
    print(f"total {total:.1f} s: load {load:.1f} s, score {scoring:.1f} s, "
          f"store+record {total - load - scoring:.1f} s; peak RSS {peak_mb:.0f} MB")


async def nightly(url: str, customers: int, changed: int, seed: int) -> None:
    """Add an order for `changed` customers, then time `segment --changed`."""
    rng = np.random.default_rng(seed + 1)
    picks = rng.choice(customers, size=changed, replace=False)
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.copy_records_to_table(
            "orders", columns=["customer_id", "ordered_on", "amount", "cost"],
            records=((f"C{int(n):07d}", TODAY, 120.0, 60.0) for n in picks))
    finally:
        await conn.close()
    engine = db.create_engine(url)
    started = time.perf_counter()
    report = await segment.segment_changed(db.sessionmaker(engine), TODAY, progress=False)
    elapsed = time.perf_counter() - started
    await engine.dispose()
    print(f"nightly: {report.summary()} in {elapsed:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--no-fill", action="store_true", help="segment what is there")
    parser.add_argument("--changed", type=int, default=0,
                        help="then add an order for this many customers and time a nightly run")
    args = parser.parse_args()
    if not args.no_fill:
        asyncio.run(fill(args.url, args.customers, args.orders, args.seed))
    asyncio.run(run(args.url))
    if args.changed:
        asyncio.run(nightly(args.url, args.customers, args.changed, args.seed))


if __name__ == "__main__":
    main()
