"""The customer report: churn of the range, tier movements, complaints by category and
the satisfaction trend (docs/reports.md, "Figures of customers").

Churn is the CRM's one definition (crm/value_churn.py): the customers who bought in the
period of the same length just before the range, and of those the ones who bought
nothing in it, absolute and weighted by what they had bought.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import Connection, func, select

from core.models import Customer, CustomerTierChange
from core.models import Order as OrderRow
from core.servicelevel import Formula
from crm.value_churn import rates_from
from reports import complaints
from reports.periods import Range
from reports.queries import Scope, interval_report

TREND = ("csat_responses", "csat_average", "csat_satisfied", "complaints_opened",
         "complaints_resolved_within_sla")


def customer_report(conn: Connection, rng: Range, formula: Formula) -> dict[str, Any]:
    center = interval_report(conn, rng, Scope.center, formula)
    rows = [{"period": r["period"], **{k: r[k] for k in TREND}} for r in center["rows"]]
    found = complaints.opened(conn, rng)
    return {"scope": "customers", **rng.bounds(), "rows": rows, "churn": churn(conn, rng),
            "tier_moves": tier_moves(conn, rng.since, rng.until),
            "complaints_by_category": complaints.by_category(found, dt.datetime.now(dt.UTC))}


def churn(conn: Connection, rng: Range) -> dict[str, Any]:
    """Churn over the range's local days [start, end), against the buyers of the
    period of as many days before it."""
    start = rng.since.astimezone(rng.zone).date()
    end = (rng.until - dt.timedelta.resolution).astimezone(rng.zone).date() + dt.timedelta(1)
    before = start - (end - start)
    previous = dict(conn.execute(
        select(OrderRow.customer_id, func.sum(OrderRow.amount))
        .where(OrderRow.ordered_on >= before, OrderRow.ordered_on < start)
        .group_by(OrderRow.customer_id)).all())
    current = conn.scalars(select(OrderRow.customer_id).distinct()
                           .where(OrderRow.ordered_on >= start, OrderRow.ordered_on < end))
    rates = rates_from({k: float(v) for k, v in previous.items()}, current, start, end)
    if rates is None:
        return {"period_start": start.isoformat(), "period_end": end.isoformat(),
                "customers_at_start": 0, "customers_lost": 0, "revenue_total": 0.0,
                "revenue_of_lost": 0.0, "absolute": None, "relative": None}
    out = dataclasses.asdict(rates)
    out.update(period_start=start.isoformat(), period_end=end.isoformat(),
               absolute=round(rates.absolute, 4), relative=round(rates.relative, 4))
    return out


def tier_moves(conn: Connection, since: dt.datetime, until: dt.datetime,
               ) -> list[dict[str, Any]]:
    """Customers (who existed at `since`) whose tier at `until` is not their tier at
    `since`, counted per (from, to)."""
    t = CustomerTierChange
    rows = conn.execute(
        select(t.customer_id, t.from_tier, t.to_tier)
        .join(Customer, Customer.id == t.customer_id)
        .where(t.at >= since, t.at < until, Customer.created_at < since)
        .order_by(t.customer_id, t.at, t.id)).all()
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    for customer, from_tier, to_tier in rows:
        first.setdefault(customer, from_tier)
        last[customer] = to_tier
    moves = Counter((first[c], last[c]) for c in first if first[c] != last[c])
    return [{"from_tier": a, "to_tier": b, "customers": n} for (a, b), n in sorted(moves.items())]
