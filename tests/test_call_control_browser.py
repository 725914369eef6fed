"""Call control on the agent console in Chromium (issue 17): answer, hold / resume with a
hold timer and hang up through `call.control`, with a fake PBX (the test IVR) acting each
`route.control`. The buttons follow the call's state as the server reports it, also after
a reload; refusals are explained in the interface language."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from core import appkeys
from tests.browser import NewPage, go_available, sign_in
from tests.waits import eventually

pytestmark = [
    pytest.mark.browser,
]


async def call_state(center: Any, call_id: str) -> str | None:
    call = await center.server.app[appkeys.ROUTER].store.call(call_id)
    return call.get("state")


async def state_becomes(center: Any, call_id: str, state: str) -> None:
    async def reached() -> bool:
        return await call_state(center, call_id) == state

    await eventually(reached, 30, what=f"call {call_id} {state}")


async def ringing_console(center: Any, new_page: NewPage) -> tuple[Page, Any, int]:  # noqa: F811
    amy = await center.add_agent("amy")
    await center.add_customer("C1", "张伟", "+8613800000001", tier="gold")
    console = await new_page()
    await sign_in(console, center, "amy")
    await go_available(console)
    ivr = await center.ivr()
    await ivr.offer("call-1", "+8613800000001")
    await expect(console.locator("#call-status")).to_have_text("Incoming call")
    return console, ivr, amy


async def pbx_gone(center: Any, name: str = "pbx-1") -> None:
    """Wait until the node has let go of the PBX's channel. Until then a command is sent
    to a PBX that is closing and times out, instead of failing at once as unheard."""
    app = center.server.app
    channel = app[appkeys.KEYS].telephony_channel(name)

    async def nobody_listens() -> bool:
        return int(dict(await app[appkeys.REDIS].pubsub_numsub(channel))[channel]) == 0

    await eventually(nobody_listens, timeout=30, what=f"nobody on {channel}")


async def test_agent_answers_holds_resumes_and_hangs_up_from_the_console(
        center: Any, new_page: NewPage, shoot: Any) -> None:  # noqa: F811
    console, ivr, _ = await ringing_console(center, new_page)
    pbx = ivr.obey()
    try:
        answer, hold = console.locator("#btn-answer"), console.locator("#btn-hold")
        hangup = console.locator("#btn-hangup")
        await expect(answer).to_be_enabled()
        await expect(hold).to_be_hidden()
        await expect(hangup).to_be_disabled()
        await answer.click()
        await expect(console.locator("#call-status")).to_have_text("On call")
        await expect(answer).to_be_hidden()
        await expect(hold).to_have_text("Hold")
        await expect(hold).to_be_enabled()
        await expect(hangup).to_be_enabled()
        assert await call_state(center, "call-1") == "connected"

        await hold.click()
        await expect(console.locator("#call-status")).to_have_text("On hold")
        await expect(hold).to_have_text("Resume")
        await expect(hold).to_have_attribute("aria-pressed", "true")
        await expect(console.locator("#hold-timer")).to_contain_text("On hold 0:0")
        await expect(console.locator("#control-message")).to_have_text("The caller is on hold.")
        assert await call_state(center, "call-1") == "on_hold"
        await shoot(console, "console-call-controls.png")

        # A reload is a reconnect: the server's snapshot brings the hold back.
        await console.reload()
        await expect(console.locator("#call-status")).to_have_text("On hold")
        await expect(hold).to_have_text("Resume")
        await expect(hold).to_be_enabled()
        await expect(hangup).to_be_enabled()

        await console.keyboard.press("Alt+H")
        await expect(console.locator("#call-status")).to_have_text("On call")
        await expect(console.locator("#hold-timer")).to_be_hidden()
        await state_becomes(center, "call-1", "connected")

        await console.keyboard.press("Alt+X")
        await expect(console.locator("#wrapup-form")).to_be_visible()
        await expect(console.locator("#call-controls")).to_be_hidden()
        await state_becomes(center, "call-1", "wrap_up")
    finally:
        pbx.cancel()


async def test_a_refused_command_is_explained_and_the_call_is_unchanged(
        center: Any, new_page: NewPage) -> None:  # noqa: F811
    console, ivr, amy = await ringing_console(center, new_page)
    pbx = ivr.obey(refuse={"answer": "not_supported", "hold": "no_music"})
    try:
        await console.click("#btn-answer")
        message = console.locator("#control-message")
        await expect(message).to_have_text("The phone system cannot do that; use your phone.")
        await expect(console.locator("#btn-answer")).to_be_enabled()
        assert await call_state(center, "call-1") == "ringing"

        await ivr.event("call.answered", "call-1", agent_id=amy)  # picked up at the desk phone
        await expect(console.locator("#call-status")).to_have_text("On call")
        await console.click("[data-lang=zh]")
        await expect(console.locator("#btn-hold")).to_have_text("保持")
        await console.click("#btn-hold")
        await expect(message).to_have_text("电话系统拒绝了操作（no_music）。")
        await expect(console.locator("#call-status")).to_have_text("通话中")
        await expect(console.locator("#btn-hold")).to_be_enabled()
        assert await call_state(center, "call-1") == "connected"
    finally:
        pbx.cancel()


async def test_without_a_pbx_the_console_says_so_and_shortcuts_are_listed(
        center: Any, new_page: NewPage) -> None:  # noqa: F811
    console, ivr, _ = await ringing_console(center, new_page)
    await ivr.close()  # the PBX is gone: nobody can act on the call
    await pbx_gone(center)
    await console.keyboard.press("Alt+A")
    await expect(console.locator("#control-message")).to_have_text(
        "The phone system is not connected; use your phone.")
    await expect(console.locator("#btn-answer")).to_be_enabled()

    await console.keyboard.press("?")
    help_sheet = console.locator("#shortcut-help")
    await expect(help_sheet).to_be_visible()
    await expect(help_sheet).to_contain_text("Alt+H")
    await expect(help_sheet).to_contain_text("Hold or resume the call")
    await console.keyboard.press("Escape")
    await expect(help_sheet).to_have_count(0)


async def test_blind_transfer_to_a_colleague_from_the_dialog(
        center: Any, new_page: NewPage, shoot: Any) -> None:  # noqa: F811
    """The dialog lists queues with their waiting callers and colleagues with their live
    states, available first (cy is on a break, bob available, dan logged out)."""
    cy = await center.agent("cy")
    await cy.available()
    await cy.not_ready()
    await center.add_agent("dan")
    bob = await center.agent("bob")
    console, ivr, amy = await ringing_console(center, new_page)
    await bob.available()
    await ivr.event("call.answered", "call-1", agent_id=amy)
    await expect(console.locator("#call-status")).to_have_text("On call")
    pbx = ivr.obey()
    try:
        await console.click("#btn-transfer")
        dialog = console.locator("#transfer-dialog")
        await expect(dialog).to_be_visible()
        await expect(console.locator("#transfer-queue option")).to_have_text(
            ["default (0 waiting, 1 available)"])
        await dialog.locator("input[value=agent]").check()
        await expect(console.locator("#transfer-agent option")).to_have_text(
            ["Bob — Available", "Cy — Not ready"])
        await expect(console.locator("#transfer-agent")).to_have_value(str(bob.agent_id))
        await shoot(console, "console-transfer.png")
        await console.click("#btn-transfer-go")
        await expect(console.locator("#wrapup-form")).to_be_visible()
        pop = await bob.inbox.expect("screen_pop", call_id="call-1", timeout=30)
        assert pop["transferred_from"] == amy
    finally:
        pbx.cancel()


async def test_transfer_dialog_stays_live_and_keeps_the_choice(
        center: Any, new_page: NewPage) -> None:  # noqa: F811
    """While the dialog is open, Bob comes back from his break: without reopening, the
    dialog lists him first as available and counts him for the queue, and Amy's choice
    (Cy) stays chosen."""
    bob = await center.agent("bob")
    await bob.available()
    await bob.not_ready()
    cy = await center.agent("cy")
    await cy.available()
    await cy.not_ready()
    console, ivr, amy = await ringing_console(center, new_page)
    await ivr.event("call.answered", "call-1", agent_id=amy)
    await expect(console.locator("#call-status")).to_have_text("On call")
    await console.click("#btn-transfer")
    dialog = console.locator("#transfer-dialog")
    await dialog.locator("input[value=agent]").check()
    options = console.locator("#transfer-agent option")
    await expect(options).to_have_text(["Bob — Not ready", "Cy — Not ready"])
    await console.select_option("#transfer-agent", str(cy.agent_id))
    await bob.available()
    await expect(options).to_have_text(["Bob — Available", "Cy — Not ready"], timeout=30000)
    await expect(console.locator("#transfer-agent")).to_have_value(str(cy.agent_id))
    await expect(console.locator("#transfer-queue option")).to_have_text(
        ["default (0 waiting, 1 available)"])
    await dialog.locator("button[value=cancel]").click()
    await expect(dialog).to_have_count(0)


async def test_blind_transfer_to_a_queue_lands_on_a_second_agents_screen(
        center: Any, new_page: NewPage) -> None:  # noqa: F811
    """Amy picks the billing queue in the dialog (it shows the callers waiting there);
    Bob, the billing agent, gets the caller's screen-pop with the customer."""
    await center.add_queue("billing", ("billing",))
    await center.add_agent("bob", skills=("billing",))
    console, ivr, amy = await ringing_console(center, new_page)
    await ivr.event("call.answered", "call-1", agent_id=amy)
    await expect(console.locator("#call-status")).to_have_text("On call")
    other = await new_page()
    await sign_in(other, center, "bob")
    await go_available(other)
    pbx = ivr.obey()
    try:
        await console.click("#btn-transfer")
        await expect(console.locator("#transfer-queue option")).to_have_text(
            ["billing (0 waiting, 1 available)", "default (0 waiting, 1 available)"])
        await console.select_option("#transfer-queue", "billing")
        await console.click("#btn-transfer-go")
        await expect(console.locator("#wrapup-form")).to_be_visible()
        await expect(other.locator("#call-status")).to_have_text("Incoming call")
        await expect(other.locator("#pop-name")).to_have_text("张伟")
        call = await center.server.app[appkeys.ROUTER].store.call("call-1")
        assert call["queue"] == "billing" and call["transferred_from"] == str(amy)
    finally:
        pbx.cancel()
