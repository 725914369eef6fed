"""The agent-state rollup: seconds per 15 minutes (UTC) x agent x state x not-ready reason.

Kept by a record-writer hook in the transaction that stores agent state changes (the
agent-log consumer's batches). A state lasts from its change to the agent's next one;
the last change of an agent is open and not in the rollup (the report adds it up to
now). A change stored late (nodes share the log, a crashed node's entries are claimed
by another) splits the segment it falls in. So the hook takes, per agent of the batch,
the window from the change before the batch's first to the change after its last,
and adds the difference between the segments of the window with and without the
batch's rows. A replayed entry is a second row of the same change: a segment of no
length. Logged-out time is not kept: no report shows it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY

from core import plans
from core.models import UTCDateTime
from core.writer import Insert, Op
from reports import agent_days

INTERVAL = dt.timedelta(minutes=15)
TABLE = "agent_state_changes"
Key = tuple[dt.datetime, int, str, str]  # interval start, agent, state, reason
Seconds = dict[Key, float]

# The changes of the agents in [lo, hi], and the one before and the one after of each.
_WINDOW = """
SELECT agent_id, at, id, state, reason FROM agent_state_changes
 WHERE {match} AND at >= :lo AND at <= :hi
UNION ALL
SELECT agent_id, at, id, state, reason FROM agent_state_changes WHERE id IN (
  SELECT (SELECT x.id FROM agent_state_changes x WHERE x.agent_id = a.agent_id
           AND x.at < :lo ORDER BY x.at DESC, x.id DESC LIMIT 1) FROM ({table}) a
  UNION ALL
  SELECT (SELECT x.id FROM agent_state_changes x WHERE x.agent_id = a.agent_id
           AND x.at > :hi ORDER BY x.at, x.id LIMIT 1) FROM ({table}) a)
"""
# The agents as one parameter, so that the statement's text is the same whatever their
# number (one prepared statement per pooled connection on PostgreSQL, not one per count):
# an array on PostgreSQL, a JSON list on SQLite. (match, the agents as a table)
_AGENTS_PARAM = {
    "postgresql": ("agent_id = ANY(CAST(:agents AS INTEGER[]))",
                   "SELECT agent_id FROM unnest(CAST(:agents AS INTEGER[])) AS u(agent_id)"),
    "sqlite": ("agent_id IN (SELECT value FROM json_each(:agents))",
               "SELECT value AS agent_id FROM json_each(:agents)"),
}
_UPSERT = """
INSERT INTO report_agent_states (start, agent_id, state, reason, seconds)
{rows}
ON CONFLICT (start, agent_id, state, reason)
DO UPDATE SET seconds = report_agent_states.seconds + excluded.seconds
"""
_ADD = text(_UPSERT.format(rows="VALUES (:start, :agent_id, :state, :reason, :seconds)")
            ).bindparams(bindparam("start", type_=UTCDateTime()))
# PostgreSQL: every row in one statement, a column per array (an executemany runs the
# statement once per row).
_ADD_ARRAYS = text(_UPSERT.format(rows=(
    "SELECT * FROM unnest(CAST(:start AS timestamptz[]), CAST(:agent_id AS integer[]), "
    "CAST(:state AS text[]), CAST(:reason AS text[]), CAST(:seconds AS float[]))"))
).bindparams(bindparam("start", type_=ARRAY(UTCDateTime())))
_AGENTS = text(
    "SELECT id FROM agents UNION SELECT DISTINCT agent_id FROM agent_state_changes "
    "WHERE at >= :since AND at < :until").bindparams(
    bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime()))
_LOCK = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")


@dataclass(frozen=True, order=True)
class Change:
    at: dt.datetime
    id: int
    state: str
    reason: str


def interval_start(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)


def spread(state: str, reason: str, agent: int, start: dt.datetime, end: dt.datetime,
           ) -> Iterator[tuple[Key, float]]:
    """[start, end) in `state`, cut at the 15-minute intervals it covers."""
    while start < end:
        bucket = interval_start(start)
        cut = min(end, bucket + INTERVAL)
        yield (bucket, agent, state, reason), (cut - start).total_seconds()
        start = cut


def segments(agent: int, changes: list[Change], since: dt.datetime | None = None,
             until: dt.datetime | None = None) -> Seconds:
    """The closed segments of consecutive changes, cut to [since, until) if given."""
    out: Seconds = defaultdict(float)
    for this, nxt in zip(changes, changes[1:], strict=False):
        if this.state == "logged_out":
            continue
        start = this.at if since is None else max(this.at, since)
        end = nxt.at if until is None else min(nxt.at, until)
        for key, seconds in spread(this.state, this.reason, agent, start, end):
            out[key] += seconds
    return out


@dataclass(frozen=True)
class AgentStates:
    """The record-writer hook; `zone`: the center's time zone, whose local days are kept,
    with the hours, on PostgreSQL (reports/agent_days.py)."""

    zone: str = "UTC"

    def __call__(self, conn: Connection, ops: list[Op]) -> None:
        stored: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for op in ops:
            if isinstance(op, Insert) and op.table == TABLE:
                stored[int(op.values["agent_id"])].append(op.values)
        if not stored:
            return
        agents = sorted(stored)
        if conn.dialect.name == "postgresql":  # two nodes' batches of one agent take turns
            conn.execute(_LOCK, {"keys": [zlib.crc32(f"agent:{a}".encode()) for a in agents]})
        moments = [v["at"] for values in stored.values() for v in values]
        window = _window(conn, agents, min(moments), max(moments))
        delta: Seconds = defaultdict(float)
        for agent in agents:
            now = window.get(agent, [])
            before = _without(now, stored[agent])
            _merge(delta, segments(agent, now))
            _merge(delta, segments(agent, before), -1.0)
        add(conn, delta)
        if agent_days.kept(conn):
            agent_days.add_states(conn, self.zone, delta)

    def rebuild(self, conn: Connection, since: dt.datetime, until: dt.datetime) -> None:
        """Recompute the intervals in [since, until) (15-minute aligned) from the log."""
        since, until = _aligned(since), _aligned(until - dt.timedelta.resolution) + INTERVAL
        conn.execute(text("DELETE FROM report_agent_states WHERE start >= :since "
                          "AND start < :until").bindparams(
            bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime())),
            {"since": since, "until": until})
        agents = sorted(conn.execute(_AGENTS, {"since": since, "until": until}).scalars())
        total: Seconds = defaultdict(float)
        for k in range(0, len(agents), 500):
            for agent, changes in _window(conn, agents[k:k + 500], since, until).items():
                _merge(total, segments(agent, changes, since, until))
        add(conn, total)
        agent_days.rebuild_states(conn, self.zone, since, until)


def _merge(into: Seconds, other: Seconds, sign: float = 1.0) -> None:
    for key, seconds in other.items():
        into[key] += sign * seconds


def add(conn: Connection, delta: Seconds) -> None:
    rows = [{"start": s, "agent_id": a, "state": st, "reason": r, "seconds": round(v, 6)}
            for (s, a, st, r), v in sorted(delta.items()) if abs(v) > 1e-9]
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        plans.execute(conn, _ADD_ARRAYS, [{k: [row[k] for row in rows] for k in rows[0]}])
    else:
        plans.execute(conn, _ADD, rows)


@functools.cache
def _window_statement(dialect: str) -> Any:
    match, table = _AGENTS_PARAM[dialect]
    return text(_WINDOW.format(match=match, table=table)).bindparams(
        bindparam("lo", type_=UTCDateTime()), bindparam("hi", type_=UTCDateTime()))


def _window(conn: Connection, agents: list[int], lo: dt.datetime, hi: dt.datetime,
            ) -> dict[int, list[Change]]:
    found: dict[int, set[Change]] = defaultdict(set)
    dialect = conn.dialect.name
    listed: Any = agents if dialect == "postgresql" else json.dumps(agents)
    for agent, at, ident, state, reason in conn.execute(
            _window_statement(dialect), {"agents": listed, "lo": lo, "hi": hi}):
        found[agent].add(Change(_aware(at), ident, state, reason or ""))
    return {agent: sorted(changes) for agent, changes in found.items()}


def _without(changes: list[Change], stored: Iterable[dict[str, Any]]) -> list[Change]:
    """The window as it was before the batch: one matching row less per stored change
    (the newest: rows of one change are interchangeable)."""
    left = list(changes)
    for values in stored:
        at, state, reason = _aware(values["at"]), values["state"], values.get("reason") or ""
        for k in range(len(left) - 1, -1, -1):
            c = left[k]
            if (c.at, c.state, c.reason) == (at, state, reason):
                del left[k]
                break
    return left


def _aligned(moment: dt.datetime) -> dt.datetime:
    return interval_start(moment.astimezone(dt.UTC))


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    when: dt.datetime = value
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
