"""The administration page in Debian's Chromium (docs/admin.md): an admin creates an agent
and changes a queue, and the change takes effect (the agent's console, routing); a
supervisor logs an agent out and the agent's console says who; English and Chinese.

Screenshots go to docs/screenshots/ with CALLCENTER_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from core.appkeys import CODES, ROUTER
from core.models import Agent, AuditEntry, CenterSetting, Queue
from tests.browser import sign_in
from tests.conftest import make_settings
from tests.rest import login
from tests.waits import eventually

pytestmark = [
    pytest.mark.browser,
]


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         ring_timeout_s=3600.0, wrap_up_s=3600.0, agent_away_s=10.0**7)


async def test_admin_creates_an_agent_and_changes_a_queue_in_the_browser(
        center, new_page, shoot):  # noqa: F811
    await center.add_agent("ada", role="admin", skills=("billing",))
    await center.add_queue("billing", ("billing",))
    page = await new_page(width=1500, height=1100)
    await sign_in(page, center, "ada", lands_on="/wallboard")
    await page.goto(f"{center.url}/admin")
    await expect(page.locator("#ad-agent-table tbody tr[data-agent=ada]")).to_have_count(1)

    form = page.locator("#ad-new-agent")
    await form.locator("[name=username]").fill("nina")
    await form.locator("[name=password]").fill("nina-pass-1")
    await form.locator("[name=display_name]").fill("Nina")
    await form.locator("[name=skills]").fill("billing")
    await form.locator("[name=queues]").fill("billing")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#ad-message")).to_have_text("Created.")
    nina = page.locator("#ad-agent-table tbody tr[data-agent=nina]")
    await expect(nina.locator("[name=queues]")).to_have_value("billing")

    row = page.locator("#ad-queue-table tbody tr[data-queue=billing]")
    await row.locator("[name=sl_target]").fill("0.95")
    await row.locator("[name=wrap_up_s]").fill("12")
    await row.locator("button", has_text="Save").click()
    await expect(page.locator("#ad-message")).to_have_text("Saved: every node uses it now.")
    async with center.sessions() as session:
        queue = await session.get(Queue, "billing")
        created = await session.scalar(select(Agent).where(Agent.username == "nina"))
    assert (queue.sl_target, queue.wrap_up_s) == (0.95, 12)
    assert created.queues == ["billing"] and created.skills == ["billing"]
    assert center.server.app[ROUTER].queues["billing"] == ("billing",)

    await row.locator("[name=sl_target]").fill("1.5")  # the browser lets it through
    await row.locator("button", has_text="Save").click()
    await expect(page.locator("#ad-message")).to_contain_text("Not changed (invalid)")
    await shoot(page, "admin.png")

    await page.click("button[data-lang=zh]")
    await expect(page.locator("h1")).to_have_text("系统管理")
    await expect(page.locator("#ad-agent-table thead")).to_contain_text("技能")
    await shoot(page, "admin-zh.png")


async def test_admin_edits_people_codes_skills_policy_and_boosts_in_the_browser(
        center, new_page):
    await center.add_agent("ada", role="admin", skills=("billing",))
    await center.add_agent("bob")
    await center.add_agent("cal")
    await center.add_queue("billing", ("billing",))
    page = await new_page(width=1600, height=1200)
    await sign_in(page, center, "ada", lands_on="/wallboard")
    await page.goto(f"{center.url}/admin")
    app = center.server.app

    bob = page.locator("#ad-agent-table tbody tr[data-agent=bob]")
    await bob.locator("[name=display_name]").fill("Bobby")
    await bob.locator("[name=extension]").fill("2002")
    await bob.locator("[name=skills]").fill("billing")
    await bob.locator("[name=level]").fill("4")
    await bob.locator("[name=role]").select_option("supervisor")
    await _saved(page, bob.locator("button", has_text="Save"))
    cal = page.locator("#ad-agent-table tbody tr[data-agent=cal]")
    await cal.locator("[name=active]").uncheck()
    await _saved(page, cal.locator("button", has_text="Save"))
    await cal.locator("[name=new_password]").fill("fresh-pass-1")
    await _saved(page, cal.locator("button", has_text="Set password"), "Password set")
    async with center.sessions() as session:
        people = {a.username: a for a in await session.scalars(select(Agent))}
    assert (people["bob"].display_name, people["bob"].extension, people["bob"].skills,
            people["bob"].level, people["bob"].role) == ("Bobby", "2002", ["billing"], 4,
                                                         "supervisor")
    assert people["cal"].active is False
    assert (await login(center, "cal", "fresh-pass-1"))[0] == 401  # deactivated
    await cal.locator("[name=active]").check()
    await _saved(page, cal.locator("button", has_text="Save"))
    assert (await login(center, "cal", "fresh-pass-1"))[0] == 200

    queue = page.locator("#ad-queue-table tbody tr[data-queue=billing]")
    await queue.locator("[name=tier_boost_s]").fill("vip=300, gold=60")
    await _saved(page, queue.locator("button", has_text="Save"))
    assert app[ROUTER].policy_for("billing").tier_boost_s["vip"] == 300
    await expect(queue.locator("[name=tier_boost_s]")).to_have_value("vip=300, gold=60")

    await page.fill("#ad-codes [name=not_ready]", "coaching = Coaching\nlunch = Lunch")
    await _saved(page, page.locator("#ad-codes button[type=submit]"))
    assert await _audited(center, "codes.change", 2)  # both lists, then one banner
    await eventually(lambda: app[CODES].not_ready_reasons == ("coaching", "lunch"), 20)
    await page.fill("#ad-skills [name=skills]", "billing, vip")
    await _saved(page, page.locator("#ad-skills button[type=submit]"))
    await page.fill("#ad-policy [name=intent_wait_s]", "7")
    await page.fill("#ad-policy [name='sticky_wait_s.vip']", "9")
    await _saved(page, page.locator("#ad-policy button[type=submit]"))
    assert (app[ROUTER].policy.intent_wait_s, app[ROUTER].policy.sticky_wait_s["vip"]) == (7, 9)
    async with center.sessions() as session:
        assert sorted((await session.get(CenterSetting, "skills")).value["skills"]) == [
            "billing", "vip"]

    await page.click("button[data-lang=zh]")
    await expect(page.locator("#ad-queue-table thead")).to_contain_text("客户等级优先量（秒）")
    await expect(cal.locator("button", has_text="重设密码")).to_have_count(1)


async def test_supervisor_logs_an_agent_out_and_the_console_names_the_supervisor(
        center, new_page, shoot):  # noqa: F811
    await center.add_agent("sue", role="supervisor")
    await center.add_agent("amy")
    console = await new_page()
    await sign_in(console, center, "amy")
    await expect(console.locator("#btn-available")).to_be_enabled()
    await console.click("#btn-available")
    await expect(console.locator("#state-label")).to_have_text("Available")

    page = await new_page(width=1500, height=900)
    await sign_in(page, center, "sue", lands_on="/wallboard")
    await page.goto(f"{center.url}/admin")
    amy = page.locator("#ad-agent-table tbody tr[data-agent=amy]")
    await expect(amy).to_contain_text("Available")
    await expect(page.locator("#ad-new-agent")).to_be_hidden()  # admins only
    await amy.locator("[name=reason]").select_option("meeting")
    await amy.locator("button", has_text="Not ready").click()
    await expect(amy).to_contain_text("set by sue")
    await expect(console.locator("#state-label")).to_have_text("Not ready")
    await expect(console.locator("#state-reason")).to_have_text("Meeting · set by sue")
    await shoot(console, "console-set-by-supervisor.png")

    async def out() -> bool:
        return (await center.server.app[ROUTER].store.agent(
            await _id(center, "amy")))["state"] == "not_ready"
    await eventually(out, 20)


async def _saved(page, button, text: str = "Saved: every node uses it now.") -> None:
    """Click and wait for this change's banner (the last one's is cleared first)."""
    await page.locator("#ad-message").evaluate("e => { e.hidden = true; e.textContent = ''; }")
    await button.click()
    await expect(page.locator("#ad-message")).to_contain_text(text)


async def _audited(center, action: str, count: int) -> bool:
    async with center.sessions() as session:
        found = (await session.scalars(select(AuditEntry).where(
            AuditEntry.action == action))).all()
    return len(found) == count


async def _id(center, username: str) -> int:
    async with center.sessions() as session:
        return int(await session.scalar(select(Agent.id).where(Agent.username == username)))
