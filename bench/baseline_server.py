"""A bare aiohttp websocket server: the ceiling any Python gateway on this machine can reach.

`/echo` answers every text frame with an ack-sized reply; `/pbx` + `/agent` relay each
frame from a PBX connection to the next agent connection (round-robin), which is the
least work a screen-pop can be. Run: python bench/baseline_server.py PORT
"""

from __future__ import annotations

import itertools
import json
import sys

from aiohttp import WSMsgType, web

AGENTS: list[web.WebSocketResponse] = []
_next = itertools.count()


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            frame = json.loads(msg.data)
            await ws.send_str(json.dumps({"type": "ack", "event_id": frame.get("event_id"),
                                          "duplicate": False}))
    return ws


async def agent(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    AGENTS.append(ws)
    async for _ in ws:
        pass
    AGENTS.remove(ws)
    return ws


async def pbx(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT and AGENTS:
            frame = json.loads(msg.data)
            target = AGENTS[next(_next) % len(AGENTS)]
            await target.send_str(json.dumps({"type": "screen_pop",
                                              "call_id": frame.get("call_id")}))
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/agent", agent)
    app.router.add_get("/pbx", pbx)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
