"""Simulated colleagues: demo agents whose consoles sign in, take the calls the service
gives them, wrap up after a realistic time and now and then take a break, over the same
`/ws/agent` protocol the browser console speaks."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from typing import Any

import aiohttp
import orjson

from demo.background import Background

log = logging.getLogger(__name__)

WRAP_S = (4.0, 15.0)
BREAK_EVERY = 8  # calls between two breaks, on average
BREAK_S = (20.0, 60.0)
DISPOSITIONS = ("resolved", "resolved", "information", "follow_up", "sale", "escalated")


class Colleague:
    def __init__(self, url: str, token: str, agent_id: int, rng: random.Random,
                 scale: float = 1.0) -> None:
        self.url, self.token, self.agent_id, self.rng = url, token, agent_id, rng
        self.scale = scale
        self.calls_taken = 0
        self._ids = itertools.count()
        self.background = Background(f"demo agent {agent_id}")
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def run(self, http: aiohttp.ClientSession) -> None:
        while True:
            try:
                async with http.ws_connect(f"{self.url}/ws/agent", heartbeat=20,
                                           headers={"Authorization": f"Bearer {self.token}"}
                                           ) as ws:
                    self._ws = ws
                    await self._request("agent.state.set", state="available")
                    async for message in ws:
                        if message.type is aiohttp.WSMsgType.TEXT:
                            self._on(orjson.loads(message.data))
            except (aiohttp.ClientError, OSError) as e:
                log.debug("demo agent %s not connected: %s", self.agent_id, e)
            await asyncio.sleep(1.0)

    async def _request(self, type_: str, **fields: Any) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_str(orjson.dumps({"type": type_, "id": f"d{next(self._ids)}",
                                                 **fields}).decode())

    def _on(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "call.ended" and message.get("wrap_up_until"):
            self.calls_taken += 1
            self.background.spawn(self._wrap_up(message["call_id"]))
        elif kind == "agent.state" and message["state"] == "not_ready" \
                and message.get("reason") in ("missed", "disconnected"):
            self.background.spawn(self._request("agent.state.set", state="available"))

    async def _wrap_up(self, call_id: str) -> None:
        await asyncio.sleep(self.scale * self.rng.uniform(*WRAP_S))
        if self.rng.random() < 1 / BREAK_EVERY:
            await self._request("agent.state.set", state="not_ready", reason="break")
            asyncio.get_running_loop().call_later(
                self.scale * self.rng.uniform(*BREAK_S),
                lambda: self.background.spawn(self._request("agent.state.set",
                                                            state="available")))
        await self._request("wrapup.done", call_id=call_id,
                            disposition=self.rng.choice(DISPOSITIONS), notes="")
