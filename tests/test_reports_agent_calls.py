"""The agent call rollup: each agent's call figures per 15 minutes, kept with the call
records whatever replays and late writes, equal to the figures computed from the records
and to a rebuild.

Calls (UTC, 2026-03-10), agents 7 and 8:
  a1 09:00 answered by 7, talk 100 (30 on hold), wrap-up 10, survey 5 written late
  a2 09:10 answered by 7, transferred, answered by 8, talk 60, wrap-up 20
  a3 09:20 abandoned
  a4 10:05 answered by 8, talk 40, no wrap-up (a second period)
Every batch that ends or transfers a call is written twice, as a replay writes it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import bindparam, delete, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.models import ReportAgentInterval, ReportCallAgent, UTCDateTime
from core.writer import Op, RecordWriter
from cti import records
from reports.agents import agent_report
from reports.periods import Interval, Range
from reports.rollup import Rollups
from tests.conftest import make_settings

ZONE = ZoneInfo("UTC")
DAY = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
CALL_COLUMNS = ("handled", "transfers_made", "avg_talk_s", "avg_hold_s", "avg_wrap_up_s",
                "aht_s", "csat_responses", "csat_average")


@pytest.fixture
def settings(any_database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(any_database_url, redis_url, redis_prefix, tmp_path)


def at(hhmm: str, seconds: float = 0) -> float:
    clock = dt.time.fromisoformat(hhmm)
    return dt.datetime.combine(DAY.date(), clock, dt.UTC).timestamp() + seconds


def offer(call_id: str, hhmm: str) -> list[Op]:
    return records.offer_ops(
        event_id=f"o-{call_id}", call_id=call_id, queue="default", ani="+86", dnis="",
        customer_id=None, tier="standard", ivr={}, offered_at=at(hhmm), node_id="n",
        integration="pbx")


def answer(call_id: str, hhmm: str, agent: int, wait: float) -> list[Op]:
    return [records.interaction_op(call_id, answered_at=records.at(at(hhmm, wait)),
                                   wait_s=wait, agent_id=agent, agent_ids=[agent])]


def end(call_id: str, hhmm: str, talk: float, hold: float = 0.0) -> list[Op]:
    return [records.event_op(f"e-{call_id}", call_id, "call.ended"), records.interaction_op(
        call_id, ended_at=records.at(at(hhmm, talk + 10)), outcome="answered",
        end_cause="normal", talk_s=talk, hold_s=hold, hold_count=1 if hold else 0)]


async def write_day(writer: RecordWriter) -> None:
    for call_id, hhmm in (("a1", "09:00"), ("a2", "09:10"), ("a3", "09:20"), ("a4", "10:05")):
        await writer.write(offer(call_id, hhmm))
    await writer.write(answer("a1", "09:00", 7, 5.0))
    for _ in range(2):
        await writer.write(end("a1", "09:00", 100.0, 30.0))
    await writer.write([records.interaction_op("a1", wrap_up_s=10.0)])
    await writer.write(answer("a2", "09:10", 7, 4.0))
    for _ in range(2):
        await writer.write([records.event_op("t-a2", "a2", "call.transferred")])
    await writer.write(answer("a2", "09:10", 8, 50.0))
    for _ in range(2):
        await writer.write(end("a2", "09:10", 60.0))
    await writer.write([records.interaction_op("a2", wrap_up_s=20.0)])
    for _ in range(2):
        await writer.write([records.event_op("e-a3", "a3", "call.ended"),
                            records.interaction_op("a3", ended_at=records.at(at("09:20", 30)),
                                                   wait_s=30.0, outcome="abandoned",
                                                   end_cause="caller_hangup")])
    await writer.write(answer("a4", "10:05", 8, 3.0))
    for _ in range(2):
        await writer.write(end("a4", "10:05", 40.0))
    await writer.write([records.interaction_op("a1", survey_score=5)])  # late


# The agent figures straight from the records, as the report computed them before the
# rollup: the last leg's agent, plus a handled call and a transfer per transfer leg.
_FROM_RECORDS = """
SELECT agent_id, sum(handled), sum(transfers), sum(talk_n), sum(talk_sum), sum(wrap_n),
       sum(wrap_sum), sum(csat_n), sum(csat_sum), sum(hold_sum) FROM (
  SELECT agent_id, 1 AS handled, 0 AS transfers,
         CASE WHEN talk_s IS NULL THEN 0 ELSE 1 END AS talk_n, COALESCE(talk_s, 0) AS talk_sum,
         CASE WHEN wrap_up_s IS NULL THEN 0 ELSE 1 END AS wrap_n,
         COALESCE(wrap_up_s, 0) AS wrap_sum,
         CASE WHEN survey_score IS NULL THEN 0 ELSE 1 END AS csat_n,
         COALESCE(survey_score, 0) AS csat_sum,
         CASE WHEN talk_s IS NULL THEN 0 ELSE COALESCE(hold_s, 0) END AS hold_sum
  FROM interactions WHERE offered_at >= :since AND offered_at < :until
    AND agent_id IS NOT NULL AND answered_at IS NOT NULL
  UNION ALL
  SELECT t.agent_id, 1, 1, 0, 0, 0, 0, 0, 0, 0 FROM call_transfers t
  JOIN interactions i ON i.call_id = t.call_id
  WHERE i.offered_at >= :since AND i.offered_at < :until AND t.agent_id IS NOT NULL
) legs GROUP BY agent_id
"""


def from_records(conn: Any, rng: Range) -> dict[int, dict[str, Any]]:
    from reports.agents import figures

    statement = text(_FROM_RECORDS).bindparams(bindparam("since", type_=UTCDateTime()),
                                               bindparam("until", type_=UTCDateTime()))
    names = ("handled", "transfers", "talk_n", "talk_sum", "wrap_n", "wrap_sum", "csat_n",
             "csat_sum", "hold_sum")
    out = {}
    for agent, *values in conn.execute(statement, {"since": rng.since, "until": rng.until}):
        row = figures({n: float(v or 0) for n, v in zip(names, values, strict=True)})
        out[agent] = {c: row[c] for c in CALL_COLUMNS}
    return out


def calls_by_agent(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["agent_id"]: {c: r[c] for c in CALL_COLUMNS} for r in report["rows"]}


async def test_agent_call_rollup_equals_the_records_and_a_rebuild(settings, sessions):
    engine: AsyncEngine = sessions.kw["bind"]
    await write_day(RecordWriter(engine, hooks=[Rollups()]))
    day = Range(DAY, DAY + dt.timedelta(days=1), Interval.day, ZONE)
    async with engine.connect() as conn:
        rolled = await conn.run_sync(agent_report, day)
        expected = await conn.run_sync(from_records, day)
        by_hour = await conn.run_sync(agent_report, Range(day.since, day.until,
                                                          Interval.hour, ZONE))
    assert calls_by_agent(rolled) == expected
    assert expected[7] == {"handled": 2, "transfers_made": 1, "avg_talk_s": 70.0,
                           "avg_hold_s": 30.0, "avg_wrap_up_s": 10.0, "aht_s": 110.0,
                           "csat_responses": 1, "csat_average": 5.0}
    assert expected[8] == {"handled": 2, "transfers_made": 0, "avg_talk_s": 50.0,
                           "avg_hold_s": 0.0, "avg_wrap_up_s": 20.0, "aht_s": 70.0,
                           "csat_responses": 0, "csat_average": None}
    assert [(r["period"], r["agent_id"], r["handled"]) for r in by_hour["rows"]] == [
        ("2026-03-10T09:00", 7, 2), ("2026-03-10T09:00", 8, 1), ("2026-03-10T10:00", 8, 1)]

    async with engine.begin() as conn:
        for table in (ReportAgentInterval, ReportCallAgent):
            await conn.execute(delete(table))
        await conn.run_sync(Rollups().rebuild, DAY, DAY + dt.timedelta(days=1))
    async with engine.connect() as conn:
        assert await conn.run_sync(agent_report, day) == rolled


@pytest.mark.postgres
async def test_the_rollups_of_any_number_of_calls_are_the_same_statements_on_postgresql():
    """The calls of a batch go to the rollups as one array: one statement text (one
    prepared statement on each connection) whatever their number, not an IN list of as
    many parameters; the figures agree with the records."""
    from core import db
    from tests.conftest import POSTGRES_URL, reset_schema

    assert POSTGRES_URL is not None
    await reset_schema(POSTGRES_URL)
    engine = db.create_engine(POSTGRES_URL)
    texts: list[set[str]] = []  # per batch: the rollup statements it ran

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "report_call" in statement:
            texts[-1].add(statement)

    writer = RecordWriter(engine, hooks=[Rollups()])
    try:
        calls = [f"b{n}" for n in range(4)]
        await writer.write([op for c in calls for op in offer(c, "09:00")])
        await writer.write([op for c in calls for op in answer(c, "09:00", 7, 5.0)])
        event.listen(engine.sync_engine, "before_cursor_execute", seen)
        texts.append(set())
        await writer.write(end("b0", "09:00", 60.0))
        texts.append(set())
        await writer.write([op for c in calls[1:] for op in end(c, "09:00", 60.0)])
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
        day = Range(DAY, DAY + dt.timedelta(days=1), Interval.day, ZONE)
        async with engine.connect() as conn:
            rolled = await conn.run_sync(agent_report, day)
            expected = await conn.run_sync(from_records, day)
    finally:
        await engine.dispose()
    assert len(texts[0]) == 2 and texts[0] == texts[1]  # the calls', the agents' rollup
    assert calls_by_agent(rolled) == expected and expected[7]["handled"] == 4
