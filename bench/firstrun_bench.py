"""The first run on a fresh machine: `./run.sh` from a fresh clone, a new venv and empty
package caches, timed to each thing a new user waits for.

For each commit (alternating, `--rounds` times) the benchmark clones this repository,
points every package cache (pip, uv, XDG) at an empty folder, starts `./run.sh --port P`
under `nice -n -15` and times, from the start of run.sh:

- installed: the install stamp appears (`.venv/.callcenter-installed`);
- console line: run.sh prints `Agent console:` (database migrated, demo data loaded);
- serving: `/healthz` answers 200;
- live call: the wallboard (`/ws/wallboard`, as `supervisor`) shows an agent on a call;
- transcript: a demo call's transcript is done (read from the SQLite file).

With each time goes the CPU the run has used by then (its process group, children
included: less sensitive to the machine's load than the wall clock). It also counts the
start log's ERROR lines. Packages come from the registry each time
(the caches are empty), so the figures include the network as this machine sees it.

    nice -n -15 .venv/bin/python bench/firstrun_bench.py --commits OLD,HEAD --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import free_port  # noqa: E402

MARKS = ("installed", "console line", "serving", "live call", "transcript")


class Run:
    """One `./run.sh` in a fresh clone, its output lines timed from its start."""

    def __init__(self, commit: str, workdir: Path, port: int) -> None:
        self.commit, self.workdir, self.port = commit, workdir, port
        self.repo = workdir / "repo"
        self.lines: list[tuple[float, str]] = []
        self.marks: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.group = 0
        self.t0 = 0.0

    def start(self) -> subprocess.Popen[str]:
        subprocess.run(["git", "clone", "-q", "--shared", str(ROOT), str(self.repo)],
                       check=True)
        subprocess.run(["git", "-C", str(self.repo), "checkout", "-q", self.commit],
                       check=True)
        cache = self.workdir / "cache"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CALLCENTER_", "VIRTUAL_ENV", "UV_"))}
        env.update(XDG_CACHE_HOME=str(cache), PIP_CACHE_DIR=str(cache / "pip"),
                   UV_CACHE_DIR=str(cache / "uv"), PYTHONUNBUFFERED="1")
        self.t0 = time.monotonic()
        proc = subprocess.Popen(["nice", "-n", "-15", "./run.sh", "--port", str(self.port)],
                                cwd=self.repo, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.group = proc.pid
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        return proc

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append((time.monotonic() - self.t0, line.rstrip("\n")))
            if line.startswith("Agent console:"):
                self.mark("console line")

    def mark(self, name: str) -> None:
        if name not in self.marks:
            self.marks[name] = time.monotonic() - self.t0
            self.cpu[name] = group_cpu_s(self.group)

    def transcribed(self) -> bool:
        path = self.repo / "callcenter.db"
        if not path.exists():
            return False
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                    timeout=1)) as db:
                row = db.execute("SELECT count(*) FROM interactions WHERE call_id LIKE "
                                 "'demo-%' AND transcript_status = 'done'").fetchone()
        except sqlite3.Error:
            return False
        return bool(row and row[0])


def group_cpu_s(group: int) -> float:
    """CPU seconds of a process group's live processes and the children they reaped."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == group:  # pgrp; then utime stime cutime cstime
                ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


async def on_a_call(http: aiohttp.ClientSession, url: str) -> bool:
    """Whether the wallboard's snapshot shows an agent on a call."""
    async with http.post(f"{url}/api/v1/login",
                         json={"username": "supervisor", "password": "demo1234"}) as r:
        if r.status != 200:
            return False
        token = (await r.json())["token"]
    async with http.ws_connect(f"{url}/ws/wallboard",
                               headers={"Authorization": f"Bearer {token}"}) as ws:
        snapshot = await ws.receive_json(timeout=10)
    return any(agent.get("state") == "on_call" for agent in snapshot.get("agents", []))


async def watch(run: Run, budget: float) -> None:
    url = f"http://127.0.0.1:{run.port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        while time.monotonic() - run.t0 < budget and "transcript" not in run.marks:
            if (run.repo / ".venv" / ".callcenter-installed").exists():
                run.mark("installed")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError,
                                     KeyError, TypeError):
                if "serving" not in run.marks:
                    async with http.get(f"{url}/healthz") as r:
                        if r.status == 200:
                            run.mark("serving")
                elif "live call" not in run.marks and await on_a_call(http, url):
                    run.mark("live call")
            if "serving" in run.marks and run.transcribed():
                run.mark("transcript")
            await asyncio.sleep(0.5)


def stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def one(commit: str, budget: float, keep: Path | None) -> Run:
    with tempfile.TemporaryDirectory(prefix="firstrun-") as tmp:
        run = Run(commit, Path(tmp), free_port())
        proc = run.start()
        try:
            asyncio.run(watch(run, budget))
        finally:
            stop(proc)
        if keep is not None:
            log = keep / f"firstrun-{commit}-{int(time.time())}.log"
            log.write_text("".join(f"{t:7.2f} {line}\n" for t, line in run.lines))
        return run


def report(run: Run) -> str:
    figures = "  ".join(f"{name} {run.marks[name]:5.1f}s ({run.cpu.get(name, 0):.0f} cpu)"
                        if name in run.marks
                        else f"{name}   none" for name in MARKS)
    errors = sum(" ERROR " in line or line.startswith("ERROR") for _, line in run.lines)
    return f"{run.commit[:10]:<10}  {figures}  ERROR lines {errors}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", default="HEAD",
                        help="comma-separated commits, run alternately (e.g. OLD,HEAD)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--budget", type=float, default=300,
                        help="seconds to wait for the first transcript")
    parser.add_argument("--keep-logs", type=Path, help="folder for each run's timed log")
    args = parser.parse_args()
    commits = [subprocess.run(["git", "-C", str(ROOT), "rev-parse", c], check=True,
                              capture_output=True, text=True).stdout.strip()
               for c in args.commits.split(",")]
    print(f"load before: {os.getloadavg()}", flush=True)
    for n in range(args.rounds):
        for commit in commits:
            run = one(commit, args.budget, args.keep_logs)
            print(f"round {n + 1}  {report(run)}  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
