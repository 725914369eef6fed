"""The right of access: everything stored about a customer, as one JSON document."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import AuditEntry, Base, ComplaintEvent, Order
from privacy.records import footprint

FORMAT = "callcenter.customer-export/1"


def row(obj: Base) -> dict[str, Any]:
    """Every column of a row, datetimes as ISO 8601."""
    values = {}
    for attr in inspect(obj).mapper.column_attrs:
        value = getattr(obj, attr.key)
        values[attr.key] = value.isoformat() if isinstance(value, dt.date) else value
    return values


async def export(session: AsyncSession, customer_id: str, now: dt.datetime) -> dict[str, Any]:
    found = await footprint(session, customer_id)
    orders = (await session.scalars(select(Order).where(
        Order.customer_id == customer_id).order_by(Order.ordered_on, Order.id))).all()
    complaint_ids = [c.id for c in found.complaints]
    events = (await session.scalars(select(ComplaintEvent).where(
        ComplaintEvent.complaint_id.in_(complaint_ids)).order_by(ComplaintEvent.id))).all()
    accesses = (await session.scalars(select(AuditEntry).where(
        AuditEntry.object_type == "customer", AuditEntry.object_id == customer_id)
        .order_by(AuditEntry.id))).all()
    return {
        "format": FORMAT, "exported_at": now.isoformat(),
        "customer": {**row(found.customer), "phones": found.phones},
        "orders": [row(o) for o in orders],
        "interactions": [row(i) for i in found.interactions],
        "calls": [row(c) for c in found.calls],
        "complaints": [{**row(c), "events": [row(e) for e in events
                                              if e.complaint_id == c.id]}
                       for c in found.complaints],
        # Who looked at this customer's data, and when: part of what is stored about them.
        "accesses": [{"at": a.at.isoformat(), "actor": a.actor, "role": a.role,
                      "action": a.action} for a in accesses],
    }
