"""What `callcenter report ...` and `callcenter cdr export` do, given an engine.

The CLI (callcenter/cli.py) parses options and calls these; progress is reported
through a callback so the CLI draws the bar.
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
from collections.abc import Callable
from typing import Any, TextIO, cast

import orjson
from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from core import audit
from core.audit import csv_cell
from core.models import AgentStateChange, AuditEntry, Base, Interaction
from core.settings import Settings
from reports import agents, cdr, customers
from reports.agent_states import AgentStates
from reports.periods import Range
from reports.queries import Scope, interval_report
from reports.rollup import Rollups

Progress = Callable[[int], None]


async def show(engine: AsyncEngine, settings: Settings, rng: Range, scope: Scope,
               queue: str | None, fmt: str, out: TextIO) -> int:
    async with engine.connect() as conn:
        if scope is Scope.agents:
            result = await conn.run_sync(agents.agent_report, rng,
                                          settings.center_timezone)
        elif scope is Scope.customers:
            result = await conn.run_sync(customers.customer_report, rng,
                                         settings.service_level_formula)
        else:
            result = await conn.run_sync(interval_report, rng, scope,
                                         settings.service_level_formula, queue)
    await _audit(engine, "report", "report", scope.value, fmt=fmt, **rng.bounds())
    if fmt == "json":
        out.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        write_table(result["rows"], out, csv_format=fmt == "csv")
    return len(result["rows"])


def write_table(rows: list[dict[str, Any]], out: TextIO, *, csv_format: bool) -> None:
    columns = [c for c in (rows[0] if rows else {"period": None}) if c != "not_ready_by_reason"]
    if csv_format:
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([csv_cell(r.get(c)) for c in columns] for r in rows)
        return
    cells = [[str(c) for c in columns]] + [["" if r.get(c) is None else str(r.get(c))
                                             for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        out.write("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) + "\n")


async def record_span(engine: AsyncEngine) -> tuple[dt.datetime, dt.datetime] | None:
    """The first and last offer or agent state change among the records, or None
    without records."""
    async with engine.connect() as conn:
        ends = [*(await conn.execute(select(func.min(Interaction.offered_at),
                                            func.max(Interaction.offered_at)))).one(),
                *(await conn.execute(select(func.min(AgentStateChange.at),
                                            func.max(AgentStateChange.at)))).one()]
    known = [_aware(e) for e in ends if e is not None]
    if not known:
        return None
    return min(known), max(known) + dt.timedelta(seconds=1)


async def rebuild(engine: AsyncEngine, settings: Settings, since: dt.datetime,
                  until: dt.datetime, progress: Progress) -> int:
    """Recompute the rollups of [since, until) from the records, a day per transaction;
    returns the number of days."""
    rollups = Rollups(settings.service_level_threshold_s, settings.short_abandon_s,
                      settings.center_timezone)
    states = AgentStates(settings.center_timezone)
    days = 0
    start = since
    while start < until:
        end = min(until, start + dt.timedelta(days=1))
        async with engine.begin() as conn:
            await conn.run_sync(rollups.rebuild, start, end)
            await conn.run_sync(states.rebuild, start, end)
        days += 1
        progress(1)
        start = end
    await analyze_rollups(engine)
    return days


async def analyze_rollups(engine: AsyncEngine) -> None:
    """Fresh planner statistics for the rollups a rebuild rewrote (PostgreSQL). Until
    autovacuum comes round the reports are planned without any: a quarter's agent report
    over 18,200 new day rows was seen planned into a scan of over 120 s."""
    if engine.dialect.name != "postgresql":
        return
    tables = sorted(t.name for t in Base.metadata.sorted_tables if t.name.startswith("report_"))
    async with engine.begin() as conn:
        await conn.execute(text(f"ANALYZE {', '.join(tables)}"))


async def export_cdr(engine: AsyncEngine, rng: Range, fmt: str, out: TextIO,
                     progress: Progress, total: Callable[[int], None]) -> int:
    async with engine.connect() as conn:
        total(await conn.run_sync(cdr.count, rng.since, rng.until))
        count = await conn.run_sync(cdr.export, rng.since, rng.until, fmt, out, progress)
    await _audit(engine, "cdr", "cdr", f"{rng.bounds()['from']}/{rng.bounds()['to']}",
                 fmt=fmt, records=count)
    return count


async def _audit(engine: AsyncEngine, action: str, kind: str, ident: str, **detail: Any) -> None:
    viewer = audit.Viewer(f"cli:{getpass.getuser()}"[:64], "admin", None)
    async with engine.begin() as conn:
        await conn.execute(cast(Table, AuditEntry.__table__).insert(),
                           audit.rows(viewer, action, [(kind, ident)], detail))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

