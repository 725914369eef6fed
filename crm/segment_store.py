"""Write a scored base back to the customers, a transaction per batch so the live call
path is never kept waiting on one long write.

On PostgreSQL a full run COPYs the profiles into a temporary table and updates the
customers from it, 50,000 a statement; elsewhere (SQLite, nightly runs) it is an
executemany UPDATE by primary key. Rows are built in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from itertools import product
from typing import Any

from sqlalchemy import Table, bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm

from core.db import session_scope
from core.models import Customer, UTCDateTime, utcnow
from crm.clv import CLV_CLASSES
from crm.policy import ValuePolicy
from crm.rfm import rfm_segment
from crm.value_engine import ABC, STAGES, TIERS, Scored
from crm.value_extras import VALUE_COST_TYPES

_BATCH = 1000
_PG_BATCH = 50_000
# A Core executemany UPDATE, not the ORM's bulk UPDATE by primary key: that one
# fails the whole batch when a customer was deleted while we were scoring.
_customers: Table = Customer.__table__  # type: ignore[assignment]
_UPDATE = update(_customers).where(_customers.c.id == bindparam("customer_id"))
# A tier that changes is noted in the transaction that changes it (reports: tier moves).
_TIER_CHANGE = text(
    "INSERT INTO customer_tier_changes (customer_id, at, from_tier, to_tier) "
    "SELECT id, :value_updated_at, tier, CAST(:tier AS VARCHAR(16)) FROM customers "
    "WHERE id = :customer_id AND tier <> CAST(:tier AS VARCHAR(16))"
).bindparams(bindparam("value_updated_at", type_=UTCDateTime()))
COLUMNS = ("customer_id", "tier", "abc_class", "rfm_score", "rfm_segment", "clv", "clv_class",
           "lifecycle_stage", "churn_risk", "current_value", "service_cost", "value_cost_type",
           "relationship_days", "satisfaction", "churn_reasons")


def rows(s: Scored, warnings: dict[int, tuple[str, ...]], policy: ValuePolicy, lo: int,
         hi: int) -> list[tuple[Any, ...]]:
    """The stored profile of customers lo..hi-1, in the order of COLUMNS."""
    segments = {"": rfm_segment("", policy.rfm.high_score)} | {
        f"{r}{f}{m}": rfm_segment(f"{r}{f}{m}", policy.rfm.high_score)
        for r, f, m in product(range(1, 6), repeat=3)}
    buyer = (s.hist.orders[lo:hi] > 0).tolist()
    digits = (s.rfm[lo:hi] @ [100, 10, 1]).tolist()
    first = s.hist.first[lo:hi].tolist()
    csat = s.facts.satisfaction[lo:hi].tolist()
    columns = zip(
        s.facts.ids[lo:hi], s.tier[lo:hi].tolist(), s.abc[lo:hi].tolist(), digits,
        s.clv[lo:hi].tolist(), s.clv_class[lo:hi].tolist(), s.stage[lo:hi].tolist(),
        s.sig.risk[lo:hi].tolist(), s.current_value[lo:hi].tolist(),
        s.service_cost[lo:hi].tolist(), s.value_cost[lo:hi].tolist(), strict=True)
    out = []
    for k, (cid, tier, abc, rfm, clv, cls, stage, risk, cur, cost, vc) in enumerate(columns):
        score = str(rfm) if buyer[k] else ""
        out.append((cid, TIERS[tier].value, ABC[abc], score, segments[score], clv,
                    CLV_CLASSES[cls], STAGES[stage], risk, cur, cost,
                    VALUE_COST_TYPES[vc] if vc >= 0 else None,
                    s.today - first[k] if buyer[k] else None,
                    None if csat[k] != csat[k] else csat[k],  # NaN: no survey
                    list(warnings.get(lo + k, ()))))
    return out


async def store(maker: async_sessionmaker[AsyncSession], s: Scored,
                warnings: dict[int, tuple[str, ...]], policy: ValuePolicy,
                progress: bool) -> None:
    now = utcnow()
    n = len(s.facts)
    with tqdm(total=n, unit="customer", desc="store", disable=not progress) as bar:
        if maker.kw["bind"].dialect.name == "postgresql" and n > _PG_BATCH:
            await _copy_store(maker, s, warnings, policy, now, bar)
            return
        for lo in range(0, n, _BATCH):
            batch = await asyncio.to_thread(rows, s, warnings, policy, lo, min(n, lo + _BATCH))
            values = [dict(zip(COLUMNS, r, strict=True)) | {
                "value_policy_version": policy.version, "value_updated_at": now}
                for r in batch]
            async with session_scope(maker) as session:
                await session.execute(_TIER_CHANGE, [
                    {k: v[k] for k in ("customer_id", "tier", "value_updated_at")}
                    for v in values])
                await session.execute(_UPDATE, values)
            bar.update(len(batch))


# One statement, so the tier changes it notes commit with the tiers it writes.
# Money is staged as float8 (cheap to send) and cast: each value is already rounded to
# cents, and float8 -> numeric keeps its shortest decimal form.
_PG_UPDATE = """
    WITH moved AS (
        INSERT INTO customer_tier_changes (customer_id, at, from_tier, to_tier)
        SELECT c.id, $2, c.tier, t.tier FROM seg_out t JOIN customers c ON c.id = t.customer_id
        WHERE t.k >= $3 AND t.k < $4 AND c.tier <> t.tier)
    UPDATE customers c SET tier = t.tier, abc_class = t.abc_class, rfm_score = t.rfm_score,
        rfm_segment = t.rfm_segment, clv = t.clv::numeric, clv_class = t.clv_class,
        lifecycle_stage = t.lifecycle_stage, churn_risk = t.churn_risk,
        current_value = t.current_value::numeric, service_cost = t.service_cost::numeric,
        value_cost_type = t.value_cost_type, relationship_days = t.relationship_days,
        satisfaction = t.satisfaction, churn_reasons = t.churn_reasons::json,
        value_policy_version = $1, value_updated_at = $2
    FROM seg_out t WHERE t.k >= $3 AND t.k < $4 AND c.id = t.customer_id"""


async def _copy_store(maker: async_sessionmaker[AsyncSession], s: Scored,
                      warnings: dict[int, tuple[str, ...]], policy: ValuePolicy,
                      now: dt.datetime, bar: Any) -> None:
    n = len(s.facts)
    async with maker.kw["bind"].connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await conn.commit()  # the driver runs each statement below in its own transaction
        await raw.execute("""CREATE TEMP TABLE seg_out (customer_id text, tier text,
            abc_class text, rfm_score text, rfm_segment text, clv float8, clv_class text,
            lifecycle_stage text, churn_risk float8, current_value float8,
            service_cost float8, value_cost_type text, relationship_days int4,
            satisfaction float8, churn_reasons text, k int4)""")
        try:
            with tqdm(total=n, unit="customer", desc="stage", disable=bar.disable) as staged:
                for lo in range(0, n, _PG_BATCH):
                    hi = min(n, lo + _PG_BATCH)
                    batch = await asyncio.to_thread(_pg_rows, s, warnings, policy, lo, hi)
                    await raw.copy_records_to_table("seg_out", records=batch)
                    staged.update(hi - lo)
            await raw.execute("CREATE INDEX ON seg_out (k)")
            for lo in range(0, n, _PG_BATCH):
                await raw.execute(_PG_UPDATE, policy.version, now, lo, lo + _PG_BATCH)
                bar.update(min(n, lo + _PG_BATCH) - lo)
        finally:
            await raw.execute("DROP TABLE IF EXISTS seg_out")


def _pg_rows(s: Scored, warnings: dict[int, tuple[str, ...]], policy: ValuePolicy, lo: int,
             hi: int) -> Iterator[tuple[Any, ...]]:
    return iter([(*r[:-1], json.dumps(r[-1]) if r[-1] else "[]", lo + k)
                 for k, r in enumerate(rows(s, warnings, policy, lo, hi))])
