"""Report speed over millions of call records on PostgreSQL (docs/reports.md).

    CALLCENTER_BENCH_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/DB \\
        .venv/bin/python bench/reports_bench.py --records 5000000

Fills a schema of its own (`reports_bench`, dropped first) with `--records` call
records spread over `--days` days, 5 queues and 4 tiers (90% answered, waits up to
60 s, some transferred and surveyed), builds the rollups with the same statement as
`callcenter report rebuild`, then times, `--repeat` times each:

- a 90-day report by day and queue (GET /api/v1/reports/queues?interval=day),
- a month by 15 minutes for one queue (GET /api/v1/reports/center?interval=15m&queue=),

- the agent report for the same 90 days by day and for a week by hour
  (GET /api/v1/reports/agents: its call figures from the agent call rollup),

through the same functions the REST views call. Target: each under 1 s.

    .venv/bin/python bench/reports_bench.py --writer [--url ...]

measures instead what the rollups cost the call path: the ops of `--calls` whole calls
(offer, answer, end, wrap-up: the writes the call path makes, one write each) through
the record writer with the rollup hook and without it, and with the rollups and the
call's writes numbered as the call path now numbers them (core/sequenced.py: each
numbered update first reads the row's number), alternated `--repeat` times; CPU time of
this process (on SQLite that includes the database's work) and wall time.

    .venv/bin/python bench/reports_bench.py --reuse --agents-old OLD.py [--repeat N]

times the agent report for 90 days by day and for a week by hour with the
`agent_report` of an older reports/agents.py (`git show COMMIT:reports/agents.py >
OLD.py`) and with this one, alternated `--repeat` times in one process after one untimed
run of each, and checks that both give the same report.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core import gctune
from core.models import Base
from core.servicelevel import DEFAULT
from reports import agent_days, views
from reports.agents import agent_report
from reports.periods import Interval, Range
from reports.queries import Scope, interval_report
from reports.rollup import Rollups

SCHEMA = "reports_bench"
WRITER_SCHEMA = "reports_bench_writer"
ZONE = ZoneInfo("Asia/Shanghai")

_FILL = """
INSERT INTO interactions (call_id, queue, tier, ani, ivr, offered_at, answered_at, ended_at,
    outcome, wait_s, talk_s, agent_id, agent_ids, routing_reason, transcript_status,
    complaint_flag, survey_score, wrap_up_s, hold_s)
SELECT 'b' || g, (ARRAY['sales','support','billing','vip','default'])[1 + g % 5],
       (ARRAY['vip','gold','standard','low'])[1 + (g / 5) % 4], '+8613800000000', '{}',
       at, CASE WHEN answered THEN at + wait * interval '1 second' END,
       at + (wait + talk) * interval '1 second',
       CASE WHEN answered THEN 'answered' ELSE 'abandoned' END, wait,
       CASE WHEN answered THEN talk END, 1 + g % 200, '[]', '{}', 'none', false,
       CASE WHEN g % 7 = 0 THEN 1 + g % 5 END, CASE WHEN answered THEN g % 30 END, 0
FROM (SELECT g, CAST(:start AS timestamptz)
                    + (g * CAST(:span AS bigint) / CAST(:n AS bigint)) * interval '1 second' AS at,
             (g * 7919 % 1000) < 900 AS answered, (g * 104729 % 60)::float AS wait,
             (30 + g * 31 % 600)::float AS talk
      FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g) s
"""


def engine(url: str, schema: str = SCHEMA):  # type: ignore[no-untyped-def]
    return create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})


async def fill(url: str, records: int, days: int, start: dt.datetime) -> None:
    async with create_async_engine(url).begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    db = engine(url)
    async with db.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    chunk = 500_000
    began = time.perf_counter()
    for first in range(1, records + 1, chunk):
        async with db.begin() as conn:
            await conn.execute(text(_FILL), {"start": start, "span": days * 86400,
                                             "n": records, "first": first,
                                             "last": min(records, first + chunk - 1)})
        print(f"  {min(records, first + chunk - 1):>9,} records "
              f"({time.perf_counter() - began:.0f} s)", flush=True)
    async with db.begin() as conn:
        await conn.execute(text("""
            INSERT INTO call_transfers (event_id, call_id, seq, at, agent_id, queue,
                                        answered_at, wait_s)
            SELECT 'x' || call_id, call_id, 1, answered_at + interval '60 second',
                   agent_id, queue, answered_at, wait_s
            FROM interactions WHERE answered_at IS NOT NULL AND id % 50 = 0"""))
        # One complaint per hundred calls, a third of them resolved (complaint figures).
        await conn.execute(text("""
            INSERT INTO complaints (customer_id, interaction_id, queue, category, state,
                                    source, summary, evidence, tier, escalation_level,
                                    created_at, updated_at, sla_due_at)
            SELECT 'c' || id, id, queue, (ARRAY['delivery','billing_refund','other'])[1 + id % 3],
                   CASE WHEN id % 3 = 0 THEN 'resolved' ELSE 'received' END, 'agent', '',
                   '[]', tier, 0, offered_at, offered_at, offered_at + interval '48 hours'
            FROM interactions WHERE id % 100 = 0"""))
        await conn.execute(text("ANALYZE"))
    await db.dispose()


# Each of 200 agents works an 8-hour shift a day (three shifts): per 15 minutes of it,
# seconds available, ringing, on a call and in wrap-up, and every fourth quarter hour a
# not-ready reason; one state change a day per agent (the last one is each agent's open
# state). The rollup rows are written directly: a rebuild from millions of changes would
# only time the rebuild.
_AGENTS = """
INSERT INTO agents (id, username, display_name, password_hash, role, skills, level, active,
                    created_at, queues)
SELECT a, 'agent' || a, 'Agent ' || a, '-', 'agent', '[]', 1, true, :start, '[]'
FROM generate_series(1, 200) a
"""
_STATES = """
INSERT INTO report_agent_states (start, agent_id, state, reason, seconds)
SELECT q, a, s.state, CASE WHEN s.state = 'not_ready'
         THEN (ARRAY['break','lunch','training'])[1 + (a + k) % 3] ELSE '' END, s.seconds
FROM generate_series(1, 200) a, generate_series(0, CAST(:days AS int) - 1) d,
     generate_series(0, 31) k,
     LATERAL (SELECT CAST(:start AS timestamptz) + d * interval '1 day'
                     + (a % 3) * interval '8 hours' + k * interval '15 minutes' AS q) t,
     LATERAL (VALUES ('available', 300.0), ('ringing', 30.0), ('on_call', 420.0),
                     ('wrap_up', 90.0), ('not_ready', 60.0)) s(state, seconds)
WHERE s.state <> 'not_ready' OR k % 4 = 0
"""
_CHANGES = """
INSERT INTO agent_state_changes (agent_id, state, reason, at)
SELECT a, 'available', NULL, CAST(:start AS timestamptz) + d * interval '1 day'
                             + (a % 3) * interval '8 hours'
FROM generate_series(1, 200) a, generate_series(0, CAST(:days AS int) - 1) d
"""


async def fill_agents(url: str, days: int, start: dt.datetime, calls: bool) -> None:
    """The agents and their states, and the agents' days and hours; `calls`: their call
    figures too (an older schema gains the tables it lacks)."""
    db = engine(url)
    async with db.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        if calls:
            await conn.run_sync(agent_days.rebuild_calls, ZONE.key, start,
                                start + dt.timedelta(days=days))
        for statement in ("DELETE FROM report_agent_states", "DELETE FROM agent_state_changes",
                          "DELETE FROM agents", _AGENTS, _STATES, _CHANGES):
            await conn.execute(text(statement), {"start": start, "days": days})
        await conn.run_sync(agent_days.rebuild_states, ZONE.key, start,
                            start + dt.timedelta(days=days))
        await conn.execute(text("ANALYZE"))
    await db.dispose()


# The rollup tables the timed reports read.
_READ_TABLES = ("report_intervals", "report_agent_days", "report_agent_day_reasons",
                "report_agent_hours", "report_agent_hour_reasons")


async def settle(url: str) -> None:
    """Lay the rollups the reports read out in time order, as rows written while the days
    pass are (and `report rebuild`'s day-per-transaction), then VACUUM ANALYZE them: one
    rebuild of 120 days in one statement scatters a week's rows over a page each (12,587
    pages for 33,600 hour rows: 480 ms to read them instead of ~40 ms)."""
    db = engine(url).execution_options(isolation_level="AUTOCOMMIT")
    async with db.connect() as conn:
        for table in _READ_TABLES:
            await conn.execute(text(f"CLUSTER {table} USING pk_{table}"))
            await conn.execute(text(f"VACUUM ANALYZE {table}"))
    await db.dispose()


async def rebuild(url: str, start: dt.datetime, days: int) -> float:
    db = engine(url)
    began = time.perf_counter()
    async with db.begin() as conn:
        await conn.run_sync(Rollups(zone=ZONE.key).rebuild, start,
                            start + dt.timedelta(days=days))
        await conn.execute(text("ANALYZE report_intervals"))
        for table in ("report_agent_intervals", "report_agent_days", "report_agent_hours"):
            await conn.execute(text(f"ANALYZE {table}"))
    await db.dispose()
    return time.perf_counter() - began


def backend_cpu(pid: int) -> float | None:
    """CPU seconds of the PostgreSQL backend serving this bench's connection, when the
    server runs on this machine (its share of the work is not in this process's CPU)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed(url: str, rng: Range, scope: Scope, queue: str | None, repeat: int,
                center: str | None = ZONE.key, report: Callable[..., Any] = agent_report,
                ) -> tuple[list[tuple[float, float, float]], dict[str, Any]]:
    """Per run: wall, this process's CPU and the database backend's CPU (seconds); and
    the last run's report."""
    db = engine(url)
    times, result = [], {}
    for _ in range(repeat):
        # As a node's heap is (core/gctune.py: frozen every 10 s): unfrozen, each of the
        # report's automatic collections would walk the whole heap again.
        gctune.freeze_now()
        async with db.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            began, cpu, server = time.perf_counter(), time.process_time(), backend_cpu(pid)
            if scope is Scope.agents:
                result = await conn.run_sync(report, rng, center)
            else:
                result = await conn.run_sync(interval_report, rng, scope, DEFAULT, queue)
            after = backend_cpu(pid)
            times.append((time.perf_counter() - began, time.process_time() - cpu,
                          after - server if after is not None and server is not None else 0.0))
    await db.dispose()
    return times, result


def summary(times: list[tuple[float, float, float]]) -> str:
    def ms(k: int) -> float:
        return statistics.median(t[k] for t in times) * 1000
    return (f"median wall {ms(0):7.1f} ms (max {max(t[0] for t in times) * 1000:7.1f}), "
            f"CPU client {ms(1):6.1f} + database {ms(2):6.1f} ms")


async def run(args: argparse.Namespace) -> None:
    url = args.url
    start = dt.datetime(2026, 1, 1, tzinfo=ZONE)
    if not args.reuse:
        print(f"filling {args.records:,} call records over {args.days} days ...", flush=True)
        began = time.perf_counter()
        await fill(url, args.records, args.days, start)
        print(f"filled in {time.perf_counter() - began:.0f} s", flush=True)
        print(f"rollups rebuilt from the records in {await rebuild(url, start, args.days):.1f} s")
    if not args.reuse or args.agents:
        began = time.perf_counter()
        await fill_agents(url, args.days, start, calls=args.reuse)
        print(f"200 agents' states filled in {time.perf_counter() - began:.0f} s", flush=True)
        began = time.perf_counter()
        await settle(url)
        print(f"rollups clustered and vacuumed in {time.perf_counter() - began:.0f} s",
              flush=True)
    quarter = Range(start, start + dt.timedelta(days=90), Interval.day, ZONE)
    month = Range(start + dt.timedelta(days=31), start + dt.timedelta(days=59),
                  Interval.m15, ZONE)
    week = Range(start + dt.timedelta(days=40), start + dt.timedelta(days=47),
                 Interval.hour, ZONE)
    cases = [("90 days by day and queue", quarter, Scope.queues, None, ZONE.key),
             ("a month by 15 minutes, one queue", month, Scope.center, "support", ZONE.key),
             ("agents, 90 days by day", quarter, Scope.agents, None, ZONE.key),
             ("agents, a week by hour", week, Scope.agents, None, ZONE.key)]
    if args.agents_both:  # the day rows against the 15-minute rows, alternated
        cases = [(f"agents, 90 days by day, {k}", quarter, Scope.agents, None, c)
                 for _ in range(args.repeat) for k, c in (("day rows", ZONE.key),
                                                          ("15-minute rows", None))]
    if args.agents_old:
        for name, rng in (("90 days by day", quarter), ("a week by hour", week)):
            await old_and_new(url, name, rng, args.agents_old, args.repeat)
        return
    for name, rng, scope, queue, center in cases:
        times, result = await timed(url, rng, scope, queue,
                                    1 if args.agents_both else args.repeat, center)
        print(f"{name:<42} rows {len(result['rows']):>6}  {summary(times)}", flush=True)
        print(f"{'':<42} the answer's JSON: {serialized(result)}", flush=True)


def serialized(result: dict[str, Any]) -> str:
    """What serializing the report costs the view: with orjson (reports/views.py), and
    with json.dumps (aiohttp's json_response, what the view used before)."""
    began = time.process_time()
    size = len(views.json_body(result))
    fast = time.process_time() - began
    began = time.process_time()
    json.dumps(result)
    return (f"{size / 1e6:.1f} MB, orjson {fast * 1000:.1f} ms CPU, json.dumps "
            f"{(time.process_time() - began) * 1000:.1f} ms CPU")


async def old_and_new(url: str, name: str, rng: Range, old_file: str, repeat: int) -> None:
    """The agent report by an older reports/agents.py and by this one, alternated."""
    spec = importlib.util.spec_from_file_location("old_agents", old_file)
    assert spec and spec.loader
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    versions = (("old", old.agent_report), ("new", agent_report))
    reports = [(await timed(url, rng, Scope.agents, None, 1, ZONE.key, f))[1]
               for _, f in versions]
    print(f"agents, {name}, untimed run of each: {len(reports[0]['rows'])} rows, "
          f"{'the same report' if reports[0] == reports[1] else 'REPORTS DIFFER'}", flush=True)
    del reports  # a report held would make the timed runs' garbage collections dearer
    for _ in range(repeat):
        for label, f in versions:
            times = (await timed(url, rng, Scope.agents, None, 1, ZONE.key, f))[0]
            print(f"agents, {name}, {label:<4} {summary(times)}", flush=True)


def call_ops(n: int, base: dt.datetime, numbered: bool = False) -> list[list]:  # type: ignore[type-arg]
    """The writes of `n` whole calls; `numbered`: as the call path writes them since the
    writes of a call are numbered (core/sequenced.py: each update checks the row's
    number first), else as plain updates."""
    from core.writer import numbered as number
    from cti import records

    def step(seq: int, ops: list) -> list:  # type: ignore[type-arg]
        return number(ops, seq) if numbered else ops

    writes = []
    for i in range(n):
        call_id, offered = f"w{i}", (base + dt.timedelta(seconds=i * 3)).timestamp()
        queue = ("sales", "support")[i % 2]
        writes.append(records.offer_ops(
            event_id=f"o{i}", call_id=call_id, queue=queue, ani="+86",
            dnis="", customer_id=None, tier="standard", ivr={}, offered_at=offered,
            node_id="bench", integration="pbx"))
        writes.append(step(2, [records.event_op(f"a{i}", call_id, "call.answered"),
                       records.call_op(call_id, state="connected", queue=queue, agent_id=1),
                       records.interaction_op(call_id, answered_at=records.at(offered + 9),
                                              wait_s=9.0, agent_id=1, agent_ids=[1])]))
        writes.append(step(3, [records.event_op(f"e{i}", call_id, "call.ended"),
                       records.call_op(call_id, state="wrap_up", queue=queue, agent_id=1),
                       records.interaction_op(call_id, ended_at=records.at(offered + 99),
                                              end_cause="normal", outcome="answered",
                                              talk_s=90.0)]))
        writes.append(step(4, [records.call_op(call_id, state="ended", queue=queue, agent_id=1),
                       records.interaction_op(call_id, disposition="resolved", notes="",
                                              wrap_up_s=12.0)]))
    return writes


async def writer_cost(url: str, calls: int, repeat: int) -> None:
    from core import db as core_db
    from core.writer import RecordWriter

    print(f"record writer, {calls} calls x 4 writes each, {url.split(':')[0]}")
    if url.startswith("postgresql"):
        async with create_async_engine(url).begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {WRITER_SCHEMA}"))
    results: dict[str, list[float]] = {"without rollups": [], "with rollups": [],
                                       "with rollups, numbered": []}
    walls: dict[str, list[float]] = {name: [] for name in results}
    for round_ in range(repeat):
        for name in results:
            engine = engine_for(url)
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
                await conn.run_sync(Base.metadata.create_all)
            sync = core_db.create_sync_engine(url) if url.startswith("sqlite") else None
            hooks = [Rollups()] if name.startswith("with rollups") else []
            writer = RecordWriter(engine, sync, hooks=hooks)
            base = dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC) + dt.timedelta(days=round_)
            writes = call_ops(calls, base, numbered=name.endswith("numbered"))
            began, wall = time.process_time(), time.perf_counter()
            for ops in writes:
                await writer.write(ops)
            results[name].append((time.process_time() - began) * 1000 / calls)
            walls[name].append((time.perf_counter() - wall) * 1000 / calls)
            await engine.dispose()
            if sync is not None:
                sync.dispose()
    for name, values in results.items():
        print(f"  {name:<23} CPU per call: median {statistics.median(values):.2f} ms "
              f"({', '.join(f'{v:.2f}' for v in values)}); wall per call: median "
              f"{statistics.median(walls[name]):.2f} ms")


def engine_for(url: str):  # type: ignore[no-untyped-def]
    if url.startswith("sqlite"):
        from core import db as core_db
        return core_db.create_engine(url)
    return engine(url, WRITER_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("CALLCENTER_BENCH_POSTGRES_URL"))
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="keep the filled schema")
    parser.add_argument("--agents-both", action="store_true",
                        help="the agent report from the day rows and from the 15-minute "
                             "rows, alternated --repeat times")
    parser.add_argument("--agents", action="store_true",
                        help="with --reuse: fill the agents' states again")
    parser.add_argument("--agents-old", metavar="FILE",
                        help="an older reports/agents.py: its agent report alternated with "
                             "this one --repeat times")
    parser.add_argument("--writer", action="store_true", help="the rollups' cost per call")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    if args.writer:
        asyncio.run(writer_cost(args.url or "sqlite+aiosqlite:///reports-bench.db",
                                args.calls, args.repeat))
        return
    if not args.url or not args.url.startswith("postgresql"):
        parser.error("give a PostgreSQL URL: --url or CALLCENTER_BENCH_POSTGRES_URL")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
