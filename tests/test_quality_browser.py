"""The quality page in Debian's Chromium, in English and Chinese: a supervisor builds a
form, picks a proposed call, plays its recording (range requests through a ticket),
jumps the audio from a transcript line, scores the call; the agent disputes it; the
supervisor upholds the score. Screenshots go to docs/screenshots/ with
CALLCENTER_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from core.models import QualityForm
from tests.browser import sign_in
from tests.conftest import make_settings
from tests.quality_data import add_call
from tests.test_quality_playback import wav
from tests.waits import eventually

pytestmark = [
    pytest.mark.browser,
]
SLOW = 20000  # ms: the machine is shared

TRANSCRIPT = [
    {"speaker": "agent", "start": 0.2, "end": 2.0, "text": "Thank you for calling, this is Amy."},
    {"speaker": "customer", "start": 2.5, "end": 5.5,
     "text": "My parcel has not arrived and I am not happy."},
    {"speaker": "agent", "start": 6.0, "end": 9.0, "text": "I am sorry, let me look at it now."},
]


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path):
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "c1.wav").write_bytes(wav(seconds=10.0))
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         recordings_dir=tmp_path / "recordings", transcribe_in_process=False)


async def loaded(page) -> None:
    """The audio's metadata loaded: the browser fetched the recording with its ticket.
    (Polled from here: the page's CSP forbids the eval `wait_for_function` uses.)"""
    await eventually(lambda: page.evaluate(
        "(document.querySelector('#q-audio') || {}).readyState >= 1"),
        timeout=20, what="the recording's metadata loaded")


async def build_form(page) -> None:
    await page.click("#q-tabs [data-tab=forms]")
    await page.fill("#qb-name", "Inbound calls")
    section = page.locator(".qb-section").first
    await section.locator(".qb-title").fill("Handling")
    for n, (text, weight) in enumerate((("Greeted the caller", "50"),
                                        ("Verified the caller", "30"),
                                        ("Offered a follow-up", "20"))):
        if n:
            await section.locator(".qb-add-question").click()
        row = section.locator(".qb-question").nth(n)
        await row.locator(".qb-text").fill(text)
        await row.locator(".qb-weight").fill(weight)
    await expect(page.locator("#qb-total")).to_contain_text("Total weight 100")
    await page.click("#qb-save")
    await expect(page.locator("#q-form-list")).to_contain_text("Inbound calls · v1",
                                                               timeout=SLOW)


async def test_a_supervisor_scores_a_call_beside_its_recording_and_the_agent_disputes_it(
        center, new_page, shoot):  # noqa: F811
    await center.add_agent("sue", role="supervisor")
    amy_id = await center.add_agent("amy")
    await add_call(center, "call-1", amy_id, recording="c1.wav", transcript=TRANSCRIPT,
                   complaint_flag=True)
    page = await new_page(width=1500, height=1000)
    await sign_in(page, center, "sue", lands_on="/wallboard")
    await page.goto(f"{center.url}/quality")
    await expect(page.locator("#q-sample-table tbody tr")).to_have_count(1, timeout=SLOW)
    await expect(page.locator("#q-sample-table")).to_contain_text("Complaint")
    await build_form(page)

    await page.click("#q-tabs [data-tab=sample]")
    await page.click("#q-sample-table .q-open")
    await expect(page.locator("#q-transcript .q-line")).to_have_count(3, timeout=SLOW)
    audio = page.locator("#q-audio")
    # Metadata loaded: the browser fetched the recording through its ticket.
    await loaded(page)
    assert await audio.evaluate("a => Math.round(a.duration)") == 10
    await page.locator("#q-transcript .q-line").nth(1).click()
    await eventually(lambda: page.evaluate(
        "Math.abs(document.querySelector('#q-audio').currentTime - 2.5) < 0.3"),
        timeout=20, what="the audio at the line's time")

    questions = page.locator("#q-questions .q-question")
    await expect(questions).to_have_count(3)
    for n, answer in enumerate(("yes", "no", "na")):
        await questions.nth(n).locator(f"input[value={answer}]").check()
    await page.fill("#q-comment", "Offer the follow-up next time.")
    await page.click("#q-submit")
    await expect(page.locator("#q-result")).to_have_text(
        "Score 62.5 / 100: earned 50 of 80 applicable", timeout=SLOW)
    await shoot(page, "quality-evaluate.png")

    agent = await new_page(width=1500, height=1000)
    await sign_in(agent, center, "amy")
    await agent.click("#link-quality")  # from the console
    await agent.wait_for_url(f"{center.url}/quality")
    await expect(agent.locator("#q-tabs [data-tab=forms]")).to_be_hidden()
    await agent.click("#q-eval-table .q-view")
    await expect(agent.locator("#q-eval-score")).to_have_text("62.5", timeout=SLOW)
    await loaded(agent)
    await agent.fill("#q-action-text", "I did offer it, at the end of the call.")
    await agent.click("#q-dispute")
    await expect(agent.locator("#q-eval-card h2")).to_contain_text("Disputed", timeout=SLOW)

    await agent.click("[data-lang=zh]")
    await expect(agent.locator("#q-eval-card h2")).to_contain_text("有异议", timeout=SLOW)
    await expect(agent.locator("h1")).to_have_text("质检评估")
    await shoot(agent, "quality-zh.png")

    await page.click("#q-tabs [data-tab=evaluations]")
    await page.click("#q-eval-table .q-view")
    await page.fill("#q-action-text", "Listened again: not offered.")
    await page.click("#q-uphold")
    await expect(page.locator("#q-eval-card h2")).to_contain_text("Resolved", timeout=SLOW)

    await page.click("#q-tabs [data-tab=stats]")
    await page.click("#q-stats-form button[type=submit]")
    await expect(page.locator("#q-stats-table tbody tr")).to_have_count(1, timeout=SLOW)
    await expect(page.locator("#q-stats-table tbody")).to_contain_text("62.5")


async def test_a_form_with_a_scale_and_a_critical_question_is_built_in_the_browser(
        center, new_page):
    await center.add_agent("sue", role="supervisor")
    page = await new_page(width=1500, height=1000)
    await sign_in(page, center, "sue", lands_on="/wallboard")
    await page.goto(f"{center.url}/quality")
    await page.click("#q-tabs [data-tab=forms]")
    await page.fill("#qb-name", "Compliance")
    section = page.locator(".qb-section").first
    await section.locator(".qb-title").fill("Rules")
    await section.locator(".qb-add-question").click()
    first, second = section.locator(".qb-question").nth(0), section.locator(".qb-question").nth(1)
    await first.locator(".qb-text").fill("Read the disclosure")
    await first.locator(".qb-weight").fill("60")
    await first.locator(".qb-critical").check()
    await second.locator(".qb-text").fill("Courtesy")
    await second.locator(".qb-weight").fill("0")
    await second.locator(".qb-kind").select_option("scale")
    await page.click("#qb-save")  # a weight of 0 is refused, nothing stored
    await expect(page.locator("#q-error")).to_contain_text("weight", timeout=SLOW)
    async with center.sessions() as session:
        assert (await session.scalars(select(QualityForm))).all() == []
    await second.locator(".qb-weight").fill("40")
    await page.click("#qb-save")
    await expect(page.locator("#q-form-list")).to_contain_text("Compliance · v1", timeout=SLOW)
    async with center.sessions() as session:
        [form] = (await session.scalars(select(QualityForm))).all()
    questions = form.sections[0]["questions"]
    assert [(q["kind"], q["weight"], bool(q.get("critical"))) for q in questions] == [
        ("yes_no", 60, True), ("scale", 40, False)]
