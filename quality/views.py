"""REST API v1 for quality evaluations (docs/quality.md).

Supervisors and admins build forms, evaluate recorded calls, resolve disputes, sample
calls and read the statistics; an agent reads its own evaluations (and the calls they
are about), acknowledges or disputes them, and reads its own statistics. Every change
and every look at a call's transcript is in the audit log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from core import appkeys
from core.audit_views import viewed, viewer
from core.models import Interaction, QualityEvaluation, Role
from core.web import authenticate
from quality import evaluations as ev
from quality import sampler, stats
from quality.evaluations import Actor, NewEvaluation, Outcome, Status
from quality.exceptions import InvalidAnswers
from quality.forms import check_form, describe
from quality.http import MANAGERS, STAFF, actor, open_session, row_id
from quality.recordings import visible_call
from quality.store import create_form, form_dict, get_form, iso, list_forms, update_form
from reports.periods import BadReport, parse_range

RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]
Note = Annotated[str, Field(max_length=4000)]
Answer = Literal["yes", "no", "na"] | Annotated[StrictInt, Field(ge=0, le=10)]
Answers = Annotated[dict[Annotated[str, Field(max_length=40)], Answer], Field(max_length=500)]
LIST_LIMIT = 200


class EvaluateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    form_id: RowId
    interaction_id: RowId
    answers: Answers
    comment: Note = ""


class AcknowledgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Note = ""


class DisputeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=4000)]


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Outcome
    note: Note = ""
    answers: Answers | None = None


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.read() or b"{}")
    except ValidationError as e:
        raise InvalidAnswers(describe(e)) from e


# Forms ---------------------------------------------------------------------------


async def forms(request: web.Request) -> web.Response:
    await authenticate(request, *MANAGERS)
    active_only = request.query.get("active") in ("1", "true")
    async with open_session(request) as session:
        found = await list_forms(session, active_only=active_only)
    return web.json_response({"forms": [form_dict(f) for f in found]})


async def new_form(request: web.Request) -> web.Response:
    principal = await authenticate(request, *MANAGERS)
    body = check_form(await request.read())
    async with open_session(request) as session, session.begin():
        form = await create_form(session, viewer(request, principal), body)
    return web.json_response(form_dict(form), status=201)


async def one_form(request: web.Request) -> web.Response:
    await authenticate(request, *MANAGERS)
    async with open_session(request) as session:
        form = await get_form(session, row_id(request, "form_id"))
    return web.json_response(form_dict(form))


async def edit_form(request: web.Request) -> web.Response:
    principal = await authenticate(request, *MANAGERS)
    form_id = row_id(request, "form_id")
    body = check_form(await request.read())
    async with open_session(request) as session, session.begin():
        form = await update_form(session, viewer(request, principal), form_id, body)
    return web.json_response(form_dict(form))


# Evaluations ---------------------------------------------------------------------


async def list_evaluations(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    query = request.query
    try:
        status = Status(query["status"]) if query.get("status") else None
    except ValueError:
        raise InvalidAnswers(f"unknown status {query['status'][:20]!r}") from None
    async with open_session(request) as session:
        found = await ev.listing(session, actor(request, principal),
                                 agent_id=_number(query.get("agent_id"), "agent_id"),
                                 status=status,
                                 interaction_id=_number(query.get("interaction_id"),
                                                        "interaction_id"),
                                 limit=_number(query.get("limit"), "limit", LIST_LIMIT)
                                 or LIST_LIMIT)
        agent_names = await ev.names(session, {e.agent_id for e in found})
    return web.json_response({"evaluations": [ev.evaluation_dict(e, agent_names)
                                              for e in found]})


def _number(raw: str | None, name: str, top: int = 2**31 - 1) -> int | None:
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= top:
        raise InvalidAnswers(f"{name} must be a whole number from 1 to {top}")
    return int(raw)


async def evaluate(request: web.Request) -> web.Response:
    principal = await authenticate(request, *MANAGERS)
    body: EvaluateBody = await _body(request, EvaluateBody)
    new = NewEvaluation(body.form_id, body.interaction_id, dict(body.answers), body.comment)
    async with open_session(request) as session, session.begin():
        evaluation = await ev.evaluate(session, actor(request, principal), new)
        agent_names = await ev.names(session, {evaluation.agent_id})
    return web.json_response(ev.evaluation_dict(evaluation, agent_names), status=201)


async def one_evaluation(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    async with open_session(request) as session:
        evaluation = await ev.get(session, actor(request, principal),
                                  row_id(request, "evaluation_id"))
        agent_names = await ev.names(session, {evaluation.agent_id})
    return web.json_response(ev.evaluation_dict(evaluation, agent_names))


# A change of an evaluation by its agent or a supervisor: who asks, which evaluation,
# the checked body -> the step to run in the change's transaction.
Step = Callable[[AsyncSession], Awaitable[QualityEvaluation]]
Prepare = Callable[[web.Request, Actor, int, Any], Awaitable[Step]]
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _change(roles: Iterable[Role], model: type[BaseModel], prepare: Prepare) -> Handler:
    """acknowledge, dispute and resolve: authenticate, check the body, run the step in
    one transaction, answer the evaluation as it is after."""
    allowed = tuple(roles)

    async def handler(request: web.Request) -> web.Response:
        principal = await authenticate(request, *allowed)
        body = await _body(request, model)
        step = await prepare(request, actor(request, principal),
                             row_id(request, "evaluation_id"), body)
        async with open_session(request) as session, session.begin():
            evaluation = await step(session)
            agent_names = await ev.names(session, {evaluation.agent_id})
        return web.json_response(ev.evaluation_dict(evaluation, agent_names))
    return handler


async def _acknowledged(request: web.Request, who: Actor, evaluation_id: int,
                        body: AcknowledgeBody) -> Step:
    return lambda session: ev.acknowledge(session, who, evaluation_id, body.comment)


async def _disputed(request: web.Request, who: Actor, evaluation_id: int,
                    body: DisputeBody) -> Step:
    return lambda session: ev.dispute(session, who, evaluation_id, body.reason)


async def _resolved(request: web.Request, who: Actor, evaluation_id: int,
                    body: ResolveBody) -> Step:
    """The evaluation is read beforehand, in its own session (quality/evaluations.py)."""
    answers = dict(body.answers) if body.answers is not None else None
    async with open_session(request) as session:
        current = await ev.get(session, who, evaluation_id)
    return lambda session: ev.resolve(session, who, current, body.outcome, body.note, answers)


acknowledge = _change((Role.agent,), AcknowledgeBody, _acknowledged)
dispute = _change((Role.agent,), DisputeBody, _disputed)
resolve = _change(MANAGERS, ResolveBody, _resolved)


# Calls: what to evaluate, and the call beside its transcript ---------------------


async def sample(request: web.Request) -> web.Response:
    await authenticate(request, *MANAGERS)
    settings, query = request.app[appkeys.SETTINGS], request.query
    today = dt.datetime.fromtimestamp(request.app[appkeys.CALLS].clock(), settings.zone).date()
    week = sampler.Week.parse(query.get("week"), settings.zone, today)
    per_agent = _number(query.get("per_agent"), "per_agent", sampler.PER_AGENT_MAX)
    seed = query.get("seed") or "0"
    if len(seed) > 64:
        raise InvalidAnswers("seed must be at most 64 characters")
    async with open_session(request) as session:
        proposal = await sampler.propose(session, week, per_agent or 2, seed)
    return web.json_response(proposal)


async def call(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    async with open_session(request) as db:
        record, seen = await visible_call(db, actor(request, principal),
                                          row_id(request, "interaction_id"))
        agent_names = await ev.names(db, {record.agent_id or 0, *(e.agent_id for e in seen)})
    if record.transcript:
        await viewed(request, [("transcript", str(record.id))], action="quality_call")
    return web.json_response(call_dict(record, agent_names) | {
        "evaluations": [ev.evaluation_dict(e, agent_names) for e in seen]})


def call_dict(record: Interaction, agent_names: dict[int, str]) -> dict[str, Any]:
    lines = [{"speaker": u.get("speaker"), "start": u.get("start"), "end": u.get("end"),
              "text": u.get("text")} for u in (record.transcript or [])]
    return {"interaction_id": record.id, "call_id": record.call_id,
            "agent_id": record.agent_id, "agent_name": agent_names.get(record.agent_id or 0, ""),
            "queue": record.queue, "offered_at": iso(record.offered_at),
            "answered_at": iso(record.answered_at), "ended_at": iso(record.ended_at),
            "talk_s": record.talk_s, "disposition": record.disposition,
            "complaint_flag": record.complaint_flag, "has_recording": bool(record.recording_path),
            "transcript_status": record.transcript_status, "transcript": lines}


async def scores(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    settings, query = request.app[appkeys.SETTINGS], request.query
    try:
        by = stats.By(query.get("by") or "agent")
    except ValueError:
        raise BadReport("by must be agent, queue or question") from None
    rng = parse_range(query.get("from"), query.get("to"), query.get("interval") or "week",
                      settings.zone, settings.report_max_days)
    own = None if principal.has(*MANAGERS) else (principal.agent_id or -1)
    async with open_session(request) as session:
        result = await stats.scores(session, rng, by, agent_id=own)
    return web.json_response(result)


def setup(app: web.Application) -> None:
    add = app.router
    add.add_get("/api/v1/quality/forms", forms)
    add.add_post("/api/v1/quality/forms", new_form)
    add.add_get("/api/v1/quality/forms/{form_id}", one_form)
    add.add_put("/api/v1/quality/forms/{form_id}", edit_form)
    add.add_get("/api/v1/quality/evaluations", list_evaluations)
    add.add_post("/api/v1/quality/evaluations", evaluate)
    add.add_get("/api/v1/quality/evaluations/{evaluation_id}", one_evaluation)
    add.add_post("/api/v1/quality/evaluations/{evaluation_id}/acknowledge", acknowledge)
    add.add_post("/api/v1/quality/evaluations/{evaluation_id}/dispute", dispute)
    add.add_post("/api/v1/quality/evaluations/{evaluation_id}/resolve", resolve)
    add.add_get("/api/v1/quality/sample", sample)
    add.add_get("/api/v1/quality/calls/{interaction_id}", call)
    add.add_get("/api/v1/quality/stats", scores)
