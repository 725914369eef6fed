"""Ports for the servers tests start: never one the kernel hands out on its own, never one
another run on the machine holds (bench/ports.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from bench.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def ephemeral_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_a_port_for_a_test_server_is_below_the_range_of_outgoing_connections() -> None:
    ports = [free_port() for _ in range(20)]
    assert all(1024 < port < ephemeral_start() for port in ports), ports
    with socket.socket() as s:  # and free: the server can bind it
        s.bind(("127.0.0.1", ports[0]))


def test_two_runs_at_once_are_never_given_the_same_port() -> None:
    mine = {free_port() for _ in range(100)}
    other = subprocess.run(
        [sys.executable, "-c",
         "from bench.ports import free_port; print(*(free_port() for _ in range(500)))"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    theirs = {int(port) for port in other.stdout.split()}
    assert len(mine) == 100 and len(theirs) == 500
    assert not mine & theirs
