"""The call path's writes use one SQL text per statement shape, whatever a batch's size
(of calls, or of agents whose state changed).

On PostgreSQL every pooled connection prepares each distinct text once and keeps it
(SQLAlchemy's asyncpg adapter: up to 100-150 per connection). An `IN` list expanded to
the batch's number of calls is a new text per length: a node's memory then filled for
its first quarter hour of a soak (bench/README.md, "One SQL text per statement shape").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, select

from core import db
from core.auth import issue_token, revoke
from core.models import ApiToken, Role, utcnow
from core.web import _valid_tokens
from core.writer import Insert, Op, RecordWriter, numbered
from cti import records
from reports.agent_states import AgentStates
from reports.rollup import Rollups

T0 = 1.7e9
ONLY_POSTGRES = [pytest.param("postgres", marks=pytest.mark.postgres)]


def offered(call_id: str) -> list[Op]:
    return records.offer_ops(event_id=f"{call_id}-o", call_id=call_id, queue="sales",
                             ani="+8613900000001", dnis="800", customer_id=None,
                             tier="standard", ivr={}, offered_at=T0, node_id="n1",
                             integration="pbx")


def answered(call_id: str) -> list[Op]:
    return numbered([records.call_op(call_id, state="connected", queue="sales", agent_id=7),
                     records.interaction_op(call_id, answered_at=records.at(T0 + 5),
                                            wait_s=5.0, agent_id=7, agent_ids=[7])], 2)


def ended(call_id: str) -> list[Op]:
    return numbered([records.call_op(call_id, state="ended", queue="sales", agent_id=7),
                     records.interaction_op(call_id, ended_at=records.at(T0 + 60),
                                            end_cause="normal", outcome="answered",
                                            talk_s=55.0)], 3)


def agent_states(agents: range, state: str) -> list[Op]:
    return [Insert("agent_state_changes", {"agent_id": agent, "state": state, "reason": None,
                                           "at": records.at(T0 + agent)}) for agent in agents]


@pytest.mark.parametrize("any_database_url", ONLY_POSTGRES, indirect=True)
async def test_batches_of_any_number_of_calls_share_their_sql_texts(engine):
    writer = RecordWriter(engine, hooks=[Rollups(), AgentStates()])
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    texts: dict[int, set[str]] = {}
    for size in (2, 3, 5, 8, 13):
        seen.clear()
        calls = [f"c{size}-{i}" for i in range(size)]
        for step in (offered, answered, ended):  # one batch (transaction) per step
            await writer.write([op for call_id in calls for op in step(call_id)])
        for state in ("available", "on_call"):  # the agent-state rollup's window
            await writer.write(agent_states(range(100 * size, 101 * size), state))
        texts[size] = set(seen)
    assert len(texts[2]) >= 6  # the inserts, the numbered updates, the rollups
    for size in (3, 5, 8, 13):
        assert texts[size] == texts[2], size


@pytest.mark.parametrize("any_database_url", ONLY_POSTGRES, indirect=True)
async def test_the_token_sweep_reads_any_number_of_tokens_with_one_sql_text(engine):
    async with db.session_scope(db.sessionmaker(engine)) as session:
        for name in ("a", "b", "c"):
            await issue_token(session, "s" * 32, role=Role.agent, name=name,
                              ttl=dt.timedelta(hours=1))
    async with db.session_scope(db.sessionmaker(engine)) as session:
        ids = {name: token for token, name in (await session.execute(
            select(ApiToken.id, ApiToken.name))).all()}
        await revoke(session, token_id=ids["b"])
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    statement = _valid_tokens("postgresql")
    async with db.sessionmaker(engine)() as session:
        two = set(await session.scalars(statement, {"ids": [ids["a"], ids["b"]],
                                                     "now": utcnow()}))
        three = set(await session.scalars(statement, {"ids": list(ids.values()),
                                                       "now": utcnow()}))
    assert two == {ids["a"]} and three == {ids["a"], ids["c"]}
    assert len(set(seen)) == 1
