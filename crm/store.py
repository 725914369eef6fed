"""Customer queries for the live call path and the REST API.

Each helper takes an open session and runs one or two indexed queries: a screen
pop is on the caller's critical path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import phonenumbers
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.models import Complaint, Customer, CustomerPhone, Interaction

DEFAULT_REGION = "CN"
# Enough history to find a good agent behind a run of bad calls, still one small query.
_STICKY_LOOKBACK = 20


class NoSuchCustomer(Exception):
    code = "no_such_customer"

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"no customer with id {customer_id!r}")
        self.customer_id = customer_id


def normalise_phone(raw: str, default_region: str | None = DEFAULT_REGION) -> str | None:
    """`raw` as E.164 when it is a valid number, read in `default_region` unless it
    carries its own country code; None otherwise."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_candidates(ani: str, default_region: str = DEFAULT_REGION) -> list[str]:
    """The E.164 numbers an ANI may stand for: as dialled in the default region, or
    as an international number whose trunk dropped the leading '+'."""
    candidates = [normalise_phone(ani, default_region)]
    if not ani.strip().startswith("+"):
        candidates.append(normalise_phone("+" + ani.strip(), None))
    return list(dict.fromkeys(c for c in candidates if c))


async def find_customer_by_phone(
    session: AsyncSession, ani: str, default_region: str = DEFAULT_REGION
) -> Customer | None:
    candidates = phone_candidates(ani, default_region)
    if not candidates:
        return None
    rows = await session.scalars(
        select(Customer)
        .join(CustomerPhone)
        .where(CustomerPhone.phone.in_(candidates))
        .order_by(CustomerPhone.phone != candidates[0])
        .limit(1)
    )
    return rows.first()


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


async def search_customers(session: AsyncSession, q: str, limit: int = 20) -> Sequence[Customer]:
    """Customers whose name contains `q` (any case) or whose phone contains its digits."""
    q = q.strip()
    if not q:
        return []
    match = Customer.name.icontains(q, autoescape=True)
    digits = "".join(ch for ch in q if ch.isdigit())
    if digits:
        by_phone = select(CustomerPhone.customer_id).where(CustomerPhone.phone.contains(digits))
        match = match | Customer.id.in_(by_phone)
    rows = await session.scalars(
        select(Customer).where(match).order_by(Customer.name, Customer.id).limit(limit)
    )
    return rows.all()


async def open_complaints(session: AsyncSession, customer_id: str) -> Sequence[Complaint]:
    """Complaints not yet closed, oldest first (closed_at is set by every closing state)."""
    rows = await session.scalars(
        select(Complaint)
        .where(Complaint.customer_id == customer_id, Complaint.closed_at.is_(None))
        .order_by(Complaint.created_at, Complaint.id)
    )
    return rows.all()


async def recent_interactions(
    session: AsyncSession, customer_id: str, limit: int = 5
) -> Sequence[Interaction]:
    rows = await session.scalars(
        select(Interaction)
        .where(Interaction.customer_id == customer_id)
        .order_by(Interaction.offered_at.desc(), Interaction.id.desc())
        .limit(limit)
    )
    return rows.all()


async def last_good_agent(session: AsyncSession, customer_id: str) -> int | None:
    """The sticky agent: who answered this customer's latest call that went well.

    An agent whose later call with this customer went badly is passed over, so a
    customer who complained about an agent is not routed back to them.
    """
    rows = await session.execute(
        select(Interaction.agent_id, Interaction.complaint_flag, Interaction.survey_score)
        .where(
            Interaction.customer_id == customer_id,
            Interaction.outcome == "answered",
            Interaction.agent_id.is_not(None),
        )
        .order_by(Interaction.offered_at.desc(), Interaction.id.desc())
        .limit(_STICKY_LOOKBACK)
    )
    passed_over: set[int | None] = set()
    for agent_id, flagged, score in rows:
        if agent_id in passed_over:
            continue
        if not flagged and (score is None or score >= 3):
            return agent_id
        passed_over.add(agent_id)
    return None


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _complaint_dict(c: Complaint) -> dict[str, Any]:
    return {
        "id": c.id,
        "category": c.category,
        "state": c.state,
        "created_at": _iso(c.created_at),
        "sla_due_at": _iso(c.sla_due_at),
        "escalation_level": c.escalation_level,
    }


def _interaction_dict(i: Interaction) -> dict[str, Any]:
    return {
        "id": i.id,
        "call_id": i.call_id,
        "offered_at": _iso(i.offered_at),
        "agent_id": i.agent_id,
        "disposition": i.disposition,
        "complaint_flag": i.complaint_flag,
        "transcript_status": i.transcript_status,
        "outcome": i.outcome,
    }


def _customer_dict(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "phones": [p.phone for p in c.phones],
        "email": c.email,
        "company": c.company,
        "tags": list(c.tags),
        "tier": c.tier,
        "abc_class": c.abc_class,
        "rfm_segment": c.rfm_segment,
        "rfm_score": c.rfm_score,
        "clv": c.clv,
        "clv_class": c.clv_class,
        "lifecycle_stage": c.lifecycle_stage,
        "churn_risk": c.churn_risk,
    }


async def customer_profile(session: AsyncSession, customer_id: str) -> dict[str, Any]:
    """The screen-pop customer: JSON-able, datetimes as ISO 8601 strings."""
    customer = await get_customer(session, customer_id)
    if customer is None:
        raise NoSuchCustomer(customer_id)
    complaints = await open_complaints(session, customer_id)
    interactions = await recent_interactions(session, customer_id)
    return {
        **_customer_dict(customer),
        "open_complaints": [_complaint_dict(c) for c in complaints],
        "recent_interactions": [_interaction_dict(i) for i in interactions],
        "last_agent_id": await last_good_agent(session, customer_id),
    }
