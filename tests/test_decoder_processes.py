"""A node's decoder processes (its transcription worker's pool, each holding a speech
model in memory) end with the node, even one killed with SIGKILL that shuts nothing down:
the OOM killer, `kill -9`, a container stopped hard (issue 22)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import Deployment, free_port
from tests.test_first_start import ROOT, up_or_exited
from tests.waits import eventually

DECODERS = 2


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def decoders_of(node: int) -> list[int]:
    """The node's pool processes (multiprocessing's spawned children, not its resource
    tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (_stat(int(entry.name)) or ("", 0))[1] != node:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie has ended


@pytest.mark.timeout(300)
async def test_decoder_processes_end_when_their_node_is_killed(tmp_path: Path,
                                                               redis_url: str) -> None:
    deployment = Deployment(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'node.db'}",
                            redis_url)
    env = deployment.env(
        CALLCENTER_AUTO_MIGRATE="true", CALLCENTER_TRANSCRIBE_IN_PROCESS="true",
        CALLCENTER_TRANSCRIBE_CONCURRENCY=str(DECODERS),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    port = free_port()
    log = tmp_path / "node.log"
    with open(log, "wb") as stderr:
        # The first run: the demo center's traffic has the node start its decoders at once.
        node = subprocess.Popen([sys.executable, "-m", "callcenter", "serve", "--demo",
                                 "--demo-traffic", "1", "--port", str(port)],
                                env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=stderr)
        try:
            state = await up_or_exited(f"http://127.0.0.1:{port}", node, 240)
            assert state == "healthy", log.read_text(errors="replace")[-3000:]
            decoders = await eventually(lambda: _started(node), 120,
                                        what="the node's decoder processes")
            assert isinstance(decoders, list), log.read_text(errors="replace")[-3000:]
        finally:
            node.kill()  # SIGKILL: the node has no say
            node.wait()
    try:
        await eventually(lambda: not any(alive(pid) for pid in decoders), 60,
                         what=f"decoder processes {decoders} gone after their node")
    finally:
        for pid in filter(alive, decoders):  # not left behind on this host when it failed
            os.kill(pid, signal.SIGKILL)


def _started(node: subprocess.Popen[bytes]) -> list[int] | str:
    if node.poll() is not None:
        return f"the node exited with {node.returncode}"
    found = decoders_of(node.pid)
    return found if len(found) == DECODERS else []
