"""The webhook API (admins): subscriptions, their delivery log, dead-letter replay."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ValidationError

from core import appkeys, audit
from core.audit_views import viewer
from core.models import Role, WebhookSubscription
from core.web import Invalid, authenticate
from cti.schemas import describe
from webhooks import events, signing, store, urls
from webhooks.exceptions import BadWebhook
from webhooks.schemas import NewSubscription, Replay, SubscriptionChange

M = TypeVar("M", bound=BaseModel)
STATUSES = (store.PENDING, store.DELIVERED, store.DEAD)

async def _body(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from e

def _int(raw: str, name: str) -> int:
    try:
        value = int(raw)
    except ValueError as e:
        raise Invalid(f"{name} must be a whole number, not {raw!r}") from e
    if not 0 < value < 2**31:
        raise Invalid(f"{name} is out of range")
    return value

def own_addresses(request: web.Request) -> list[tuple[str, int]]:
    """Where this service is reached: the request's host, its bind address, public URL."""
    settings = request.app[appkeys.SETTINGS]
    own = [(settings.host, settings.port)]
    for url in (f"http://{request.host}", settings.public_url):
        if url:
            parts = urlsplit(url)
            default = 443 if parts.scheme == "https" else 80
            try:
                own.append((parts.hostname or "", parts.port or default))
            except ValueError:
                continue
    return own

async def check(request: web.Request, url: str | None, names: list[str] | None) -> None:
    """Everything about a subscription that can be wrong, before anything is stored."""
    if names is not None:
        wrong = events.invalid_types(names)
        if wrong:
            raise BadWebhook(f"unknown event type(s) {', '.join(map(repr, wrong))}; "
                             f"known: {', '.join(sorted(events.EVENT_TYPES | events.PATTERNS))}")
    if url is not None:
        await urls.check(url, own_addresses(request))

def _audit(request: web.Request, session: Any, action: str, subscription_id: int,
           **detail: Any) -> None:
    audit.record(session, viewer(request), action, [("webhook", str(subscription_id))], detail)
    # Every change passes here: events are queued from now on, whatever the change.
    request.app[appkeys.WEBHOOKS].forget_subscriptions()


async def _changed(request: web.Request) -> None:
    """After the change is committed: every node looks the subscriptions up again."""
    await request.app[appkeys.WEBHOOKS].changed()

async def create(request: web.Request) -> web.Response:
    principal = await authenticate(request, Role.admin)
    body = await _body(request, NewSubscription)
    await check(request, body.url, body.events)
    secret = body.secret or signing.new_secret()
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        sub = WebhookSubscription(url=body.url, events=sorted(set(body.events)), secret=secret,
                                  active=body.active, description=body.description,
                                  created_by=principal.name)
        session.add(sub)
        await session.flush()
        _audit(request, session, "webhook.create", sub.id, url=body.url)
        created = store.subscription_dict(sub)
    await _changed(request)
    # The secret is shown once, here; later reads leave it out.
    return web.json_response({**created, "secret": secret}, status=201)

async def list_all(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    async with request.app[appkeys.SESSIONS]() as session:
        subs = await store.active(session)
        return web.json_response({"webhooks": [store.subscription_dict(s) for s in subs]})

async def get_one(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    async with request.app[appkeys.SESSIONS]() as session:
        sub = await store.get(session, _int(request.match_info["webhook_id"], "webhook id"))
        return web.json_response(store.subscription_dict(sub))

async def change(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    subscription_id = _int(request.match_info["webhook_id"], "webhook id")
    body = await _body(request, SubscriptionChange)
    await check(request, body.url, body.events)
    values = body.model_dump(exclude_none=True)
    if "events" in values:
        values["events"] = sorted(set(values["events"]))
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        sub = await store.get(session, subscription_id)
        for name, value in values.items():
            setattr(sub, name, value)
        _audit(request, session, "webhook.change", sub.id,
               fields=sorted(k for k in values if k != "secret"))
        changed = store.subscription_dict(sub)
    await _changed(request)
    return web.json_response(changed)

async def delete(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    subscription_id = _int(request.match_info["webhook_id"], "webhook id")
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        await session.delete(await store.get(session, subscription_id))
        _audit(request, session, "webhook.delete", subscription_id)
    await _changed(request)
    return web.Response(status=204)

async def deliveries(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    subscription_id = _int(request.match_info["webhook_id"], "webhook id")
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}")
    limit = min(_int(request.query.get("limit", "100"), "limit"), 1000)
    before = request.query.get("before_id")
    async with request.app[appkeys.SESSIONS]() as session:
        await store.get(session, subscription_id)
        rows = await store.log(session, subscription_id, status, limit,
                               _int(before, "before_id") if before else None)
        return web.json_response({"deliveries": [store.delivery_dict(d) for d in rows]})

async def replay(request: web.Request) -> web.Response:
    await authenticate(request, Role.admin)
    subscription_id = _int(request.match_info["webhook_id"], "webhook id")
    body = await _body(request, Replay) if request.can_read_body else Replay()
    now = request.app[appkeys.WEBHOOKS].sender.now()
    async with request.app[appkeys.SESSIONS]() as session, session.begin():
        await store.get(session, subscription_id)
        count = await store.replay(session, subscription_id, body.delivery_id, now)
        _audit(request, session, "webhook.replay", subscription_id, count=count)
    await _changed(request)  # replayed deliveries are due now, on whichever node
    return web.json_response({"replayed": count})

async def event_types(request: web.Request) -> web.Response:
    """The event types a subscription may name, and the patterns (for the admin page)."""
    await authenticate(request, Role.admin)
    return web.json_response({"event_types": sorted(events.EVENT_TYPES),
                              "patterns": sorted(events.PATTERNS)})

def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/webhook-events", event_types)
    app.router.add_get("/api/v1/webhooks", list_all)
    app.router.add_post("/api/v1/webhooks", create)
    app.router.add_get("/api/v1/webhooks/{webhook_id}", get_one)
    app.router.add_patch("/api/v1/webhooks/{webhook_id}", change)
    app.router.add_delete("/api/v1/webhooks/{webhook_id}", delete)
    app.router.add_get("/api/v1/webhooks/{webhook_id}/deliveries", deliveries)
    app.router.add_post("/api/v1/webhooks/{webhook_id}/replay", replay)
