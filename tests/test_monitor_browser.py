"""Live monitoring in Chromium (issue 20): a supervisor's Listen, Whisper, Barge and Stop
in the wallboard's agent table, with the test IVR acting each `route.monitor`; the agent's
console shows the whisper and the barge; a refusal is explained, in zh and en."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from core.models import Agent
from tests.browser import NewPage, go_available, sign_in

pytestmark = [
    pytest.mark.browser,
]


async def test_a_supervisor_monitors_from_the_wallboard_and_the_agent_sees_the_whisper(
        center: Any, new_page: NewPage, shoot: Any) -> None:  # noqa: F811
    amy = await center.add_agent("amy")
    await center.add_agent("sue", role="supervisor")
    console = await new_page()
    await sign_in(console, center, "amy")
    await go_available(console)
    ivr = await center.ivr()
    await ivr.offer("call-1", "+8613800000001")
    await ivr.inbox.expect("route.connect", call_id="call-1")
    await ivr.event("call.answered", "call-1", agent_id=amy)
    await expect(console.locator("#call-status")).to_have_text("On call")
    pbx = ivr.obey_monitor()

    board = await new_page()
    await sign_in(board, center, "sue", lands_on="/wallboard")
    row = board.locator(f"tr[data-agent-id='{amy}']")
    status = board.locator("#monitor-status")
    await expect(row.locator("button.mon-stop")).to_be_disabled()
    await row.locator("button.mon-listen").click()
    await expect(status).to_have_text(
        "Listening to Amy's call: your phone rings. Nobody on the call hears you.")
    await expect(row.locator(".monitor-who")).to_have_text("You: listening")
    await expect(row.locator("button.mon-listen")).to_have_attribute("aria-pressed", "true")
    await expect(console.locator("#monitor-notice")).to_be_hidden()  # listening is silent

    await row.locator("button.mon-whisper").click()
    await expect(status).to_have_text(
        "Whispering to Amy: only the agent hears you, the caller does not.")
    notice = console.locator("#monitor-notice")
    await expect(notice).to_have_text(
        "Sue (supervisor) is whispering to you — the caller cannot hear them.")
    await expect(row.locator(".monitor-who")).to_have_text("You: whispering")
    assert [c["mode"] for c in ivr.monitored] == ["listen", "whisper"]
    await shoot(board, "wallboard-monitor.png")
    await shoot(console, "console-whisper-notice.png")

    await console.click("button[data-lang=zh]")
    await expect(notice).to_have_text("主管 Sue 正在对您密语，客户听不到。")
    await board.click("button[data-lang=zh]")
    await expect(row.locator("button.mon-barge")).to_have_text("强插")
    await expect(row.locator(".monitor-who")).to_have_text("您：密语中")
    await shoot(board, "wallboard-monitor-zh.png")
    await shoot(console, "console-whisper-notice-zh.png")

    pbx.cancel()
    refusing = ivr.obey_monitor(refuse="busy")
    await row.locator("button.mon-barge").click()
    await expect(status).to_contain_text("电话系统拒绝了请求")
    await expect(status).to_contain_text("busy")
    await expect(status).to_have_class("monitor-status error")
    await expect(row.locator(".monitor-who")).to_have_text("您：密语中")  # unchanged
    refusing.cancel()

    pbx = ivr.obey_monitor()
    await row.locator("button.mon-barge").click()
    await expect(status).to_have_text("您已加入 Amy 的通话：坐席和客户都能听到您。")
    await expect(notice).to_have_text("主管 Sue 已加入通话，客户也能听到。")
    await board.click("button[data-lang=en]")
    await row.locator("button.mon-stop").click()
    await expect(status).to_have_text("Stopped monitoring Amy's call.")
    await expect(notice).to_be_hidden()
    await expect(row.locator(".monitor-who")).to_have_count(0)
    assert [c["mode"] for c in ivr.monitored] == ["barge", "stop"]

    # The call ends: its buttons go; an agent's console stays quiet.
    await ivr.event("call.ended", "call-1", cause="caller_hangup")
    await expect(row.locator("button.mon-listen")).to_have_count(0)
    pbx.cancel()


async def test_monitor_buttons_show_only_on_the_calls_the_viewer_may_monitor(
        center: Any, new_page: NewPage) -> None:
    amy, _ = await center.answered_call("amy", "call-2", "+8613800000002")
    tom, _ = await center.answered_call("tom", "call-3", "+8613800000003")
    async with center.sessions() as session, session.begin():
        (await session.get(Agent, tom.agent_id)).team = "b"  # not sue's team
    await center.add_agent("sue", role="supervisor")
    await center.add_agent("ada", role="admin")

    board = await new_page()
    await sign_in(board, center, "sue", lands_on="/wallboard")
    ours = board.locator(f"tr[data-agent-id='{amy.agent_id}']")
    theirs = board.locator(f"tr[data-agent-id='{tom.agent_id}']")
    await expect(ours.locator("button.mon-listen")).to_have_count(1)
    await expect(theirs.locator("td.name")).to_have_text("Tom")
    await expect(theirs.locator("button.mon-btn")).to_have_count(0)

    admin = await new_page()
    await sign_in(admin, center, "ada", lands_on="/wallboard")
    for agent in (amy, tom):
        row = admin.locator(f"tr[data-agent-id='{agent.agent_id}']")
        await expect(row.locator("button.mon-btn")).to_have_count(4)
