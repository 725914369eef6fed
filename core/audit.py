"""The audit log: who saw which customer, transcript or complaint, when, and from where.

Entries are written by the HTTP edge (`core.audit_views`) before the data is
returned, read back by admins (`GET /api/v1/audit`) and exported by
`callcenter audit export`.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TextIO

import orjson
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import AuditEntry, utcnow

COLUMNS = ("id", "at", "actor", "role", "action", "object_type", "object_id", "remote",
           "detail")
FILTERS = ("actor", "role", "action", "object_type", "object_id")
# Characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"


@dataclass(frozen=True)
class Viewer:
    """Who looked: the signed-in name and role, and the address the request came from."""

    actor: str
    role: str
    remote: str | None


@dataclass(frozen=True)
class Filters:
    actor: str | None = None
    role: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive


def parse_time(raw: str) -> dt.datetime:
    """An ISO 8601 date or time, in UTC; without a zone it is UTC. ValueError if not."""
    try:
        value = dt.datetime.fromisoformat(raw)
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    except OverflowError as e:  # year 1 at +14:00 is before year 1 in UTC
        raise ValueError(f"{raw!r} is out of range") from e


def record(session: AsyncSession, viewer: Viewer, action: str,
           objects: Iterable[tuple[str, str]], detail: Mapping[str, Any] | None = None) -> int:
    """Add one entry per (object_type, object_id); the caller commits. Returns the count."""
    entries = [AuditEntry(**values) for values in rows(viewer, action, objects, detail)]
    session.add_all(entries)
    return len(entries)


def rows(viewer: Viewer, action: str, objects: Iterable[tuple[str, str]],
         detail: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The audit_log rows for one view: one per (object_type, object_id)."""
    at = utcnow()
    return [{"at": at, "actor": viewer.actor[:64], "role": viewer.role, "action": action,
             "object_type": kind, "object_id": str(ident)[:128],
             "remote": (viewer.remote or "")[:64] or None, "detail": dict(detail or {})}
            for kind, ident in objects]


def query(filters: Filters) -> Select[AuditEntry]:
    """Entries matching `filters`, newest first."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc())
    for name in FILTERS:
        value = getattr(filters, name)
        if value is not None:
            stmt = stmt.where(getattr(AuditEntry, name) == value)
    if filters.since is not None:
        stmt = stmt.where(AuditEntry.at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEntry.at < filters.until)
    return stmt


async def page(session: AsyncSession, filters: Filters, *, limit: int,
               before_id: int | None = None) -> list[AuditEntry]:
    """Up to `limit` entries, newest first, older than entry `before_id` when given.

    Paging by id rather than offset keeps pages stable while entries are added.
    """
    stmt = query(filters)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    return list(await session.scalars(stmt.limit(limit)))


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor,
            "role": entry.role, "action": entry.action, "object_type": entry.object_type,
            "object_id": entry.object_id, "remote": entry.remote, "detail": entry.detail}


async def export(session: AsyncSession, filters: Filters, fmt: ExportFormat,
                 out: TextIO) -> int:
    """Write the matching entries, oldest first, as CSV or JSON lines; return the count."""
    stmt = query(filters).order_by(None).order_by(AuditEntry.id)
    writer = csv.writer(out) if fmt is ExportFormat.csv else None
    if writer is not None:
        writer.writerow(COLUMNS)
    count = 0
    async for entry in await session.stream_scalars(stmt.execution_options(yield_per=1000)):
        row = entry_dict(entry)
        if writer is not None:
            writer.writerow(csv_cell(row[c]) for c in COLUMNS)
        else:
            out.write(orjson.dumps(row).decode() + "\n")
        count += 1
    return count


def csv_cell(value: Any) -> str:
    """A value as a CSV cell that no spreadsheet runs as a formula (JSON for a dict or list)."""
    if value is None:
        return ""
    text = orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)
    # A name typed by a user must not run as a formula in whoever opens the export.
    return f"'{text}" if text.startswith(_FORMULA_START) else text
