"""A real local HTTP receiver for webhook tests: it can fail, stall or answer slowly."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from webhooks import signing


@dataclass
class Receiver:
    secret: str = ""
    fail_first: int = 0  # answer 500 to this many requests first
    stall_s: float = 0.0  # wait this long before answering
    received: list[dict[str, Any]] = field(default_factory=list)  # verified, answered 2xx
    requests: int = 0
    bad_signatures: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        if not signing.verify(self.secret, request.headers.get(signing.HEADER, ""), body,
                              time.time()):
            self.bad_signatures += 1
            return web.Response(status=400)
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        event = orjson.loads(body)
        assert request.headers[signing.ID_HEADER] == event["id"]
        self.received.append(event)
        return web.Response(status=204)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def types(self) -> list[str]:
        return [e["type"] for e in self.received]


async def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
