"""Reports of calls by period, for the center, its queues or its customer tiers.

Read from the rollups only (`report_intervals`), never from Redis. Functions take a
synchronous connection: the app runs them through its reader (a worker thread on
SQLite). On PostgreSQL the rollup rows are grouped into periods by the database, in
the center's time zone; on SQLite by the 15-minute interval, then here.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from sqlalchemy import Connection, bindparam, text

from core.models import UTCDateTime
from core.servicelevel import Formula
from reports import complaints
from reports.figures import add, queue_figures
from reports.periods import BadReport, Range
from reports.rollup import FIGURES
from reports.sql import moment_of, period_sql


class Scope(Enum):
    center = "center"
    queues = "queues"
    tiers = "tiers"
    agents = "agents"
    customers = "customers"


_KEY = {Scope.center: None, Scope.queues: "queue", Scope.tiers: "tier"}


def interval_report(conn: Connection, rng: Range, scope: Scope, formula: Formula,
                    queue: str | None = None) -> dict[str, Any]:
    """Rows per period (and per queue or tier), and totals over the whole range: the
    calls from the rollups, the complaints from their records."""
    if queue is not None:
        check_queue(conn, queue)
    key = _KEY[scope]
    periods: dict[tuple[str, str], dict[str, float]] = {}
    totals: dict[str, dict[str, float]] = {}
    for row in _rows(conn, rng, key, queue):
        name = rng.period(moment_of(row.pop("p"), rng))
        group = str(row.pop("k"))
        add(periods.setdefault((name, group), {}), row)
        add(totals.setdefault(group, {}), row)
    complaints.add_counts(conn, periods, totals, rng, key, queue)
    label = key or "scope"
    rows = [{"period": p, label: g, **queue_figures(s, formula)}
            for (p, g), s in sorted(periods.items())]
    return {"scope": scope.value, **rng.bounds(), "service_level_formula": formula.value,
            "queue": queue, "rows": rows,
            "totals": [{label: g, **queue_figures(s, formula)} for g, s in sorted(totals.items())]}


def check_queue(conn: Connection, queue: str) -> None:
    # A queue with calls has rollup rows: no scan of the records (they have no queue index).
    known = conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM queues WHERE name = :q) "
        "OR EXISTS (SELECT 1 FROM report_intervals WHERE queue = :q)"), {"q": queue}).scalar()
    if not known and queue != "default":
        raise BadReport(f"unknown queue {queue[:64]!r}")


def _rows(conn: Connection, rng: Range, key: str | None, queue: str | None,
          ) -> list[dict[str, Any]]:
    period = period_sql(conn, rng)
    group = key or "'center'"
    sums = ", ".join(f"max({f}) AS {f}" if f == "wait_max" else f"sum({f}) AS {f}"
                     for f in FIGURES)
    where = " AND queue = :queue" if queue is not None else ""
    statement = text(
        f"SELECT {period} AS p, {group} AS k, {sums} FROM report_intervals "
        f"WHERE start >= :since AND start < :until{where} GROUP BY 1, 2"
    ).bindparams(bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime()))
    params = {"since": rng.since, "until": rng.until, "tz": rng.zone.key, "queue": queue}
    return [dict(row._mapping) for row in conn.execute(statement, params)]
