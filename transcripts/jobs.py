"""The transcription job queue: a Redis stream with one consumer group.

A job is a stream entry ``{call_id, path, attempt}``. Workers read new entries with
XREADGROUP and acknowledge them once their outcome is stored; entries a dead worker left
pending are taken over with XAUTOCLAIM. A job to retry later waits in a sorted set beside
the stream, scored by when it is due, and goes back on the stream atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import StreamIdT

log = logging.getLogger(__name__)

GROUP = "transcribers"

# Move due delayed jobs back into the stream, atomically, so none is lost between the two.
_RELEASE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  local job = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'call_id', job.call_id, 'path', job.path,
             'attempt', tostring(job.attempt))
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""


# XREADGROUP's answer (decoded): per stream, its entries as (id, fields).
_StreamReply = list[tuple[str, list[tuple[str, dict[str, str]]]]]


@dataclass(frozen=True)
class Job:
    entry_id: str
    call_id: str
    path: str
    attempt: int = 1

    @classmethod
    def parse(cls, entry_id: str, fields: dict[str, str]) -> Job:
        return cls(entry_id, fields["call_id"], fields["path"], int(fields.get("attempt", 1)))


class JobQueue:
    """The stream, its consumer group, and the delayed retries beside it."""

    def __init__(self, redis: Redis, stream: str, group: str = GROUP) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.delayed = f"{stream}:delayed"
        self._release = redis.register_script(_RELEASE)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def enqueue(self, call_id: str, path: str, _agent: int | None = None) -> str:
        """The call service's `on_recording`: one job per recording.ready."""
        await self.ensure_group()
        entry_id = await self.redis.xadd(self.stream, {"call_id": call_id, "path": path,
                                                        "attempt": 1})
        log.info("call %s: transcription job %s queued", call_id, entry_id)
        return str(entry_id)

    async def read(self, consumer: str, block_ms: int) -> list[Job]:
        reply = cast(_StreamReply | None,
                     await self.redis.xreadgroup(self.group, consumer, {self.stream: ">"},
                                                 count=1, block=block_ms))
        return [Job.parse(i, f) for _, entries in reply or [] for i, f in entries if f]

    async def reclaim(self, consumer: str, idle_s: float) -> list[tuple[Job, int]]:
        """Jobs a dead (or stuck) worker held too long, with how often each was delivered."""
        reply = await self.redis.xautoclaim(self.stream, self.group, consumer,
                                            min_idle_time=int(idle_s * 1000), count=1)
        jobs = []
        for entry_id, fields in reply[1]:
            if not fields:  # the entry was trimmed away: nothing to transcribe
                await self.redis.xack(self.stream, self.group, entry_id)
                continue
            pending = await self.redis.xpending_range(self.stream, self.group, min=entry_id,
                                                      max=entry_id, count=1)
            delivered = cast(int, pending[0]["times_delivered"]) if pending else 1
            jobs.append((Job.parse(entry_id, fields), delivered))
        return jobs

    async def touch(self, consumer: str, entry_ids: list[str]) -> None:
        if entry_ids:
            await self.redis.xclaim(self.stream, self.group, consumer, 0,
                                    cast("list[StreamIdT]", entry_ids), justid=True)

    async def ack(self, job: Job) -> None:
        await self.redis.xack(self.stream, self.group, job.entry_id)

    async def retry_later(self, job: Job, due: float) -> None:
        member = orjson.dumps({"call_id": job.call_id, "path": job.path,
                               "attempt": job.attempt + 1})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.delayed, {member: due})
            pipe.xack(self.stream, self.group, job.entry_id)
            await pipe.execute()

    async def release_due(self, now: float) -> int:
        return int(await self._release(keys=[self.delayed, self.stream], args=[now]))
