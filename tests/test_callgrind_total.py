"""The instruction total bench/insn_probe.py reads from a callgrind dump (bench/callgrind.py)."""

from __future__ import annotations

import pytest

from bench.callgrind import total_ir

DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /work/.venv/bin/python -m callcenter serve --port 20001
part: 2

desc: I1 cache:
desc: Timerange: Basic block 1 - 2
desc: Trigger: Client Request

positions: line
events: Ir
summary: 123456789

ob=(1) /usr/lib/libc.so.6
fl=(1) ???
fn=(1) memcpy
0 1000
cfn=(2) 0x0000000000401000
calls=2 0
0 77

totals: 123456789
"""


def test_the_total_of_a_dump_is_its_totals_line_not_a_call_cost() -> None:
    assert total_ir(DUMP) == 123456789


def test_an_older_dump_with_only_a_summary_line_is_read_too() -> None:
    assert total_ir(DUMP.replace("totals: 123456789\n", "")) == 123456789


def test_a_dump_cut_short_before_its_total_is_refused() -> None:
    half = DUMP.split("positions:")[0]
    with pytest.raises(ValueError):
        total_ir(half)
