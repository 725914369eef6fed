"""`core.ws.Connection` against a real server and a client that does not read."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from core import ws
from core.ws import Connection


class Server:
    """One websocket route whose handler hands its `Connection` to the test."""

    def __init__(self) -> None:
        self.conns: asyncio.Queue[Connection] = asyncio.Queue()
        self.done = asyncio.Event()
        self.requests: list[web.Request] = []

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        self.requests.append(request)
        await self.conns.put(Connection(sock, "test client"))
        await self.done.wait()
        return sock


@pytest.fixture
async def server(aiohttp_server) -> AsyncIterator[tuple[Server, str, int]]:  # type: ignore[no-untyped-def]
    state = Server()
    app = web.Application()
    app.router.add_get("/ws", state.handle)
    running = await aiohttp_server(app)
    yield state, running.host, running.port
    state.done.set()
    for request in state.requests:  # a server stuck writing to a silent client: drop it
        if request.transport is not None:
            request.transport.abort()
    await asyncio.sleep(0.01)


@pytest.fixture
async def aiohttp_client_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def silent_client(host: str, port: int) -> tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter]:
    """A websocket client that completes the handshake and then never reads."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def test_a_slow_client_is_logged_once_and_closed_once(
        server: tuple[Server, str, int], caplog: pytest.LogCaptureFixture) -> None:
    state, host, port = server
    _, writer = await silent_client(host, port)
    conn = await state.conns.get()  # not started: nothing drains its outbox
    closes = 0
    real_close = conn.ws.close

    async def counting_close(**kwargs: object) -> bool:
        nonlocal closes
        closes += 1
        return await real_close(**kwargs)  # type: ignore[arg-type]

    conn.ws.close = counting_close  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="core.ws"):
        for i in range(ws.OUTBOX_SIZE + 2000):
            conn.send({"type": "tick", "n": i})
        deadline = time.monotonic() + 5
        while closes == 0:
            assert time.monotonic() < deadline, "the slow client was never closed"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # let any other close task that was started run
    warnings = [r for r in caplog.records if "not reading" in r.getMessage()]
    assert len(warnings) == 1
    assert closes == 1
    writer.close()
    await writer.wait_closed()


async def test_close_passes_on_its_callers_cancellation(
        server: tuple[Server, str, int]) -> None:
    state, host, port = server
    _, writer = await silent_client(host, port)
    conn = await state.conns.get()
    conn.start()
    chunk = "x" * 1_000_000
    for _ in range(64):  # far more than the socket buffers hold: the writer blocks
        conn.send({"type": "big", "data": chunk})
    closing = asyncio.create_task(conn.close())
    await asyncio.sleep(0.1)
    assert not closing.done(), "close should be waiting for the blocked writer"
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert closing.cancelled()
    writer.close()
    await writer.wait_closed()


async def _received(client: aiohttp.ClientWebSocketResponse, n: int) -> list[Any]:
    return [(await client.receive_json(timeout=5)) for _ in range(n)]


async def test_frames_queued_together_reach_the_client_in_order_in_one_write(
        server: tuple[Server, str, int], aiohttp_client_session: aiohttp.ClientSession) -> None:
    state, host, port = server
    client = await aiohttp_client_session.ws_connect(f"http://{host}:{port}/ws")
    conn = await state.conns.get()
    transport = state.requests[-1].transport
    assert transport is not None
    writes: list[bytes] = []
    real_write = transport.write

    def counting_write(data: bytes) -> None:
        writes.append(data)
        real_write(data)

    transport.write = counting_write  # type: ignore[method-assign]
    for i in range(40):  # as encoded here, and as relayed from the bus
        if i % 2:
            conn.send({"type": "tick", "n": i})
        else:
            conn.relay({}, orjson.dumps({"type": "tick", "n": i}).decode())
    conn.start()
    assert [m["n"] for m in await _received(client, 40)] == list(range(40))
    assert len(writes) == 1
    await conn.close()
    await client.close()


@pytest.mark.parametrize("compress", [0, 15])
async def test_frames_of_every_length_arrive_whole_with_or_without_compression(
        server: tuple[Server, str, int], aiohttp_client_session: aiohttp.ClientSession,
        compress: int) -> None:
    state, host, port = server
    client = await aiohttp_client_session.ws_connect(f"http://{host}:{port}/ws",
                                                     compress=compress)
    conn = await state.conns.get()
    # one header length each (RFC 6455: 7 bits, 16 bits, 64 bits), and a batch cut short
    sizes = [10, 300, 70_000, 5, 20_000, 1, 9_000, 9_000, 9_000]
    for i, size in enumerate(sizes):
        conn.send({"n": i, "data": "x" * size})
    conn.start()
    got = await _received(client, len(sizes))
    assert [(m["n"], len(m["data"])) for m in got] == list(enumerate(sizes))
    await conn.close()
    await client.close()
