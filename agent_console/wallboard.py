"""Today's contact-center figures for the supervisors' wallboard.

`Wallboard.observe` is a call-service observer: it counts each call once, in
one Redis hash per day (`keys.stats_day`), so every node's counts add up and a
restart loses nothing. Fields are ``scope|metric``; scopes are ``all``,
``q:<queue>``, ``t:<tier>``, ``i:<HHMM>`` (15-minute interval the call was
offered in) and ``a:<agent id>``.

Service level is core/servicelevel.py's, the same as the reports' and the
simulator's (docs/reports.md): by default calls answered within the queue's
threshold / (answered + abandoned). An abandon shorter than `short_abandon_s` is
counted apart as a short abandon. A call is counted in the day and interval (in the
center's time zone) it was offered in.

`snapshot()` joins those counters with the live state (waiting calls, agents,
open complaints) into the message the wallboards show.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.bus import Bus
from core.keys import Keys
from core.models import Complaint, Queue
from core.servicelevel import DEFAULT, Counts, Formula, service_level
from crm.open_complaints import is_open_complaint
from routing.engine import TIERS
from routing.store import RoutingStore

log = logging.getLogger(__name__)

INTERVAL_S = 15 * 60
KEEP_DAYS_S = 8 * 86400
WAITING_STATES = ("offered", "queued", "ringing")
# Events that end one agent's leg of a call that goes on with another agent.
_LEG_ENDS = ("call.transferred", "consult.completed")
REFRESH_S = 5.0  # complaints and queue settings: slow-moving, read from the database
MIN_GAP_S = 0.2  # coalesce bursts of events into one push
FLUSH_S = 0.2  # gather counts this long before adding them to Redis


# A flush's counts added in one command: a pipeline with a command per counter cost
# redis-py's command path per counter (tens of counters per flush under load). KEYS: the
# day hashes; ARGV: the channel to tell, how long the hashes are kept, then per hash the
# number of its counters and each counter's field and amount.
_ADD = """
local at = 3
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  for i = at + 1, at + 2 * n, 2 do
    redis.call('HINCRBYFLOAT', key, ARGV[i], ARGV[i + 1])
  end
  redis.call('EXPIRE', key, ARGV[2])
  at = at + 1 + 2 * n
end
redis.call('PUBLISH', ARGV[1], '{}')
"""


class Viewer(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class QueueTarget:
    threshold_s: float
    target: float
    name: str = ""


def day_of(ts: float, tz: dt.tzinfo | None = None) -> str:
    return dt.datetime.fromtimestamp(ts, tz).date().isoformat()


def interval_of(ts: float, tz: dt.tzinfo | None = None) -> str:
    """The 15-minute interval ``ts`` falls in, as ``HHMM`` of its start."""
    moment = dt.datetime.fromtimestamp(ts, tz)
    return f"{moment.hour:02d}{moment.minute // 15 * 15:02d}"


@dataclass
class Wallboard:
    redis: Redis
    keys: Keys
    maker: async_sessionmaker[AsyncSession]
    store: RoutingStore
    bus: Bus
    default_threshold_s: float = 20.0
    default_target: float = 0.8
    clock: Callable[[], float] = time.time
    tz: dt.tzinfo | None = None  # None: the server's local time decides what "today" is
    short_abandon_s: float = 5.0
    formula: Formula = DEFAULT
    interval_s: float = 0.9
    viewers: set[Viewer] = field(default_factory=set)
    queues: dict[str, QueueTarget] = field(default_factory=dict)
    _complaints: dict[str, int] = field(default_factory=dict, init=False)
    _refreshed: float = field(default=0.0, init=False)
    _dirty: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _pending: defaultdict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(dict), init=False)
    _flusher: asyncio.Task[None] | None = field(default=None, init=False)
    _add: AsyncScript = field(init=False)

    def __post_init__(self) -> None:
        self._add = self.redis.register_script(_ADD)

    # Counting -----------------------------------------------------------

    async def observe(self, name: str, data: dict[str, Any]) -> None:
        """Count an event. Counts gather here and reach Redis together a moment later
        (`FLUSH_S`): one round trip for many events, instead of one each."""
        changes = self._changes(name, data)
        if changes is None:
            return
        when, counts = changes
        pending = self._pending[self.keys.stats_day(day_of(when, self.tz))]
        for field_name, amount in counts.items():
            pending[field_name] = pending.get(field_name, 0.0) + amount
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="wallboard-counts")

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_S)
        try:
            await self.flush()
        except Exception as e:  # Redis away: the counts wait for the next event
            log.warning("wallboard counts not stored yet: %s", e)

    async def flush(self) -> None:
        """Add the gathered counts to the shared daily hashes."""
        pending, self._pending = self._pending, defaultdict(dict)
        if not pending:
            return
        args: list[str | float] = [self.keys.wallboard_channel, KEEP_DAYS_S]
        for counts in pending.values():
            args.append(len(counts))
            for field_name, amount in counts.items():
                args += (field_name, amount)
        try:
            await self._add(keys=list(pending), args=args)
        except Exception:
            for key, counts in pending.items():  # keep them for the next flush
                mine = self._pending[key]
                for field_name, amount in counts.items():
                    mine[field_name] = mine.get(field_name, 0.0) + amount
            raise

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(Exception):
            await self.flush()

    def target(self, queue: str) -> QueueTarget:
        return self.queues.get(queue) or QueueTarget(self.default_threshold_s,
                                                     self.default_target)

    async def refresh(self) -> None:
        """Queue thresholds and complaint counts from the database."""
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        is_open = is_open_complaint()
        async with self.maker() as session:
            rows = (await session.scalars(select(Queue))).all()
            counts = (await session.execute(select(
                func.count(),
                func.sum(case((Complaint.sla_due_at < now, 1), else_=0)),
                func.sum(case((Complaint.escalation_level > 0, 1), else_=0)),
            ).where(is_open))).one()
        self.queues = {q.name: QueueTarget(float(q.sl_threshold_s or self.default_threshold_s),
                                           float(self.default_target if q.sl_target is None
                                                 else q.sl_target),
                                           q.display_name or q.name) for q in rows}
        self._complaints = {"open": counts[0] or 0, "overdue": int(counts[1] or 0),
                            "escalated": int(counts[2] or 0)}
        self._refreshed = self.clock()

    def _changes(self, name: str, data: dict[str, Any]) -> tuple[float, dict[str, float]] | None:
        """Which counters an event moves, and the moment whose day they belong to."""
        now = self.clock()
        if name == "survey.result":
            score = float(data["score"])
            return now, {"all|csat_n": 1, "all|csat_sum": score,
                         "all|csat_good": 1 if score >= 4 else 0}
        if name == "call.completed":
            return now, self._completed(data)
        if name in _LEG_ENDS:
            return now, self._leg_handled(data, now, other_queue=name == "call.transferred")
        if name in _CALLBACK_COUNTS:  # apart from the calls that waited on the line
            return now, self._scoped(data, None, **{_CALLBACK_COUNTS[name]: 1})
        # A transferred call was counted when first answered; it is not offered twice.
        if "transferred_from" in data:
            return None
        offered = float(data.get("offered_at") or now)
        if name == "call.offered":
            return offered, self._scoped(data, offered, offered=1)
        if name == "call.answered":
            wait = max(0.0, float(data["answered_at"]) - offered)
            within = wait <= self.target(data.get("queue") or "default").threshold_s
            return offered, self._scoped(data, offered, answered=1, answered_sl=int(within),
                                         wait_sum=wait)
        if name == "call.ended" and data.get("outcome") == "abandoned":
            wait = float(data.get("ended_at") or now) - offered
            short = wait < self.short_abandon_s
            return offered, self._scoped(data, offered, abandoned=int(not short),
                                         abandoned_short=int(short))
        return None

    def _completed(self, data: dict[str, Any]) -> dict[str, float]:
        agent = data.get("wrap_agent") or data.get("agent_id")
        handle = float(data.get("handle_s") or 0)
        counts = self._scoped(data, None, handled=1, handle_sum=handle)
        if agent:
            counts |= {f"a:{agent}|handled": 1, f"a:{agent}|handle_sum": handle}
        return counts

    def _leg_handled(self, data: dict[str, Any], now: float, *,
                     other_queue: bool) -> dict[str, float]:
        """An agent's leg that ended with a transfer: the agent handled the call. The
        queue it leaves counts it too when the call moves to another queue (the call's
        completion counts it only in the queue it ends in)."""
        agent = data.get("agent_id")
        if not agent or not data.get("answered_at"):
            return {}
        handle = max(0.0, float(data.get("at") or now) - float(data["answered_at"]))
        counts: dict[str, float] = {f"a:{agent}|handled": 1, f"a:{agent}|handle_sum": handle}
        left = data.get("from_queue") or data.get("queue") or "default"
        if other_queue and left != (data.get("queue") or "default"):
            counts |= self._scoped({**data, "queue": left}, None, handled=1, handle_sum=handle)
        return counts

    def _scoped(self, data: dict[str, Any], offered_at: float | None,
                **metrics: float) -> dict[str, float]:
        """The metrics for the whole day, the call's queue and tier, and (for calls
        counted by when they were offered) its interval."""
        scopes = ["all", f"q:{data.get('queue') or 'default'}",
                  f"t:{data.get('tier') or 'standard'}"]
        if offered_at is not None:
            scopes.append(f"i:{interval_of(offered_at, self.tz)}")
        return {f"{scope}|{metric}": value for scope in scopes
                for metric, value in metrics.items() if value}

    # Pushing to wallboards ----------------------------------------------

    async def watch(self, viewer: Viewer) -> None:
        """A wallboard connected here. Only a node with viewers hears the other nodes'
        counts (a word on the wallboard channel at each flush): with none it would wake
        for every flush of every node, a cost that grows with the number of nodes."""
        self.viewers.add(viewer)
        await self.bus.subscribe(self.keys.wallboard_channel, self._changed)
        self._dirty.set()

    async def unwatch(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers:
            await self.bus.unsubscribe(self.keys.wallboard_channel, self._changed)

    async def run(self) -> None:
        """Push a snapshot to this node's wallboards at least every `interval_s`, and
        soon after any node counted something; asleep while no wallboard is connected."""
        loop = asyncio.get_running_loop()
        last = 0.0
        # The Redis client can swallow a cancellation mid-command: check `cancelling()`.
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            timeout = max(0.0, last + self.interval_s - loop.time()) if self.viewers else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout)
            await asyncio.sleep(max(0.0, last + MIN_GAP_S - loop.time()))
            self._dirty.clear()
            last = loop.time()
            if self.viewers:
                await self._push()

    def _changed(self, _message: dict[str, Any]) -> None:
        self._dirty.set()

    async def _push(self) -> None:
        try:
            message = await self.snapshot()
        except Exception as e:  # Redis or the database briefly away: try next tick
            log.warning("wallboard snapshot failed: %s", e)
            return
        for viewer in list(self.viewers):
            viewer.send(message)

    # The snapshot -------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        await self.flush()
        now = self.clock()
        if now - self._refreshed > REFRESH_S:
            await self.refresh()
        day = day_of(now, self.tz)
        stats = _parse(await self.redis.hgetall(self.keys.stats_day(day)))
        waiting, held, monitors = await self._live_calls()
        agents = await self.store.agents()
        queue_names = sorted({"default", *self.queues, *_names(stats, "q:"),
                              *(c["queue"] for c in waiting)})
        all_waits = [now - c["offered_at"] for c in waiting]
        callbacks = await self._callbacks(stats.get("all", {}), now)
        return {
            "type": "wallboard.snapshot", "at": now, "day": day,
            "targets": {"sl": self.default_target, "threshold_s": self.default_threshold_s},
            "totals": {**_figures(stats.get("all", {}), self.formula), **_waits(all_waits),
                       **_csat(stats.get("all", {}))},
            "queues": [self._queue_row(q, stats, waiting, now) for q in queue_names],
            "tiers": [_row(stats.get(f"t:{t}", {}), self.formula,
                           [now - c["offered_at"] for c in waiting if c["tier"] == t], tier=t)
                      for t in TIERS],
            "intervals": _intervals(stats, interval_of(now, self.tz), self.formula),
            "agents": _agents(agents, stats, now, held, monitors),
            "agent_states": {**_state_counts(agents), "on_hold": len(held)},
            "complaints": dict(self._complaints),
            "callbacks": callbacks,
        }

    async def _callbacks(self, stats: dict[str, float], now: float) -> dict[str, Any]:
        """Callbacks pending now (requested, scheduled or being dialled) and how long the
        oldest has waited since it was asked for; today's requested, connected, failed."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.callbacks)
            pipe.zrange(self.keys.callbacks, 0, 0, withscores=True)
            count, first = await pipe.execute()
        oldest = round(max(0.0, now - float(first[0][1])), 1) if first else 0
        return {"waiting": int(count), "oldest_age_s": oldest,
                **{metric: int(stats.get(metric, 0)) for metric in _CALLBACK_COUNTS.values()}}

    def _queue_row(self, queue: str, stats: dict[str, dict[str, float]],
                   waiting: list[dict[str, Any]], now: float) -> dict[str, Any]:
        target = self.target(queue)
        waits = [now - c["offered_at"] for c in waiting if c["queue"] == queue]
        return _row(stats.get(f"q:{queue}", {}), self.formula, waits, queue=queue,
                    display_name=target.name or queue, threshold_s=target.threshold_s,
                    target=target.target)

    async def _live_calls(self) -> tuple[list[dict[str, Any]], set[int],
                                         dict[int, dict[str, Any]]]:
        """The waiting calls, the agents whose caller is on hold, and the supervisors
        monitoring agents' calls (cti/monitor.py), by agent."""
        # The client decodes responses, so members are str.
        ids = cast(list[str], list(await self.redis.smembers(self.keys.calls)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in ids:
                pipe.hmget(self.keys.call(call_id), "state", "queue", "tier", "offered_at",
                           "agent_id")
                pipe.hmget(self.keys.monitor(call_id), "supervisor_id", "supervisor", "mode")
            replies = await pipe.execute()
        rows, watched = replies[0::2], replies[1::2]
        waiting = [{"queue": queue or "default", "tier": tier or "standard",
                    "offered_at": float(offered)}
                   for state, queue, tier, offered, _ in rows
                   if state in WAITING_STATES and offered is not None]
        held = {int(agent) for state, *_, agent in rows if state == "on_hold" and agent}
        monitors = {int(row[4]): {"supervisor_id": int(who), "supervisor": name, "mode": mode}
                    for row, (who, name, mode) in zip(rows, watched, strict=True)
                    if row[4] and who and mode}
        return waiting, held, monitors


_CALLBACK_COUNTS = {"callback.requested": "callbacks_requested",
                    "callback.connected": "callbacks_connected",
                    "callback.failed": "callbacks_failed"}


def _parse(raw: dict[bytes | str, bytes | str]) -> dict[str, dict[str, float]]:
    stats: dict[str, dict[str, float]] = defaultdict(dict)
    for key, value in raw.items():
        scope, _, metric = _text(key).rpartition("|")
        stats[scope][metric] = float(value)
    return stats


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _names(stats: dict[str, dict[str, float]], prefix: str) -> set[str]:
    return {scope.removeprefix(prefix) for scope in stats if scope.startswith(prefix)}


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _figures(s: dict[str, float], formula: Formula = DEFAULT) -> dict[str, Any]:
    """As the reports define them (docs/reports.md): `abandoned` are the abandons of at
    least `short_abandon_s`, `abandoned_short` the others."""
    counts = Counts(offered=int(s.get("offered", 0)), answered=int(s.get("answered", 0)),
                    answered_within=int(s.get("answered_sl", 0)),
                    abandoned=int(s.get("abandoned", 0)),
                    abandoned_short=int(s.get("abandoned_short", 0)))
    abandoned = counts.abandoned + counts.abandoned_short
    handled = int(s.get("handled", 0))
    return {
        "offered": counts.offered, "answered": counts.answered, "abandoned": counts.abandoned,
        "abandoned_short": counts.abandoned_short, "handled": handled,
        "answered_sl": counts.answered_within, "sl": service_level(counts, formula),
        "asa_s": _ratio(s.get("wait_sum", 0), counts.answered),
        "aht_s": _ratio(s.get("handle_sum", 0), handled),
        "abandon_rate": _ratio(abandoned, counts.answered + abandoned),
    }


def _waits(waits: list[float]) -> dict[str, Any]:
    return {"waiting": len(waits), "longest_wait_s": round(max(waits), 1) if waits else 0}


def _csat(s: dict[str, float]) -> dict[str, Any]:
    n = int(s.get("csat_n", 0))
    return {"csat": {"responses": n, "average": _ratio(s.get("csat_sum", 0), n),
                     "satisfied": _ratio(s.get("csat_good", 0), n)}}


def _row(s: dict[str, float], formula: Formula, waits: list[float],
         **extra: Any) -> dict[str, Any]:
    return {**extra, **_figures(s, formula), **_waits(waits)}


def _intervals(stats: dict[str, dict[str, float]], current: str,
               formula: Formula) -> list[dict[str, Any]]:
    """Today's 15-minute intervals, from the first with calls (or the last 4 hours) to now."""
    end = int(current[:2]) * 60 + int(current[2:])
    seen = [int(n[:2]) * 60 + int(n[2:]) for n in _names(stats, "i:")]
    start = min([max(0, end - 4 * 60 + 15), *seen])
    rows = []
    for minute in range(start, end + 1, 15):
        name = f"{minute // 60:02d}{minute % 60:02d}"
        s = stats.get(f"i:{name}", {})
        rows.append({"start": f"{name[:2]}:{name[2:]}", **_figures(s, formula)})
    return rows


def _agents(agents: list[dict[str, str]], stats: dict[str, dict[str, float]],
            now: float, held: set[int],
            monitors: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for agent in agents:
        s = stats.get(f"a:{agent.get('id')}", {})
        handled = int(s.get("handled", 0))
        if agent.get("state", "logged_out") == "logged_out" and not handled:
            continue
        since = float(agent.get("since") or now)
        rows.append({
            "agent_id": int(agent["id"]), "name": agent.get("name") or agent.get("username"),
            "state": agent.get("state", "logged_out"), "reason": agent.get("reason") or None,
            "since": since, "in_state_s": round(max(0.0, now - since), 1),
            "handled": handled, "aht_s": _ratio(s.get("handle_sum", 0), handled),
            "on_hold": int(agent["id"]) in held,
            # A call in progress, which supervisors may monitor, and who monitors it.
            "call_id": agent.get("call_id") or None if agent.get("state") == "on_call"
            else None,
            "monitor": monitors.get(int(agent["id"]))})
    return sorted(rows, key=lambda r: (r["state"] == "logged_out", str(r["name"]).lower()))


def _state_counts(agents: list[dict[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for agent in agents:
        counts[agent.get("state", "logged_out")] += 1
    return dict(counts)
