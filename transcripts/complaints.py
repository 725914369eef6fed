"""The complaint lifecycle: states, who may move them, SLA deadlines and escalation.

received (listened to and recorded) -> validated (justified, cause classified as company
or customer side) -> resolving (a solution proposed and agreed) -> resolved ->
follow_up_done (the customer was called back) -> closed; or rejected, with a reason.
Every change writes a :class:`ComplaintEvent` saying who, when and why.

A complaint is due within its customer tier's SLA. Overdue and still unresolved, it
escalates to level 1 (the supervisor, on the wallboard) and, still overdue a further
period later, to level 2. Escalation is a conditional update of the database row, run by
a sweep on every node: whichever node sees it first escalates, and none can lose it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Complaint, ComplaintEvent, Customer, Interaction, Role, utcnow
from crm.open_complaints import OPEN_COMPLAINT_STATES, is_open_complaint

log = logging.getLogger(__name__)

CATEGORIES = ("product_quality", "service_attitude", "delivery", "billing_refund", "other")
CAUSE_SIDES = ("company", "customer")
MAX_LEVEL = 2


class ComplaintState(str, Enum):
    received = "received"
    validated = "validated"
    resolving = "resolving"
    resolved = "resolved"
    follow_up_done = "follow_up_done"
    closed = "closed"
    rejected = "rejected"


S = ComplaintState
TRANSITIONS: dict[ComplaintState, frozenset[ComplaintState]] = {
    S.received: frozenset({S.validated, S.rejected}),
    S.validated: frozenset({S.resolving, S.rejected}),
    S.resolving: frozenset({S.resolved}),
    S.resolved: frozenset({S.follow_up_done}),
    S.follow_up_done: frozenset({S.closed}),
    S.closed: frozenset(),
    S.rejected: frozenset(),
}
# The SLA runs until the complaint is resolved (or rejected).
UNRESOLVED = OPEN_COMPLAINT_STATES  # one definition of open everywhere
FINAL = (S.closed, S.rejected)


class NoSuchComplaint(Exception):
    code = "not_found"

    def __init__(self, complaint_id: int) -> None:
        super().__init__(f"no complaint {complaint_id}")
        self.complaint_id = complaint_id


class UnknownCustomer(Exception):
    code = "not_found"

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"no customer {customer_id!r}")


class IllegalComplaintTransition(Exception):
    code = "illegal_transition"

    def __init__(self, complaint_id: int, state: str, to: str) -> None:
        super().__init__(f"complaint {complaint_id} cannot go from {state} to {to}")
        self.complaint_id, self.state, self.to = complaint_id, state, to


class MissingDetail(Exception):
    """A transition that needs a detail the request did not give (cause, solution, reason)."""

    code = "invalid"


class NotEscalatable(Exception):
    code = "conflict"


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role
    agent_id: int | None = None


SYSTEM = Actor("system", Role.admin)
DETECTOR = Actor("detector", Role.admin)


@dataclass(frozen=True)
class SlaPolicy:
    """Hours to resolve per customer tier; level 2 comes `level2_factor` SLAs after level 1."""

    hours: Mapping[str, float] = field(default_factory=lambda: {
        "vip": 4.0, "gold": 8.0, "standard": 24.0, "low": 48.0})
    level2_factor: float = 0.5
    default_tier: str = "standard"

    def period(self, tier: str) -> dt.timedelta:
        hours = self.hours.get(tier, self.hours.get(self.default_tier, 24.0))
        return dt.timedelta(hours=hours)

    def due(self, tier: str, created_at: dt.datetime) -> dt.datetime:
        return created_at + self.period(tier)

    def level_due(self, complaint: Complaint, level: int) -> dt.datetime | None:
        if complaint.sla_due_at is None:
            return None
        extra = self.period(complaint.tier) * self.level2_factor * (level - 1)
        return complaint.sla_due_at + extra

    def level_at(self, complaint: Complaint, now: dt.datetime) -> int:
        """The escalation level an unresolved complaint has earned by `now`."""
        level = 0
        for n in range(1, MAX_LEVEL + 1):
            due = self.level_due(complaint, n)
            if due is not None and now >= due:
                level = n
        return level


@dataclass(frozen=True)
class Escalation:
    complaint_id: int
    customer_id: str
    level: int
    category: str
    tier: str
    sla_due_at: dt.datetime | None

    @classmethod
    def of(cls, c: Complaint) -> Escalation:
        return cls(c.id, c.customer_id, c.escalation_level, c.category, c.tier, c.sla_due_at)

    def message(self) -> dict[str, Any]:
        due = self.sla_due_at.isoformat() if self.sla_due_at else None
        return {"type": "complaint.escalated", "complaint_id": self.complaint_id,
                "customer_id": self.customer_id, "level": self.level,
                "category": self.category, "tier": self.tier, "sla_due_at": due}


def _event(session: AsyncSession, c: Complaint, to: str, actor: Actor, now: dt.datetime,
           note: str, from_state: str | None = None) -> None:
    session.add(ComplaintEvent(complaint_id=c.id, from_state=from_state, to_state=to,
                               actor=actor.name, note=note, at=now))


async def get(session: AsyncSession, complaint_id: int) -> Complaint:
    complaint = await session.get(Complaint, complaint_id)
    if complaint is None:
        raise NoSuchComplaint(complaint_id)
    return complaint


async def events(session: AsyncSession, complaint_id: int) -> Sequence[ComplaintEvent]:
    rows = await session.scalars(select(ComplaintEvent).where(
        ComplaintEvent.complaint_id == complaint_id).order_by(ComplaintEvent.id))
    return rows.all()


async def create(session: AsyncSession, *, customer_id: str, actor: Actor, now: dt.datetime,
                 policy: SlaPolicy, category: str = "other", summary: str = "",
                 interaction_id: int | None = None, source: str = "agent",
                 score: float | None = None, evidence: Sequence[Any] = (),
                 assigned_agent_id: int | None = None) -> Complaint:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise UnknownCustomer(customer_id)
    if category not in CATEGORIES:
        raise MissingDetail(f"category must be one of {', '.join(CATEGORIES)}")
    complaint = Complaint(
        customer_id=customer_id, interaction_id=interaction_id, category=category,
        state=S.received.value, source=source, summary=summary, score=score,
        evidence=list(evidence), tier=customer.tier, sla_due_at=policy.due(customer.tier, now),
        assigned_agent_id=assigned_agent_id, created_by=actor.name, created_at=now,
        updated_at=now)
    session.add(complaint)
    if interaction_id is not None:  # routing passes over an agent the customer complained of
        complaint.queue = (await session.execute(
            update(Interaction).where(Interaction.id == interaction_id)
            .values(complaint_flag=True).returning(Interaction.queue))).scalar()
    await session.flush()
    _event(session, complaint, S.received.value, actor, now, summary[:500])
    return complaint


async def open_detected(session: AsyncSession, interaction: Interaction, *, category: str,
                        score: float, evidence: Sequence[Any], now: dt.datetime,
                        policy: SlaPolicy) -> Complaint | None:
    """Open a complaint the detector found, unless this call or an open one has it already."""
    if interaction.customer_id is None:
        return None  # an unknown caller: the flag on the interaction is all there is
    category = category if category in CATEGORIES else "other"
    if await session.scalar(select(Complaint.id).where(
            Complaint.interaction_id == interaction.id)) is not None:
        return None
    existing = await session.scalar(select(Complaint).where(
        Complaint.customer_id == interaction.customer_id, Complaint.category == category,
        is_open_complaint()).order_by(Complaint.id).limit(1))
    if existing is not None:
        _event(session, existing, existing.state, DETECTOR, now,
               f"detected again in call {interaction.call_id}", from_state=existing.state)
        return None
    summary = " / ".join(str(e.get("text", "")) for e in evidence[:3])[:500]
    try:
        return await create(session, customer_id=interaction.customer_id, actor=DETECTOR,
                            now=now, policy=policy, category=category, summary=summary,
                            interaction_id=interaction.id, source="detected", score=score,
                            evidence=evidence)
    except UnknownCustomer:
        log.debug("call %s: customer %s is gone", interaction.call_id, interaction.customer_id)
        return None


async def transition(session: AsyncSession, complaint_id: int, to: ComplaintState,
                     actor: Actor, now: dt.datetime, *, note: str = "",
                     cause_side: str | None = None, resolution: str | None = None,
                     reason: str | None = None) -> Complaint:
    complaint = await get(session, complaint_id)
    state = ComplaintState(complaint.state)
    if to not in TRANSITIONS[state]:
        raise IllegalComplaintTransition(complaint_id, state.value, to.value)
    _apply_details(complaint, to, cause_side, resolution, reason)
    # Compare-and-set: two supervisors moving the same complaint cannot both win.
    moved = cast(CursorResult[Any], await session.execute(
        update(Complaint).where(Complaint.id == complaint_id, Complaint.state == state.value)
        .values(state=to.value, updated_at=now,
                closed_at=now if to in FINAL else complaint.closed_at)
        .execution_options(synchronize_session=False)))
    if moved.rowcount != 1:
        await session.refresh(complaint)
        raise IllegalComplaintTransition(complaint_id, complaint.state, to.value)
    await session.refresh(complaint)
    _event(session, complaint, to.value, actor, now, note, from_state=state.value)
    return complaint


def _apply_details(complaint: Complaint, to: ComplaintState, cause_side: str | None,
                   resolution: str | None, reason: str | None) -> None:
    if to is S.validated:
        if cause_side not in CAUSE_SIDES:
            raise MissingDetail("validating a complaint needs cause_side: company or customer")
        complaint.cause_side = cause_side
    elif to is S.resolving:
        if not (resolution or "").strip():
            raise MissingDetail("resolving needs the agreed solution in resolution")
        complaint.resolution = resolution
    elif to is S.resolved and resolution:
        complaint.resolution = resolution
    elif to is S.rejected:
        if not (reason or "").strip():
            raise MissingDetail("rejecting a complaint needs a reason")
        complaint.rejection_reason = reason


async def assign(session: AsyncSession, complaint_id: int, agent_id: int, actor: Actor,
                 now: dt.datetime, note: str = "") -> Complaint:
    complaint = await get(session, complaint_id)
    if ComplaintState(complaint.state) in FINAL:
        raise IllegalComplaintTransition(complaint_id, complaint.state, "assigned")
    complaint.assigned_agent_id = agent_id
    complaint.updated_at = now
    _event(session, complaint, complaint.state, actor, now,
           note or f"assigned to agent {agent_id}", from_state=complaint.state)
    return complaint


async def escalate(session: AsyncSession, complaint_id: int, actor: Actor, now: dt.datetime,
                   note: str = "", level: int | None = None) -> Complaint | None:
    """Raise the escalation level (by one, or to `level`); None when it is there already."""
    complaint = await get(session, complaint_id)
    if complaint.state not in UNRESOLVED:
        raise NotEscalatable(f"complaint {complaint_id} is {complaint.state}: nothing to escalate")
    target = min(level if level is not None else complaint.escalation_level + 1, MAX_LEVEL)
    raised = cast(CursorResult[Any], await session.execute(
        update(Complaint).where(Complaint.id == complaint_id,
                                Complaint.escalation_level < target)
        .values(escalation_level=target, updated_at=now)
        .execution_options(synchronize_session=False)))
    if raised.rowcount != 1:
        if level is None:
            raise NotEscalatable(f"complaint {complaint_id} is at the top level already")
        return None
    await session.refresh(complaint)
    _event(session, complaint, complaint.state, actor, now,
           note or f"escalated to level {target}", from_state=complaint.state)
    return complaint


async def overdue(session: AsyncSession, now: dt.datetime) -> Sequence[Complaint]:
    rows = await session.scalars(select(Complaint).where(
        Complaint.state.in_(UNRESOLVED), Complaint.sla_due_at <= now,
        Complaint.escalation_level < MAX_LEVEL).order_by(Complaint.sla_due_at))
    return rows.all()


async def sweep(session: AsyncSession, now: dt.datetime, policy: SlaPolicy) -> list[Escalation]:
    """Escalate every overdue complaint to the level it has earned; safe on many nodes."""
    done = []
    for complaint in await overdue(session, now):
        level = policy.level_at(complaint, now)
        if level <= complaint.escalation_level:
            continue
        note = f"SLA overdue since {complaint.sla_due_at:%Y-%m-%d %H:%M} UTC: level {level}"
        if await escalate(session, complaint.id, SYSTEM, now, note, level=level) is not None:
            done.append(Escalation.of(complaint))
    return done


Notify = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class ComplaintService:
    """The lifecycle over a session factory, with the clock and the wallboard injected."""

    maker: async_sessionmaker[AsyncSession]
    policy: SlaPolicy = field(default_factory=SlaPolicy)
    clock: Callable[[], dt.datetime] = utcnow
    notify: Notify | None = None
    # The webhooks: `complaint.escalated` for each complaint the sweep escalated.
    webhooks: Callable[[str, Complaint], Awaitable[None]] | None = None

    async def sweep(self) -> list[Escalation]:
        async with self.maker() as session, session.begin():
            escalations = await sweep(session, self.clock(), self.policy)
        for escalation in escalations:
            log.info("complaint %d overdue: escalated to level %d",
                     escalation.complaint_id, escalation.level)
            await self.announce(escalation)
        if escalations and self.webhooks is not None:
            async with self.maker() as session:
                for complaint in await session.scalars(select(Complaint).where(
                        Complaint.id.in_([e.complaint_id for e in escalations]))):
                    await self.webhooks("escalated", complaint)
        return escalations

    async def announce(self, escalation: Escalation) -> None:
        await self._notify(escalation.message())

    async def _notify(self, message: dict[str, Any]) -> None:
        if self.notify is None:
            return
        try:
            await self.notify(message)
        except Exception as e:  # the row is escalated; the wallboard catches up on refresh
            log.warning("could not announce %s: %s", message["type"], e)


async def run_sla_sweep(service: ComplaintService, interval_s: float) -> None:
    """Escalate overdue complaints every `interval_s` until cancelled."""
    while not _cancelling():
        try:
            await service.sweep()
        except Exception:  # a database hiccup: the next sweep catches up
            log.exception("complaint SLA sweep failed")
        await asyncio.sleep(interval_s)
    raise asyncio.CancelledError


def _cancelling() -> bool:
    # A database call may swallow a CancelledError on Python 3.11 (CPython gh-86296).
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
