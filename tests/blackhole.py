"""A TCP proxy in front of Redis that can stop forwarding on the connections it holds
without closing them: a host gone without a reset, as the other side sees it."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class BlackHoleProxy:
    def __init__(self, upstream_url: str) -> None:
        self._upstream = urlsplit(upstream_url)
        self._server: asyncio.Server | None = None
        self._held: list[list[bool]] = []  # per connection: [swallowing]
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> BlackHoleProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def black_hole(self) -> None:
        """From now on the connections open now pass nothing either way, and stay open;
        new connections are forwarded."""
        for held in self._held:
            held[0] = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up = self._upstream
        if up.scheme == "unix":
            up_reader, up_writer = await asyncio.open_unix_connection(up.path)
        else:
            up_reader, up_writer = await asyncio.open_connection(up.hostname, up.port or 6379)
        held = [False]
        self._held.append(held)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pump(source, sink, held))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                held: list[bool]) -> None:
    while data := await source.read(65536):
        if held[0]:
            continue  # swallowed: nothing passes, nothing is closed
        sink.write(data)
        await sink.drain()
    sink.close()
