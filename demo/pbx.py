"""The demo PBX: a protocol-v1 client that offers calls, rings and answers agents' phones,
and hangs up, as a real IVR/PBX integration does over `/ws/telephony`. It also carries out
call control (`route.control`, protocol v2): a person's phone (`people`) is answered,
held, resumed and hung up from their console; simulated colleagues pick up by themselves.
A supervisor's `route.monitor` is confirmed for any call it is playing (no audio here).

Every event is kept until acknowledged and sent again after a retryable error or a
reconnect, so the demo never loses a call when the service restarts. On each connection it
asks for the integration's live calls (`state.sync`) and ends those it does not play: the
calls of a demo that stopped with its node, which the persisted Redis still holds. Each call is one
task that plays its `CallPlan`: wait for an agent (or give up), ring, talk, hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from demo.background import Background
from demo.callers import CallPlan

log = logging.getLogger(__name__)

RETRYABLE = ("unavailable", "storage_unavailable")
# Seconds a simulated colleague's phone rings before it is picked up. A person's phone
# rings until they answer from the console (or the service gives the call to another).
RING_S = (1.5, 4.0)
# A person talks longer than a colleague: time to try hold and resume before the caller
# hangs up, at least PERSON_MIN_TALK_S however fast the demo runs (tests speed it up).
PERSON_TALK = 3.0
PERSON_MIN_TALK_S = 20.0
# What a PBX sends once it carried out a control action (see `acted`).
ACTED: dict[str, tuple[str, dict[str, Any]]] = {
    "hold": ("call.held", {}), "resume": ("call.resumed", {}),
    "hangup": ("call.ended", {"cause": "agent_hangup"}),
    "conference": ("conference.started", {}),
}
# A message the demo puts in a call's own queue when a simulated colleague picks up the
# consult leg it was called on.
CONSULT_PICKED_UP = "demo.consult_picked_up"


def acted(command: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The event that says a `route.control` was carried out (docs/protocol.md), or None
    when nothing happened yet: a consult only rings the consulted agent, whose answer
    (`consult.answered`) comes later."""
    action = command["action"]
    consulted = {"agent_id": command.get("consult_agent_id")}
    match action:
        case "answer" if command.get("consult"):
            return "consult.answered", {"agent_id": command["agent_id"]}
        case "answer":
            return "call.answered", {"agent_id": command["agent_id"]}
        case "transfer" if command.get("mode") == "consult":
            return None
        case "transfer":  # blind: where the command says
            return "call.transferred", {k: command[k] for k in
                                        ("to_queue", "to_agent_id", "to_number") if k in command}
        case "consult.complete":
            return "consult.completed", consulted
        case "consult.cancel" if command.get("reason") == "no_answer":
            return "call.resumed", {}  # the consult leg dropped, the caller back with A
        case "consult.cancel":
            return "consult.ended", {**consulted, "cause": "cancelled"}
        case "recording.pause" | "recording.resume":  # naming the command that asked
            return f"{action}d", {"command_id": command["command_id"]}
    return ACTED.get(action)

Recorder = Callable[[CallPlan], Awaitable[str | None]]


class DemoPbx:
    def __init__(self, url: str, token: str, rng: random.Random,
                 recorder: Recorder | None = None, scale: float = 1.0,
                 people: frozenset[int] = frozenset()) -> None:
        self.url, self.token, self.rng, self.recorder = url, token, rng, recorder
        self.scale, self.people = scale, people
        self.unacked: dict[str, str] = {}
        self.calls: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.completed = 0
        self._ids = itertools.count()
        self.background = Background("demo PBX")
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._ended: set[str] = set()  # calls from before a restart this PBX ended

    async def run(self, http: aiohttp.ClientSession) -> None:
        """Stay connected (reconnecting after a drop) and deliver what arrives."""
        while True:
            try:
                async with http.ws_connect(f"{self.url}/ws/telephony", heartbeat=20,
                                           headers={"Authorization": f"Bearer {self.token}"}
                                           ) as ws:
                    self._ws = ws
                    self._connected.set()
                    for frame in list(self.unacked.values()):
                        await ws.send_str(frame)
                    await ws.send_str('{"type": "state.sync"}')
                    async for message in ws:
                        if message.type is aiohttp.WSMsgType.TEXT:
                            self._on(orjson.loads(message.data))
            except (aiohttp.ClientError, OSError) as e:
                log.debug("demo PBX not connected: %s", e)
            self._connected.clear()
            await asyncio.sleep(1.0)

    async def send(self, type_: str, call_id: str, **fields: Any) -> str:
        event_id = f"demo-pbx-{next(self._ids)}-{self.rng.randrange(16**6):06x}"
        frame = orjson.dumps({"type": type_, "event_id": event_id, "call_id": call_id,
                              **fields}).decode()
        self.unacked[event_id] = frame
        await self._connected.wait()
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await self._ws.send_str(frame)  # type: ignore[union-attr]
        return event_id

    def _on(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ack":
            self.unacked.pop(message["event_id"], None)
        elif kind == "error":
            self._refused(message)
        elif kind == "state.snapshot":
            self._end_strays(message.get("calls") or [])
        elif kind in ("route.connect", "route.queued", "route.control") \
                and message.get("call_id") in self.calls:
            self.calls[message["call_id"]].put_nowait(message)
        elif kind == "route.control":  # a call this PBX has finished with
            self.background.spawn(self._result(message, ok=False, reason="no_such_call"))
        elif kind == "route.monitor":  # a supervisor's phone joins the call (as if it did)
            live = message.get("call_id") in self.calls
            self.background.spawn(self._result(message, ok=live,
                                               reason="" if live else "no_such_call"))

    def _end_strays(self, calls: list[dict[str, Any]]) -> None:
        """End the live calls of this integration that this PBX does not play: those in
        flight when the node (and the demo with it) stopped, kept by a Redis that persists.
        Their callers are long gone; left live, they would hold their agents for ever."""
        strays = {c["call_id"] for c in calls} - self.calls.keys() - self._ended
        if strays:
            log.info("demo PBX: ending %d calls left from before a restart", len(strays))
        for call_id in strays:
            self._ended.add(call_id)
            self.background.spawn(self.send("call.ended", call_id, cause="failed"))

    def _refused(self, message: dict[str, Any]) -> None:
        event_id = message.get("event_id")
        if message.get("code") in RETRYABLE and event_id in self.unacked:
            asyncio.get_running_loop().call_later(1.0, self._resend, event_id)
            return
        if event_id is not None:
            self.unacked.pop(event_id, None)
        log.info("demo PBX event refused: %s", message)

    def _resend(self, event_id: str) -> None:
        if event_id in self.unacked and self._ws is not None and not self._ws.closed:
            self.background.spawn(self._ws.send_str(self.unacked[event_id]))

    async def play(self, plan: CallPlan) -> None:
        """One call, from the caller dialling in to the survey after it."""
        routing = self.calls[plan.call_id] = asyncio.Queue()
        try:
            await self.send("call.offered", plan.call_id, ani=plan.caller.ani, dnis="400800",
                            queue=plan.queue, ivr=plan.ivr)
            agent_id = await self._wait_for_agent(routing, plan.patience_s)
            if agent_id is None:
                await self.send("call.ended", plan.call_id, cause="abandoned")
                return
            await self.send("call.answered", plan.call_id, agent_id=agent_id)
            if await self._conversation(plan, routing, agent_id):
                await self._after(plan)
        finally:
            del self.calls[plan.call_id]
        self.completed += 1

    async def _conversation(self, plan: CallPlan, routing: asyncio.Queue[dict[str, Any]],
                            agent_id: int) -> bool:
        """Talk until someone hangs up; a blind transfer back into the center waits for
        the next agent and talks on. False when the caller gave up waiting after one."""
        while True:
            talk_s = max(plan.talk_s * PERSON_TALK, PERSON_MIN_TALK_S) \
                if agent_id in self.people else plan.talk_s
            outcome = await self._talk(routing, talk_s)
            if outcome == "talked":
                await self.send("call.ended", plan.call_id,
                                cause=self.rng.choice(["caller_hangup", "agent_hangup"]))
                return True
            if outcome == "ended":
                return True
            next_agent = await self._wait_for_agent(routing, plan.patience_s)
            if next_agent is None:
                await self.send("call.ended", plan.call_id, cause="caller_hangup")
                return False
            agent_id = next_agent
            await self.send("call.answered", plan.call_id, agent_id=agent_id)

    async def _wait_for_agent(self, routing: asyncio.Queue[dict[str, Any]],
                              patience_s: float) -> int | None:
        """The agent whose phone was picked up, or None when the caller gave up."""
        try:
            async with asyncio.timeout(patience_s):
                message = await routing.get()
                while True:
                    if message["type"] == "route.connect":
                        agent_id = int(message["agent_id"])
                        rerouted = await self._ring(routing, agent_id)
                        if rerouted is None:
                            return agent_id
                        message = rerouted
                        continue
                    if message["type"] == "route.control":
                        if await self._picked_up(message):
                            return int(message["agent_id"])
                    message = await routing.get()
        except TimeoutError:
            return None

    async def _ring(self, routing: asyncio.Queue[dict[str, Any]],
                    agent_id: int) -> dict[str, Any] | None:
        """Ring the agent's phone: None once picked up, else the message that moved the
        call on (re-routed, queued again) while it rang."""
        person = agent_id in self.people
        if not person:
            await asyncio.sleep(self.scale * self.rng.uniform(*RING_S))
        while person or not routing.empty():
            message = await routing.get()
            if message["type"] != "route.control":
                return message
            if await self._picked_up(message):
                return None
        return None

    async def _picked_up(self, command: dict[str, Any]) -> bool:
        """Answer the ringing phone when told to. The service only asks this while the call
        rings that agent, and may ask before its route.connect reaches us (that one waits
        for the offer's ack)."""
        if command["action"] != "answer" or command.get("agent_id") is None:
            await self._result(command, ok=False, reason="not_answered")
            return False
        await self._result(command, ok=True)
        return True

    async def _talk(self, routing: asyncio.Queue[dict[str, Any]], talk_s: float) -> str:
        """The conversation, carrying out call control, until the caller hangs up after
        `talk_s` ("talked"), the agent hangs up or transfers the caller out ("ended"), or
        a blind transfer sends the caller back into the center ("rerouted")."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + talk_s
        while (left := ends - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    message = await routing.get()
            except TimeoutError:
                break
            if message["type"] == CONSULT_PICKED_UP:
                await self.send("consult.answered", message["call_id"],
                                agent_id=message["agent_id"])
            elif message["type"] == "route.control" \
                    and (outcome := await self._act(routing, message)):
                return outcome
        return "talked"

    async def _act(self, routing: asyncio.Queue[dict[str, Any]],
                   command: dict[str, Any]) -> str | None:
        """Carry out a control action on a connected call: confirm it, then send the event
        that says it happened. "ended" or "rerouted" when the caller left this agent."""
        action, event = command["action"], acted(command)
        if event is None and not (action == "transfer" and command.get("mode") == "consult"):
            await self._result(command, ok=False, reason="not_supported")
            return None
        await self._result(command, ok=True)
        if event is None:  # a consult: the consulted agent's phone rings
            self._ring_consulted(routing, command)
            return None
        type_, fields = event
        await self.send(type_, command["call_id"], **fields)
        if action == "hangup" or (action == "transfer" and "to_number" in command):
            return "ended"
        return "rerouted" if action == "transfer" else None

    def _ring_consulted(self, routing: asyncio.Queue[dict[str, Any]],
                        command: dict[str, Any]) -> None:
        """A person answers the consult from the console (`answer`); a simulated colleague
        picks up after a while."""
        agent_id = int(command["to_agent_id"])
        if agent_id in self.people:
            return
        picked_up = {"type": CONSULT_PICKED_UP, "call_id": command["call_id"],
                     "agent_id": agent_id}
        asyncio.get_running_loop().call_later(self.scale * self.rng.uniform(*RING_S),
                                              routing.put_nowait, picked_up)

    async def _result(self, command: dict[str, Any], ok: bool, reason: str = "") -> None:
        fields: dict[str, Any] = {"command_id": command["command_id"], "ok": ok}
        if reason:
            fields["reason"] = reason
        await self.send("control.result", command.get("call_id", ""), **fields)

    async def _after(self, plan: CallPlan) -> None:
        if plan.survey is not None:
            await self.send("survey.result", plan.call_id, score=plan.survey)
        if self.recorder is not None:
            path = await self.recorder(plan)
            if path is not None:
                await self.send("recording.ready", plan.call_id, path=path)
