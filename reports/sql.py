"""Grouping rows by report period in SQL, and reading back the period starts.

On PostgreSQL the database groups by hour, day, week or month in the range's time
zone; otherwise rows are grouped by their 15-minute interval (UTC), which groups
exactly into local periods (every zone's offset is a whole number of quarter hours).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Connection

from reports.periods import Interval, Range

# PostgreSQL: the center's zone and a 15-minute row's local day in it (the agents' days;
# one type for :zone in both places).
DAY = "CAST(:zone AS text), CAST(start AT TIME ZONE CAST(:zone AS text) AS date)"
# PostgreSQL: the UTC hour a 15-minute row is in (the agents' hours).
HOUR = "to_timestamp(floor(extract(epoch FROM start) / 3600) * 3600)"
# PostgreSQL: a batch's calls (`:ids`) as one array parameter, so that a statement's text
# is the same whatever their number. An expanding `IN :ids` is a new text per list length,
# each prepared again and kept by every pooled connection (up to 100-150 prepared
# statements each, in SQLAlchemy's asyncpg adapter): a node's memory grew for the first
# quarter hour of a soak (bench/README.md, "One SQL text per statement shape").
IDS = "ANY(CAST(:ids AS VARCHAR[]))"
TRUNC = {Interval.hour: "hour", Interval.day: "day", Interval.week: "week",
         Interval.month: "month"}


def bucket(dialect: str, column: str) -> str:
    """The 15-minute interval (UTC) a stored time falls in, as the backend stores times."""
    if dialect == "postgresql":
        return f"to_timestamp(floor(extract(epoch FROM {column}) / 900) * 900)"
    return (f"strftime('%Y-%m-%d %H:', {column}) || printf('%02d', "
            f"CAST(strftime('%M', {column}) AS INTEGER) / 15 * 15) || '\\:00.000000'")


def period_sql(conn: Connection, rng: Range, column: str = "start") -> str:
    """SQL grouping rows by period: `start` is a rollup's 15-minute interval; any other
    column is a time of its own."""
    if conn.dialect.name == "postgresql" and rng.interval in TRUNC:
        return f"date_trunc('{TRUNC[rng.interval]}', {column} AT TIME ZONE :tz)"
    return column if column == "start" else bucket(conn.dialect.name, column)


def moment_of(value: Any, rng: Range) -> dt.datetime:
    """A period start as the database gave it: a local naive time from date_trunc, an
    aware time, or SQLite's stored UTC text."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    when = cast(dt.datetime, value)
    if when.tzinfo is None:
        return when.replace(tzinfo=rng.zone)
    return when
