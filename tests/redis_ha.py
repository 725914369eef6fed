"""A real Redis high-availability set for tests: a primary, a replica and three
sentinels (Debian's redis-server and redis-sentinel), each a child process on a free
loopback port in a temporary folder."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as sync_redis

from bench.ports import free_port

MASTER = "callcenter"


def _binary(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        raise RuntimeError(f"{name} is not installed (./test.sh installs it with apt)")
    return path


def _wait(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as e:  # still starting
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout} s (last error: {last})")


@dataclass
class RedisHA:
    folder: Path
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self) -> None:
        self._server("primary", self.primary_port)
        self._server("replica", self.replica_port,
                     f"replicaof 127.0.0.1 {self.primary_port}")
        _wait(lambda: self._ask(self.replica_port, "INFO", "replication")
              .get("master_link_status") == "up", "replica in sync")
        for i, port in enumerate(self.sentinel_ports):
            self._sentinel(f"sentinel{i}", port)
        _wait(self._sentinels_agree, "sentinels see the primary, its replica and each other")

    def _server(self, name: str, port: int, *extra: str) -> None:
        folder = self.folder / name
        folder.mkdir(parents=True)
        conf = folder / "redis.conf"
        conf.write_text("\n".join([f"port {port}", "bind 127.0.0.1", f"dir {folder}",
                                   "save ''", "appendonly no", *extra]) + "\n")
        self._spawn(name, [_binary("redis-server"), str(conf)], folder)
        _wait(lambda: self._ask(port, "PING"), f"{name} answers")

    def _sentinel(self, name: str, port: int) -> None:
        folder = self.folder / name
        folder.mkdir(parents=True)
        conf = folder / "sentinel.conf"
        conf.write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", f"dir {folder}",
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2",
            f"sentinel down-after-milliseconds {MASTER} 1000",
            f"sentinel failover-timeout {MASTER} 5000",
            f"sentinel parallel-syncs {MASTER} 1"]) + "\n")
        self._spawn(name, [_binary("redis-sentinel"), str(conf)], folder)

    def _spawn(self, name: str, argv: list[str], folder: Path) -> None:
        with (folder / "log").open("wb") as log:
            self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def _ask(self, port: int, *command: object) -> Any:
        with sync_redis.Redis(port=port, decode_responses=True, socket_timeout=2) as client:
            return client.execute_command(*command)

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            info = self._ask(port, "SENTINEL", "MASTER", MASTER)
            if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < 2:
                return False
        return True

    def master_port(self) -> int:
        """The primary's port as the sentinels now name it."""
        _, port = self._ask(self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(port)

    def replicate_everything(self) -> None:
        """Wait until the replica has every write the primary took (steady state)."""
        acked = self._ask(self.primary_port, "WAIT", 1, 2000)
        assert acked == 1, "the replica did not catch up"

    def kill_primary(self) -> None:
        process = self.processes.pop("primary")
        process.kill()
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
        for process in self.processes.values():
            process.wait()
        self.processes.clear()
