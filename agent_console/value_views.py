"""REST for the customer value model (docs/value-model.md):

- `GET  /api/v1/value/at-risk?limit=`: the churn warning list (supervisors);
- `POST /api/v1/customers/{customer_id}/win-back {due_at?, note?}`: record a win-back
  callback for a customer at risk (supervisors), scheduled as a callback
  (cti/callback_desk.py, source `winback`) for anyone of the default queue;
- `GET  /api/v1/value/churn-rates?period_days=365&end=YYYY-MM-DD`: absolute and
  relative churn rate of a period;
- `GET  /api/v1/value/satisfaction?by=customer|agent|queue|tier&since=ISO`: c = b/a;
- `GET  /api/v1/value/summary`: the last segmentation run and the policy in force.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import appkeys
from core.models import Role
from core.web import Invalid, NotFound, authenticate
from crm import store as crm
from crm import value_reports
from crm.policy import load_policy
from crm.satisfaction import GROUPS, satisfaction_by
from cti.callback_desk import Promise
from cti.calls import CallError
from cti.schemas import describe

SUPERVISORS = (Role.supervisor, Role.admin)
_MAX_LIMIT = 1000


class WinBack(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    due_at: dt.datetime | None = None
    note: Annotated[str, Field(max_length=2000)] = ""


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError as e:
        raise Invalid(f"{name} must be an integer") from e
    if not low <= value <= high:
        raise Invalid(f"{name} must be within {low}..{high}")
    return value


def _date(request: web.Request, name: str) -> dt.date:
    raw = request.query.get(name)
    try:
        return dt.date.fromisoformat(raw) if raw else dt.date.today()
    except ValueError as e:
        raise Invalid(f"{name} must be a date (YYYY-MM-DD)") from e


def _earliest_end(period_days: int) -> dt.date:
    return dt.date.fromordinal(1 + 2 * period_days)


async def at_risk(request: web.Request) -> web.Response:
    await authenticate(request, *SUPERVISORS)
    limit = _int(request, "limit", 100, 1, _MAX_LIMIT)
    async with request.app[appkeys.SESSIONS]() as session:
        rows = await value_reports.at_risk(session, limit)
    return web.json_response({"customers": rows})


async def win_back(request: web.Request) -> web.Response:
    principal = await authenticate(request, *SUPERVISORS)
    try:
        body = WinBack.model_validate_json(await request.read() or b"{}")
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from e
    due = body.due_at or dt.datetime.now(dt.UTC)
    if due.tzinfo is None:
        raise Invalid("due_at needs a time zone offset")
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        try:
            action = await value_reports.schedule_win_back(
                session, request.match_info["customer_id"], due, body.note,
                principal.agent_id)
        except crm.NoSuchCustomer as e:
            raise NotFound(str(e)) from e
        payload = value_reports.win_back_dict(action)
    payload.update(await _schedule_win_back(request, payload, due, principal.agent_id))
    return web.json_response(payload, status=201)


async def _schedule_win_back(request: web.Request, action: dict[str, Any], due: dt.datetime,
                             by: int | None) -> dict[str, Any]:
    """The win-back's callback, or why it could not be scheduled (the action stands)."""
    try:
        callback = await request.app[appkeys.CALLBACKS].schedule(Promise(
            due_at=due.timestamp(), customer_id=action["customer_id"],
            note=action["note"] or "win-back", source="winback", by=by))
    except CallError as e:
        return {"callback": None, "callback_error": {"code": e.code, "message": str(e)}}
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        await value_reports.note_win_back_callback(session, action["id"],
                                                   callback["callback_id"])
    return {"callback": callback, "callback_id": callback["callback_id"]}


async def churn_rates(request: web.Request) -> web.Response:
    await authenticate(request, *SUPERVISORS)
    period = _int(request, "period_days", 365, 1, 3660)
    end = _date(request, "end")
    if end.toordinal() - 2 * period < 1:  # the earlier period must start within the calendar
        raise Invalid(f"end must be on or after {_earliest_end(period).isoformat()} "
                      f"for period_days={period}")
    async with request.app[appkeys.SESSIONS]() as session:
        rates = await value_reports.churn_rates_for(session, end, period)
    if rates is None:
        return web.json_response({"period_days": period, "end": end.isoformat(),
                                  "customers_at_start": 0, "absolute": None, "relative": None})
    body: dict[str, Any] = dataclasses.asdict(rates)
    body.update(period_days=period, period_start=rates.period_start.isoformat(),
                period_end=rates.period_end.isoformat())
    return web.json_response(body)


async def satisfaction(request: web.Request) -> web.Response:
    await authenticate(request, *SUPERVISORS)
    by = request.query.get("by", "agent")
    if by not in GROUPS:
        raise Invalid(f"by must be one of {', '.join(GROUPS)}")
    since = None
    if raw := request.query.get("since"):
        try:
            since = dt.datetime.fromisoformat(raw)
        except ValueError as e:
            raise Invalid("since must be an ISO 8601 date-time") from e
    async with request.app[appkeys.SESSIONS]() as session:
        rows = await satisfaction_by(session, by, since)
    return web.json_response({"by": by, "rows": rows})


async def summary(request: web.Request) -> web.Response:
    await authenticate(request, *SUPERVISORS)
    async with request.app[appkeys.SESSIONS]() as session:
        run = await value_reports.last_run(session)
    policy = load_policy(request.app[appkeys.SETTINGS].value_policy_file)
    return web.json_response({"policy_version": policy.version, "last_run": run})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/value/at-risk", at_risk)
    app.router.add_post("/api/v1/customers/{customer_id}/win-back", win_back)
    app.router.add_get("/api/v1/value/churn-rates", churn_rates)
    app.router.add_get("/api/v1/value/satisfaction", satisfaction)
    app.router.add_get("/api/v1/value/summary", summary)
