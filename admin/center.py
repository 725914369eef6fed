"""The center's configuration in the system of record: skills, queues, reason codes and
the routing policy. Each function checks what it is given and changes the session; the
caller commits (admin/changes.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.exceptions import (
    AdminError,
    NoSuchQueue,
    QueueBusy,
    QueueExists,
    SkillInUse,
    UnknownQueue,
    UnknownSkill,
)
from admin.schemas import CodeList, NewQueue, PolicyChange, QueueBody
from core.codes import Codes
from core.models import Agent, CenterSetting, Queue, ReasonCode
from routing.directory import POLICY, policy_from

SKILLS = "skills"
# The queue every call without one goes to: routing always has it, stored or not.
DEFAULT = "default"


def default_queue() -> Queue:
    return Queue(name=DEFAULT, display_name="", skills=[], sl_threshold_s=20, sl_target=0.8)


async def skills(session: AsyncSession) -> list[str]:
    """The center's skills: as an admin set them, or (first run) every skill an agent or a
    queue has."""
    row = await session.get(CenterSetting, SKILLS)
    if row is not None:
        return sorted(row.value.get("skills", []))
    found: set[str] = set()
    for model in (Agent, Queue):
        for listed in await session.scalars(select(model.skills)):
            found.update(listed or ())
    return sorted(found)


async def check_skills(session: AsyncSession, given: Iterable[str]) -> None:
    known = set(await skills(session))
    unknown = set(given) - known
    if unknown:
        raise UnknownSkill(unknown, known)


async def check_queues(session: AsyncSession, given: Iterable[str]) -> None:
    names = set(given) - {DEFAULT}
    found = set(await session.scalars(select(Queue.name).where(Queue.name.in_(names))))
    if names - found:
        raise UnknownQueue(names - found)


async def set_skills(session: AsyncSession, given: list[str]) -> tuple[list[str], list[str]]:
    """Replace the center's skills; a skill an agent or a queue still has stays."""
    before = await skills(session)
    agents = (await session.scalars(select(Agent))).all()
    queues = (await session.scalars(select(Queue))).all()
    for skill in sorted(set(before) - set(given)):
        users = [f"agent {a.username}" for a in agents if skill in (a.skills or ())]
        users += [f"queue {q.name}" for q in queues if skill in (q.skills or ())]
        if users:
            raise SkillInUse(skill, users)
    row = await session.get(CenterSetting, SKILLS) or CenterSetting(name=SKILLS)
    row.value = {"skills": sorted(set(given))}
    session.add(row)
    return before, sorted(set(given))


def queue_dict(queue: Queue, waiting: int | None = None) -> dict[str, Any]:
    out = {"name": queue.name, "display_name": queue.display_name or "",
           "skills": list(queue.skills or ()), "sl_threshold_s": queue.sl_threshold_s,
           "sl_target": queue.sl_target, "wrap_up_s": queue.wrap_up_s,
           "tier_boost_s": queue.tier_boost_s}
    if waiting is not None:
        out["waiting"] = waiting
    return out


async def create_queue(session: AsyncSession, body: NewQueue) -> Queue:
    if await session.get(Queue, body.name) is not None:
        raise QueueExists(body.name)
    await check_skills(session, body.skills or ())
    queue = Queue(name=body.name, display_name=body.display_name or "",
                  skills=sorted(set(body.skills or ())), sl_threshold_s=body.sl_threshold_s or 20,
                  sl_target=0.8 if body.sl_target is None else body.sl_target,
                  wrap_up_s=body.wrap_up_s, tier_boost_s=body.tier_boost_s)
    session.add(queue)
    return queue


async def get_queue(session: AsyncSession, name: str) -> Queue:
    queue = await session.get(Queue, name)
    if queue is None:
        raise NoSuchQueue(name)
    return queue


async def change_queue(session: AsyncSession, name: str, body: QueueBody,
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    if name == DEFAULT and await session.get(Queue, name) is None:
        session.add(default_queue())
        await session.flush()
    queue = await get_queue(session, name)
    before = queue_dict(queue)
    given = body.model_fields_set
    if "skills" in given:
        await check_skills(session, body.skills or ())
        queue.skills = sorted(set(body.skills or ()))
    for name_ in ("display_name", "sl_threshold_s", "sl_target"):
        if name_ in given and getattr(body, name_) is not None:
            setattr(queue, name_, getattr(body, name_))
    # null (or no boosts): back to the center's default
    if "wrap_up_s" in given:
        queue.wrap_up_s = body.wrap_up_s
    if "tier_boost_s" in given:
        queue.tier_boost_s = {str(k): v for k, v in body.tier_boost_s.items()} \
            if body.tier_boost_s else None
    return before, queue_dict(queue)


async def remove_queue(session: AsyncSession, name: str, waiting: int) -> dict[str, Any]:
    queue = await get_queue(session, name)
    if waiting:
        raise QueueBusy(name, f"{waiting} call(s) wait in it")
    members = [a.username for a in await session.scalars(select(Agent))
               if name in (a.queues or ())]
    if members:
        raise QueueBusy(name, f"agents {', '.join(sorted(members))} are its members")
    before = queue_dict(queue)
    await session.delete(queue)
    return before


async def set_codes(session: AsyncSession, kind: str, body: CodeList, current: Codes,
                    ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    codes = [c.code for c in body.codes]
    if len(set(codes)) != len(codes):
        raise AdminError("each code may be listed once")
    before = current.listed(kind)
    await session.execute(delete(ReasonCode).where(ReasonCode.kind == kind))
    session.add_all(ReasonCode(kind=kind, code=c.code, label=c.label, position=i)
                    for i, c in enumerate(body.codes))
    return before, [{"code": c.code, "label": c.label} for c in body.codes]


async def policy(session: AsyncSession) -> dict[str, Any]:
    row = await session.get(CenterSetting, POLICY)
    current = policy_from(row.value if row else {})
    return {"tier_boost_s": dict(current.tier_boost_s),
            "sticky_wait_s": dict(current.sticky_wait_s),
            "complaint_wait_s": current.complaint_wait_s,
            "complaint_boost_s": current.complaint_boost_s,
            "intent_wait_s": current.intent_wait_s}


async def change_policy(session: AsyncSession, body: PolicyChange,
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    before = await policy(session)
    row = await session.get(CenterSetting, POLICY) or CenterSetting(name=POLICY, value={})
    stored = dict(row.value or {})
    for name, value in body.model_dump(exclude_none=True).items():
        stored[name] = {**stored.get(name, {}), **value} if isinstance(value, dict) else value
    row.value = stored
    session.add(row)
    await session.flush()
    return before, await policy(session)
