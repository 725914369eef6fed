"""What is stored about one customer: the rows that name them, and their live calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.keys import Keys
from core.models import Call, Complaint, Customer, Interaction
from cti.calls import LIVE
from privacy.exceptions import UnknownCustomer


@dataclass(frozen=True)
class Footprint:
    customer: Customer
    phones: list[str]
    interactions: Sequence[Interaction]
    calls: Sequence[Call]
    complaints: Sequence[Complaint]

    @property
    def call_ids(self) -> list[str]:
        return sorted({i.call_id for i in self.interactions} | {c.id for c in self.calls})


async def footprint(session: AsyncSession, customer_id: str) -> Footprint:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise UnknownCustomer(customer_id)
    phones = [p.phone for p in customer.phones]
    interactions = (await session.scalars(select(Interaction).where(
        Interaction.customer_id == customer_id).order_by(Interaction.offered_at))).all()
    calls = (await session.scalars(select(Call).where(
        (Call.customer_id == customer_id) | Call.ani.in_(phones or [""])))).all()
    complaints = (await session.scalars(select(Complaint).where(
        Complaint.customer_id == customer_id).order_by(Complaint.id))).all()
    return Footprint(customer, phones, interactions, calls, complaints)


async def live_calls(redis: Redis, keys: Keys, customer_id: str, phones: list[str]) -> list[str]:
    """Live calls (in Redis) of the customer or from one of their numbers."""
    call_ids = sorted(cast(set[str], await redis.smembers(keys.calls)))
    if not call_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for call_id in call_ids:
            pipe.hmget(keys.call(call_id), ["customer_id", "ani", "state"])
        found = await pipe.execute()
    live = {state.value for state in LIVE}
    return [call_id for call_id, (owner, ani, state) in zip(call_ids, found, strict=True)
            if state in live and (owner == customer_id or (ani and ani in phones))]
