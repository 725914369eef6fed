"""PCI pause of the recording on the agent console in Chromium (issue 21): the Pause
recording / Resume recording button sends `call.control`, a fake PBX (the test IVR) carries
it out, and only its `recording.paused` / `recording.resumed` change what the console shows,
also after a reload; a refusal is explained in the interface language."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from core import appkeys
from tests.browser import NewPage
from tests.test_call_control_browser import ringing_console
from tests.waits import eventually

pytestmark = [
    pytest.mark.browser,
]


async def paused_by(center: Any, call_id: str) -> str:
    call = await center.server.app[appkeys.ROUTER].store.call(call_id)
    return call.get("rec_paused_by") or ""


async def test_agent_pauses_and_resumes_the_recording_from_the_console(
        center: Any, new_page: NewPage, shoot: Any) -> None:  # noqa: F811
    console, ivr, amy = await ringing_console(center, new_page)
    button, badge = console.locator("#btn-recording"), console.locator("#recording-paused")
    await expect(button).to_be_hidden()  # ringing: nothing is recorded yet
    await ivr.event("call.answered", "call-1", agent_id=amy)
    await expect(console.locator("#call-status")).to_have_text("On call")
    await expect(button).to_have_text("Pause recording")
    await expect(badge).to_be_hidden()
    pbx = ivr.obey()
    try:
        await button.click()
        await expect(badge).to_have_text("Recording paused")
        await expect(button).to_have_text("Resume recording")
        await expect(button).to_have_attribute("aria-pressed", "true")
        await expect(console.locator("#control-message")).to_have_text(
            "Recording paused: the card number will not be recorded.")
        assert await paused_by(center, "call-1") == "agent:amy"
        await shoot(console, "console-recording-paused.png")

        await console.reload()  # the server's snapshot brings the pause back
        await expect(badge).to_have_text("Recording paused")
        await expect(button).to_be_enabled()
        await button.click()
        await expect(badge).to_be_hidden()
        await expect(button).to_have_text("Pause recording")

        async def resumed() -> bool:
            return await paused_by(center, "call-1") == ""

        await eventually(resumed, 30, what="recording resumed")
    finally:
        pbx.cancel()


async def test_a_refused_pause_is_explained_in_chinese(
        center: Any, new_page: NewPage) -> None:  # noqa: F811
    console, ivr, amy = await ringing_console(center, new_page)
    await ivr.event("call.answered", "call-1", agent_id=amy)
    await console.click("[data-lang=zh]")
    button = console.locator("#btn-recording")
    await expect(button).to_have_text("暂停录音")
    pbx = ivr.obey(refuse={"recording.pause": "recording_not_running"})
    try:
        await button.click()
        await expect(console.locator("#control-message")).to_have_text("录音未在进行，无法暂停。")
        await expect(console.locator("#recording-paused")).to_be_hidden()
        await expect(button).to_have_text("暂停录音")
        assert await paused_by(center, "call-1") == ""
    finally:
        pbx.cancel()
