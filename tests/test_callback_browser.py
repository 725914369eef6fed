"""Callbacks in a real browser (Debian's Chromium, Playwright): an agent promises a
callback from the wrap-up panel and from the customer page; a supervisor sees the
pending callbacks on the wallboard, reassigns one and cancels another, in English and
Chinese."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from core.appkeys import CALLBACKS
from core.settings import Settings
from tests.browser import NewPage, go_available, sign_in
from tests.conftest import make_settings

pytestmark = [
    pytest.mark.browser,
]

PHONE = "+8613800000401"


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    # the PBX that places a callback for a customer who never called
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         callback_integration="pbx-1")


async def test_an_agent_promises_callbacks_and_a_supervisor_reassigns_and_cancels_them(
        center, new_page: NewPage, shoot) -> None:
    await center.add_customer("CB1", "Callback Customer", PHONE)
    await center.add_agent("amy")
    await center.add_agent("bob")
    await center.add_agent("sue", role="supervisor")
    console = await new_page()
    await sign_in(console, center, "amy")
    await go_available(console)
    ivr = await center.ivr()
    await ivr.offer("cb-browser", PHONE)
    await expect(console.locator("#pop-name")).to_have_text("Callback Customer")
    agent_id = (await ivr.inbox.expect("route.connect", call_id="cb-browser"))["agent_id"]
    await ivr.event("call.answered", "cb-browser", agent_id=agent_id)
    await ivr.event("call.ended", "cb-browser")
    form = console.locator("#callback-form")
    await expect(form).to_be_visible()
    await console.fill("#callback-form-note", "send the new quote")
    await console.click("#callback-form button[type=submit]")
    await expect(form.locator(".ok")).to_contain_text(f"Callback to {PHONE} scheduled")
    await shoot(console, "console-callback-promised.png")
    await console.select_option("#wrapup-disposition", "follow_up")
    await console.click("#btn-wrapup-done")
    # and from the customer page, at a time of the agent's choosing
    await console.goto(f"{center.url}/console#/customer/CB1")
    page_form = console.locator("#customer-callback-form")
    await console.fill("#customer-callback-form-due", "2026-12-31T10:30")
    await console.click("#customer-callback-form button[type=submit]")
    await expect(page_form.locator(".ok")).to_contain_text("scheduled")

    board = await new_page()
    await sign_in(board, center, "sue", lands_on="/wallboard")
    rows = board.locator("#callbacks-table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(board.locator("#kpi-callbacks .kpi-value")).to_have_text("2")
    await shoot(board, "wallboard-callbacks.png")
    bob = await _agent_id(center, "bob")
    first = rows.nth(0)
    callback_id = await first.get_attribute("data-callback-id")
    await first.locator("select.callback-agent").select_option(str(bob))
    await first.locator("button.reassign").click()
    desk = center.server.app[CALLBACKS]

    async def promised_to() -> int | None:
        return next(c["agent_id"] for c in await desk.pending() if c["callback_id"] == callback_id)

    await _until(promised_to, bob)
    await rows.nth(1).locator("button.cancel").click()
    await expect(rows).to_have_count(1)
    await board.click("button[data-lang=zh]")
    await expect(board.locator("[data-i18n='wallboard.callbacks']")).to_have_text("待处理回拨")
    await expect(board.locator("#callbacks-table tbody")).to_contain_text("改派")
    assert re.search("待回拨", await board.locator("#kpi-callbacks").inner_text())


async def _agent_id(center, username: str) -> int:
    from sqlalchemy import select

    from core.models import Agent

    async with center.sessions() as session:
        return int(await session.scalar(select(Agent.id).where(Agent.username == username)))


async def _until(read, expected) -> None:
    from tests.waits import eventually

    async def check() -> bool:
        return await read() == expected

    await eventually(check, timeout=15, what=f"the callback promised to {expected}")


async def test_a_callback_pops_on_the_console_marked_as_one(center, new_page: NewPage) -> None:
    await center.add_customer("CB2", "Called Back", PHONE)
    await center.add_agent("dee")
    ivr = await center.ivr()
    await ivr.offer("cb-pop", PHONE)
    await ivr.event("callback.requested", "cb-pop")
    callback_id = (await ivr.inbox.expect("callback.accepted"))["callback_id"]
    console = await new_page()
    await sign_in(console, center, "dee")
    await expect(console.locator("#btn-available")).to_be_enabled()
    await console.click("#btn-available")  # it takes the callback at once
    await ivr.inbox.expect("route.callback", callback_id=callback_id)
    mark = console.locator("#pop-callback")
    await expect(mark).to_contain_text(f"Callback to {PHONE}")
    await expect(mark).to_contain_text("asked for by the caller in the queue")
    await expect(console.locator("#pop-name")).to_have_text("Called Back")
    await console.click("button[data-lang=zh]")
    await expect(mark).to_contain_text(f"回拨 {PHONE}")


async def test_an_agent_sees_the_callbacks_promised_to_them_in_the_console(
        center, new_page: NewPage, shoot) -> None:
    await center.add_customer("CB3", "Promised", "+8613800000403")
    await center.add_agent("eli")
    console = await new_page()
    await sign_in(console, center, "eli")
    mine = console.locator("#my-callbacks")
    await expect(mine).to_contain_text("No callbacks promised to you.")
    await console.goto(f"{center.url}/console#/customer/CB3")
    await console.fill("#customer-callback-form-due", "2026-12-31T10:30")
    await console.fill("#customer-callback-form-note", "the refund")
    await console.click("#customer-callback-form button[type=submit]")
    await expect(console.locator("#customer-callback-form .ok")).to_contain_text("scheduled")
    rows = mine.locator("li")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("+8613800000403")
    await expect(rows.first).to_contain_text("the refund")
    await expect(rows.first).to_contain_text("scheduled")
    await shoot(console, "console-my-callbacks.png")
    await console.click("button[data-lang=zh]")
    await expect(mine.locator("h3")).to_have_text("我的回拨")
    await expect(rows.first).to_contain_text("已预约")
