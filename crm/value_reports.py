"""Value reports served by the API: the churn warning list, churn rates of a period,
the last segmentation run, and win-back actions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Complaint, Customer, ValueRun, WinBackAction
from core.models import Order as OrderRow
from crm.open_complaints import is_open_complaint
from crm.store import NoSuchCustomer, at_risk_line
from crm.value_churn import ChurnRates, rates_from
from crm.value_extras import VALUABLE_TIERS


async def at_risk(session: AsyncSession, limit: int = 100) -> list[dict[str, Any]]:
    """Valuable customers (vip, gold) with a churn warning, most valuable first: the
    reasons of the last segmentation run, and open complaints read live."""
    open_counts = (select(Complaint.customer_id, func.count().label("n"))
                   .where(is_open_complaint()).group_by(Complaint.customer_id).subquery())
    rows = await session.execute(
        select(Customer.id, Customer.name, Customer.tier, Customer.clv, Customer.churn_risk,
               Customer.churn_reasons, Customer.satisfaction,
               func.coalesce(open_counts.c.n, 0))
        .outerjoin(open_counts, open_counts.c.customer_id == Customer.id)
        .where(Customer.tier.in_(VALUABLE_TIERS))
        .order_by(Customer.clv.desc().nulls_last(), Customer.id))
    out = []
    for cid, name, tier, clv, risk, reasons, csat, complaints in rows:
        line = at_risk_line(tier, list(reasons or []), int(complaints))
        if line is not None:
            out.append({"customer_id": cid, "name": name, "tier": tier, "clv": clv,
                        "churn_risk": risk, "satisfaction": csat, "open_complaints": complaints,
                        "reasons": line.removeprefix("at risk: ").split("; ")})
            if len(out) >= limit:
                break
    return out


async def churn_rates_for(session: AsyncSession, end: dt.date,
                          period_days: int) -> ChurnRates | None:
    """Absolute and relative churn of the period (end - period_days, end]: buyers of
    the period before who bought nothing in it, weighted by their revenue."""
    start = end - dt.timedelta(days=period_days)
    previous_from = start - dt.timedelta(days=period_days)
    previous = dict((await session.execute(
        select(OrderRow.customer_id, func.sum(OrderRow.amount))
        .where(OrderRow.ordered_on > previous_from, OrderRow.ordered_on <= start)
        .group_by(OrderRow.customer_id))).all())
    current = await session.scalars(
        select(OrderRow.customer_id).distinct()
        .where(OrderRow.ordered_on > start, OrderRow.ordered_on <= end))
    return rates_from({k: float(v) for k, v in previous.items()}, current, start, end)


async def last_run(session: AsyncSession) -> dict[str, Any] | None:
    run = await session.scalar(select(ValueRun).order_by(ValueRun.id.desc()).limit(1))
    if run is None:
        return None
    return {"as_of": run.as_of.isoformat(), "policy_version": run.policy_version,
            "started_at": run.started_at.isoformat(), "customers": run.customers,
            "orders": run.orders, "summary": run.summary}


async def schedule_win_back(session: AsyncSession, customer_id: str, due_at: dt.datetime,
                            note: str, requested_by: int | None) -> WinBackAction:
    """Record a win-back callback for a customer, with the reasons they were at risk."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NoSuchCustomer(customer_id)
    action = WinBackAction(customer_id=customer_id, reasons=list(customer.churn_reasons or []),
                           note=note, due_at=due_at, requested_by=requested_by)
    session.add(action)
    await session.flush()
    return action


async def note_win_back_callback(session: AsyncSession, action_id: int,
                                 callback_id: str) -> None:
    """Keep on the win-back action the id of the callback it scheduled."""
    await session.execute(update(WinBackAction).where(WinBackAction.id == action_id)
                          .values(callback_id=callback_id))


def win_back_dict(action: WinBackAction) -> dict[str, Any]:
    return {"id": action.id, "customer_id": action.customer_id, "reasons": action.reasons,
            "note": action.note, "due_at": action.due_at.isoformat(), "state": action.state,
            "requested_by": action.requested_by, "callback_id": action.callback_id}
