"""One object per websocket connection: a bounded outbox drained by a writer task.

A client that cannot keep up is disconnected rather than buffered without end. The
frames queued for one socket by the time its writer runs (an agent's messages of one
transition, the acks of a loop turn's events) go out in one write to the transport: a
write is a system call, which costs more than the frames' bytes.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from core.bus import Relay

log = logging.getLogger(__name__)

OUTBOX_SIZE = 1024
# Frames written together up to this many bytes; a larger one goes out on its own.
COALESCE_BYTES = 16 * 1024
_FIN_TEXT = 0x81


class Connection(Relay):
    """Also a bus subscriber (`Relay`): a message published for this socket is sent as
    the text it was published in."""

    def __init__(self, ws: web.WebSocketResponse, label: str) -> None:
        self.ws = ws
        self.label = label
        # JSON to send: encoded here (bytes), or as relayed from the bus (str); None: the
        # writer stops there. A deque and one future the writer waits on when it is empty:
        # an asyncio.Queue costs a few microseconds more per frame, on every ack.
        self._outbox: deque[bytes | str | None] = deque()
        self._ready: asyncio.Future[None] | None = None
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
        if len(self._outbox) >= OUTBOX_SIZE:
            log.warning("%s is not reading; disconnecting it", self.label)
            self._dropping = asyncio.create_task(self._drop(), name=f"ws-drop {self.label}")
            return
        self._queue(data)

    def _queue(self, data: bytes | str | None) -> None:
        self._outbox.append(data)
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    async def _drop(self) -> None:
        await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"client too slow")

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._outbox:
                self._ready = loop.create_future()
                await self._ready
                continue
            if (data := self._outbox.popleft()) is None:
                return
            batch = [_encoded(data)]
            closing = self._take_queued(batch)
            try:
                await self._write(batch)
            except (ConnectionResetError, RuntimeError):
                log.debug("%s went away while we wrote", self.label)
                return
            if closing:
                return

    def _take_queued(self, batch: list[bytes]) -> bool:
        """Add to `batch` what else is queued, up to `COALESCE_BYTES`; whether the
        closing None was among it."""
        size = len(batch[0])
        while size < COALESCE_BYTES and self._outbox:
            data = self._outbox.popleft()
            if data is None:
                return True
            batch.append(_encoded(data))
            size += len(batch[-1])
        return False

    async def _write(self, frames: list[bytes]) -> None:
        """Text frames to the socket in order: in one transport write when the socket is a
        server's without compression (a frame is then a header and the bytes), through
        aiohttp frame by frame otherwise."""
        # aiohttp writes one frame per call and has no public batch: its writer's insides
        # are used when they are as this code knows them (aiohttp 3.9-3.14), else frames go
        # one by one.
        writer: Any = getattr(self.ws, "_writer", None)
        if len(frames) == 1 or self.ws.compress or not _knows(writer) or writer.use_mask:
            for frame in frames:
                await self.ws.send_frame(frame, WSMsgType.TEXT)
            return
        if writer.transport.is_closing() or self.ws.closed:
            raise ConnectionResetError("the socket is closing")
        writer.transport.write(b"".join(_header(len(f)) + f for f in frames))
        if writer.protocol.writing_paused:  # as aiohttp's own writer waits for a full buffer
            await writer.protocol._drain_helper()

    async def close(self) -> None:
        """Flush what is queued, then stop the writer."""
        if self._writer is None:
            return
        if len(self._outbox) < OUTBOX_SIZE:  # full: the writer is cut short below
            self._queue(None)
        try:
            await asyncio.wait_for(self._writer, timeout=2)
        except TimeoutError:
            self._writer.cancel()
        except asyncio.CancelledError:
            self._writer.cancel()
            if _cancelling():
                raise  # our caller's cancellation, not the writer's: pass it on


def _knows(writer: Any) -> bool:
    """Whether aiohttp's websocket writer has the parts `_write` uses."""
    protocol = getattr(writer, "protocol", None)
    return (hasattr(writer, "transport") and hasattr(writer, "use_mask")
            and hasattr(protocol, "writing_paused") and hasattr(protocol, "_drain_helper"))


def _encoded(data: bytes | str) -> bytes:
    return data if isinstance(data, bytes) else data.encode()


def _header(length: int) -> bytes:
    """An unmasked, unfragmented text frame's header (RFC 6455, 5.2)."""
    if length < 126:
        return struct.pack("!BB", _FIN_TEXT, length)
    if length < 65536:
        return struct.pack("!BBH", _FIN_TEXT, 126, length)
    return struct.pack("!BBQ", _FIN_TEXT, 127, length)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def error_frame(code: str, message: str, event_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if event_id is not None:
        frame["event_id"] = event_id
    return frame
