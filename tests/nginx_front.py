"""Debian's nginx in front of test nodes, configured from the shipped `deploy/nginx.conf`.

Only what must differ on a test machine is changed: the upstream servers (the nodes'
loopback ports instead of `node1`/`node2`), the listening address, one worker, and the
pid and log files in a temporary folder. Websocket upgrade, X-Forwarded-For, passive
health checks and `proxy_next_upstream` are the deployment's own.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.harness import free_port

DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"


def render(conf: str, node_ports: list[int], port: int, folder: Path) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=2 fail_timeout=5s;"
                        for p in node_ports)
    conf, upstreams = re.subn(r"(?m)^\s*server node\d+:8080[^;]*;\n", "", conf)
    assert upstreams, "deploy/nginx.conf names no upstream node"
    conf = conf.replace("least_conn;", "least_conn;\n" + servers, 1)
    conf, listens = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", conf)
    assert listens == 1, "deploy/nginx.conf should listen on port 80 once"
    conf = conf.replace("worker_processes auto;", "worker_processes 1;")
    return f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} info;\n" + conf


class NginxFront:
    def __init__(self, folder: Path, node_ports: list[int]) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "nginx.conf"
        self.conf.write_text(render(DEPLOY_CONF.read_text(), node_ports, self.port, folder))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed (./test.sh installs it with apt)")
        argv = [binary, "-p", str(self.folder), "-c", str(self.conf), "-g", "daemon off;"]
        subprocess.run([*argv, "-t"], check=True, capture_output=True)
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx did not serve /healthz: {self.error_log()}")
            time.sleep(0.05)

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
