"""One object per websocket connection: a bounded outbox drained by a writer task.

A client that cannot keep up is disconnected rather than buffered without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from core.bus import Relay

log = logging.getLogger(__name__)

OUTBOX_SIZE = 1024


class Connection(Relay):
    """Also a bus subscriber (`Relay`): a message published for this socket is sent as
    the text it was published in."""

    def __init__(self, ws: web.WebSocketResponse, label: str) -> None:
        self.ws = ws
        self.label = label
        # JSON to send: encoded here (bytes), or as relayed from the bus (str)
        self._outbox: asyncio.Queue[bytes | str | None] = asyncio.Queue(OUTBOX_SIZE)
        self._writer: asyncio.Task[None] | None = None
        self._dropping: asyncio.Task[None] | None = None  # closing a client too slow

    def start(self) -> None:
        self._writer = asyncio.create_task(self._drain(), name=f"ws-writer {self.label}")

    def send(self, message: dict[str, Any]) -> None:
        self._put(orjson.dumps(message))

    def relay(self, message: dict[str, Any], text: str) -> None:
        self._put(text)

    def _put(self, data: bytes | str) -> None:
        if self._dropping is not None:
            return  # being disconnected: one log line and one close, whatever comes after
        try:
            self._outbox.put_nowait(data)
        except asyncio.QueueFull:
            log.warning("%s is not reading; disconnecting it", self.label)
            self._dropping = asyncio.create_task(self._drop(), name=f"ws-drop {self.label}")

    async def _drop(self) -> None:
        await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"client too slow")

    async def _drain(self) -> None:
        while (data := await self._outbox.get()) is not None:
            try:
                if isinstance(data, str):
                    await self.ws.send_str(data)
                else:
                    await self.ws.send_frame(data, WSMsgType.TEXT)
            except (ConnectionResetError, RuntimeError):
                log.debug("%s went away while we wrote", self.label)
                return

    async def close(self) -> None:
        """Flush what is queued, then stop the writer."""
        if self._writer is None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(self._writer, timeout=2)
        except TimeoutError:
            self._writer.cancel()
        except asyncio.CancelledError:
            self._writer.cancel()
            if _cancelling():
                raise  # our caller's cancellation, not the writer's: pass it on


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def error_frame(code: str, message: str, event_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if event_id is not None:
        frame["event_id"] = event_id
    return frame
