"""Customer queries for the live call path and the REST API.

Each helper takes an open session and runs one or two indexed queries: a screen
pop is on the caller's critical path.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import phonenumbers
from sqlalchemy import (
    Connection,
    Integer,
    bindparam,
    cast,
    func,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Complaint, Customer, CustomerPhone, Interaction
from crm.open_complaints import is_open_complaint
from crm.value_extras import VALUABLE_TIERS

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
    return list(_candidates(ani, default_region))


@functools.lru_cache(maxsize=4096)
def _candidates(ani: str, default_region: str) -> tuple[str, ...]:
    # Parsing was a sixth of a screen pop's lookup (bench/README.md, issue 23); a number
    # that calls again is parsed once.
    candidates = [normalise_phone(ani, default_region)]
    if not ani.strip().startswith("+"):
        candidates.append(normalise_phone("+" + ani.strip(), None))
    return tuple(dict.fromkeys(c for c in candidates if c))


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
    """Customers whose name contains `q` (any case), or who have the number `q` stands for.

    Numbers match whole only: a search for part of a number would let someone who sees
    it masked (`+86138****0001`) recover the hidden digits one search at a time.
    """
    q = q.strip()
    if not q:
        return []
    match = Customer.name.icontains(q, autoescape=True)
    if numbers := phone_candidates(q):
        by_phone = select(CustomerPhone.customer_id).where(CustomerPhone.phone.in_(numbers))
        match = match | Customer.id.in_(by_phone)
    rows = await session.scalars(
        select(Customer).where(match).order_by(Customer.name, Customer.id).limit(limit)
    )
    return rows.all()


async def open_complaints(session: AsyncSession, customer_id: str) -> Sequence[Complaint]:
    """Open complaints (crm.open_complaints), oldest first."""
    rows = await session.scalars(
        select(Complaint)
        .where(Complaint.customer_id == customer_id, is_open_complaint())
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
    conn = await session.connection()
    rows = await conn.execute(
        select(Interaction.agent_id, Interaction.complaint_flag, Interaction.survey_score,
               Interaction.outcome)
        .where(
            Interaction.customer_id == customer_id,
            Interaction.outcome == "answered",
            Interaction.agent_id.is_not(None),
        )
        .order_by(Interaction.offered_at.desc(), Interaction.id.desc())
        .limit(_STICKY_LOOKBACK)
    )
    return _sticky(rows.mappings())


def _sticky(rows: Iterable[Mapping[Any, Any]]) -> int | None:
    """The first agent, newest call first, whose answered calls went well until then."""
    passed_over: set[int | None] = set()
    for row in rows:
        agent_id, score = row["agent_id"], row["survey_score"]
        if row["outcome"] != "answered" or agent_id is None or agent_id in passed_over:
            continue
        if not row["complaint_flag"] and (score is None or score >= 3):
            return int(agent_id)
        passed_over.add(agent_id)
    return None


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# The screen-pop profile is read on the caller's critical path, so it is read with Core
# column selects on the session's connection: no ORM identity map, no object loading.

_PROFILE_COLUMNS = (Customer.id, Customer.name, Customer.email, Customer.company, Customer.tags,
                    Customer.tier, Customer.abc_class, Customer.rfm_segment, Customer.rfm_score,
                    Customer.clv, Customer.clv_class, Customer.lifecycle_stage,
                    Customer.churn_risk, Customer.churn_reasons, Customer.satisfaction,
                    Customer.value_cost_type)
_COMPLAINT_COLUMNS = (Complaint.id, Complaint.category, Complaint.state, Complaint.created_at,
                      Complaint.sla_due_at, Complaint.escalation_level)
_INTERACTION_COLUMNS = (Interaction.id, Interaction.call_id, Interaction.offered_at,
                        Interaction.agent_id, Interaction.disposition,
                        Interaction.complaint_flag, Interaction.transcript_status,
                        Interaction.outcome)


async def customer_profile(session: AsyncSession, customer_id: str) -> dict[str, Any]:
    """The screen-pop customer: JSON-able, datetimes as ISO 8601 strings."""
    profile = await session.run_sync(lambda s: profile_of_customer(s.connection(), customer_id))
    if profile is None:
        raise NoSuchCustomer(customer_id)
    return profile


async def profile_by_phone(session: AsyncSession, ani: str,
                           default_region: str = DEFAULT_REGION) -> dict[str, Any] | None:
    """The screen-pop customer of a caller's number, or None for a new caller."""
    return await session.run_sync(
        lambda s: profile_of_number(s.connection(), ani, default_region))


# The profile queries are synchronous Core on a Connection, so the same code runs on the
# async engines (through `run_sync`) and, for SQLite on the call path, in one worker
# thread hop on the synchronous driver (see `core.db.SyncReader`).

# Each statement is built once, with bind parameters: SQLAlchemy then finds it in its
# compiled cache by identity and skips rebuilding the statement, its cache key and the
# result columns on every call (which cost more than the queries themselves).

# The profile is one statement: the customer with its phones, its open complaints and
# its latest calls, one part each of a UNION ALL, in the order each part is shown
# (`kind`, then `ord`). Three statements were three executions (on PostgreSQL three round
# trips) for every offered call.

_PHONE = CustomerPhone.phone.label("phone")
_CUSTOMER_PART = (*_PROFILE_COLUMNS, _PHONE)
_HISTORY_COLUMNS = (*_INTERACTION_COLUMNS, Interaction.survey_score)


def _nulls(columns: Sequence[Any], prefix: str = "") -> list[Any]:
    """Each column's place in a part that does not fill it: a NULL of the column's type
    (PostgreSQL types two untyped NULLs as text; the first part's types also decide how
    the rows are read)."""
    return [cast(null(), c.type).label(f"{prefix}{c.key}") for c in columns]


def _profile_statement(who: Any) -> Any:
    """The profile of the customer whose id `who` (an SQL expression) is."""
    history = (select(*_HISTORY_COLUMNS).where(Interaction.customer_id == who)
               .order_by(Interaction.offered_at.desc(), Interaction.id.desc())
               .limit(_STICKY_LOOKBACK).subquery())
    customer = (
        select(literal_column("0", Integer).label("kind"),
               func.row_number().over(order_by=(CustomerPhone.position, CustomerPhone.phone))
               .label("ord"), *_CUSTOMER_PART, *_nulls(_COMPLAINT_COLUMNS, "complaint_"),
               *_nulls(_HISTORY_COLUMNS, "interaction_"))
        .select_from(Customer).outerjoin(CustomerPhone, CustomerPhone.customer_id == Customer.id)
        .where(Customer.id == who))
    complaints = (
        select(literal_column("1", Integer),
               func.row_number().over(order_by=(Complaint.created_at, Complaint.id)),
               *_nulls(_CUSTOMER_PART), *_COMPLAINT_COLUMNS, *_nulls(_HISTORY_COLUMNS))
        .where(Complaint.customer_id == who, is_open_complaint()))
    calls = select(literal_column("2", Integer), func.row_number().over(
        order_by=(history.c.offered_at.desc(), history.c.id.desc())),
        *_nulls(_CUSTOMER_PART), *_nulls(_COMPLAINT_COLUMNS),
        *(history.c[c.key] for c in _HISTORY_COLUMNS))
    union = union_all(customer, complaints, calls).subquery()
    return select(union).order_by(union.c.kind, union.c.ord)


# The customer a number belongs to: the number as dialled first, then as international.
_CALLER = (select(CustomerPhone.customer_id)
           .where(CustomerPhone.phone.in_(bindparam("candidates", expanding=True)))
           .order_by(CustomerPhone.phone != bindparam("preferred"))
           .limit(1).scalar_subquery())

_BY_CUSTOMER = _profile_statement(bindparam("customer_id"))
_BY_NUMBER = _profile_statement(_CALLER)

_CUSTOMER_KEYS = tuple(c.key for c in _PROFILE_COLUMNS)
_COMPLAINT_KEYS = tuple(c.key for c in _COMPLAINT_COLUMNS)
_INTERACTION_KEYS = tuple(c.key for c in _INTERACTION_COLUMNS)


def profile_of_customer(conn: Connection, customer_id: str) -> dict[str, Any] | None:
    return _profile(conn.execute(_BY_CUSTOMER, {"customer_id": customer_id}).all())


def profile_of_number(conn: Connection, ani: str,
                      default_region: str = DEFAULT_REGION) -> dict[str, Any] | None:
    """One statement: the customer with its phones, its open complaints, its latest
    interactions."""
    candidates = phone_candidates(ani, default_region)
    if not candidates:
        return None
    return _profile(conn.execute(_BY_NUMBER, {"candidates": candidates,
                                              "preferred": candidates[0]}).all())


def _profile(rows: Sequence[Any]) -> dict[str, Any] | None:
    if not rows or rows[0].kind != 0:
        return None
    first = rows[0]._mapping
    customer = {k: first[k] for k in _CUSTOMER_KEYS}
    customer["tags"] = list(customer["tags"] or [])
    customer["churn_reasons"] = list(customer["churn_reasons"] or [])
    complaints = [_isoformat({k: row._mapping[f"complaint_{k}"] for k in _COMPLAINT_KEYS})
                  for row in rows if row.kind == 1]
    history = [{k: row._mapping[f"interaction_{k}"] for k in (*_INTERACTION_KEYS,
                                                              "survey_score")}
               for row in rows if row.kind == 2]
    return {
        **customer,
        "at_risk": at_risk_line(customer["tier"], customer["churn_reasons"], len(complaints)),
        "phones": [row.phone for row in rows if row.kind == 0 and row.phone is not None],
        "open_complaints": complaints,
        "recent_interactions": [_isoformat({k: call[k] for k in _INTERACTION_KEYS})
                                for call in history[:5]],
        "last_agent_id": _sticky(history),
    }


def at_risk_line(tier: str, reasons: Sequence[str], open_complaints: int) -> str | None:
    """The screen pop's warning for a valuable customer who may be leaving, e.g.
    "at risk: spend down 60% in 90 days; open complaint"; None when there is none.

    Reasons are those of the last segmentation run; an open complaint is read live."""
    if tier not in VALUABLE_TIERS:
        return None
    shown = [r for r in reasons if "complaint" not in r]
    if open_complaints:
        shown.append("open complaint" if open_complaints == 1
                     else f"{open_complaints} open complaints")
    return "at risk: " + "; ".join(shown) if shown else None


def _isoformat(row: Any) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}
