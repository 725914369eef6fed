"""Forms in the database: created, edited (a new version) and read. Each change is
written with its audit entry in one transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.models import QualityForm
from quality.exceptions import NotFound
from quality.forms import FormBody, sections_json


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def form_dict(form: QualityForm) -> dict[str, Any]:
    return {"id": form.id, "name": form.name, "description": form.description,
            "sections": form.sections, "active": form.active, "version": form.version,
            "total_weight": round(sum(q["weight"] for s in form.sections
                                      for q in s["questions"]), 4),
            "created_by": form.created_by, "created_at": iso(form.created_at),
            "updated_at": iso(form.updated_at)}


async def create_form(session: AsyncSession, viewer: audit.Viewer,
                      body: FormBody) -> QualityForm:
    form = QualityForm(name=body.name, description=body.description,
                       sections=sections_json(body), active=body.active, version=1,
                       created_by=viewer.actor[:64])
    session.add(form)
    await session.flush()
    audit.record(session, viewer, "quality_form_create", [("quality_form", str(form.id))],
                 {"after": _summary(form)})
    return form


async def update_form(session: AsyncSession, viewer: audit.Viewer, form_id: int,
                      body: FormBody) -> QualityForm:
    """Evaluations already given keep the version they were scored with."""
    form = await get_form(session, form_id, for_update=True)
    before = _summary(form)
    form.name, form.description = body.name, body.description
    form.sections, form.active = sections_json(body), body.active
    form.version += 1
    await session.flush()
    audit.record(session, viewer, "quality_form_update", [("quality_form", str(form.id))],
                 {"before": before, "after": _summary(form)})
    return form


async def get_form(session: AsyncSession, form_id: int, *,
                   for_update: bool = False) -> QualityForm:
    query = select(QualityForm).where(QualityForm.id == form_id)
    form = await session.scalar(query.with_for_update() if for_update else query)
    if form is None:
        raise NotFound(f"no form {form_id}")
    return form


async def list_forms(session: AsyncSession, *, active_only: bool) -> list[QualityForm]:
    query = select(QualityForm).order_by(QualityForm.id)
    if active_only:
        query = query.where(QualityForm.active.is_(True))
    return list(await session.scalars(query))


def _summary(form: QualityForm) -> dict[str, Any]:
    """What the audit log keeps of a form's version: enough to see what changed."""
    return {"name": form.name, "active": form.active, "version": form.version,
            "questions": [{"key": q["key"], "weight": q["weight"], "kind": q["kind"],
                           "critical": q["critical"]}
                          for s in form.sections for q in s["questions"]]}
