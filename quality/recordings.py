"""Recordings for evaluation: which call a person may hear, where its file is, and the
short-lived tickets a browser's audio element plays it with.

An `<audio>` element cannot send the bearer token, and it asks for the file many times
(a range per seek), so a ticket is reusable until it lapses
(`CALLCENTER_RECORDING_TICKET_TTL_S`) and names one call record. It stands for the
signed-in token that asked for it: each request checks that token again (a signed-out
user's tickets stop working at once) and the person's right to hear that call.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from core.keys import Keys
from core.models import Interaction, QualityEvaluation
from quality.evaluations import Actor, listing
from quality.exceptions import Forbidden, NoRecording, NotFound

LISTED = 200


async def visible_call(session: AsyncSession, actor: Actor, interaction_id: int,
                       ) -> tuple[Interaction, list[QualityEvaluation]]:
    """The call record and the evaluations of it `actor` may see: managers any call, an
    agent only a call evaluated for it (NotFound otherwise, as if it were not there)."""
    record = await session.get(Interaction, interaction_id)
    seen = await listing(session, actor, agent_id=None, status=None,
                         interaction_id=interaction_id, limit=LISTED)
    if record is None or not (actor.manager or seen):
        raise NotFound(f"no call record {interaction_id}")
    return record, seen


def locate(path: str | None, roots: tuple[Path, ...]) -> Path:
    """The recording's real path, which must be a file inside one of `roots` once `..`
    and links are resolved (relative paths are read from the first). The same error for
    a path outside as for a missing file: nothing is told about the disk."""
    if not path:
        raise NoRecording("the call has no recording")
    try:
        real = (roots[0] / path).resolve()
        if real.is_file() and any(real.is_relative_to(r.resolve()) for r in roots):
            return real
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
        pass
    raise NotFound("the call's recording cannot be read")


@dataclass(frozen=True)
class Ticket:
    token: str  # the bearer token that asked for it
    interaction_id: int


class Tickets:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self.redis, self.keys, self.ttl_s = redis, keys, ttl_s

    async def issue(self, token: str, interaction_id: int) -> str:
        ticket = secrets.token_urlsafe(24)
        value = orjson.dumps({"token": token, "interaction_id": interaction_id})
        await self.redis.set(self.keys.recording_ticket(ticket), value, ex=self.ttl_s)
        return ticket

    async def redeem(self, ticket: str, interaction_id: int) -> Ticket:
        """The ticket's token; `Unauthorized` if unknown or lapsed, `Forbidden` if it
        is for another call's recording."""
        raw = await self.redis.get(self.keys.recording_ticket(ticket[:64])) \
            if ticket.isascii() else None
        if raw is None:
            raise Unauthorized("the ticket is unknown or expired: ask for a new one")
        stored = orjson.loads(raw)
        if stored["interaction_id"] != interaction_id:
            raise Forbidden("this ticket is for another recording")
        return Ticket(stored["token"], interaction_id)


class Unauthorized(Exception):
    code = "unauthorized"
