"""The right to erasure: a customer and everything that names them, gone or anonymised.

Deleted: the customer, their phone numbers and orders, their recording files, webhook
deliveries about their calls. Anonymised (kept for the center's statistics): their
interactions and call records (no number, no notes, no transcript, no IVR input, no
customer id), their complaints (texts replaced, evidence removed). One database
transaction, so a failure leaves nothing half-done; files are removed after it
commits. The audit log keeps that an erasure happened and who did it, with counts,
not the data. A customer on a live call is refused (`CustomerOnLiveCall`): the check and
a "being erased" mark are one step in Redis (privacy/records.py `begin_erasure`), which
a call offer respects, so a call offered meanwhile is a new caller, never one that
pops or records the customer being erased.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import case, delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit, outbox
from core.keys import Keys
from core.models import (
    AuditEntry,
    Call,
    Complaint,
    ComplaintEvent,
    Customer,
    CustomerPhone,
    CustomerTierChange,
    Interaction,
    Order,
    WebhookDelivery,
)
from cti.calls import FINAL
from privacy.exceptions import CustomerOnLiveCall
from privacy.records import Footprint, begin_erasure, end_erasure, footprint

log = logging.getLogger(__name__)

ERASED = "[erased]"


@dataclass
class Erasure:
    customer_id: str
    phones: int = 0
    interactions: int = 0
    calls: int = 0
    complaints: int = 0
    recordings: int = 0
    recordings_failed: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "customer_id"}


@dataclass
class Eraser:
    maker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    recordings_dir: Path | None = None

    async def erase(self, customer_id: str, viewer: audit.Viewer) -> Erasure:
        async with self.maker() as session:
            found = await footprint(session, customer_id)
            live = await begin_erasure(self.redis, self.keys, customer_id, found.phones)
            if live:
                raise CustomerOnLiveCall(customer_id, live)
            try:  # in the transaction the footprint's reads began
                result, paths = await _erase_rows(session, found)
                audit.record(session, viewer, "erase", [("customer", customer_id)],
                             result.summary())
                await session.commit()
            except BaseException:
                await end_erasure(self.redis, self.keys, customer_id)
                raise
        await self._forget_live_state(found.call_ids)
        await self._remove_files(result, paths)
        await outbox.emit_quietly(self.redis, self.keys.webhook_events, "customer.erased",
                                  {"customer_id": customer_id},
                                  order_key=f"customer:{customer_id}")
        log.info("customer %s erased by %s: %s", customer_id, viewer.actor, result.summary())
        return result

    async def _forget_live_state(self, call_ids: list[str]) -> None:
        """Finished calls' hashes, if any linger, hold the number and the screen pop."""
        if not call_ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in call_ids:
                pipe.hget(self.keys.call(call_id), "state")
            states = await pipe.execute()
        final = {state.value for state in FINAL}
        gone = [self.keys.call(c) for c, s in zip(call_ids, states, strict=True) if s in final]
        if gone:
            await self.redis.delete(*gone)

    async def _remove_files(self, result: Erasure, paths: list[str]) -> None:
        for path in paths:
            full = self.recordings_dir / path if self.recordings_dir else Path(path)
            try:
                await asyncio.to_thread(os.remove, full)
                result.recordings += 1
            except FileNotFoundError:
                result.recordings += 1  # already gone is as good as removed
            except OSError as e:
                log.error("recording %s of an erased customer not removed: %s", full, e)
                result.recordings_failed.append(path)


async def _erase_rows(session: AsyncSession, found: Footprint) -> tuple[Erasure, list[str]]:
    customer_id, call_ids = found.customer.id, found.call_ids
    paths = [i.recording_path for i in found.interactions if i.recording_path]
    result = Erasure(customer_id, phones=len(found.phones),
                     interactions=len(found.interactions), calls=len(found.calls),
                     complaints=len(found.complaints))
    await session.execute(update(Interaction).where(Interaction.call_id.in_(call_ids)).values(
        customer_id=None, ani="", ivr={}, routing_reason={}, notes=None, transcript=None,
        transcript_status="erased", transcript_error=None, recording_path=None))
    await session.execute(update(Call).where(Call.id.in_(call_ids)).values(
        customer_id=None, ani="", ivr={}))
    complaint_ids = [c.id for c in found.complaints]
    await session.execute(update(Complaint).where(Complaint.id.in_(complaint_ids)).values(
        customer_id=ERASED, summary=ERASED, evidence=[],
        resolution=_erased_if_set(Complaint.resolution),
        rejection_reason=_erased_if_set(Complaint.rejection_reason)))
    await session.execute(update(ComplaintEvent).where(
        ComplaintEvent.complaint_id.in_(complaint_ids)).values(note=""))
    keys = [*call_ids, f"customer:{customer_id}"]
    named = f'"customer_id":"{customer_id}"'
    await session.execute(delete(WebhookDelivery).where(or_(
        WebhookDelivery.order_key.in_(keys),
        WebhookDelivery.body.contains(named, autoescape=True))))
    # Earlier entries about the customer keep who looked and when, not what was typed
    # (a search's text is their name or number).
    await session.execute(update(AuditEntry).where(
        AuditEntry.object_type == "customer", AuditEntry.object_id == customer_id,
    ).values(detail={}))
    await session.execute(delete(Order).where(Order.customer_id == customer_id))
    await session.execute(delete(CustomerPhone).where(CustomerPhone.customer_id == customer_id))
    await session.execute(delete(CustomerTierChange).where(
        CustomerTierChange.customer_id == customer_id))
    session.expunge(found.customer)
    await session.execute(delete(Customer).where(Customer.id == customer_id))
    return result, paths


def _erased_if_set(column: Any) -> Any:
    return case((column.is_(None), None), else_=ERASED)
