"""`callcenter privacy erase|export`: the same operations as the REST API, from a shell."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import Any

import orjson

from core import audit, db
from core.keys import Keys
from core.models import utcnow
from core.redisconn import open_redis
from core.settings import Settings
from privacy import export
from privacy.erasure import Eraser, Erasure


def operator() -> audit.Viewer:
    """The shell user, recorded in the audit log as `cli:<user>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return audit.Viewer(f"cli:{user}", "admin", None)


async def erase(settings: Settings, engine: Any, customer_id: str) -> Erasure:
    async with open_redis(settings.redis_url, settings.embedded_redis_path) as redis:
        eraser = Eraser(db.sessionmaker(engine), redis, Keys(settings.redis_prefix),
                        settings.recordings_dir)
        return await eraser.erase(customer_id, operator())


async def export_to(engine: Any, customer_id: str, output: Path | None) -> bytes:
    """The export document; written to `output` when given, else returned."""
    maker = db.sessionmaker(engine)
    async with maker() as session:
        document = await export.export(session, customer_id, utcnow())
    async with maker() as session, session.begin():
        audit.record(session, operator(), "export", [("customer", customer_id)])
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    if output is not None:
        await asyncio.to_thread(output.write_bytes, data)
    return data
