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


# How long a customer stays marked as being erased: longer than any erasure and any
# offer's gap between its customer lookup and its step in Redis. The mark is dropped at
# once when the erasure fails; after one that succeeded it just lapses (the customer is
# gone, so no later lookup finds them).
ERASING_TTL_S = 600

# The erasure's step in Redis, one winner against call offers (routing/store.py
# _ENQUEUE): refuse when a live call is the customer's or from one of their numbers
# or a pending callback is theirs (the ids of those calls and callbacks), else mark the
# customer as being erased ({}). KEYS: set of live calls, the customer's erasing mark,
# pending callbacks; ARGV: call key prefix, customer id, the mark's
# TTL, live states (";"), then the customer's phone numbers.
_BEGIN = """
local phones, live = {}, {}
for i = 5, #ARGV do phones[ARGV[i]] = true end
for s in string.gmatch(ARGV[4], '[^;]+') do live[s] = true end
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local c = redis.call('HMGET', ARGV[1] .. id, 'customer_id', 'state', 'ani')
  if c[2] and live[c[2]] and (c[1] == ARGV[2] or (c[3] and phones[c[3]])) then
    table.insert(found, id)
  end
end
-- a pending callback (scheduled or waiting for an agent) would dial them and pop them
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local c = redis.call('HMGET', ARGV[1] .. id, 'customer_id', 'number')
  if c[1] == ARGV[2] or (c[2] and phones[c[2]]) then table.insert(found, id) end
end
if #found > 0 then table.sort(found) return found end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
return {}
"""


async def begin_erasure(redis: Redis, keys: Keys, customer_id: str,
                        phones: list[str]) -> list[str]:
    """Mark the customer as being erased unless they are on a live call: then the ids of
    those calls, and nothing marked. One step, so a call offered at the same moment is
    either live here (and the erasure refused) or offered as a new caller."""
    found = await redis.eval(_BEGIN, 3, keys.calls, keys.erasing(customer_id), keys.callbacks,
                             keys.call(""), customer_id, ERASING_TTL_S,
                             ";".join(sorted(s.value for s in LIVE)), *phones)
    return [str(c) for c in cast(list[str], found)]


async def end_erasure(redis: Redis, keys: Keys, customer_id: str) -> None:
    """An erasure that failed: the customer's calls find them again."""
    await redis.delete(keys.erasing(customer_id))
