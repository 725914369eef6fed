"""Read a query's rows from PostgreSQL by binary COPY straight into numpy.

A row of fixed-width, non-null fields (int4, int8, date, float8) is a fixed number of
bytes in PostgreSQL's binary COPY format, so the stream cuts into a numpy structured
array with no per-row Python work. Parsing runs in a thread, 16 MB at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = 19  # signature (11), flags (4), header extension length (4, zero)
_PARSE_BYTES = 16 << 20


def row_type(*fields: tuple[str, str]) -> np.dtype[Any]:
    """The binary COPY row of these (name, big-endian numpy type) fields: a field
    count, then a length before each value."""
    layout: list[tuple[str, str]] = [("n", ">i2")]
    for k, (name, kind) in enumerate(fields):
        layout += [(f"len{k}", ">i4"), (name, kind)]
    return np.dtype(layout)


async def copy_rows(raw: Any, query: str, args: tuple[Any, ...], dtype: np.dtype[Any],
                    sink: Callable[[np.ndarray[Any, Any]], None]) -> None:
    """Run `query` (asyncpg connection `raw`) and hand its rows to `sink` in pieces,
    each call in a worker thread."""
    parser = _Rows(dtype, sink)
    pending: list[bytes] = []
    size = 0

    async def receive(data: bytes) -> None:
        nonlocal size
        pending.append(data)
        size += len(data)
        if size >= _PARSE_BYTES:
            chunk, size = b"".join(pending), 0
            pending.clear()
            await asyncio.to_thread(parser.feed, chunk)

    await raw.copy_from_query(query, *args, output=receive, format="binary")
    await asyncio.to_thread(parser.feed, b"".join(pending), True)


class _Rows:
    def __init__(self, dtype: np.dtype[Any], sink: Callable[[np.ndarray[Any, Any]], None]
                 ) -> None:
        self.dtype, self.sink = dtype, sink
        self.rest = b""
        self.started = False
        names = dtype.names or ()
        self.count = (len(names) - 1) // 2
        self.sizes = {n: dtype[names[k + 1]].itemsize
                      for k, n in enumerate(names) if n.startswith("len")}

    def feed(self, data: bytes, last: bool = False) -> None:
        data = self.rest + data
        if not self.started:
            if len(data) < _HEADER and not last:
                self.rest = data
                return
            if data[:11] != _SIGNATURE or data[15:19] != b"\0\0\0\0":
                raise ValueError("not a binary COPY stream without header extension")
            data, self.started = data[_HEADER:], True
        if last:
            if data[-2:] != b"\xff\xff":
                raise ValueError("binary COPY stream ended without its trailer")
            data = data[:-2]
        whole = len(data) // self.dtype.itemsize * self.dtype.itemsize
        rows = np.frombuffer(data[:whole], dtype=self.dtype)
        self.rest = data[whole:]
        if last and self.rest:
            raise ValueError("binary COPY stream cut mid-row")
        if not len(rows):
            return
        if not (rows["n"] == self.count).all() or any(
                not (rows[k] == size).all() for k, size in self.sizes.items()):
            raise ValueError("a binary COPY row is not the expected fixed-width, non-null row")
        self.sink(rows)
