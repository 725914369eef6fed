"""The binary COPY reader (crm/pg_copy.py): rows cut right wherever the stream's
pieces end, and a row that is not the expected fixed-width one is refused."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from crm.pg_copy import _Rows, row_type

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
ROW = row_type(("key", ">i8"), ("day", ">i4"))


def _row(key: int, day: int) -> bytes:
    return struct.pack(">hiqii", 2, 8, key, 4, day)


def _read(stream: bytes, cuts: list[int]) -> list[tuple[int, int]]:
    got: list[np.ndarray] = []
    rows = _Rows(ROW, got.append)
    edges = [0, *sorted(cuts), len(stream)]
    pieces = [stream[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    for piece in pieces[:-1]:
        rows.feed(piece)
    rows.feed(pieces[-1], True)
    return [(int(r["key"]), int(r["day"])) for part in got for r in part]


@pytest.mark.parametrize("cuts", [[], [5], [19, 20], [7, 23, 24, 40, 41]])
def test_rows_are_read_whatever_the_pieces(cuts):
    stream = HEADER + _row(-5, 9000) + _row(2**40, 1) + _row(0, -3) + TRAILER
    assert _read(stream, cuts) == [(-5, 9000), (2**40, 1), (0, -3)]


def test_a_null_field_is_refused():
    null = struct.pack(">hiqi", 2, 8, 1, -1) + b"\0\0\0\0"  # as long, but day is NULL
    with pytest.raises(ValueError, match="fixed-width"):
        _read(HEADER + null + TRAILER, [])


def test_a_stream_cut_mid_row_or_without_header_is_refused():
    with pytest.raises(ValueError, match="mid-row"):
        _read(HEADER + _row(1, 1)[:-1] + TRAILER, [])
    with pytest.raises(ValueError, match="header"):
        _read(_row(1, 1) + TRAILER, [])
