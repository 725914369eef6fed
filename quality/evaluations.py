"""Evaluations: a supervisor scores a recorded call; the agent acknowledges or disputes
it; a supervisor resolves a dispute, upholding the score or revising the answers.

    submitted --acknowledge--> acknowledged
    submitted --dispute------> disputed --resolve (upheld | revised)--> resolved

Each step is one conditional UPDATE (`WHERE status = <the state it expects>`), so of two
people acting at once exactly one wins and the other gets `conflict`; the winner's audit
entry is written in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.models import Agent, Interaction, QualityEvaluation, utcnow
from quality import scoring
from quality.exceptions import Conflict, Forbidden, InvalidAnswers, NoRecording, NotFound
from quality.store import form_dict, get_form, iso


class Status(str, Enum):
    submitted = "submitted"
    acknowledged = "acknowledged"
    disputed = "disputed"
    resolved = "resolved"


class Outcome(str, Enum):
    upheld = "upheld"
    revised = "revised"


@dataclass(frozen=True)
class Actor:
    viewer: audit.Viewer
    agent_id: int | None
    manager: bool  # supervisor or admin


@dataclass(frozen=True)
class NewEvaluation:
    form_id: int
    interaction_id: int
    answers: dict[str, Any]
    comment: str = ""


async def evaluate(session: AsyncSession, actor: Actor, new: NewEvaluation) -> QualityEvaluation:
    form = await get_form(session, new.form_id)
    if not form.active:
        raise InvalidAnswers(f"form {form.id} is archived")
    call = await session.get(Interaction, new.interaction_id)
    if call is None:
        raise NotFound(f"no call record {new.interaction_id}")
    if not call.recording_path:
        raise NoRecording(f"call record {call.id} has no recording to evaluate")
    if call.agent_id is None:
        raise InvalidAnswers(f"call record {call.id} was not answered by an agent")
    if call.agent_id == actor.agent_id:
        raise Forbidden("nobody evaluates their own call")
    result = scoring.score(form.sections, new.answers)
    evaluation = QualityEvaluation(
        form_id=form.id, form=form_dict(form), interaction_id=call.id, call_id=call.call_id,
        agent_id=call.agent_id, queue=call.queue, call_at=call.offered_at,
        evaluator_id=actor.agent_id or 0, evaluator=actor.viewer.actor[:64],
        answers=new.answers, comment=new.comment, score=result.score, earned=result.earned,
        applicable=result.applicable, critical_failed=result.critical_failed,
        status=Status.submitted.value)
    session.add(evaluation)
    try:
        await session.flush()
    except IntegrityError as e:
        raise Conflict(f"you have evaluated call record {new.interaction_id} with form "
                       f"{new.form_id} already") from e
    _audit(session, actor, "quality_evaluate", evaluation,
           interaction_id=call.id, agent_id=call.agent_id, score=result.score)
    return evaluation


async def acknowledge(session: AsyncSession, actor: Actor, evaluation_id: int,
                      comment: str) -> QualityEvaluation:
    return await _agent_step(session, actor, evaluation_id, Status.acknowledged, comment)


async def dispute(session: AsyncSession, actor: Actor, evaluation_id: int,
                  reason: str) -> QualityEvaluation:
    if not reason.strip():
        raise InvalidAnswers("say why you dispute the evaluation")
    return await _agent_step(session, actor, evaluation_id, Status.disputed, reason)


async def resolve(session: AsyncSession, actor: Actor, current: QualityEvaluation,
                  outcome: Outcome, note: str,
                  answers: dict[str, Any] | None) -> QualityEvaluation:
    """Resolve `current` (read beforehand, outside this transaction, so the transaction
    starts with its write: on SQLite a read first could lose its snapshot to another
    node's write and fail rather than wait)."""
    values: dict[str, Any] = {"resolution": outcome.value, "resolution_note": note,
                              "resolved_by": actor.viewer.actor[:64]}
    if outcome is Outcome.revised:
        if answers is None:
            raise InvalidAnswers("a revised evaluation needs its new answers")
        result = scoring.score(current.form["sections"], answers)
        values |= {"answers": answers, "score": result.score, "earned": result.earned,
                   "applicable": result.applicable, "critical_failed": result.critical_failed,
                   "original_score": current.score}
    elif answers is not None:
        raise InvalidAnswers("an upheld evaluation keeps its answers: send none")
    await _step(session, current.id, Status.disputed, Status.resolved, values)
    evaluation = await get(session, actor, current.id, refresh=True)
    _audit(session, actor, "quality_resolve", evaluation, outcome=outcome.value,
           before=current.score if outcome is Outcome.revised else None,
           score=evaluation.score)
    return evaluation


async def _agent_step(session: AsyncSession, actor: Actor, evaluation_id: int, to: Status,
                      comment: str) -> QualityEvaluation:
    """The write comes first (see `resolve`); only a refused one is looked at to say why."""
    await _step(session, evaluation_id, Status.submitted, to, {"agent_comment": comment},
                agent_id=actor.agent_id if actor.agent_id is not None else -1, actor=actor)
    evaluation = await get(session, actor, evaluation_id, refresh=True)
    _audit(session, actor, f"quality_{'acknowledge' if to is Status.acknowledged else 'dispute'}",
           evaluation, score=evaluation.score)
    return evaluation


async def _step(session: AsyncSession, evaluation_id: int, expected: Status, to: Status,
                values: dict[str, Any], *, agent_id: int | None = None,
                actor: Actor | None = None) -> None:
    """Move the evaluation from `expected` to `to` (only the evaluated agent's, when
    `agent_id` is given), or say why not: NotFound, Forbidden or Conflict."""
    query = update(QualityEvaluation).where(QualityEvaluation.id == evaluation_id,
                                            QualityEvaluation.status == expected.value)
    if agent_id is not None:
        query = query.where(QualityEvaluation.agent_id == agent_id)
    moved = cast(CursorResult[Any], await session.execute(
        query.values(status=to.value, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)))
    if moved.rowcount == 1:
        return
    row = (await session.execute(select(QualityEvaluation.status, QualityEvaluation.agent_id)
                                 .where(QualityEvaluation.id == evaluation_id))).first()
    if row is None or (actor is not None and not actor.manager and row.agent_id != agent_id):
        raise NotFound(f"no evaluation {evaluation_id}")
    if agent_id is not None and row.agent_id != agent_id:
        raise Forbidden("only the evaluated agent acknowledges or disputes an evaluation")
    raise Conflict(f"evaluation {evaluation_id} is {row.status}, not {expected.value}")


async def get(session: AsyncSession, actor: Actor, evaluation_id: int, *,
              refresh: bool = False) -> QualityEvaluation:
    """The evaluation, if `actor` may see it: managers any, agents their own."""
    query = select(QualityEvaluation).where(QualityEvaluation.id == evaluation_id)
    if refresh:
        query = query.execution_options(populate_existing=True)
    evaluation = await session.scalar(query)
    if evaluation is None or not (actor.manager or evaluation.agent_id == actor.agent_id):
        raise NotFound(f"no evaluation {evaluation_id}")
    return evaluation


async def listing(session: AsyncSession, actor: Actor, *, agent_id: int | None,
                  status: Status | None, interaction_id: int | None,
                  limit: int) -> list[QualityEvaluation]:
    query = select(QualityEvaluation).order_by(QualityEvaluation.id.desc()).limit(limit)
    if not actor.manager:
        agent_id = actor.agent_id if actor.agent_id is not None else -1
    if agent_id is not None:
        query = query.where(QualityEvaluation.agent_id == agent_id)
    if status is not None:
        query = query.where(QualityEvaluation.status == status.value)
    if interaction_id is not None:
        query = query.where(QualityEvaluation.interaction_id == interaction_id)
    return list(await session.scalars(query))


async def names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    rows = await session.execute(select(Agent.id, Agent.display_name, Agent.username)
                                 .where(Agent.id.in_(ids or {-1})))
    return {row.id: row.display_name or row.username for row in rows}


def evaluation_dict(e: QualityEvaluation, agent_names: dict[int, str]) -> dict[str, Any]:
    return {"id": e.id, "form_id": e.form_id, "form": e.form, "interaction_id": e.interaction_id,
            "call_id": e.call_id, "agent_id": e.agent_id,
            "agent_name": agent_names.get(e.agent_id, ""), "queue": e.queue,
            "call_at": iso(e.call_at), "evaluator": e.evaluator, "answers": e.answers,
            "comment": e.comment, "score": e.score, "earned": e.earned,
            "applicable": e.applicable, "critical_failed": e.critical_failed,
            "status": e.status, "agent_comment": e.agent_comment, "resolution": e.resolution,
            "resolution_note": e.resolution_note, "resolved_by": e.resolved_by,
            "original_score": e.original_score, "created_at": iso(e.created_at),
            "updated_at": iso(e.updated_at)}


def _audit(session: AsyncSession, actor: Actor, action: str, evaluation: QualityEvaluation,
           **detail: Any) -> None:
    audit.record(session, actor.viewer, action, [("quality_evaluation", str(evaluation.id))],
                 detail)
