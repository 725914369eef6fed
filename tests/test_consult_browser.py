"""Consult transfer on two agent consoles in Chromium (issue 17): A consults B from the
transfer dialog with its notes, B's console pops the call marked as a consult and B
answers, A's consult panel shows both parties; then A completes (A into wrap-up, the call
B's) or cancels (the caller back with A, B free). The test IVR acts every command."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser import NewPage, go_available, sign_in
from tests.test_call_control_browser import call_state, state_becomes

pytestmark = [
    pytest.mark.browser,
]


async def consulting(center: Any, new_page: NewPage) -> tuple[Page, Page, Any, Any]:
    """amy talks to a caller; bob's console is open and available; amy consults bob from
    the dialog with her notes, and bob answers from his console."""
    amy = await center.add_agent("amy")
    await center.add_agent("bob")
    await center.add_customer("C1", "张伟", "+8613800000001", tier="gold")
    a, b = await new_page(), await new_page()
    await sign_in(a, center, "amy")
    await sign_in(b, center, "bob")
    await go_available(a)
    ivr = await center.ivr()
    await ivr.offer("call-1", "+8613800000001")
    await ivr.event("call.answered", "call-1", agent_id=amy)
    await expect(a.locator("#call-status")).to_have_text("On call")
    await go_available(b)
    pbx = ivr.obey()
    await a.fill("#call-notes", "Wants a refund for order 42")
    await a.click("#btn-transfer")
    dialog = a.locator("#transfer-dialog")
    await dialog.locator("input[value=consult]").check()
    await expect(dialog.locator("input[name=kind][value=number]")).to_be_disabled()
    await dialog.locator("input[value=agent]").check()
    await expect(a.locator("#btn-transfer-go")).to_have_text("Consult")
    await a.click("#btn-transfer-go")
    await expect(a.locator("#call-status")).to_have_text("Consulting: calling your colleague")
    await expect(b.locator("#call-status")).to_have_text("Incoming call")
    await expect(b.locator("#pop-name")).to_have_text("张伟")
    await b.click("#btn-answer")
    await expect(a.locator("#call-status")).to_have_text("Consulting")
    await expect(b.locator("#call-status")).to_have_text("Consult from a colleague")
    return a, b, ivr, pbx


async def test_consult_to_a_colleague_then_complete_puts_the_first_agent_in_wrap_up(
        center: Any, new_page: NewPage, shoot: Any) -> None:
    a, b, ivr, pbx = await consulting(center, new_page)
    try:
        panel = a.locator("#consult-panel")
        await expect(panel).to_be_visible()
        await expect(panel.locator("#consult-caller")).to_contain_text("张伟")
        await expect(panel.locator("#consult-caller")).to_contain_text("on hold")
        await expect(panel.locator("#consult-agent")).to_contain_text("Bob")
        await expect(panel.locator("#consult-agent")).to_contain_text("talking")
        for button in ("#btn-consult-complete", "#btn-consult-cancel", "#btn-conference"):
            await expect(a.locator(button)).to_be_enabled()
        await expect(a.locator("#btn-hold")).to_be_disabled()
        their = b.locator("#consult-panel")
        await expect(their.locator("#consult-title")).to_have_text("Consult from Amy")
        await expect(their.locator("#consult-notes")).to_have_text(
            "Notes: Wants a refund for order 42")
        await expect(their.locator(".actions")).to_be_hidden()
        await shoot(a, "console-consult.png")

        await a.click("#btn-conference")
        await expect(a.locator("#call-status")).to_have_text("Conference")
        await expect(panel.locator("#consult-caller")).to_contain_text("in conference")
        await expect(a.locator("#btn-conference")).to_be_disabled()
        assert await call_state(center, "call-1") == "conference"

        await a.click("#btn-consult-complete")
        await expect(a.locator("#wrapup-form")).to_be_visible()
        await expect(a.locator("#call-controls")).to_be_hidden()
        await expect(b.locator("#call-status")).to_have_text("On call")
        await expect(b.locator("#consult-panel")).to_be_hidden()
        await expect(b.locator("#btn-hold")).to_be_enabled()
        await state_becomes(center, "call-1", "connected")
        # In Chinese too.
        await b.click("[data-lang=zh]")
        await expect(b.locator("#call-status")).to_have_text("通话中")
    finally:
        pbx.cancel()


async def test_a_cancelled_consult_gives_the_caller_back_and_frees_the_colleague(
        center: Any, new_page: NewPage) -> None:
    a, b, ivr, pbx = await consulting(center, new_page)
    try:
        await a.click("[data-lang=zh]")
        await expect(a.locator("#btn-consult-cancel")).to_have_text("取消咨询")
        await a.click("#btn-consult-cancel")
        await expect(a.locator("#call-status")).to_have_text("通话中")
        await expect(a.locator("#consult-panel")).to_be_hidden()
        await expect(a.locator("#btn-hold")).to_be_enabled()
        await expect(b.locator("#toast")).to_have_text("The consult ended.")
        await expect(b.locator("#call-status")).to_have_count(0)
        await state_becomes(center, "call-1", "connected")
    finally:
        pbx.cancel()


async def test_the_colleague_leaves_the_consult_from_its_console(
        center: Any, new_page: NewPage) -> None:
    """B hangs up its own consult leg ("Leave consult"): the caller is back with A, B is
    free; in Chinese B's button says so too."""
    a, b, ivr, pbx = await consulting(center, new_page)
    try:
        await expect(b.locator("#btn-hangup")).to_have_text("Leave consult")
        await b.click("[data-lang=zh]")
        await expect(b.locator("#btn-hangup")).to_have_text("退出咨询")
        await b.click("[data-lang=en]")
        await expect(b.locator("#btn-hold")).to_be_disabled()
        await b.click("#btn-hangup")
        await expect(b.locator("#call-status")).to_have_count(0)
        await expect(a.locator("#call-status")).to_have_text("On call")
        await expect(a.locator("#consult-panel")).to_be_hidden()
        await expect(a.locator("#btn-hold")).to_be_enabled()
        await state_becomes(center, "call-1", "connected")
    finally:
        pbx.cancel()
