"""The first run as a person sees it, in Chromium: the live demo center moves the
wallboard, rings a person's console (answered and hung up with the console's call
controls, which the demo PBX carries out), and the
call's recording becomes a transcript on the customer page. Screenshots for the README's
guided tour (CALLCENTER_UPDATE_SCREENSHOTS=1 writes them into docs/screenshots/)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from core.models import Agent, Customer, Interaction
from crm.demo import DEMO_PASSWORD, load_demo
from demo.center import PEOPLE, DemoCenter
from tests.browser import go_available
from tests.conftest import make_settings

pytestmark = [
    pytest.mark.browser,
]


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Any:
    """The suite's settings, with a recordings directory the demo writes into."""
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         recordings_dir=tmp_path / "rec")


async def sign_in(page: Page, url: str, username: str, lands_on: str) -> None:
    await page.goto(f"{url}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(re.escape(lands_on)))


async def transcribed_call(center: Any, username: str, timeout: float) -> Interaction:
    """The agent's call, once its recording is transcribed."""
    deadline = time.monotonic() + timeout
    while True:
        async with center.sessions() as session:
            agent_id = await session.scalar(select(Agent.id).where(Agent.username == username))
            record = await session.scalar(
                select(Interaction).where(Interaction.agent_id == agent_id,
                                          Interaction.call_id.like("demo-%"))
                .order_by(Interaction.id.desc()).limit(1))
        if record is not None and record.transcript_status == "done":
            return record
        assert time.monotonic() < deadline, (
            f"{username}'s call not transcribed within {timeout} s: "
            f"{record and (record.call_id, record.transcript_status, record.recording_path)}")
        await asyncio.sleep(0.5)


@pytest.mark.timeout(480)
async def test_the_first_run_shows_live_calls_a_screen_pop_and_a_transcript(
        center: Any, settings: Any, new_page: Any, shoot: Any,  # noqa: F811
        tmp_path: Path) -> None:
    await load_demo(center.sessions, customers=300)
    console = await new_page()
    await sign_in(console, center.url, PEOPLE[0], "/console")
    await go_available(console)  # before the colleagues: the longest idle takes a call first
    demo = DemoCenter(center.sessions, settings.secret_key, center.url, calls_per_min=40,
                      recordings=tmp_path / "rec" / "demo",
                      recordings_root=tmp_path / "rec", seed=11, scale=0.1)
    traffic = asyncio.create_task(demo.run())
    try:
        # The demo PBX rings the person's phone until the console answers it (or the ring
        # times out), so the console comes first and the wallboard after it.
        await expect(console.locator("#pop-name")).not_to_be_empty(timeout=30_000)
        await expect(console.locator("#call-status")).to_have_text("Incoming call")
        await console.click("#btn-answer")
        await expect(console.locator("#call-status")).to_have_text("On call", timeout=10_000)
        await shoot(console, "demo-console.png")
        await console.click("#btn-hangup")
        await expect(console.locator("#wrapup-form")).to_be_visible(timeout=15_000)
        # Not ready after this call, so it stays the agent's last one (whose history the
        # agent may read) while its transcript is made.
        await console.select_option("#nr-reason", "break")
        await console.click("#btn-not-ready")
        await console.select_option("#wrapup-disposition", "resolved")
        await console.click("#btn-wrapup-done")
        await expect(console.locator("#state-label")).to_have_text("Not ready")
        board = await new_page()
        await sign_in(board, center.url, "supervisor", "/wallboard")
        await expect(board.locator("#kpi-offered .kpi-value")).not_to_have_text(
            re.compile(r"^(0|—)?$"), timeout=15_000)
        await expect(board.locator("#agents")).to_contain_text("On a call", timeout=15_000)
        await shoot(board, "demo-wallboard.png")
        demo.pause()  # let the one transcription worker reach this call

        record = await transcribed_call(center, PEOPLE[0], timeout=300)  # a loaded machine
        async with center.sessions() as session:
            customer = await session.get(Customer, record.customer_id) \
                if record.customer_id else None
        if customer is not None:
            await console.fill("#search-q", customer.name)
            await console.press("#search-q", "Enter")
            # Demo names repeat: the result with this customer's number (masked: last 4 digits).
            await console.locator(".result", has_text=record.ani[-4:]).first.click()
            await expect(console.locator("#customer-name")).to_have_text(customer.name)
            history = console.locator("#view-customer table.history tbody tr")
            await history.first.locator("a").click()  # the newest call: the demo's
            await expect(console.locator(".transcript li").first).to_be_visible()
            await shoot(console, "demo-transcript.png")
        assert record.transcript, "a transcript with lines"
    finally:
        traffic.cancel()
        await asyncio.gather(traffic, return_exceptions=True)
        await demo.stop()
