"""The group-commit writer on real databases (SQLite, and PostgreSQL when available)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from core import db
from core.models import Call, Interaction, ProcessedEvent
from core.supervise import Backoff, Supervisor, TaskState
from core.writer import LATER_S, Insert, RecordWriter, Update, dumps, loads
from cti import records
from tests.conftest import reset_schema


@pytest.fixture
async def writer(engine: AsyncEngine) -> AsyncIterator[RecordWriter]:
    writer = RecordWriter(engine)
    writer.start()
    yield writer
    await writer.stop()


def offer(n: int) -> list[Insert | Update]:
    return records.offer_ops(event_id=f"e-{n}", call_id=f"c-{n}", queue="default",
                             ani=f"+861390000{n:04d}", dnis="800", customer_id=None,
                             tier="standard", ivr={"language": "zh"}, offered_at=1.7e9 + n,
                             node_id="n1", integration="pbx")


async def count(engine: AsyncEngine, model: type) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(model))


async def test_events_written_together_share_one_transaction(engine, writer):
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda conn: commits.append(1))

    await asyncio.gather(*(writer.write(offer(n)) for n in range(50)))

    assert await count(engine, Call) == 50
    assert await count(engine, Interaction) == 50
    assert await count(engine, ProcessedEvent) == 50
    assert len(commits) < 10, f"{len(commits)} commits for 50 events"


async def test_a_bad_event_fails_alone_and_the_rest_of_its_batch_is_stored(engine, writer):
    await writer.write(offer(0))

    results = await asyncio.gather(*(writer.write(offer(n)) for n in range(5)),
                                   return_exceptions=True)

    assert isinstance(results[0], IntegrityError)  # call c-0 exists already
    assert results[1:] == [None] * 4
    assert await count(engine, Call) == 5


async def test_later_updates_of_a_row_win_within_a_batch(engine, writer):
    await writer.write(offer(1))

    await asyncio.gather(
        writer.write([records.call_op("c-1", state="connected", agent_id=7)]),
        writer.write([records.call_op("c-1", state="wrap_up")]),
        writer.write([records.interaction_op("c-1", agent_ids=[7], routing_reason={"rule": "x"},
                                             answered_at=records.at(1.7e9 + 5))]))

    async with engine.connect() as conn:
        call = (await conn.execute(select(Call.state, Call.agent_id))).one()
        interaction = (await conn.execute(select(Interaction.agent_ids,
                                                 Interaction.routing_reason,
                                                 Interaction.answered_at))).one()
    assert tuple(call) == ("wrap_up", 7)
    assert interaction.agent_ids == [7] and interaction.routing_reason == {"rule": "x"}
    assert interaction.answered_at == dt.datetime.fromtimestamp(1.7e9 + 5, dt.UTC)


async def test_a_replayed_event_is_stored_once(engine, writer):
    ops = [records.event_op("again", "c-9", "call.answered")]
    await writer.write(ops)
    await writer.write(loads(dumps(ops)))

    assert await count(engine, ProcessedEvent) == 1


async def test_a_fault_in_the_writers_loop_fails_its_batch_and_the_supervisor_restarts_it(
        engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Before: the writer's loop was a bare task; a fault escaping it ended the loop, and
    every write after it (every telephony event's ack) waited for ever, unseen by /healthz."""
    supervisor = Supervisor(Backoff(initial_s=0.01, max_s=0.01))
    writer = RecordWriter(engine)
    writer.start(supervisor)
    real, faults = writer._write_batch, [RuntimeError("a bug in the writer")]

    async def faulty(batch):  # type: ignore[no-untyped-def]
        if faults:
            raise faults.pop()
        await real(batch)

    monkeypatch.setattr(writer, "_write_batch", faulty)
    try:
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(writer.write(offer(1)), 10)
        await asyncio.wait_for(writer.write(offer(2)), 10)
        entry = supervisor.tasks["record-writer"]
        assert entry.restarts == 1 and entry.state is TaskState.running
    finally:
        await writer.stop()
    assert await count(engine, Call) == 1
    failure = next(r for r in caplog.records if "record-writer failed" in r.getMessage())
    assert failure.levelname == "ERROR" and failure.exc_info is not None


async def test_writes_kept_in_redis_come_back_as_they_were():
    ops = [*offer(3), records.interaction_op("c-3", answered_at=records.at(1.7e9),
                                             wait_s=1.5, agent_ids=[1, 2])]

    assert loads(dumps(ops)) == ops


async def test_an_unreachable_database_fails_every_waiting_write():
    engine = db.create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    writer = RecordWriter(engine)
    writer.start()
    try:
        results = await asyncio.gather(*(writer.write(offer(n)) for n in range(3)),
                                       return_exceptions=True)
    finally:
        await writer.stop()
        await engine.dispose()

    assert all(isinstance(r, OSError) or "connect" in str(r).lower() for r in results), results


async def test_on_sqlite_batches_are_written_in_a_worker_thread_on_the_sync_driver(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'threaded.db'}"
    await reset_schema(url)
    engine, sync_engine = db.create_engine(url), db.create_sync_engine(url)
    assert sync_engine is not None
    commits: list[int] = []
    event.listen(sync_engine, "commit", lambda conn: commits.append(1))
    writer = RecordWriter(engine, sync_engine)
    writer.start()
    try:
        await asyncio.gather(*(writer.write(offer(n)) for n in range(1, 31)))
        batched = len(commits)
        results = await asyncio.gather(*(writer.write(offer(n)) for n in range(30, 41)),
                                       return_exceptions=True)
    finally:
        await writer.stop()
        sync_engine.dispose()
        await engine.dispose()

    assert batched < 10, f"{batched} commits for 30 events"
    assert isinstance(results[0], IntegrityError) and results[1:] == [None] * 10
    engine = db.create_engine(url)
    try:
        assert await count(engine, Call) == 40
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_rows_of_one_shape_are_one_statement_on_postgresql():
    from tests.conftest import POSTGRES_URL

    assert POSTGRES_URL is not None
    await reset_schema(POSTGRES_URL)
    engine = db.create_engine(POSTGRES_URL)
    inserts: list[bool] = []  # executemany or not, per INSERT of processed_events

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO processed_events"):
            inserts.append(executemany)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    writer = RecordWriter(engine)
    try:
        # A replayed event beside its first copy in one batch is stored once.
        ops = [records.event_op(f"ev-{n}", f"c-{n}", "call.answered") for n in range(40)]
        await writer.write([*ops, records.event_op("ev-0", "c-0", "call.answered")])
        stored = await count(engine, ProcessedEvent)
    finally:
        await engine.dispose()
    assert stored == 40
    assert inserts == [False]


async def test_a_write_that_can_wait_goes_with_the_next_batch(engine):
    batches: list[list[str]] = []
    writer = RecordWriter(engine, hooks=[lambda conn, ops: batches.append(
        [op.values.get("event_id", op.table) for op in ops if isinstance(op, Insert)])])
    writer.start()
    started = time.monotonic()
    # the later write is queued first, and starts nothing; the offer takes it along
    await asyncio.gather(writer.write_later([records.event_op("audit", "c-1", "x")]),
                         writer.write(offer(1)))
    await writer.stop()

    assert time.monotonic() - started < LATER_S
    assert len(batches) == 1 and "audit" in batches[0] and "e-1" in batches[0]


async def test_a_write_that_can_wait_alone_is_stored_after_its_bound(engine, writer):
    started = time.monotonic()
    await writer.write_later([records.event_op("alone", "c-2", "x")])

    assert time.monotonic() - started >= LATER_S - 0.01  # call_later never fires early
    assert await count(engine, ProcessedEvent) == 1
