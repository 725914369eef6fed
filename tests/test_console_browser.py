"""The agent console and the wallboard in a real browser: Debian's Chromium, driven
by Playwright, against a running service with a test IVR.

The launch fixture, pages and screenshots are shared by every browser test
(tests/browser.py).
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from core.models import Complaint, Interaction
from tests.browser import NewPage, go_available, sign_in
from tests.waits import eventually

pytestmark = pytest.mark.browser


async def add_history(center, customer_id: str, agent_id: int) -> None:
    """An earlier answered call and an open complaint, as the screen-pop shows them."""
    import datetime as dt

    from core import db

    now = dt.datetime.now(dt.UTC)
    async with db.session_scope(center.sessions) as session:
        session.add(Interaction(
            call_id=f"old-{customer_id}", customer_id=customer_id, agent_id=agent_id,
            agent_ids=[agent_id], offered_at=now - dt.timedelta(days=9),
            answered_at=now - dt.timedelta(days=9), outcome="answered", talk_s=312,
            disposition="follow_up", notes="Refund promised within 7 days",
            complaint_flag=True, transcript_status="done",
            transcript=[{"speaker": "customer", "start": 1.5, "text": "我的退款还没有到账"},
                        # A PCI pause of the recording, as transcripts/pauses.py marks it.
                        {"speaker": "system", "start": 4.0, "end": 4.0, "text": "",
                         "words": [], "marker": "recording_paused", "paused_s": 42,
                         "by": "agent:old"},
                        {"speaker": "agent", "start": 6.0, "text": "我帮您查一下"}]))
        session.add(Complaint(
            customer_id=customer_id, category="billing_refund", state="received",
            summary="Refund not received", created_at=now - dt.timedelta(days=3),
            sla_due_at=now - dt.timedelta(hours=5), escalation_level=1))


async def test_agent_takes_a_call_from_screen_pop_to_wrap_up_and_the_wallboard_counts_it(
        center, new_page: NewPage, shoot) -> None:
    amy = await center.add_agent("amy", skills=("billing", "complaints"))
    await center.add_agent("sue", role="supervisor")
    await center.add_customer("C1", "张伟", "+8613800000001", tier="gold",
                              rfm_segment="important_value", clv=12800.0,
                              lifecycle_stage="loyal", churn_risk=0.72, abc_class="A")
    await add_history(center, "C1", amy)
    console = await new_page()
    await sign_in(console, center, "amy")
    await expect(console.locator("#state-label")).to_have_text("Logged out")
    await go_available(console)
    board = await new_page()
    await sign_in(board, center, "sue", lands_on="/wallboard")
    await expect(board.locator("#kpi-offered .kpi-value")).to_have_text("0")
    await expect(board.locator("#kpi-sl .kpi-value")).to_have_text("—")
    ivr = await center.ivr()

    started = asyncio.get_running_loop().time()
    await ivr.offer("call-1", "+8613800000001",
                    ivr={"language": "zh", "intent": "billing", "digits": "2"})
    await expect(console.locator("#pop-name")).to_have_text("张伟", timeout=1000)
    await expect(console.locator("#screen-pop .tier-badge")).to_have_text("Gold", timeout=1000)
    assert asyncio.get_running_loop().time() - started < 1.0

    pop = console.locator("#screen-pop")
    await expect(pop.locator(".churn-warning")).to_contain_text("High churn risk (72%)")
    await expect(pop).to_contain_text("Important value")
    await expect(pop).to_contain_text("Loyal")
    await expect(pop).to_contain_text("12,800")
    await expect(pop.locator(".complaint")).to_contain_text("Billing and refunds")
    await expect(pop.locator(".complaint .sla")).to_contain_text("overdue")
    await expect(pop.locator("table.history tbody tr")).to_have_count(1)
    await expect(pop.locator("table.history")).to_contain_text("Follow-up needed")
    await expect(pop.locator("table.history")).to_contain_text("complaint")
    await expect(pop).to_contain_text("Chinese")
    await expect(pop.locator("#routing-reason")).not_to_be_empty()
    await expect(console.locator("#state-label")).to_have_text("Ringing")

    await ivr.event("call.answered", "call-1", agent_id=amy)
    await expect(console.locator("#call-status")).to_have_text("On call")
    await console.fill("#call-notes", "Refund status checked; customer satisfied")
    await ivr.event("call.ended", "call-1", cause="normal")
    await expect(console.locator("#wrapup-form")).to_be_visible()
    await expect(console.locator("#wrapup-countdown")).to_contain_text("Ends in")
    await shoot(console, "console-screenpop.png")
    await console.select_option("#wrapup-disposition", "resolved")
    await console.click("#btn-wrapup-done")
    await expect(console.locator("#state-label")).to_have_text("Available")
    await expect(console.locator("#screen-pop")).to_have_count(0)

    async def wrapped_up() -> Interaction | None:  # the record writer commits soon after
        async with center.sessions() as session:
            record = await session.scalar(
                select(Interaction).where(Interaction.call_id == "call-1"))
        return record if record and record.disposition else None

    record = await eventually(wrapped_up, what="the wrap-up stored")
    assert record.disposition == "resolved"
    assert record.notes == "Refund status checked; customer satisfied"

    # The customer page has the whole history, the new call and the old transcript.
    await console.fill("#search-q", "张")
    await console.press("#search-q", "Enter")
    await console.click(".result")
    await expect(console.locator("#customer-name")).to_have_text("张伟")
    history = console.locator("#view-customer table.history tbody tr")
    await expect(history).to_have_count(2)
    await expect(history.first).to_contain_text("Resolved")
    await history.nth(1).locator("a").click()
    await expect(console.locator(".transcript li")).to_have_count(3)
    await expect(console.locator(".transcript")).to_contain_text("我的退款还没有到账")
    await expect(console.locator(".transcript li.transcript-marker")).to_contain_text(
        "[Recording paused for 42 s (PCI): nothing was recorded here]")
    await console.click(".back")
    await expect(console.locator("#view-call")).to_be_visible()

    await expect(board.locator("#kpi-offered .kpi-value")).to_have_text("1")
    await expect(board.locator("#kpi-sl .kpi-value")).to_have_text("100%")
    # A caller who gives up while queued pulls the service level down.
    await console.select_option("#nr-reason", "break")
    await console.click("#btn-not-ready")
    await expect(console.locator("#state-label")).to_have_text("Not ready")
    await ivr.offer("call-2", "+8613800000002")
    await expect(board.locator("#kpi-waiting .kpi-value")).to_have_text("1")
    await ivr.event("call.ended", "call-2", cause="caller_hangup")
    await expect(board.locator("#kpi-sl .kpi-value")).to_have_text("50%")
    await expect(board.locator("#kpi-abandon .kpi-value")).to_have_text("50.0%")
    await expect(board.locator("#agents tbody tr")).to_contain_text(["Amy"])
    await expect(board.locator("#agents")).to_contain_text("Break")


async def test_chinese_interface_renders_the_screen_pop_in_chinese(
        center, new_page: NewPage, shoot) -> None:
    await center.add_agent("li", skills=("complaints",))
    await center.add_customer("C2", "王芳", "+8613800000002", tier="vip",
                              rfm_segment="important_retain", clv=56000.0,
                              lifecycle_stage="repeat", churn_risk=0.65, abc_class="A")
    await add_history(center, "C2", await center.add_agent("old"))
    page = await new_page()
    await page.goto(f"{center.url}/login")
    await page.click("button[data-lang=zh]")
    await expect(page.locator("h1")).to_have_text("登录")
    await sign_in(page, center, "li")
    await expect(page.locator("#btn-available")).to_have_text("置闲")
    await page.click("#btn-available")
    await expect(page.locator("#state-label")).to_have_text("空闲")
    ivr = await center.ivr()
    await ivr.offer("zh-call", "+8613800000002", ivr={"language": "zh", "digits": "1"})

    await expect(page.locator("#pop-name")).to_have_text("王芳")
    await expect(page.locator("#call-status")).to_have_text("来电振铃")
    pop = page.locator("#screen-pop")
    await expect(pop).to_contain_text("重要保持客户")
    await expect(pop).to_contain_text("流失风险高")
    await expect(pop).to_contain_text("未结投诉")
    await expect(pop).to_contain_text("账单与退款")
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    await shoot(page, "console-zh.png")


async def test_customer_names_and_notes_are_shown_as_text_not_html(center, new_page: NewPage):
    evil = "<img src=x onerror=alert(1)>"
    agent = await center.add_agent("eve")
    await center.add_customer("X1", evil, "+8613800000066")
    page = await new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await sign_in(page, center, "eve")
    await go_available(page)
    ivr = await center.ivr()
    await ivr.offer("xss-call", "+8613800000066")
    await expect(page.locator("#pop-name")).to_have_text(evil)
    await ivr.event("call.answered", "xss-call", agent_id=agent)
    await page.fill("#call-notes", "<script>alert(2)</script><b>bold</b>")
    await ivr.event("call.ended", "xss-call")
    await page.select_option("#wrapup-disposition", "information")
    await page.click("#btn-wrapup-done")
    await expect(page.locator("#state-label")).to_have_text("Available")

    await page.fill("#search-q", "img")
    await page.click("#search-form button")
    await expect(page.locator(".result-name")).to_have_text(evil)
    await page.click(".result")
    await expect(page.locator("#customer-name")).to_have_text(evil)
    await page.click("table.history a")
    await expect(page.locator(".notes-text")).to_have_text("<script>alert(2)</script><b>bold</b>")
    assert await page.locator("main img, main b, main script").count() == 0
    assert dialogs == []


async def test_agent_opening_the_wallboard_gets_a_403_page(center, new_page: NewPage):
    await center.add_agent("ann")
    page = await new_page()
    await sign_in(page, center, "ann")
    response_codes: list[int] = []
    page.on("response", lambda r: response_codes.append(r.status)
            if r.url.endswith("/forbidden") else None)
    await page.goto(f"{center.url}/wallboard")
    await page.wait_for_url(re.compile("/forbidden$"))
    await expect(page.locator(".status-code")).to_have_text("403")
    await expect(page.locator("h1")).to_have_text("You do not have access to this page")
    await expect(page.locator("#forbidden-who")).to_contain_text("Signed in as Ann (agent)")
    assert response_codes == [403]
    # The data behind the page is refused too, not only the page.
    token = await page.evaluate("JSON.parse(sessionStorage.getItem('cc.session')).token")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{center.url}/ws/wallboard",
                                  headers={"Authorization": f"Bearer {token}"})
    assert refused.value.status == 403


async def _sign_in_attempt(page: Page, username: str, password: str) -> None:
    """One attempt, answered: the page clears the password field when an answer comes,
    so filling in the next attempt before then would lose what was typed."""
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    async with page.expect_response(lambda r: r.url.endswith("/api/v1/login")):
        await page.click("button[type=submit]")
    await expect(page.locator("button[type=submit]")).to_be_enabled()


async def test_wrong_password_gets_one_message_for_user_and_password(center, new_page: NewPage):
    await center.add_agent("bob")
    page = await new_page()
    await page.goto(f"{center.url}/login")
    messages = []
    for username, password in (("bob", "wrong"), ("nobody", center.PASSWORD)):
        await _sign_in_attempt(page, username, password)
        await expect(page.locator("#login-error")).to_be_visible()
        messages.append(await page.locator("#login-error").text_content())
    assert messages == ["Wrong username or password."] * 2
    for _ in range(4):
        await _sign_in_attempt(page, "bob", "still wrong")
    await expect(page.locator("#login-error")).to_have_text(
        "Too many failed sign-ins. Wait a few minutes, then try again.")
    assert page.url.endswith("/login")


async def test_console_reconnects_by_itself_and_shows_the_call_it_missed(
        center, new_page: NewPage):
    await center.add_customer("R1", "Reconnect Ruth", "+8613800000077", tier="gold")
    await center.add_agent("rex")
    page = await new_page()
    sockets = []

    def proxy(ws) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    await page.route_web_socket(re.compile(r"/ws/agent"), proxy)
    await sign_in(page, center, "rex")
    await go_available(page)
    await expect(page.locator("#banner")).to_be_hidden()

    # Drop the connection and keep it down while a call arrives.
    await page.route("**/api/v1/ws-ticket", lambda route: route.abort())
    await sockets[-1].close()
    await expect(page.locator("#banner")).to_be_visible()
    await expect(page.locator("#banner")).to_contain_text("reconnecting")
    await expect(page.locator("#btn-not-ready")).to_be_disabled()
    ivr = await center.ivr()
    await ivr.offer("missed-while-away", "+8613800000077")
    await asyncio.sleep(0.5)  # time passing on purpose: no pop may appear while away
    await expect(page.locator("#pop-name")).to_have_count(0)

    await page.unroute("**/api/v1/ws-ticket")
    await expect(page.locator("#pop-name")).to_have_text("Reconnect Ruth", timeout=10000)
    await expect(page.locator("#state-label")).to_have_text("Ringing")
    await expect(page.locator("#banner")).to_be_hidden()
    assert len(sockets) >= 2


async def test_new_caller_is_created_from_the_screen_pop_and_a_complaint_opened(
        center, new_page: NewPage):
    agent = await center.add_agent("nia")
    page = await new_page()
    await sign_in(page, center, "nia")
    await go_available(page)
    ivr = await center.ivr()
    await ivr.offer("new-call", "+8613911112222")
    await expect(page.locator("#pop-name")).to_have_text("New caller")
    form = page.locator("#new-customer-form")
    await expect(form.locator("input[name=phone]")).to_have_value("+8613911112222")
    await form.locator("input[name=name]").fill("陈静")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#pop-name")).to_have_text("陈静")
    await ivr.event("call.answered", "new-call", agent_id=agent)
    await page.click("#btn-open-complaint")
    await page.select_option("#complaint-form select[name=category]", "delivery")
    await page.fill("#complaint-form textarea[name=summary]", "Parcel lost")
    await page.click("#complaint-form button[type=submit]")
    await expect(page.locator("#complaint-box .ok")).to_contain_text("Complaint #")

    async with center.sessions() as session:
        record = await session.scalar(select(Interaction).where(
            Interaction.call_id == "new-call"))
        complaint = await session.scalar(select(Complaint))
    assert record.customer_id is not None
    assert complaint.customer_id == record.customer_id
    assert complaint.category == "delivery" and complaint.interaction_id == record.id


async def seed_today(center, agent_ids: list[int], hours: float = 3.0) -> None:
    """Earlier intervals of today, fed through the wallboard's own observer."""
    import random
    import time

    from core.appkeys import WALLBOARD

    wallboard = center.server.app[WALLBOARD]
    rng = random.Random(7)
    now = time.time()
    start = max(now - hours * 3600, now - (now - time.timezone) % 86400 + 60)
    offered_at = start
    while offered_at < now - 120:
        tier = rng.choices(["vip", "gold", "standard", "low"], [1, 3, 8, 2])[0]
        queue = rng.choice(["default", "default", "sales"])
        call = {"queue": queue, "tier": tier, "offered_at": offered_at,
                "agent_id": str(rng.choice(agent_ids))}
        await wallboard.observe("call.offered", {**call})
        wait = rng.expovariate(1 / 9) * (1.9 if 1.2 * 3600 < now - offered_at < 2 * 3600 else 1)
        if rng.random() < 0.06:
            await wallboard.observe("call.ended", {**call, "outcome": "abandoned"})
        else:
            await wallboard.observe("call.answered", {**call, "answered_at": offered_at + wait})
            await wallboard.observe("call.completed", {**call, "handle_s": rng.gauss(260, 60)})
            if rng.random() < 0.3:
                await wallboard.observe("survey.result", {"score": rng.choice([5, 5, 4, 4, 3, 2])})
        offered_at += rng.expovariate(1 / 70)


async def test_wallboard_shows_queues_tiers_agents_and_todays_intervals(
        center, new_page: NewPage, shoot):
    import datetime as dt

    from core import db
    from core.appkeys import DIRECTORY, WALLBOARD
    from core.models import Queue

    async with db.session_scope(center.sessions) as session:
        session.add_all([Queue(name="default", display_name="General"),
                         Queue(name="sales", display_name="Sales", sl_threshold_s=30)])
        now = dt.datetime.now(dt.UTC)
        session.add_all([
            Complaint(customer_id="A", state="received", sla_due_at=now + dt.timedelta(hours=8)),
            Complaint(customer_id="B", state="validated", sla_due_at=now - dt.timedelta(hours=2)),
            Complaint(customer_id="C", state="resolving", escalation_level=1,
                      sla_due_at=now + dt.timedelta(hours=3))])
    await center.server.app[DIRECTORY].load_queues()
    await center.server.app[WALLBOARD].refresh()
    await center.add_customer("V", "Valued Customer", "+8613800000901", tier="vip")
    names = ["bob", "cat", "dan", "eve", "fay"]
    agents = {name: await center.agent(name) for name in names}
    await seed_today(center, [a.agent_id for a in agents.values()])
    ivr = await center.ivr()
    for name in ("bob", "cat", "eve"):
        await agents[name].available()
        await ivr.offer(f"live-{name}", f"+86138000009{names.index(name):02d}")
        await agents[name].inbox.expect("screen_pop", call_id=f"live-{name}")
    for name in ("bob", "cat"):
        await ivr.event("call.answered", f"live-{name}", agent_id=agents[name].agent_id)
    await ivr.event("call.ended", "live-cat")
    await agents["dan"].not_ready("lunch")
    await agents["fay"].not_ready("training")
    await ivr.offer("waiting-vip", "+8613800000901")
    await ivr.offer("waiting-std", "+8613800000950", queue="sales")
    await center.add_agent("sue", role="supervisor")

    board = await new_page(width=1600, height=1000)
    await sign_in(board, center, "sue", lands_on="/wallboard")
    await expect(board.locator("#wb-link")).to_have_text("Live")
    await expect(board.locator("#queues tbody tr")).to_have_count(2)
    await expect(board.locator("#queues tbody tr").first).to_contain_text("General")
    await expect(board.locator("#agents tbody tr")).to_have_count(5)
    await expect(board.locator("#kpi-complaints-overdue .kpi-value")).to_have_text("1")
    await expect(board.locator("#kpi-complaints-escalated .kpi-value")).to_have_text("1")
    await expect(board.locator("#agents")).to_contain_text("Lunch")
    assert await board.locator("#chart rect.bar.answered").count() >= 2
    await expect(board.locator("#chart path.sl-line")).to_have_count(1)
    # Time passing on purpose, for the screenshot only: the longest wait grows.
    await asyncio.sleep(1.5)
    await shoot(board, "wallboard.png")

    # Pulling the plug shows the board as stale, not as live figures.
    await board.context.set_offline(True)
    await expect(board.locator("#banner")).to_contain_text("Connection lost", timeout=10000)
    await board.context.set_offline(False)
    await expect(board.locator("#banner")).to_be_hidden(timeout=15000)
