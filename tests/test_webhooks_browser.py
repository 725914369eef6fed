"""The webhooks page in Debian's Chromium (issue 21): an admin reaches it from the
administration page, creates a subscription to a real local receiver (bad URLs and unknown
event types are refused with the server's reason), pauses it, reads its delivery log, finds
a dead letter and replays it; English and Chinese. Supervisors are sent away.

Screenshots go to docs/screenshots/ with CALLCENTER_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from core.appkeys import WEBHOOKS
from core.models import WebhookSubscription
from tests.browser import sign_in
from tests.rest import request
from tests.test_webhooks import SECRET, _patient, _short_window, receiver, settings  # noqa: F401
from tests.waits import eventually
from tests.webhook_receiver import Receiver

pytestmark = [
    pytest.mark.browser,
]


async def _subscription(center: Any) -> WebhookSubscription | None:
    async with center.sessions() as session:
        return await session.scalar(select(WebhookSubscription))


async def _with_status(center: Any, token: str, hook_id: int, status: str) -> list[Any]:
    _, body = await request(center, "GET", f"/api/v1/webhooks/{hook_id}/deliveries", token,
                            params={"status": status})
    return body["deliveries"]


async def _create(page: Page, url: str, events: list[str], secret: str = "") -> None:
    form = page.locator("#wh-new")
    await form.locator("[name=url]").fill(url)
    await form.locator("[name=secret]").fill(secret)
    for kind in events:
        await form.locator(f"input[name=event][value='{kind}']").check()
    await form.locator("button[type=submit]").click()


async def test_admin_manages_a_subscription_and_replays_a_dead_letter(
        center: Any, new_page: Any, shoot: Any, receiver: Receiver) -> None:  # noqa: F811
    await center.add_agent("ada", role="admin")
    page = await new_page(width=1500, height=1100)
    await sign_in(page, center, "ada", lands_on="/wallboard")
    await page.goto(f"{center.url}/admin")
    await page.click("#ad-webhooks")
    await page.wait_for_url(f"{center.url}/webhooks")
    await expect(page.locator("#wh-none")).to_have_text("No subscriptions yet.")

    message = page.locator("#wh-message")
    await _create(page, "http://169.254.169.254/latest", ["call.offered"])
    await expect(message).to_contain_text("link-local")
    await _create(page, "ftp://example.com/hook", [])
    await expect(message).to_contain_text("http or https")
    await _create(page, f"{center.url}/api/v1/login", [])
    await expect(message).to_contain_text("this service itself")
    assert await _subscription(center) is None

    await _create(page, receiver.url, [], secret=SECRET)
    await expect(message).to_have_text("Created.")
    await expect(page.locator("#wh-secret-value")).to_have_text(SECRET)
    row = page.locator("#wh-table tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator("[name=events]")).to_have_value("call.offered")

    await row.locator("[name=events]").fill("call.offered, call.nonsense")
    await row.locator("button", has_text="Save").click()
    await expect(message).to_contain_text("unknown event type")
    await row.locator("[name=events]").fill("call.offered")
    await row.locator("[name=active]").uncheck()
    await row.locator("button", has_text="Save").click()
    await expect(message).to_have_text("Saved: every node uses it now.")
    await expect(page.locator("#wh-table td.wh-paused")).to_contain_text("Paused")
    assert (await _subscription(center)).active is False
    await page.locator("#wh-table [name=active]").check()
    await page.locator("#wh-table button", has_text="Save").click()
    await expect(page.locator("#wh-table td.wh-active")).to_contain_text("Active")

    # A receiver that always fails, and a retry window shorter than the backoff: the
    # first failure is final, a dead letter.
    hook = await _subscription(center)
    admin = await center.login_token("root", role="admin")
    receiver.fail_first = 10**6
    center.server.app[WEBHOOKS].sender.policy = _short_window()
    ivr = await center.ivr()
    await ivr.offer("web-1", "+8613800000901")
    await eventually(lambda: _with_status(center, admin, hook.id, "dead"), 30,
                     what="a dead letter")

    await page.locator("#wh-table button", has_text="Delivery log").click()
    await page.select_option("#wh-status", "dead")
    dead = page.locator("#wh-delivery-table tbody tr")
    await expect(dead).to_have_count(1)
    await expect(dead.locator("td.wh-status")).to_have_text("dead letter")
    await expect(dead.locator("td.wh-error")).not_to_have_text("—")
    await expect(dead).to_contain_text("call.offered")
    await shoot(page, "webhooks.png")

    receiver.fail_first = 0
    center.server.app[WEBHOOKS].sender.policy = _patient()
    await dead.locator("button", has_text="Replay").click()
    await expect(message).to_have_text("1 delivery(ies) sent again.")
    await eventually(lambda: _with_status(center, admin, hook.id, "delivered"), 30,
                     what="the replayed delivery delivered")
    await page.select_option("#wh-status", "")
    await expect(page.locator("#wh-delivery-table tbody tr td.wh-status")).to_have_text(
        "delivered")
    assert receiver.types() == ["call.offered"] and receiver.bad_signatures == 0

    await page.click("button[data-lang=zh]")
    await expect(page.locator("h1")).to_have_text("Webhook 订阅")
    await expect(page.locator("#wh-delivery-table tbody td.wh-status")).to_have_text("已投递")
    await shoot(page, "webhooks-zh.png")


async def test_a_supervisor_is_sent_away_from_the_webhooks_page(
        center: Any, new_page: Any) -> None:  # noqa: F811
    await center.add_agent("sue", role="supervisor")
    page = await new_page()
    await sign_in(page, center, "sue", lands_on="/wallboard")
    await page.goto(f"{center.url}/admin")
    await expect(page.locator("#ad-webhooks")).to_be_hidden()
    await page.goto(f"{center.url}/webhooks")
    await page.wait_for_url(f"{center.url}/forbidden")
