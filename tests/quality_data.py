"""Call records and forms for the quality tests, written straight to the database."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core import db
from core.models import Complaint, Interaction

FORM = {"name": "Inbound calls", "description": "Hand-computed weights 50/30/20",
        "sections": [
            {"title": "Opening", "questions": [
                {"key": "greet", "text": "Greeted the caller by name", "weight": 50}]},
            {"title": "Handling", "questions": [
                {"key": "verify", "text": "Verified the caller", "weight": 30,
                 "critical": True},
                {"key": "offer", "text": "Offered the follow-up", "weight": 20}]}]}


async def add_call(center: Any, call_id: str, agent_id: int | None, *,
                   recording: str | None = "calls/rec.wav", queue: str = "default",
                   at: dt.datetime | None = None, complaint_flag: bool = False,
                   transcript: list[dict[str, Any]] | None = None) -> int:
    async with db.session_scope(center.sessions) as session:
        record = Interaction(call_id=call_id, agent_id=agent_id, queue=queue,
                             offered_at=at or dt.datetime.now(dt.UTC), outcome="answered",
                             recording_path=recording, complaint_flag=complaint_flag,
                             transcript=transcript, talk_s=60.0,
                             transcript_status="done" if transcript else "none")
        session.add(record)
        await session.flush()
        return record.id


async def add_complaint(center: Any, interaction_id: int) -> None:
    async with db.session_scope(center.sessions) as session:
        session.add(Complaint(customer_id="C1", interaction_id=interaction_id,
                              category="delivery", state="received"))
