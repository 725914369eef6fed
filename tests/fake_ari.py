"""A fake Asterisk for the ARI adapter's tests: the event websocket and the REST calls.

Events carry the JSON shapes of Asterisk's `rest-api/api-docs/events.json` (Channel,
Bridge and LiveRecording as in channels.json, bridges.json, recordings.json), and
REST requests change the fake's channels and bridges and raise the events Asterisk
would. Every REST request is recorded so tests can assert what the adapter asked for.
Like Asterisk, nothing is queued for an application whose websocket is down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

CAUSES = {16: "Normal Clearing", 17: "User busy", 19: "No answer", 34: "Circuit/channel congestion"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # below /ari, e.g. /channels/1.1/moh
    params: dict[str, str]


class FakeAri:
    def __init__(self, app: str = "callcenter", user: str = "cc", password: str = "s3cret"):
        self.app, self.user, self.password = app, user, password
        self.url = ""
        self.requests: list[Request] = []
        self.channels: dict[str, dict[str, Any]] = {}
        self.bridges: dict[str, dict[str, Any]] = {}
        self.recordings: dict[str, dict[str, Any]] = {}  # live, by bridge id
        self.held: set[str] = set()  # channels Asterisk indicates hold to
        self.outside: set[str] = set()  # channels alive but no longer in the Stasis app
        # snoop channel id -> {"target", "spy", "whisper"}, while the snoop channel lives
        self.snoops: dict[str, dict[str, str]] = {}
        # Requests Asterisk refuses with a 500: (method, path regex) -> how many more times
        self.refusing: dict[tuple[str, str], int] = {}
        self.connections = 0
        self.accepting = True
        self._ws: web.WebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._clock = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)
        self._changed = asyncio.Condition()

    def make_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/ari/events", self._events)
        r.add_get("/ari/channels", self._list_channels)
        r.add_post("/ari/channels", self._originate)
        r.add_post("/ari/channels/{id}/answer", self._answer)
        r.add_post("/ari/channels/{id}/moh", self._channel_ok)
        r.add_delete("/ari/channels/{id}/moh", self._channel_ok)
        r.add_post("/ari/channels/{id}/hold", self._hold)
        r.add_delete("/ari/channels/{id}/hold", self._hold)
        r.add_post("/ari/channels/{id}/continue", self._continue)
        r.add_post("/ari/channels/{id}/snoop", self._snoop)
        r.add_post("/ari/channels/{id}/snoop/{snoop_id}", self._snoop)
        r.add_delete("/ari/channels/{id}", self._hangup)
        r.add_get("/ari/bridges", self._list_bridges)
        r.add_post("/ari/bridges/{id}", self._create_bridge)
        r.add_post("/ari/bridges/{id}/addChannel", self._add_channel)
        r.add_post("/ari/bridges/{id}/removeChannel", self._remove_channel)
        r.add_post("/ari/bridges/{id}/moh", self._bridge_ok)
        r.add_delete("/ari/bridges/{id}/moh", self._bridge_ok)
        r.add_post("/ari/bridges/{id}/record", self._record)
        r.add_post("/ari/recordings/live/{name}/pause", self._pause)
        r.add_delete("/ari/recordings/live/{name}/pause", self._pause)
        r.add_delete("/ari/bridges/{id}", self._destroy_bridge)
        return app

    # What a PBX does: callers arrive, press keys, agents answer, people hang up ----

    async def caller_arrives(self, number: str, exten: str = "4000",
                             args: tuple[str, ...] = ()) -> str:
        channel = self._channel(f"{1714554000 + next(self._ids)}.{next(self._ids)}",
                                f"PJSIP/trunk-{next(self._ids):08x}", "Ring", number, exten,
                                ",".join((self.app, *args)))
        await self.send("StasisStart", args=list(args), channel=channel)
        return channel["id"]

    async def dtmf(self, channel_id: str, digit: str) -> None:
        await self.send("ChannelDtmfReceived", digit=digit, duration_ms=120,
                        channel=self.channels[channel_id])

    async def agent_answers(self, channel_id: str) -> None:
        channel = self.channels[channel_id]
        channel["state"] = "Up"
        await self.send("ChannelStateChange", channel=channel)
        await self.send("StasisStart", args=channel["dialplan"]["app_data"].split(",")[1:],
                        channel=channel)

    async def hang_up(self, channel_id: str, cause: int = 16) -> None:
        """The person on this channel hangs up: the events Asterisk sends, in its order."""
        channel = self.channels.pop(channel_id)
        self.held.discard(channel_id)
        await self.send("ChannelHangupRequest", cause=cause, channel=channel)
        for bridge in self.bridges.values():
            if channel_id in bridge["channels"]:
                bridge["channels"].remove(channel_id)
                await self.send("ChannelLeftBridge", bridge=bridge, channel=channel)
        await self.send("StasisEnd", channel=channel)
        await self.send("ChannelDestroyed", cause=cause, cause_txt=CAUSES.get(cause, ""),
                        channel=channel)
        self.snoops.pop(channel_id, None)
        # A snoop channel ends with the channel it snoops on, as in Asterisk.
        for snoop_id in [i for i, s in self.snoops.items() if s["target"] == channel_id]:
            if snoop_id in self.channels:
                await self.hang_up(snoop_id)

    def vanish(self, channel_id: str) -> None:
        """Hung up while no application was listening: no events, just gone."""
        self.channels.pop(channel_id)
        for bridge in self.bridges.values():
            if channel_id in bridge["channels"]:
                bridge["channels"].remove(channel_id)

    async def go_down(self) -> None:
        """The event websocket drops and reconnects are refused until `come_up`."""
        self.accepting = False
        if self._ws is not None:
            await self._ws.close()

    def come_up(self) -> None:
        self.accepting = True

    async def replace_app(self) -> None:
        await self.send("ApplicationReplaced")
        if self._ws is not None:
            await self._ws.close()

    async def send(self, type_: str, **fields: Any) -> None:
        if self._ws is None or self._ws.closed:
            return  # Asterisk does not queue events for a disconnected application
        self._clock += dt.timedelta(milliseconds=7)
        await self._ws.send_json({"type": type_, "application": self.app,
                                  "timestamp": _ari_time(self._clock),
                                  "asterisk_id": "08:00:27:aa:bb:cc", **fields})

    # What the tests look at ----------------------------------------------

    async def wait_request(self, method: str, path: str, within_s: float = 5.0) -> Request:
        def found() -> Request | None:
            return next((r for r in self.requests if r.method == method and r.path == path), None)

        async with asyncio.timeout(within_s), self._changed:
            while (request := found()) is None:
                await self._changed.wait()
            return request

    def made(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    # The event websocket --------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("api_key") != f"{self.user}:{self.password}":
            return _error(401, "Authentication required")
        if request.query.get("app") != self.app:
            return _error(400, "Invalid application")
        if not self.accepting:
            return _error(503, "Service Unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self.connections += 1
        async for _ in ws:
            pass  # ARI clients do not send anything on this socket
        return ws

    # REST -----------------------------------------------------------------

    async def _record_request(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != _basic(self.user, self.password):
            return _error(401, "Authentication required")
        path = request.path.removeprefix("/ari")
        async with self._changed:
            self.requests.append(Request(request.method, path, dict(request.query)))
            self._changed.notify_all()
        for (method, pattern), times in self.refusing.items():
            if times > 0 and method == request.method and re.fullmatch(pattern, path):
                self.refusing[(method, pattern)] = times - 1
                return _error(500, "Allocation failed")
        return None

    async def _list_channels(self, request: web.Request) -> web.Response:
        return await self._record_request(request) or web.json_response(
            list(self.channels.values()))

    async def _originate(self, request: web.Request) -> web.Response:
        if denied := await self._record_request(request):
            return denied
        q = request.query
        if "endpoint" not in q or "/" not in q["endpoint"]:
            return _error(400, "Endpoint must be in the format tech/resource")
        channel_id = q.get("channelId") or f"{1714554000 + next(self._ids)}.{next(self._ids)}"
        channel = self._channel(channel_id, f"{q['endpoint']}-{next(self._ids):08x}", "Down",
                                q.get("callerId", ""), "s",
                                ",".join((q.get("app", ""), q.get("appArgs", ""))))
        channel["state"] = "Ringing"
        await self.send("ChannelStateChange", channel=channel)
        return web.json_response(channel)

    async def _answer(self, request: web.Request) -> web.Response:
        if problem := await self._channel_problem(request):
            return problem
        channel = self.channels[request.match_info["id"]]
        channel["state"] = "Up"
        await self.send("ChannelStateChange", channel=channel)
        return web.Response(status=204)

    async def _channel_ok(self, request: web.Request) -> web.Response:
        return await self._channel_problem(request) or web.Response(status=204)

    async def _hold(self, request: web.Request) -> web.Response:
        """Asterisk indicates (un)hold to the channel and answers 204; it raises no event
        (ChannelHold is for a hold the endpoint itself starts)."""
        if problem := await self._channel_problem(request):
            return problem
        channel_id = request.match_info["id"]
        if channel_id in self.outside:
            return _error(409, "Channel not in a Stasis application")
        if request.method == "POST":
            self.held.add(channel_id)
        else:
            self.held.discard(channel_id)
        return web.Response(status=204)

    async def _continue(self, request: web.Request) -> web.Response:
        """The channel leaves the application for the dialplan (it stays up, outside)."""
        if problem := await self._channel_problem(request):
            return problem
        channel_id = request.match_info["id"]
        if channel_id in self.outside:
            return _error(409, "Channel not in a Stasis application")
        channel = self.channels[channel_id]
        self.outside.add(channel_id)
        for bridge in self.bridges.values():
            if channel_id in bridge["channels"]:
                bridge["channels"].remove(channel_id)
                await self.send("ChannelLeftBridge", bridge=bridge, channel=channel)
        await self.send("StasisEnd", channel=channel)
        return web.Response(status=204)

    async def _snoop(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/snoop[/{snoopId}] (channels.json, snoopChannel): a new
        channel, up at once and placed into the application (StasisStart with appArgs)."""
        if problem := await self._channel_problem(request):
            return problem
        q, target = request.query, request.match_info["id"]
        spy, whisper = q.get("spy", "none"), q.get("whisper", "none")
        directions = ("none", "both", "out", "in")
        if "app" not in q or spy not in directions or whisper not in directions:
            return _error(400, "Invalid parameters")
        snoop_id = request.match_info.get("snoop_id") or q.get("snoopId") \
            or f"{1714554000 + next(self._ids)}.{next(self._ids)}"
        args = q.get("appArgs", "")
        channel = self._channel(snoop_id, f"Snoop/{target}-{next(self._ids):08x}", "Up", "",
                                "", ",".join((q["app"], args)))
        self.snoops[snoop_id] = {"target": target, "spy": spy, "whisper": whisper}
        await self.send("StasisStart", args=args.split(",") if args else [], channel=channel)
        return web.json_response(channel)

    async def _hangup(self, request: web.Request) -> web.Response:
        if problem := await self._channel_problem(request):
            return problem
        await self.hang_up(request.match_info["id"])
        return web.Response(status=204)

    async def _list_bridges(self, request: web.Request) -> web.Response:
        return await self._record_request(request) or web.json_response(
            list(self.bridges.values()))

    async def _create_bridge(self, request: web.Request) -> web.Response:
        if denied := await self._record_request(request):
            return denied
        bridge_id = request.match_info["id"]
        bridge = self.bridges.setdefault(bridge_id, {
            "id": bridge_id, "technology": "simple_bridge",
            "bridge_type": request.query.get("type", "mixing"), "bridge_class": "stasis",
            "creator": "Stasis", "name": request.query.get("name", ""), "channels": [],
            "video_mode": "talker", "creationtime": _ari_time(self._clock)})
        return web.json_response(bridge)

    async def _add_channel(self, request: web.Request) -> web.Response:
        found = await self._bridge_and_channels(request)
        if isinstance(found, web.Response):
            return found
        bridge, ids = found
        for channel_id in ids:  # each event shows the bridge as it is at that moment
            bridge["channels"].append(channel_id)
            await self.send("ChannelEnteredBridge", bridge=bridge,
                            channel=self.channels[channel_id])
        return web.Response(status=204)

    async def _remove_channel(self, request: web.Request) -> web.Response:
        found = await self._bridge_and_channels(request)
        if isinstance(found, web.Response):
            return found
        bridge, ids = found
        if not all(i in bridge["channels"] for i in ids):
            return _error(422, "Channel not in this bridge")
        for channel_id in ids:
            bridge["channels"].remove(channel_id)
            await self.send("ChannelLeftBridge", bridge=bridge,
                            channel=self.channels[channel_id])
        return web.Response(status=204)

    async def _bridge_and_channels(self, request: web.Request
                                   ) -> tuple[dict[str, Any], list[str]] | web.Response:
        """The bridge a request names and the channels of its `channel` list, or the error
        to answer (no such bridge, an unknown channel)."""
        if problem := await self._bridge_problem(request):
            return problem
        ids = request.query.get("channel", "").split(",")
        if not all(i in self.channels for i in ids):
            return _error(400, "Channel not found")
        return self.bridges[request.match_info["id"]], ids

    async def _bridge_ok(self, request: web.Request) -> web.Response:
        return await self._bridge_problem(request) or web.Response(status=204)

    async def _record(self, request: web.Request) -> web.Response:
        if problem := await self._bridge_problem(request):
            return problem
        bridge_id, q = request.match_info["id"], request.query
        if "name" not in q or "format" not in q:
            return _error(400, "Invalid parameters")
        recording = {"name": q["name"], "format": q["format"], "state": "recording",
                     "target_uri": f"bridge:{bridge_id}"}
        self.recordings[bridge_id] = recording
        await self.send("RecordingStarted", recording=recording)
        return web.json_response(recording, status=201)

    async def _pause(self, request: web.Request) -> web.Response:
        """Pause (POST) or unpause (DELETE) a live recording, as Asterisk does: 404 for no
        such recording, 409 for one not in session, 204 otherwise (pausing a paused one
        is a no-op). ARI raises no event for it."""
        if denied := await self._record_request(request):
            return denied
        name = request.match_info["name"]
        recording = next((r for r in self.recordings.values() if r["name"] == name), None)
        if recording is None:
            return _error(404, "Recording not found")
        if recording["state"] not in ("recording", "paused"):
            return _error(409, "Recording not in session")
        recording["state"] = "paused" if request.method == "POST" else "recording"
        return web.Response(status=204)

    async def _destroy_bridge(self, request: web.Request) -> web.Response:
        if problem := await self._bridge_problem(request):
            return problem
        bridge = self.bridges.pop(request.match_info["id"])
        for channel_id in bridge["channels"]:
            if channel_id in self.channels:
                await self.send("ChannelLeftBridge", bridge=bridge,
                                channel=self.channels[channel_id])
        if (recording := self.recordings.pop(bridge["id"], None)) is not None:
            await self.send("RecordingFinished", recording={
                **recording, "state": "done", "duration": 42, "talking_duration": 30,
                "silence_duration": 12})
        return web.Response(status=204)

    async def _channel_problem(self, request: web.Request) -> web.Response | None:
        if denied := await self._record_request(request):
            return denied
        if request.match_info["id"] not in self.channels:
            return _error(404, "Channel not found")
        return None

    async def _bridge_problem(self, request: web.Request) -> web.Response | None:
        if denied := await self._record_request(request):
            return denied
        if request.match_info["id"] not in self.bridges:
            return _error(404, "Bridge not found")
        return None

    def _channel(self, channel_id: str, name: str, state: str, number: str, exten: str,
                 app_data: str) -> dict[str, Any]:
        channel = {
            "id": channel_id, "name": name, "state": state, "protocol_id": "",
            "caller": {"name": "", "number": number},
            "connected": {"name": "", "number": ""}, "accountcode": "",
            "dialplan": {"context": "from-pstn", "exten": exten, "priority": 2,
                         "app_name": "Stasis", "app_data": app_data},
            "creationtime": _ari_time(self._clock), "language": "en",
        }
        self.channels[channel_id] = channel
        return channel


def _ari_time(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)
