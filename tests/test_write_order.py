"""A call's writes stored out of order by two nodes leave the record as the live state
went: numbered updates (core/sequenced.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core import db
from core.models import Call, Interaction, ParkedUpdate
from core.writer import Op, RecordWriter, numbered
from cti import records

T0 = 1.7e9


@pytest.fixture
async def nodes(engine: AsyncEngine) -> AsyncIterator[list[RecordWriter]]:
    """Two nodes' writers on one database."""
    writers = [RecordWriter(engine), RecordWriter(engine)]
    for writer in writers:
        writer.start()
    yield writers
    for writer in writers:
        await writer.stop()


def offer(call_id: str) -> list[Op]:
    return records.offer_ops(event_id=f"{call_id}-o", call_id=call_id, queue="sales",
                             ani="+8613900000001", dnis="800", customer_id=None,
                             tier="standard", ivr={"language": "zh"}, offered_at=T0,
                             node_id="n1", integration="pbx")


def answered(call_id: str) -> list[Op]:
    return numbered([records.call_op(call_id, state="connected", queue="sales", agent_id=7),
                     records.interaction_op(call_id, answered_at=records.at(T0 + 5),
                                            wait_s=5.0)], 2)


def transferred(call_id: str) -> list[Op]:
    return numbered([records.call_op(call_id, state="queued", queue="support", agent_id=None),
                     records.interaction_op(call_id, legs=[{"agent_id": 7}])], 3)


def hung_up(call_id: str) -> list[Op]:
    return numbered([records.call_op(call_id, state="abandoned", queue="support", agent_id=None),
                     records.interaction_op(call_id, ended_at=records.at(T0 + 30),
                                            end_cause="hangup", outcome="abandoned")], 4)


async def record(engine: AsyncEngine, call_id: str) -> tuple[Call, Interaction]:
    async with db.sessionmaker(engine)() as session:
        call = await session.get(Call, call_id)
        interaction = await session.scalar(select(Interaction).where(
            Interaction.call_id == call_id))
    assert call is not None and interaction is not None
    return call, interaction


async def parked(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(ParkedUpdate)) or 0)


async def test_a_hang_up_stored_before_the_transfer_it_followed_still_ends_the_call(
        engine, nodes):
    first, second = nodes
    await first.write(offer("c-1"))
    await first.write(answered("c-1"))

    await second.write(hung_up("c-1"))  # the later step, stored first
    await first.write(transferred("c-1"))

    call, interaction = await record(engine, "c-1")
    assert (call.state, call.queue, call.agent_id, call.seq) == ("abandoned", "support", None, 4)
    # what the older write alone knew is still filled in; what the newer wrote stands
    assert interaction.legs == [{"agent_id": 7}]
    assert (interaction.outcome, interaction.seq) == ("abandoned", 4)


async def test_writes_stored_before_the_offer_are_kept_and_applied_after_it(engine, nodes):
    first, second = nodes
    await second.write(hung_up("c-2"))
    await second.write(answered("c-2"))

    await first.write(offer("c-2"))

    call, interaction = await record(engine, "c-2")
    assert (call.state, call.queue, call.agent_id, call.ani, call.node_id, call.seq) == (
        "abandoned", "support", None, "+8613900000001", "n1", 4)
    assert interaction.answered_at is not None and interaction.outcome == "abandoned"
    assert (interaction.queue, interaction.seq) == ("sales", 4)
    assert await parked(engine) == 0


async def test_a_reused_call_id_is_still_refused_once_its_call_is_stored(engine, nodes):
    await nodes[0].write(offer("c-3"))

    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        await nodes[1].write(offer("c-3"))


async def test_two_nodes_storing_one_calls_writes_at_once_agree_with_the_live_state(
        engine, nodes):
    first, second = nodes
    for n in range(25):
        call_id = f"r-{n}"
        await asyncio.gather(first.write(offer(call_id)), second.write(hung_up(call_id)),
                             second.write(transferred(call_id)), first.write(answered(call_id)))
        call, interaction = await record(engine, call_id)
        assert (call.state, call.seq, call.node_id) == ("abandoned", 4, "n1"), call_id
        assert interaction.outcome == "abandoned" and interaction.answered_at is not None
        assert interaction.legs == [{"agent_id": 7}]
    assert await parked(engine) == 0


async def test_many_calls_numbered_updates_in_one_batch_apply_as_one_by_one(engine):
    """A batch with many calls' numbered updates: each row ends as if its updates were
    applied in their order, older ones dropped (calls) or filling in (interactions); on
    PostgreSQL each shape and round is one statement (arrays), not one per row."""
    updates: list[tuple[str, bool]] = []  # (table, executemany) of each UPDATE

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("UPDATE"):
            updates.append((statement.split()[1], executemany))

    calls = [f"m-{n}" for n in range(12)]
    writer = RecordWriter(engine)
    await writer.write([op for c in calls for op in offer(c)])
    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        # Every call answered (2), the even ones hung up (4) too: two rounds.
        await writer.write([op for n, c in enumerate(calls)
                            for op in [*answered(c), *(hung_up(c) if n % 2 == 0 else [])]])
        await writer.write([op for c in calls for op in transferred(c)])  # 3: late for some
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)

    for n, c in enumerate(calls):
        call, interaction = await record(engine, c)
        if n % 2 == 0:  # the transfer came after the hang-up it preceded
            assert (call.state, call.queue, call.seq) == ("abandoned", "support", 4), c
            assert (interaction.outcome, interaction.seq) == ("abandoned", 4), c
        else:
            assert (call.state, call.queue, call.agent_id, call.seq) == (
                "queued", "support", None, 3), c
            assert (interaction.outcome, interaction.seq) == (None, 3), c
        assert interaction.legs == [{"agent_id": 7}], c  # filled in either way
        assert interaction.answered_at is not None and interaction.wait_s == 5.0, c
    if engine.dialect.name == "postgresql":
        # calls and interactions: two rounds of the first batch, one of the second; in
        # the second, half the calls' updates are older than their rows: the guarded
        # update's count falls short, the rows' numbers are read and it runs once more
        assert sorted(updates) == [("calls", False)] * 4 + [("interactions", False)] * 3


async def test_a_batch_whose_rows_are_all_stored_reads_no_numbers(engine):
    """The usual batch (every row there): the guarded updates alone, their count saying
    that each row was found; the rows' numbers are not read first."""
    statements: list[str] = []

    def seen(conn, cursor, statement, *rest):  # type: ignore[no-untyped-def]
        statements.append(statement.split()[0])

    calls = [f"s-{n}" for n in range(6)]
    writer = RecordWriter(engine)
    await writer.write([op for c in calls for op in offer(c)])
    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        await writer.write([op for c in calls for op in answered(c)])
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert "SELECT" not in statements
    for c in calls:
        call, interaction = await record(engine, c)
        assert (call.state, call.seq, interaction.wait_s) == ("connected", 2, 5.0), c


async def test_a_batch_with_a_row_not_stored_yet_parks_only_its_updates(engine):
    writer = RecordWriter(engine)
    await writer.write([op for c in ("p-1", "p-2") for op in offer(c)])
    # p-3's offer comes later: its hang-up waits for it; the others' apply now.
    await writer.write([op for c in ("p-1", "p-2", "p-3") for op in hung_up(c)])
    for c in ("p-1", "p-2"):
        call, interaction = await record(engine, c)
        assert (call.state, call.seq, interaction.outcome) == ("abandoned", 4, "abandoned"), c
    assert await parked(engine) == 2  # p-3's call and interaction updates
    await writer.write(offer("p-3"))
    call, interaction = await record(engine, "p-3")
    assert (call.state, call.seq, call.node_id, interaction.outcome) == (
        "abandoned", 4, "n1", "abandoned")
    assert await parked(engine) == 0


async def test_each_step_of_a_call_numbers_the_writes_it_owes(center):
    """The numbers come from the call's steps in Redis: offer 1, answer 2, transfer 3,
    hang-up 4; the record ends with the last."""
    amy, ivr = await center.answered_call("amy", "w1", "+8613800000009")
    await ivr.event("call.transferred", "w1", to_queue="default")
    await ivr.event("call.ended", "w1", cause="caller_hangup")

    async with center.sessions() as session:
        call = await session.get(Call, "w1")
        interaction = await session.scalar(select(Interaction).where(
            Interaction.call_id == "w1"))
    assert call is not None and interaction is not None
    assert (call.state, call.seq, interaction.seq) == ("abandoned", 4, 4)
    assert interaction.legs and interaction.legs[0]["end"] == "transferred"
