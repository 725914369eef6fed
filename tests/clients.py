"""Test clients that speak to a running server like real integrations do.

`Ivr` is a PBX/IVR integration over the `websockets` library; `AgentClient` is a
non-browser agent console. The PBX is the one thing outside the product, so it
is the one thing faked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp
import websockets

from demo.pbx import acted

_ids = itertools.count(1)


class Inbox:
    """Messages as they arrive; `expect` waits for the next one matching a filter."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()

    async def put(self, message: dict[str, Any]) -> None:
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    async def expect(self, type_: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for i, m in enumerate(self.messages):
                if m.get("type") == type_ and all(m.get(k) == v for k, v in match.items()):
                    return self.messages.pop(i)
            return None

        async with asyncio.timeout(timeout):
            async with self._arrived:
                while (found := find()) is None:
                    await self._arrived.wait()
                return found

    async def nothing(self, type_: str, wait: float = 0.3, **match: Any) -> None:
        try:
            found = await self.expect(type_, timeout=wait, **match)
        except TimeoutError:
            return
        raise AssertionError(f"did not expect {found}")


class _Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.inbox = Inbox()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                await self.inbox.put(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def send_raw(self, data: str) -> None:
        await self.ws.send(data)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


class Ivr(_Client):
    """A PBX/IVR integration speaking protocol v1."""

    @classmethod
    async def connect(cls, base_url: str, token: str) -> Ivr:
        ws = await websockets.connect(f"{base_url.replace('http', 'ws', 1)}/ws/telephony",
                                      additional_headers={"Authorization": f"Bearer {token}"},
                                      max_size=None)
        return cls(ws)

    async def send(self, type_: str, call_id: str, event_id: str | None = None,
                   **fields: Any) -> str:
        event_id = event_id or f"ev-{next(_ids)}"
        await self.ws.send(json.dumps({"type": type_, "event_id": event_id,
                                       "call_id": call_id, **fields}))
        return event_id

    async def event(self, type_: str, call_id: str, **fields: Any) -> dict[str, Any]:
        """Send an event and return its ack (or raise with the error frame)."""
        event_id = await self.send(type_, call_id, **fields)
        reply = await self.reply_to(event_id)
        if reply["type"] == "error":
            raise AssertionError(f"{type_} rejected: {reply}")
        return reply

    async def reply_to(self, event_id: str, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for type_ in ("ack", "error"):
                    try:
                        return await self.inbox.expect(type_, timeout=0.05, event_id=event_id)
                    except TimeoutError:
                        pass

    async def offer(self, call_id: str, ani: str, queue: str = "default",
                    **fields: Any) -> dict[str, Any]:
        return await self.event("call.offered", call_id, ani=ani, queue=queue, **fields)

    # Call control (cti/commands.py, docs/protocol.md): the PBX's side ----------------

    async def command(self, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The next `route.control` (or other command frame given as `type_`) matching."""
        return await self.inbox.expect(match.pop("type_", "route.control"), timeout=timeout,
                                       **match)

    async def result(self, command: dict[str, Any], ok: bool = True, reason: str = "",
                     **fields: Any) -> dict[str, Any]:
        """Answer a command with `control.result`; returns the service's ack or error."""
        event_id = f"ev-{next(_ids)}"
        frame = {"type": "control.result", "event_id": event_id,
                 "command_id": command["command_id"], "ok": ok, **fields}
        if reason:
            frame["reason"] = reason
        await self.ws.send(json.dumps(frame))
        return await self.reply_to(event_id)

    async def act(self, command: dict[str, Any]) -> dict[str, Any] | None:
        """Do what a route.control asks, as a PBX would, by sending the event that says
        it happened; returns its ack (None for an action with no event)."""
        event = acted(command)
        if event is None:
            return None
        type_, fields = event
        return await self.event(type_, command["call_id"], **fields)

    def obey(self, refuse: dict[str, str] | None = None, confirm_first: bool = True
             ) -> asyncio.Task[None]:
        """Carry out every route.control from now on: confirm it, then act (or act
        first, `confirm_first=False`); actions in `refuse` get ok=false with that reason.
        Cancel the task to stop."""
        refuse = refuse or {}

        async def loop() -> None:
            while True:
                try:
                    command = await self.command(timeout=3600)
                except TimeoutError:
                    continue
                if command["action"] in refuse:
                    await self.result(command, ok=False, reason=refuse[command["action"]])
                    continue
                if not confirm_first:
                    await self.act(command)
                await self.result(command)
                if confirm_first:
                    await self.act(command)

        return asyncio.create_task(loop())

    def obey_monitor(self, refuse: str = "") -> asyncio.Task[None]:
        """Carry out every route.monitor from now on, as a PBX does: it joins, switches or
        drops the supervisor's phone and confirms with control.result (ok, or ok=false
        with `refuse` as the reason). Each command is kept in `monitored`. Cancel to stop."""
        self.monitored: list[dict[str, Any]] = []

        async def loop() -> None:
            while True:
                try:
                    command = await self.command(type_="route.monitor", timeout=3600)
                except TimeoutError:
                    continue
                self.monitored.append(command)
                await self.result(command, ok=not refuse, reason=refuse)

        return asyncio.create_task(loop())


class AgentClient(_Client):
    agent_id: int

    @classmethod
    async def login(cls, base_url: str, username: str, password: str) -> AgentClient:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base_url}/api/v1/login",
                                 json={"username": username, "password": password}) as resp:
                body = await resp.json()
                assert resp.status == 200, body
        ws = await websockets.connect(f"{base_url.replace('http', 'ws', 1)}/ws/agent",
                                      additional_headers={
                                          "Authorization": f"Bearer {body['token']}"})
        client = cls(ws)
        client.agent_id = body["agent_id"]
        client.token = body["token"]
        await client.inbox.expect("agent.state")
        return client

    async def request(self, type_: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        ident = f"m-{next(_ids)}"
        await self.ws.send(json.dumps({"type": type_, "id": ident, **fields}))
        async with asyncio.timeout(timeout):
            while True:
                for kind in ("ack", "error"):
                    try:
                        return await self.inbox.expect(kind, timeout=0.05, id=ident)
                    except TimeoutError:
                        pass

    async def control(self, call_id: str, action: str, **fields: Any) -> dict[str, Any]:
        """Send `call.control`; its ack or error (which waits for the PBX's outcome)."""
        return await self.request("call.control", call_id=call_id, action=action, **fields)

    async def available(self) -> None:
        reply = await self.request("agent.state.set", state="available")
        assert reply["type"] == "ack", reply

    async def not_ready(self, reason: str = "break") -> None:
        reply = await self.request("agent.state.set", state="not_ready", reason=reason)
        assert reply["type"] == "ack", reply
