"""Events for other systems, put on one Redis stream by whichever package sees them.

One XADD, nothing more, so the call path is never slowed by a webhook receiver: the
`webhooks` package fans each entry out to the subscriptions that want it and delivers
in the background. Any feature may emit; the kernel does not know who listens.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis

log = logging.getLogger(__name__)

# A day of events at a busy center; entries are deleted once fanned out anyway.
MAX_LEN = 1_000_000


async def emit(redis: Redis, stream: str, name: str, data: dict[str, Any],
               order_key: str = "") -> str:
    """Queue event `name`; returns its id. `order_key` (a call id) keeps a call's
    events in order at each receiver."""
    event_id = f"evt_{uuid.uuid4().hex}"
    await redis.xadd(stream, {"id": event_id, "type": name, "at": repr(time.time()),
                              "key": order_key or event_id,
                              "data": orjson.dumps(data, default=str)},
                     maxlen=MAX_LEN, approximate=True)
    return event_id


async def emit_quietly(redis: Redis, stream: str, name: str, data: dict[str, Any],
                       order_key: str = "") -> None:
    """`emit`, logging instead of raising: what was done stays done if Redis is away."""
    try:
        await emit(redis, stream, name, data, order_key)
    except Exception as e:
        log.warning("event %s not queued for webhooks: %s", name, e)
