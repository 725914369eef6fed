"""Loopback ports for the servers the tests and benchmarks start (nodes, nginx, Redis,
sentinels), safe with several runs on one machine at once.

A port found free by binding to port 0 and closing is free only for a moment: before the
server started on it binds it, an outgoing connection of any process may take it as its
local port, or another run may be handed the same one, and a health check then reaches
someone else's server. So the ports come from below the kernel's ephemeral range (no
outgoing connection and no bind to port 0 gets one there), and each is reserved by a lock
file held until this process exits (no other run picks it, whichever starts the server).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

LOCKS = Path(tempfile.gettempdir()) / "callcenter-test-ports"
LOWEST = 20000
_reserved: list[int] = []  # the lock files' descriptors, open for the process's life
_random = random.Random()  # seeded from the OS: apart from every other process's choices


def free_port() -> int:
    """A loopback port no one listens on, reserved for this process."""
    end = _ephemeral_start()
    with contextlib.suppress(OSError):  # no lock folder of ours: the kernel's choice
        LOCKS.mkdir(exist_ok=True)
        for _ in range(500 if end > LOWEST else 0):
            if _reserve(port := _random.randrange(LOWEST, end)):
                return port
    return _any_port()


def _reserve(port: int) -> bool:
    fd = os.open(LOCKS / f"{port}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    if not _bindable(port):
        os.close(fd)
        return False
    _reserved.append(fd)
    return True


def _bindable(port: int) -> bool:
    with socket.socket() as s, contextlib.suppress(OSError):
        s.bind(("127.0.0.1", port))
        return True
    return False


def _ephemeral_start() -> int:
    """The lowest port the kernel hands out on its own (Linux; 32768 elsewhere)."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def _any_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
