"""The complaint lifecycle on a real database: transitions, audit trail, SLA escalation."""

from __future__ import annotations

import datetime as dt

import pytest

from core import db
from core.models import Complaint, Customer, Interaction, Role
from transcripts import complaints
from transcripts.complaints import (
    Actor,
    ComplaintService,
    ComplaintState,
    IllegalComplaintTransition,
    MissingDetail,
    SlaPolicy,
)

T0 = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)
AGENT = Actor("amy", Role.agent, agent_id=1)
BOSS = Actor("sue", Role.supervisor, agent_id=2)
POLICY = SlaPolicy(hours={"vip": 4, "gold": 8, "standard": 24, "low": 48}, level2_factor=0.5)
S = ComplaintState


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
async def customers(sessions):
    async with db.session_scope(sessions) as session:
        for cid, tier in [("V", "vip"), ("G", "gold"), ("N", "standard"), ("L", "low")]:
            session.add(Customer(id=cid, name=cid, tier=tier))
    return sessions


async def _create(sessions, customer_id="N", category="delivery", now=T0) -> int:
    async with db.session_scope(sessions) as session:
        c = await complaints.create(session, customer_id=customer_id, actor=AGENT, now=now,
                                    policy=POLICY, category=category, summary="parcel late")
        return c.id


async def _move(sessions, cid, to, now=T0, **details):
    async with db.session_scope(sessions) as session:
        return await complaints.transition(session, cid, to, BOSS, now, **details)


async def _events(sessions, cid):
    async with sessions() as session:
        return [(e.from_state, e.to_state, e.actor, e.note)
                for e in await complaints.events(session, cid)]


async def test_complaint_goes_from_received_to_closed_with_an_event_per_step(customers):
    cid = await _create(customers)
    await _move(customers, cid, S.validated, cause_side="company", note="courier lost it")
    await _move(customers, cid, S.resolving, resolution="reship with express",
                note="customer agreed")
    await _move(customers, cid, S.resolved, note="shipped")
    await _move(customers, cid, S.follow_up_done, note="called back, happy")
    closed = await _move(customers, cid, S.closed, T0 + dt.timedelta(days=2))

    assert closed.state == "closed" and closed.closed_at == T0 + dt.timedelta(days=2)
    assert closed.cause_side == "company" and closed.resolution == "reship with express"
    assert await _events(customers, cid) == [
        (None, "received", "amy", "parcel late"),
        ("received", "validated", "sue", "courier lost it"),
        ("validated", "resolving", "sue", "customer agreed"),
        ("resolving", "resolved", "sue", "shipped"),
        ("resolved", "follow_up_done", "sue", "called back, happy"),
        ("follow_up_done", "closed", "sue", ""),
    ]


async def test_unjustified_complaint_is_rejected_with_its_reason_and_no_longer_open(customers):
    cid = await _create(customers)
    rejected = await _move(customers, cid, S.rejected, reason="order was never placed")
    assert rejected.state == "rejected" and rejected.rejection_reason == "order was never placed"
    assert rejected.closed_at is not None
    async with customers() as session:
        from crm.store import open_complaints

        assert await open_complaints(session, "N") == []


@pytest.mark.parametrize(("path", "illegal"), [
    ([], S.resolved),
    ([], S.closed),
    ([(S.validated, {"cause_side": "customer"})], S.follow_up_done),
    ([(S.validated, {"cause_side": "customer"}), (S.resolving, {"resolution": "refund"})],
     S.rejected),
    ([(S.rejected, {"reason": "duplicate"})], S.validated),
])
async def test_illegal_transition_raises_and_changes_nothing(customers, path, illegal):
    cid = await _create(customers)
    for to, details in path:
        await _move(customers, cid, to, **details)
    before = await _events(customers, cid)
    with pytest.raises(IllegalComplaintTransition) as e:
        await _move(customers, cid, illegal)
    assert e.value.code == "illegal_transition"
    assert await _events(customers, cid) == before


@pytest.mark.parametrize(("to", "details"), [
    (S.validated, {}), (S.validated, {"cause_side": "martians"}), (S.rejected, {"reason": " "}),
])
async def test_transition_without_its_required_detail_is_invalid(customers, to, details):
    cid = await _create(customers)
    with pytest.raises(MissingDetail):
        await _move(customers, cid, to, **details)


async def test_resolving_needs_the_agreed_solution(customers):
    cid = await _create(customers)
    await _move(customers, cid, S.validated, cause_side="company")
    with pytest.raises(MissingDetail):
        await _move(customers, cid, S.resolving)


@pytest.mark.parametrize(("tier", "hours"), [("V", 4), ("G", 8), ("N", 24), ("L", 48)])
async def test_sla_deadline_follows_the_customer_tier(customers, tier, hours):
    cid = await _create(customers, customer_id=tier)
    async with customers() as session:
        complaint = await session.get(Complaint, cid)
    assert complaint.sla_due_at == T0 + dt.timedelta(hours=hours)


async def test_overdue_complaint_escalates_to_level_one_then_level_two(customers):
    clock = Clock(T0)
    announced: list[dict] = []

    async def wallboard(message: dict) -> None:
        announced.append(message)

    service = ComplaintService(customers, POLICY, clock=clock, notify=wallboard)
    cid = await _create(customers, customer_id="V")  # due T0 + 4 h; level 2 at + 2 h more

    clock.advance(hours=3, minutes=59)
    assert await service.sweep() == []
    clock.advance(minutes=1)
    assert [e.level for e in await service.sweep()] == [1]
    assert await service.sweep() == []  # a second sweep (or node) does not repeat it
    clock.advance(hours=1, minutes=59)
    assert await service.sweep() == []
    clock.advance(minutes=1)
    assert [e.level for e in await service.sweep()] == [2]
    clock.advance(days=3)
    assert await service.sweep() == []

    assert [(m["type"], m["complaint_id"], m["level"]) for m in announced] == [
        ("complaint.escalated", cid, 1), ("complaint.escalated", cid, 2)]
    notes = [note for _, _, actor, note in await _events(customers, cid) if actor == "system"]
    assert len(notes) == 2 and "level 1" in notes[0] and "level 2" in notes[1]


async def test_long_outage_escalates_straight_to_the_level_earned(customers):
    clock = Clock(T0 + dt.timedelta(hours=30))
    service = ComplaintService(customers, POLICY, clock=clock)
    await _create(customers, customer_id="G")  # due + 8 h, level 2 at + 12 h
    assert [e.level for e in await service.sweep()] == [2]


async def test_resolved_complaint_does_not_escalate(customers):
    clock = Clock(T0)
    service = ComplaintService(customers, POLICY, clock=clock)
    cid = await _create(customers, customer_id="V")
    await _move(customers, cid, S.validated, cause_side="customer")
    await _move(customers, cid, S.resolving, resolution="explained the terms")
    await _move(customers, cid, S.resolved)
    clock.advance(days=1)
    assert await service.sweep() == []


async def test_supervisor_escalation_raises_one_level_at_a_time_up_to_two(customers):
    cid = await _create(customers)
    for level in (1, 2):
        async with db.session_scope(customers) as session:
            c = await complaints.escalate(session, cid, BOSS, T0, "customer threatens to leave")
            assert c.escalation_level == level
    async with db.session_scope(customers) as session:
        with pytest.raises(complaints.NotEscalatable):
            await complaints.escalate(session, cid, BOSS, T0)


async def test_assignment_is_recorded_as_an_event(customers):
    cid = await _create(customers)
    async with db.session_scope(customers) as session:
        c = await complaints.assign(session, cid, 7, BOSS, T0)
    assert c.assigned_agent_id == 7
    assert (await _events(customers, cid))[-1] == (
        "received", "received", "sue", "assigned to agent 7")


async def _interaction(sessions, call_id: str, customer_id: str | None = "N") -> Interaction:
    async with db.session_scope(sessions) as session:
        record = Interaction(call_id=call_id, customer_id=customer_id)
        session.add(record)
        await session.flush()
        return record


async def _detected(sessions, record: Interaction, category="delivery"):
    async with db.session_scope(sessions) as session:
        return await complaints.open_detected(
            session, record, category=category, score=0.9, now=T0, policy=POLICY,
            evidence=[{"speaker": "customer", "text": "배송이 너무 늦어요"}])


async def test_detected_complaint_opens_once_per_open_issue(customers):
    first = await _interaction(customers, "c1")
    second = await _interaction(customers, "c2")
    opened = await _detected(customers, first)
    assert opened is not None and opened.source == "detected"
    assert opened.interaction_id == first.id and opened.customer_id == "N"
    assert opened.summary == "배송이 너무 늦어요"
    assert await _detected(customers, first) is None  # the same call again
    assert await _detected(customers, second) is None  # the same issue, still open
    assert await _detected(customers, second, category="billing_refund") is not None
    async with customers() as session:
        from sqlalchemy import func, select

        assert await session.scalar(select(func.count()).select_from(Complaint)) == 2
    assert (await _events(customers, opened.id))[-1][3] == "detected again in call c2"


async def test_detected_complaint_from_unknown_caller_opens_nothing(customers):
    record = await _interaction(customers, "anon", customer_id=None)
    assert await _detected(customers, record) is None
