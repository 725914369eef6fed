"""A small client for Asterisk's REST Interface: call-control requests and the event socket.

Only the requests the adapter makes. Errors come back as AriError carrying the
HTTP status, so callers can tell "that channel is already gone" (404) from a
real failure.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import aiohttp
import orjson
from yarl import URL

from cti.ari_events import Bridge, Channel, bridge_list, channel_list

log = logging.getLogger(__name__)


class AriError(Exception):
    code = "ari_error"

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status

    @property
    def gone(self) -> bool:
        """The channel or bridge does not exist (any more): normal in telephony."""
        return self.status == 404


class AriClient:
    def __init__(self, base_url: str, user: str, password: str, app: str,
                 timeout_s: float = 10.0) -> None:
        base = URL(base_url.rstrip("/"))
        self.base = base if base.path.endswith("/ari") else base / "ari"
        self.app = app
        self._user, self._password = user, password
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._http = aiohttp.ClientSession(headers={"Authorization": f"Basic {basic}"},
                                           timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def close(self) -> None:
        await self._http.close()

    # The event websocket -------------------------------------------------

    async def connect_events(self, heartbeat_s: float = 20.0) -> aiohttp.ClientWebSocketResponse:
        scheme = "wss" if self.base.scheme == "https" else "ws"
        url = (self.base / "events").with_scheme(scheme).with_query(
            app=self.app, api_key=f"{self._user}:{self._password}")
        return await self._http.ws_connect(url, heartbeat=heartbeat_s, autoping=True)

    # Channels ------------------------------------------------------------

    async def channels(self) -> list[Channel]:
        return channel_list.validate_python(await self._request("GET", "/channels"))

    async def originate(self, endpoint: str, *, channel_id: str, app_args: str,
                        caller_id: str = "", timeout_s: int = 30) -> Channel:
        params = {"endpoint": endpoint, "app": self.app, "appArgs": app_args,
                  "channelId": channel_id, "timeout": str(timeout_s)}
        if caller_id:
            params["callerId"] = caller_id
        return Channel.model_validate(await self._request("POST", "/channels", params))

    async def answer(self, channel_id: str) -> None:
        await self._request("POST", f"/channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self._request("DELETE", f"/channels/{channel_id}", {"reason": reason})

    async def hold(self, channel_id: str) -> None:
        await self._request("POST", f"/channels/{channel_id}/hold")

    async def unhold(self, channel_id: str) -> None:
        await self._request("DELETE", f"/channels/{channel_id}/hold")

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str,
                                   priority: int = 1) -> None:
        await self._request("POST", f"/channels/{channel_id}/continue",
                            {"context": context, "extension": extension,
                             "priority": str(priority)})

    async def snoop(self, channel_id: str, snoop_id: str, *, spy: str, whisper: str,
                    app_args: str) -> Channel:
        """A snoop channel on `channel_id`, placed into our application: it hears the
        channel's audio (`spy`) and speaks into it (`whisper`): none, both, out or in."""
        params = {"app": self.app, "appArgs": app_args, "spy": spy, "whisper": whisper}
        return Channel.model_validate(await self._request(
            "POST", f"/channels/{channel_id}/snoop/{snoop_id}", params))

    async def start_moh(self, channel_id: str, moh_class: str = "") -> None:
        params = {"mohClass": moh_class} if moh_class else None
        await self._request("POST", f"/channels/{channel_id}/moh", params)

    async def stop_moh(self, channel_id: str) -> None:
        await self._request("DELETE", f"/channels/{channel_id}/moh")

    # Bridges -------------------------------------------------------------

    async def bridges(self) -> list[Bridge]:
        return bridge_list.validate_python(await self._request("GET", "/bridges"))

    async def create_bridge(self, bridge_id: str, name: str = "") -> Bridge:
        """Create (or, if it exists, keep) a mixing bridge with this id."""
        params = {"type": "mixing", "name": name or bridge_id}
        return Bridge.model_validate(
            await self._request("POST", f"/bridges/{bridge_id}", params))

    async def add_channels(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self._request("POST", f"/bridges/{bridge_id}/addChannel",
                            {"channel": ",".join(channel_ids)})

    async def remove_channels(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self._request("POST", f"/bridges/{bridge_id}/removeChannel",
                            {"channel": ",".join(channel_ids)})

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self._request("DELETE", f"/bridges/{bridge_id}")

    async def start_bridge_moh(self, bridge_id: str, moh_class: str = "") -> None:
        params = {"mohClass": moh_class} if moh_class else None
        await self._request("POST", f"/bridges/{bridge_id}/moh", params)

    async def stop_bridge_moh(self, bridge_id: str) -> None:
        await self._request("DELETE", f"/bridges/{bridge_id}/moh")

    async def record_bridge(self, bridge_id: str, name: str, fmt: str = "wav") -> None:
        await self._request("POST", f"/bridges/{bridge_id}/record",
                            {"name": name, "format": fmt, "ifExists": "fail"})

    # Live recordings (rest-api/api-docs/recordings.json) ----------------

    async def pause_recording(self, name: str) -> None:
        """Pause a live recording: no audio is written until unpaused (404: no such
        recording, 409: not in session)."""
        await self._request("POST", f"/recordings/live/{name}/pause")

    async def unpause_recording(self, name: str) -> None:
        await self._request("DELETE", f"/recordings/live/{name}/pause")

    # ---------------------------------------------------------------------

    async def _request(self, method: str, path: str,
                       params: dict[str, str] | None = None) -> Any:
        url = self.base.with_path(self.base.path + path)
        try:
            async with self._http.request(method, url, params=params) as resp:
                if resp.status >= 400:
                    raise AriError(method, path, resp.status, await _message(resp))
                body = await resp.read()
                return orjson.loads(body) if body else None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise AriError(method, path, 0, f"{type(e).__name__}: {e}") from e


async def _message(resp: aiohttp.ClientResponse) -> str:
    try:
        body = orjson.loads(await resp.read())
    except orjson.JSONDecodeError:
        return resp.reason or ""
    return str(body.get("message", "")) if isinstance(body, dict) else str(body)
