"""Who calls the demo center, and how each call goes: drawn from the demo customers (every
tier, some with open complaints, some returning) plus new numbers, reproducible from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Complaint, Customer, CustomerPhone

# The IVR's menu: intent → the queue the IVR sends it to.
INTENTS = {"sales": "sales", "billing": "billing", "support": "default",
           "complaint": "default"}
OPEN_COMPLAINT_STATES = ("received", "validated", "resolving")
# The first calls of a demo are short, so its first recording (and transcript) comes
# within the first minute; later ones talk for a realistic time.
FIRST_SHORT_CALLS = 3
SHORT_TALK_S = (6.0, 10.0)


@dataclass(frozen=True)
class Caller:
    ani: str
    tier: str = "new"
    complaint: bool = False


@dataclass(frozen=True)
class CallPlan:
    """One call as the caller will play it."""

    call_id: str
    caller: Caller
    queue: str
    ivr: dict[str, str]
    patience_s: float  # hangs up if no agent answers by then
    talk_s: float
    survey: int | None
    extra: dict[str, Any] = field(default_factory=dict)


async def load_callers(maker: async_sessionmaker[AsyncSession], limit: int = 400) -> list[Caller]:
    """Demo customers with a phone, the most valuable first so every tier is drawn."""
    async with maker() as session:
        rows = (await session.execute(
            select(CustomerPhone.phone, Customer.tier, Customer.id)
            .join(Customer, Customer.id == CustomerPhone.customer_id)
            .where(CustomerPhone.position == 0).order_by(Customer.id).limit(limit))).all()
        complaining = set(await session.scalars(
            select(Complaint.customer_id).where(Complaint.state.in_(OPEN_COMPLAINT_STATES))))
    return [Caller(phone, tier or "standard", cid in complaining) for phone, tier, cid in rows]


def plan_call(rng: random.Random, n: int, callers: list[Caller], scale: float = 1.0) -> CallPlan:
    """The n-th call; `scale` shrinks its times (tests run the demo faster)."""
    caller = rng.choice(callers) if callers and rng.random() < 0.85 else \
        Caller(f"+86139{rng.randrange(10**8):08d}")
    intent = "complaint" if caller.complaint and rng.random() < 0.6 else \
        rng.choice(["sales", "billing", "support", "support"])
    language = rng.choice(["zh", "zh", "zh", "en"])
    talk_s = rng.uniform(15, 75)
    if n < FIRST_SHORT_CALLS:  # the same draw, mapped onto the short range
        low, high = SHORT_TALK_S
        talk_s = low + (talk_s - 15) / 60 * (high - low)
    return CallPlan(
        call_id=f"demo-{n}-{rng.randrange(16**6):06x}", caller=caller,
        queue=INTENTS[intent], ivr={"language": language, "intent": intent},
        patience_s=scale * (rng.uniform(15, 120) if rng.random() < 0.15 else 600.0),
        talk_s=scale * talk_s, survey=rng.choice([None, 3, 4, 5, 5, 2]))
