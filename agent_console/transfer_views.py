"""`GET /api/v1/transfer-targets`: what the console's transfer dialog offers, live: the
queues (with how many callers wait in each and how many agents are available for it) and
the colleagues with their states, available ones first (then by how long they have been
available, then by name). The dialog reads it again every few seconds while open."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent_console.control_views import STAFF
from core import appkeys
from core.web import authenticate
from routing.engine import queue_pool

# How the dialog orders colleagues: who can take the call now first.
_STATE_ORDER = {"available": 0, "wrap_up": 1, "on_call": 2, "ringing": 2, "not_ready": 3}


def agent_rows(agents: list[dict[str, str]], me: int | None) -> list[dict[str, Any]]:
    """Logged-in colleagues (not `me`), available first, longest available first."""
    rows: list[dict[str, Any]] = [
        {"agent_id": int(a["id"]), "name": a.get("name") or a.get("username") or a["id"],
         "state": a.get("state", "logged_out"), "since": float(a.get("since") or 0)}
        for a in agents if a.get("id") and a.get("state", "logged_out") != "logged_out"]
    rows = [r for r in rows if r["agent_id"] != me]
    rows.sort(key=lambda r: (_STATE_ORDER.get(r["state"], 4), r["since"], r["name"]))
    return rows


async def transfer_targets(request: web.Request) -> web.Response:
    principal = await authenticate(request, *STAFF)
    router = request.app[appkeys.ROUTER]
    names = {q.name: q.display_name or q.name for q in request.app[appkeys.DIRECTORY].queue_rows}
    queue_names = sorted(router.queues)
    keys = router.store.keys
    async with router.store.redis.pipeline(transaction=False) as pipe:
        for name in queue_names:  # a queue's pool holds the agents available for it
            pipe.zcard(keys.waiting(name)).zcard(keys.pool(queue_pool(name)))
        counts = await pipe.execute()
    queues = [{"name": name, "display_name": names.get(name, name), "waiting": int(waiting),
               "available": int(available)}
              for name, waiting, available in zip(queue_names, counts[::2], counts[1::2],
                                                  strict=True)]
    agents = agent_rows(await router.store.agents(), principal.agent_id)
    return web.json_response({"queues": queues, "agents": agents})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/transfer-targets", transfer_targets)
