"""The first run as the README gives it, in Chromium: `callcenter serve --demo` started on
an empty database leads within a minute to a wallboard with a live call, and soon after to
a customer page with a demo call's transcript; its start log has no ERROR line, Ctrl-C
included. (The install before it is timed by bench/firstrun_bench.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from bench.harness import Deployment, free_port
from crm.demo import DEMO_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.vosk]

ROOT = Path(__file__).resolve().parents[1]
LIVE_CALL_S = 60  # from the command to a wallboard with an agent on a call
TRANSCRIPT_S = 150  # to a customer page with a transcript, on this loaded 2-core machine


class Node:
    """`callcenter serve --demo` in its own process group, as a terminal runs it."""

    def __init__(self, tmp_path: Path, redis_url: str) -> None:
        self.workdir = tmp_path
        self.database = tmp_path / "callcenter.db"
        self.log = tmp_path / "start.log"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = Deployment(tmp_path, f"sqlite+aiosqlite:///{self.database}", redis_url).env(
            CALLCENTER_AUTO_MIGRATE="true", CALLCENTER_TRANSCRIBE_IN_PROCESS="true",
            CALLCENTER_LOG_LEVEL="INFO",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "callcenter", "serve", "--demo", "--port",
                 self.url.rpartition(":")[2]], env=self.env, cwd=self.workdir,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def ctrl_c(self) -> int:
        """SIGINT to the whole process group (what Ctrl-C does); the exit code."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=60)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def transcribed_call(self) -> tuple[str, str] | None:
        """(customer id, call id) of a demo call with a finished transcript."""
        if not self.database.exists():
            return None
        with contextlib.suppress(sqlite3.Error), \
                contextlib.closing(sqlite3.connect(self.database, timeout=5)) as db:
            return db.execute(
                "SELECT customer_id, call_id FROM interactions WHERE call_id LIKE 'demo-%' "
                "AND transcript_status = 'done' AND customer_id IS NOT NULL "
                "ORDER BY id LIMIT 1").fetchone()
        return None


@pytest.fixture
def node(tmp_path: Path, redis_url: str) -> Iterator[Node]:
    node = Node(tmp_path, redis_url)
    node.start()
    try:
        yield node
    finally:
        assert node.proc is not None
        with contextlib.suppress(ProcessLookupError):  # its decoder processes too
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait()


async def sign_in(page: Page, url: str, username: str, lands_on: str, timeout_s: float) -> None:
    """Sign in once the node serves (the page answers)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await page.goto(f"{url}/login")
            break
        except Exception:  # playwright's net::ERR_CONNECTION_REFUSED until the node listens
            assert time.monotonic() < deadline, "the node did not serve in time"
            await asyncio.sleep(0.5)
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(re.escape(lands_on)))


async def until(node: Node, deadline_s: float, check: Any, what: str) -> Any:
    while (found := check()) is None:
        assert node.elapsed() < deadline_s, f"{what} not within {deadline_s} s:\n{node.text()}"
        await asyncio.sleep(0.5)
    return found


@pytest.mark.timeout(300)
async def test_serve_demo_shows_a_live_call_within_a_minute_and_a_transcript_soon_after(
        node: Node, new_page: Any) -> None:
    board = await new_page()
    await sign_in(board, node.url, "supervisor", "/wallboard", LIVE_CALL_S)
    await expect(board.locator("#agents")).to_contain_text(
        "On a call", timeout=max(1.0, LIVE_CALL_S - node.elapsed()) * 1000)
    live_call_s = node.elapsed()

    customer_id, call_id = await until(node, TRANSCRIPT_S, node.transcribed_call,
                                       "a demo call's transcript")
    # The customer page with the call opened, where a link in its history leads.
    await board.goto(f"{node.url}/console#/customer/{customer_id}/call/{call_id}")
    await expect(board.locator(f"#call-{call_id} .transcript li").first).to_be_visible()
    transcript_s = node.elapsed()

    assert node.ctrl_c() == 0
    log = node.text()
    assert not [line for line in log.splitlines() if " ERROR " in line], log
    assert "Traceback" not in log, log
    # A start log a person reads: what is on, then the demo traffic, in a few lines.
    lines = [line for line in log.splitlines() if "aiohttp.access" not in line]
    start = next(n for n, line in enumerate(lines) if "demo traffic:" in line)
    assert start < 15, "\n".join(lines[:start + 1])
    print(f"live call after {live_call_s:.1f} s, transcript after {transcript_s:.1f} s")
