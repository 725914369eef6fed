"""Scheduled callbacks: an agent's promise to call a customer at a time (the console's
wrap-up panel or customer page), the win-back action's callbacks, and supervisors'
view of the pending ones (list, reassign, cancel). They are placed by the same mechanism
as the callbacks callers ask for (cti/callbacks.py, routing/callbacks.py): the record
first, then the live state, and the promised agent's ring first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Call, Callback, Customer, CustomerPhone
from crm import store as crm
from cti import records
from cti.callbacks import (
    NUMBER,
    CallbackEvents,
    CallbackFinished,
    InvalidNumber,
    UnknownCallback,
    due_timer,
    new_id,
)
from cti.calls import CallError
from routing import engine
from routing.engine import CallProfile

log = logging.getLogger(__name__)

SOURCES = ("agent", "winback")


class CallbackDialling(CallError):
    code = "callback_dialling"

    def __init__(self, callback_id: str) -> None:
        super().__init__(f"callback {callback_id!r} is being dialled now; try again after")


class NoIntegration(CallError):
    code = "no_integration"

    def __init__(self) -> None:
        super().__init__("no PBX integration to place this callback: the customer never "
                         "called, and CALLCENTER_CALLBACK_INTEGRATION is not set")


@dataclass(frozen=True)
class Promise:
    """What a scheduled callback is asked with."""

    due_at: float
    customer_id: str | None = None
    number: str | None = None
    queue: str = "default"
    agent_id: int | None = None  # the agent it is promised to (None: anyone of the queue)
    note: str = ""
    source: str = "agent"
    by: int | None = None  # who asked for it


@dataclass
class CallbackDesk:
    calls: CallbackEvents
    maker: async_sessionmaker[AsyncSession]
    integration: str = ""  # CALLCENTER_CALLBACK_INTEGRATION

    async def schedule(self, promise: Promise) -> dict[str, Any]:
        now = self.calls.clock()
        due = self.calls.callback_due(promise.due_at, now) or now
        async with self.maker() as session, session.begin():
            customer = await self._customer(session, promise.customer_id)
            number = promise.number or _first_phone(customer)
            if not number or not NUMBER.match(number):
                raise InvalidNumber(number or "")
            row = await self._row(session, promise, customer, number, due, now)
            session.add(row)
            await session.flush()
            profile = await crm.customer_profile(session, row.customer_id) \
                if row.customer_id else None
            # Live before committed: a failed commit takes it back out (below).
            await self.calls.schedule_callback(row, profile)
            try:
                await session.commit()
            except Exception:
                await self.calls.callbacks.withdraw(row.id, due_timer(row.id).member)
                raise
            view = callback_view(row, {})
        await self.calls.callback_changed("callback.scheduled", {**view, "by": promise.by})
        return view

    async def pending(self, agent_id: int | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Pending callbacks, soonest due first, with where each stands now."""
        query = select(Callback).where(Callback.state == "pending")
        if agent_id is not None:
            query = query.where(Callback.agent_id == agent_id)
        async with self.maker() as session:
            rows = (await session.scalars(query.order_by(Callback.due_at).limit(limit))).all()
        return [callback_view(row, await self.calls.callbacks.get(row.id)) for row in rows]

    async def reassign(self, callback_id: str, agent_id: int | None, due_at: float | None,
                       by: int | None) -> dict[str, Any]:
        """Promise a pending callback to another agent (None: anyone of its queue), and/or
        move its time."""
        now = self.calls.clock()
        async with self.maker() as session, session.begin():
            row = await self._pending_row(session, callback_id)
            due = self.calls.callback_due(due_at, now) or now if due_at is not None \
                else max(row.due_at.timestamp(), now)
            rings = await self._rings(row.id, row.queue, row.tier, agent_id)
            # Its rings open from its offer: brought forward, it is offered sooner too.
            offered = min(row.offered_at.timestamp(), due)
            await self._withdraw(callback_id, due, rings=engine.encode_rings(rings),
                                 promised_to=agent_id or "", offered_at=offered)
            row.agent_id, row.due_at, row.rings = agent_id, records.at(due), \
                engine.encode_rings(rings)
            row.offered_at = records.at(offered)
            view = callback_view(row, await self.calls.callbacks.get(row.id))
        await self.calls.callback_changed("callback.reassigned", {**view, "by": by})
        return view

    async def cancel(self, callback_id: str, by: int | None) -> dict[str, Any]:
        async with self.maker() as session, session.begin():
            row = await self._pending_row(session, callback_id)
            await self._withdraw(callback_id, None)
            row.state, row.ended_at = "cancelled", records.at(self.calls.clock())
            view = callback_view(row, {})
        await self.calls.callback_changed("callback.cancelled", {**view, "by": by})
        return view

    async def _withdraw(self, callback_id: str, due: float | None,
                        **fields: str | int | float) -> None:
        won, state = await self.calls.callbacks.withdraw(
            callback_id, due_timer(callback_id).member, due, **fields)
        if not won:
            if state == "unknown":
                raise CallbackFinished(callback_id, "over")
            raise CallbackDialling(callback_id)

    async def _pending_row(self, session: AsyncSession, callback_id: str) -> Callback:
        row = await session.get(Callback, callback_id, with_for_update=True)
        if row is None:
            raise UnknownCallback(callback_id)
        if row.state != "pending":
            raise CallbackFinished(callback_id, row.state)
        return row

    async def _customer(self, session: AsyncSession,
                        customer_id: str | None) -> Customer | None:
        if customer_id is None:
            return None
        customer = await session.get(Customer, customer_id)
        if customer is None:
            raise crm.NoSuchCustomer(customer_id)
        return customer

    async def _row(self, session: AsyncSession, promise: Promise, customer: Customer | None,
                   number: str, due: float, now: float) -> Callback:
        tier = customer.tier if customer is not None else engine.DEFAULT_TIER
        callback_id = new_id()
        rings = await self._rings(callback_id, promise.queue, tier, promise.agent_id)
        policy = self.calls.router.policy_for(promise.queue)
        return Callback(
            id=callback_id, call_id=None, source=promise.source, number=number,
            queue=promise.queue, customer_id=customer.id if customer is not None else None,
            tier=tier, state="pending", attempts=0, agent_id=promise.agent_id,
            requested_by=promise.by, note=promise.note,
            integration=await self._integration(session, customer),
            score=engine.priority_score(due, tier, policy), rings=engine.encode_rings(rings),
            offered_at=records.at(due), requested_at=records.at(now), due_at=records.at(due))

    async def _rings(self, callback_id: str, queue: str, tier: str,
                     agent_id: int | None) -> list[engine.Ring]:
        """The promised agent first (as a sticky agent), then the queue."""
        router = self.calls.router
        return engine.rings_for(CallProfile(
            callback_id, queue, tier, router.queues.get(queue, ()), sticky_agent_id=agent_id,
            sticky_agent_working=agent_id is not None), router.policy)

    async def _integration(self, session: AsyncSession, customer: Customer | None) -> str:
        """The PBX that places it: the customer's latest call's, else the setting's."""
        if customer is not None:
            ivr = await session.scalar(select(Call.ivr).where(Call.customer_id == customer.id)
                                       .order_by(Call.offered_at.desc()).limit(1))
            if ivr and ivr.get("_integration"):
                return str(ivr["_integration"])
        if not self.integration:
            raise NoIntegration()
        return self.integration


def _first_phone(customer: Customer | None) -> str | None:
    phones: list[CustomerPhone] = sorted(customer.phones, key=lambda p: p.position) \
        if customer is not None else []
    return phones[0].phone if phones else None


def callback_view(row: Callback, live: dict[str, str]) -> dict[str, Any]:
    """A callback as the REST API and webhooks show it; `live`: its live state (where it
    stands: scheduled, queued, ringing (being dialled); `null` when not live)."""
    return {"callback_id": row.id, "call_id": row.call_id, "source": row.source,
            "number": row.number, "queue": row.queue, "customer_id": row.customer_id,
            "tier": row.tier, "state": row.state, "live_state": live.get("state"),
            "attempts": row.attempts, "last_outcome": row.last_outcome,
            "agent_id": row.agent_id, "requested_by": row.requested_by, "note": row.note,
            "requested_at": row.requested_at.timestamp(), "due_at": row.due_at.timestamp(),
            "ended_at": row.ended_at.timestamp() if row.ended_at else None}
