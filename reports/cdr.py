"""Call detail records: one row per call with its legs, transfers and outcome.

Paged by a cursor (the last row's offer time and id), so a page is stable while calls
are added and paging through millions of records costs an index range per page.
CSV cells that a spreadsheet would read as a formula are neutralised as in the audit
export (core/audit.py).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import orjson
from sqlalchemy import Connection, and_, func, or_, select

from core.audit import csv_cell
from core.models import CallTransfer, Interaction
from reports.periods import BadReport

COLUMNS = ("call_id", "offered_at", "queue", "tier", "customer_id", "ani", "outcome",
           "answered_at", "wait_s", "ended_at", "end_cause", "talk_s", "agent_id",
           "transfers", "legs", "disposition", "survey_score")
PAGE_MAX = 1000


def encode_cursor(offered_at: dt.datetime, ident: int) -> str:
    raw = f"{offered_at.astimezone(dt.UTC).isoformat()}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, ident = raw.partition("|")
        moment = dt.datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError("no zone")
        return moment, int(ident)
    except (ValueError, UnicodeDecodeError):
        raise BadReport("cursor is not one this API returned") from None


def page(conn: Connection, since: dt.datetime, until: dt.datetime, *, limit: int,
         cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` records offered in [since, until), oldest first, and the cursor of
    the next page (None at the end)."""
    i = Interaction
    stmt = select(i).where(i.offered_at >= since, i.offered_at < until)
    if cursor is not None:
        at, ident = decode_cursor(cursor)
        stmt = stmt.where(or_(i.offered_at > at, and_(i.offered_at == at, i.id > ident)))
    found = list(conn.execute(stmt.order_by(i.offered_at, i.id).limit(limit)).mappings())
    legs = _legs(conn, [r["call_id"] for r in found])
    records = [record(r, legs.get(r["call_id"], [])) for r in found]
    more = len(found) == limit
    return records, encode_cursor(found[-1]["offered_at"], found[-1]["id"]) if more else None


def _legs(conn: Connection, call_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    if not call_ids:
        return {}
    legs: dict[str, list[dict[str, Any]]] = {}
    rows = conn.execute(select(CallTransfer).where(CallTransfer.call_id.in_(call_ids))
                        .order_by(CallTransfer.call_id, CallTransfer.seq)).mappings()
    for t in rows:
        legs.setdefault(t["call_id"], []).append({
            "agent_id": t["agent_id"], "queue": t["queue"], "answered_at": _iso(t["answered_at"]),
            "wait_s": _round(t["wait_s"]), "transferred_at": _iso(t["at"])})
    return legs


def record(r: Any, transfers: list[dict[str, Any]]) -> dict[str, Any]:
    """One call: its first answer decides whether it was answered; each transfer ended
    a leg, and the record's own answer is the last leg."""
    first = transfers[0] if transfers else None
    answered_at = first["answered_at"] if first else _iso(r["answered_at"])
    outcome = "answered" if answered_at else r["outcome"]
    last = {"agent_id": r["agent_id"], "queue": r["queue"], "answered_at": _iso(r["answered_at"]),
            "wait_s": _round(r["wait_s"]) if transfers else None, "transferred_at": None}
    legs = [*transfers, last] if r["answered_at"] or transfers else []
    return {
        "call_id": r["call_id"], "offered_at": _iso(r["offered_at"]), "queue": r["queue"],
        "tier": r["tier"], "customer_id": r["customer_id"], "ani": r["ani"],
        "outcome": outcome, "answered_at": answered_at,
        "wait_s": first["wait_s"] if first else _round(r["wait_s"]),
        "ended_at": _iso(r["ended_at"]), "end_cause": r["end_cause"],
        "talk_s": _round(r["talk_s"]), "agent_id": r["agent_id"],
        "transfers": len(transfers), "legs": legs, "disposition": r["disposition"],
        "survey_score": r["survey_score"]}


def export(conn: Connection, since: dt.datetime, until: dt.datetime, fmt: str, out: TextIO,
           progress: Callable[[int], None] = lambda n: None) -> int:
    """Write every record of the range as CSV or JSON lines; return the count."""
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    count = 0
    for records in pages(conn, since, until):
        for rec in records:
            if writer is not None:
                writer.writerow(csv_row(rec))
            else:
                out.write(orjson.dumps(rec).decode() + "\n")
        count += len(records)
        progress(len(records))
    return count


def pages(conn: Connection, since: dt.datetime, until: dt.datetime,
          ) -> Iterator[list[dict[str, Any]]]:
    cursor: str | None = None
    while True:
        records, cursor = page(conn, since, until, limit=PAGE_MAX, cursor=cursor)
        if records:
            yield records
        if cursor is None:
            return


def count(conn: Connection, since: dt.datetime, until: dt.datetime) -> int:
    return conn.execute(select(func.count()).select_from(Interaction).where(
        Interaction.offered_at >= since, Interaction.offered_at < until)).scalar_one()


def csv_row(rec: dict[str, Any]) -> list[str]:
    return [csv_cell(rec[c]) for c in COLUMNS]


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
