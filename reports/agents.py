"""The agent report: calls handled and time in each state, per agent and period.

Read from the records (interactions, call_transfers, agent_state_changes), not from a
rollup: an agent's calls are counted in the period the call was offered in, its time
in a state split at period boundaries. A call transferred between agents is a handled
call for each agent who answered a leg of it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, and_, func, select

from core.models import Agent, AgentStateChange, CallTransfer, Interaction
from reports.figures import handle_figures, ratio
from reports.periods import Interval, Range

WORKING = ("ringing", "on_call", "wrap_up")


def agent_report(conn: Connection, rng: Range) -> dict[str, Any]:
    sums: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    _calls(conn, rng, sums)
    _states(conn, rng, sums)
    names = dict(conn.execute(select(Agent.id, Agent.display_name)).all())
    rows = [{"period": p, "agent_id": a, "name": names.get(a) or str(a), **figures(s)}
            for (p, a), s in sorted(sums.items())]
    return {"scope": "agents", **rng.bounds(), "rows": rows}


def figures(s: dict[str, float]) -> dict[str, Any]:
    working = sum(s.get(f"state_{w}", 0.0) for w in WORKING)
    signed_in = sum(v for k, v in s.items() if k.startswith("state_")
                    and k != "state_logged_out")
    reasons = {k.removeprefix("not_ready_"): round(v, 1) for k, v in s.items()
               if k.startswith("not_ready_")}
    return {
        "handled": int(s.get("handled", 0)), "transfers_made": int(s.get("transfers", 0)),
        **handle_figures(s),
        "csat_responses": int(s.get("csat_n", 0)),
        "csat_average": ratio(s.get("csat_sum", 0), s.get("csat_n", 0), 2),
        "signed_in_s": round(signed_in, 1),
        "available_s": round(s.get("state_available", 0.0), 1),
        "on_call_s": round(s.get("state_on_call", 0.0) + s.get("state_ringing", 0.0), 1),
        "wrap_up_s": round(s.get("state_wrap_up", 0.0), 1),
        "not_ready_s": round(s.get("state_not_ready", 0.0), 1),
        "not_ready_by_reason": reasons,
        "occupancy": ratio(working, working + s.get("state_available", 0.0)),
    }


def _calls(conn: Connection, rng: Range, sums: Any) -> None:
    i = Interaction
    found = conn.execute(select(i.call_id, i.offered_at, i.agent_id, i.answered_at, i.talk_s,
                                i.survey_score, i.wrap_up_s)
                         .where(i.offered_at >= rng.since, i.offered_at < rng.until)).all()
    offered = {call_id: rng.period(at) for call_id, at, *_ in found}
    for call_id, _at, agent, answered_at, talk, score, wrap in found:
        if agent is None or answered_at is None:
            continue
        s = sums[(offered[call_id], agent)]
        s["handled"] += 1
        if talk is not None:
            s["talk_n"] += 1
            s["talk_sum"] += talk
        if wrap is not None:
            s["wrap_n"] += 1
            s["wrap_sum"] += wrap
        if score is not None:
            s["csat_n"] += 1
            s["csat_sum"] += score
    t = CallTransfer
    legs = conn.execute(select(t.call_id, t.agent_id).join(i, i.call_id == t.call_id)
                        .where(i.offered_at >= rng.since, i.offered_at < rng.until)).all()
    for call_id, agent in legs:
        if agent is not None:
            sums[(offered[call_id], agent)]["handled"] += 1
            sums[(offered[call_id], agent)]["transfers"] += 1


def _states(conn: Connection, rng: Range, sums: Any) -> None:
    c = AgentStateChange
    last = select(c.agent_id, func.max(c.at).label("at")).where(c.at < rng.since) \
        .group_by(c.agent_id).subquery()
    before = select(c.agent_id, c.state, c.reason, c.at).join(
        last, and_(c.agent_id == last.c.agent_id, c.at == last.c.at))
    during = select(c.agent_id, c.state, c.reason, c.at).where(c.at >= rng.since,
                                                              c.at < rng.until)
    changes = sorted(conn.execute(before.union_all(during)).all(), key=lambda r: (r[0], r[3]))
    by_agent: dict[int, list[Any]] = defaultdict(list)
    for row in changes:
        by_agent[row[0]].append(row)
    for agent, rows in by_agent.items():
        for (_, state, reason, start), nxt in zip(rows, [*rows[1:], None], strict=True):
            end = nxt[3] if nxt is not None else min(rng.until, dt.datetime.now(dt.UTC))
            _spread(rng, sums, agent, state, reason, max(start, rng.since), end)


def _spread(rng: Range, sums: Any, agent: int, state: str, reason: str | None,
            start: dt.datetime, end: dt.datetime) -> None:
    """Add [start, end) in `state` to each period it covers."""
    while start < end:
        cut = min(end, next_boundary(rng, start))
        s = sums[(rng.period(start), agent)]
        s[f"state_{state}"] += (cut - start).total_seconds()
        if state == "not_ready" and reason:
            s[f"not_ready_{reason}"] += (cut - start).total_seconds()
        start = cut


def next_boundary(rng: Range, moment: dt.datetime) -> dt.datetime:
    """The start of the period after the one `moment` is in."""
    local = moment.astimezone(rng.zone).replace(tzinfo=None)
    if rng.interval is Interval.m15:
        nxt = local.replace(minute=local.minute // 15 * 15, second=0, microsecond=0) \
            + dt.timedelta(minutes=15)
    elif rng.interval is Interval.hour:
        nxt = local.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    else:
        day = local.date()
        if rng.interval is Interval.day:
            day += dt.timedelta(days=1)
        elif rng.interval is Interval.week:
            day += dt.timedelta(days=7 - day.weekday())
        else:
            day = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        nxt = dt.datetime.combine(day, dt.time())
    return max(nxt.replace(tzinfo=rng.zone).astimezone(dt.UTC), moment + dt.timedelta(seconds=1))
