"""`/api/v1/admin/queues`, `/codes`, `/skills`, `/routing-policy`: the center's
configuration (admins change it; supervisors read it)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from admin import center
from admin.http import PARTS, body
from admin.schemas import CodeList, NewQueue, PolicyChange, QueueBody, Skills
from core import appkeys
from core.audit_views import viewer
from core.codes import KINDS
from core.models import Queue, Role
from core.web import Invalid, authenticate

READERS = (Role.supervisor, Role.admin)


async def _waiting(request: web.Request, name: str) -> int:
    keys = request.app[appkeys.KEYS]
    return int(await request.app[appkeys.REDIS].zcard(keys.waiting(name)))


def _queue_name(request: web.Request) -> str:
    name = request.match_info["queue"]
    if len(name) > 64:
        raise Invalid("a queue name has at most 64 characters")
    return name


async def _repool(request: web.Request) -> None:
    """Every live agent into the pools the queues give it now; one that is free takes a
    waiting call it may serve now."""
    parts = request.app[PARTS]
    for agent_id, agent in (await parts.directory.register_all()).items():
        await parts.calls.offer_waiting(agent_id, agent)


async def list_queues(request: web.Request) -> web.Response:
    await authenticate(request, *READERS)
    async with request.app[appkeys.SESSIONS]() as session:
        rows = list((await session.scalars(select(Queue).order_by(Queue.name))).all())
    if center.DEFAULT not in {q.name for q in rows}:
        rows.insert(0, center.default_queue())
    return web.json_response({"queues": [
        center.queue_dict(q, await _waiting(request, q.name)) for q in rows]})


async def create_queue(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    new = await body(request, NewQueue)

    async def change(session: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        queue = center.queue_dict(await center.create_queue(session, new))
        return queue, {"before": None, "after": queue}

    made = await request.app[PARTS].changes.make(viewer(request), "queue.create",
                                                 ("queue", new.name), change)
    await _repool(request)
    return web.json_response(made, status=201)


async def change_queue(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    name, given = _queue_name(request), await body(request, QueueBody)

    async def change(session: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        before, after = await center.change_queue(session, name, given)
        return after, {"before": before, "after": after}

    after = await request.app[PARTS].changes.make(viewer(request), "queue.change",
                                                  ("queue", name), change)
    if "skills" in given.model_fields_set:
        await _repool(request)
    return web.json_response(after)


async def remove_queue(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    name = _queue_name(request)
    waiting = await _waiting(request, name)

    async def change(session: Any) -> tuple[None, dict[str, Any]]:
        return None, {"before": await center.remove_queue(session, name, waiting),
                      "after": None}

    await request.app[PARTS].changes.make(viewer(request), "queue.remove", ("queue", name),
                                          change)
    await _repool(request)
    return web.Response(status=204)


async def list_codes(request: web.Request) -> web.Response:
    await authenticate(request, *READERS)
    codes = request.app[appkeys.CODES]
    return web.json_response({kind: codes.listed(kind) for kind in KINDS})


async def set_codes(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise Invalid(f"the kinds of codes are {', '.join(KINDS)}")
    given = await body(request, CodeList)
    codes = request.app[appkeys.CODES]

    async def change(session: Any) -> tuple[None, dict[str, Any]]:
        before, after = await center.set_codes(session, kind, given, codes)
        return None, {"before": before, "after": after}

    await request.app[PARTS].changes.make(viewer(request), "codes.change", ("codes", kind),
                                          change)
    return web.json_response({kind: codes.listed(kind)})


async def get_skills(request: web.Request) -> web.Response:
    await authenticate(request, *READERS)
    async with request.app[appkeys.SESSIONS]() as session:
        return web.json_response({"skills": await center.skills(session)})


async def set_skills(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    given = await body(request, Skills)

    async def change(session: Any) -> tuple[list[str], dict[str, Any]]:
        before, after = await center.set_skills(session, given.skills)
        return after, {"before": before, "after": after}

    after = await request.app[PARTS].changes.make(viewer(request), "skills.change",
                                                  ("skills", "center"), change)
    return web.json_response({"skills": after})


async def get_policy(request: web.Request) -> web.Response:
    await authenticate(request, *READERS)
    async with request.app[appkeys.SESSIONS]() as session:
        return web.json_response(await center.policy(session))


async def set_policy(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    given = await body(request, PolicyChange)

    async def change(session: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        before, after = await center.change_policy(session, given)
        return after, {"before": before, "after": after}

    after = await request.app[PARTS].changes.make(viewer(request), "routing_policy.change",
                                                  ("routing_policy", "center"), change)
    return web.json_response(after)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/queues", list_queues)
    app.router.add_post("/api/v1/admin/queues", create_queue)
    app.router.add_patch("/api/v1/admin/queues/{queue}", change_queue)
    app.router.add_delete("/api/v1/admin/queues/{queue}", remove_queue)
    app.router.add_get("/api/v1/admin/codes", list_codes)
    app.router.add_put("/api/v1/admin/codes/{kind}", set_codes)
    app.router.add_get("/api/v1/admin/skills", get_skills)
    app.router.add_put("/api/v1/admin/skills", set_skills)
    app.router.add_get("/api/v1/admin/routing-policy", get_policy)
    app.router.add_put("/api/v1/admin/routing-policy", set_policy)
